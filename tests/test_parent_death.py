"""A process that ends with another (downpour.parent_death.end_with): a study's cell workers watch the study."""
import errno
import os
import signal
import subprocess
import sys
import threading

import pytest

from downpour import parent_death

WATCHER = '''
import sys, time
from downpour.parent_death import end_with
end_with(int(sys.argv[1]))
print("watching", flush=True)
time.sleep(60)
'''


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="the watch needs pidfd_open (Linux)")
def test_a_watcher_ends_when_the_process_it_watches_ends_and_at_once_if_it_is_gone():
    watched = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    watcher = subprocess.Popen([sys.executable, "-c", WATCHER, str(watched.pid)], stdout=subprocess.PIPE, text=True)
    try:
        assert watcher.stdout.readline() == "watching\n"
        assert watcher.poll() is None                        # the watched process runs: the watcher too
        watched.kill()
        watched.wait()
        assert watcher.wait(timeout=30) == -signal.SIGTERM
        gone = subprocess.run([sys.executable, "-c", WATCHER, str(watched.pid)], capture_output=True, timeout=30)
        assert gone.returncode == -signal.SIGTERM and gone.stdout == b""
    finally:
        for p in (watched, watcher):
            p.kill()
            p.wait()


@pytest.mark.parametrize("missing", ["kernel", "python"])
def test_where_pidfd_is_missing_nothing_is_watched(monkeypatch, missing):
    """A kernel before 5.3 (ENOSYS) or a Python without os.pidfd_open: no thread, no signal; the study's own stop
    ends its workers as before."""
    if missing == "kernel":
        monkeypatch.setattr(os, "pidfd_open", lambda pid: (_ for _ in ()).throw(OSError(errno.ENOSYS, "no pidfd")),
                            raising=False)
    else:
        monkeypatch.delattr(os, "pidfd_open", raising=False)
    monkeypatch.setattr(os, "kill", lambda pid, sig: pytest.fail("signalled"))
    before = threading.active_count()
    parent_death.end_with(os.getpid())
    assert threading.active_count() == before
