"""What a stopped `downpour` prints on its way out: a second Ctrl-C in its exit, torch's exit-time log lines."""
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys

import pytest

from downpour.cli import main

TINY = ["--config", "ufldl-sae", "--set", "data.samples=500", "--set", "train.tensorboard=false", "--set",
        "train.log_every=5", "--runner", "local", "--no-report", "--set", "analysis.no_faces_twin=false"]

# the command as a process runs it (command() reading sys.argv), with one atexit hook that waits: a stand-in for a
# slow exit (Ray's shutdown, torch's hooks, a thread joined), so the second Ctrl-C lands in the exit, wherever in it
SLOW_EXIT = ("import atexit, sys, time\n"
             "from downpour.cli import command\n"
             "atexit.register(lambda: time.sleep(60))\n"
             "sys.exit(command())\n")

# the process's own command interrupted before it does anything, and a SIGTERM sent the moment the CLI's own
# `with sigterm_as_interrupt()` block has ended (where SIGTERM's handler must not be SIG_DFL again before the CLI
# sets the exit's once more)
TERM_AFTER_BLOCK = ("import contextlib, os, signal, sys, time\n"
                    "import downpour.cli as cli\n"
                    "from downpour.train.signals import sigterm_as_interrupt\n"
                    "def interrupted(args):\n"
                    "    raise KeyboardInterrupt\n"
                    "@contextlib.contextmanager\n"
                    "def then_sigterm():\n"
                    "    with sigterm_as_interrupt() as terms:\n"
                    "        yield terms\n"
                    "    os.kill(os.getpid(), signal.SIGTERM)\n"
                    "    time.sleep(0.5)\n"
                    "cli.check_as_typed = interrupted\n"
                    "cli.sigterm_as_interrupt = then_sigterm\n"
                    "sys.exit(cli.command())\n")

# the process's own command interrupted, and a SIGTERM that lands in the CLI's `except KeyboardInterrupt` before it
# arms the exit (sent from the arming itself, before it sets a handler)
TERM_BEFORE_EXIT = ("import os, signal, sys, time\n"
                    "import downpour.cli as cli\n"
                    "def interrupted(args):\n"
                    "    raise KeyboardInterrupt\n"
                    "arm = cli.quit_at_next_stop\n"
                    "def term_then_arm(code):\n"
                    "    os.kill(os.getpid(), signal.SIGTERM)\n"
                    "    time.sleep(0.5)\n"
                    "    arm(code)\n"
                    "cli.check_as_typed = interrupted\n"
                    "cli.quit_at_next_stop = term_then_arm\n"
                    "sys.exit(cli.command())\n")


def _line_with(proc, marker: str, seen: list[str]) -> None:
    """Read ``proc``'s stderr up to the first line holding ``marker`` (each line kept in ``seen``)."""
    for line in proc.stderr:
        seen.append(line)
        if marker in line:
            return
    raise AssertionError(f"no line with {marker!r}: {''.join(seen)}")


def test_a_second_ctrl_c_in_the_exit_of_a_stopped_run_quits_at_once_in_one_line(tmp_path):
    """A Ctrl-C stops the run (its checkpoint saved), "downpour: interrupted" is said, and a second Ctrl-C comes while
    the process exits: it quits at once with one line, the checkpoint kept (else it raises into what runs then, with a
    traceback: the CLI's own `with` block's end, as in a real `downpour train` on Ray; an atexit hook: "Exception
    ignored in atexit callback", and the hook goes on)."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_EXIT, "train", *TINY, "--steps", "1000000", "--out", str(out)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    seen: list[str] = []
    try:
        _line_with(proc, "step ", seen)             # training: the first progress line
        proc.send_signal(signal.SIGINT)
        _line_with(proc, "downpour: interrupted", seen)     # said: the process's exit is what is left
        proc.send_signal(signal.SIGINT)
        rest = proc.stderr.read()
        proc.wait(timeout=120)
    finally:
        proc.kill()
    err = "".join(seen) + rest
    assert proc.returncode == 130, err
    assert "downpour: interrupted" in err and "Traceback" not in err and "Exception ignored" not in err, err
    assert rest == "downpour: quit at once, its exit cut short (what was saved stays)\n", err
    assert json.loads((out / "checkpoints" / "local.json").read_text())["step"] >= 5      # resumable


def test_a_sigterm_just_after_the_clis_own_block_quits_in_one_line_not_unsaid():
    """An interrupted command's exit is armed inside the CLI's `with sigterm_as_interrupt()` block, and its handler
    outlives the block: if the block's end put SIGTERM's handler back to SIG_DFL and the CLI armed it again after, a
    SIGTERM in between would end the process by the signal, with no line (status -15)."""
    done = subprocess.run([sys.executable, "-c", TERM_AFTER_BLOCK, "models"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 130, done.stderr
    assert done.stderr.endswith("downpour: interrupted\ndownpour: quit at once, its exit cut short (what was saved "
                                "stays)\n"), done.stderr


def test_a_sigterm_while_the_cli_says_it_was_interrupted_quits_in_one_line_not_a_traceback():
    """A SIGTERM in the CLI's `except KeyboardInterrupt`, before it arms the exit, waits for the CLI's block to end,
    which has said "interrupted", and acts then: the exit's one line (else it raises there: a traceback, "During
    handling of the above exception ...")."""
    done = subprocess.run([sys.executable, "-c", TERM_BEFORE_EXIT, "models"], capture_output=True, text=True,
                          timeout=120)
    assert "Traceback" not in done.stderr and done.returncode == 130, done.stderr
    assert done.stderr.endswith("downpour: interrupted\ndownpour: quit at once, its exit cut short (what was saved "
                                "stays)\n"), done.stderr


@pytest.mark.parametrize("stack", [False, True])
def test_a_sigterm_waits_only_while_the_opener_or_its_callee_handles_the_stop(stack):
    """Held back where the block's opener (or a function it called, the CLI's _run) handles the stop, the block
    opened by `with` or by an ExitStack (contextlib's frames skipped, not a fixed depth), and handed on at the
    block's end; a stop handled deeper (a runner's own `except`) acts at once, as before."""
    from downpour.train.signals import Terminated, sigterm_as_interrupt

    seen: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))

    def handled(depth: int) -> str:
        if depth:
            return handled(depth - 1)
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            signal.raise_signal(signal.SIGTERM)
            return "said"

    try:
        with contextlib.ExitStack() as opened:
            terms = opened.enter_context(sigterm_as_interrupt()) if stack else None
            with contextlib.nullcontext() if stack else sigterm_as_interrupt() as received:
                terms = terms if stack else received
                assert handled(0) == "said" and seen == []
                with pytest.raises(Terminated):
                    handled(1)
        assert terms == [signal.SIGTERM] * 2 and seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, before)


def test_main_without_argv_in_a_long_lived_process_leaves_its_signal_handlers_as_they_were(monkeypatch):
    """`main()` with no argv called from a notebook, interrupted: a caller's main() leaves the handlers it found; only
    command() (the script) arms the exit. Else it takes itself for the process's own command and sets Ctrl-C and
    SIGTERM to end the process (os._exit), so the notebook's next Ctrl-C kills its kernel."""
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr("downpour.cli.check_as_typed", interrupted)
    monkeypatch.setattr(sys, "argv", ["downpour", "models"])
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert main() == 130
        assert {s: signal.getsignal(s) for s in before} == before
    finally:
        for s, handler in before.items():      # (a failure here must not leave pytest ended by its next Ctrl-C)
            signal.signal(s, handler)


def test_torchs_fake_tensor_cache_stats_are_not_logged_at_the_exit_of_a_stopped_command(monkeypatch, caplog):
    """A Ctrl-C in the pre-run checks cut torch's imports short after torch._subclasses.fake_tensor registered its
    atexit hook (which logs "FakeTensor cache stats" at INFO) and before torch set its loggers' levels: the CLI's INFO
    printed three lines after "downpour: interrupted". The levels torch had not set yet are unset here."""
    from torch._subclasses import fake_tensor

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr("downpour.cli.check_as_typed", interrupted)
    loggers = [logging.getLogger(name) for name in ("torch", "torch._subclasses", "torch._subclasses.fake_tensor")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.NOTSET)
        assert main(["models"]) == 130
        with caplog.at_level(logging.INFO):
            fake_tensor.dump_cache_stats()              # what the hook does at exit
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    assert "FakeTensor cache stats" not in caplog.text
