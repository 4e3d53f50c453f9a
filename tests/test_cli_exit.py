"""What a stopped `downpour` prints on its way out: a second Ctrl-C in its exit, torch's exit-time log lines."""
import json
import logging
import os
import signal
import subprocess
import sys

from downpour.cli import main

TINY = ["--config", "ufldl-sae", "--set", "data.samples=500", "--set", "train.tensorboard=false", "--set",
        "train.log_every=5", "--runner", "local", "--no-report", "--set", "analysis.no_faces_twin=false"]

# the command as a process runs it (main() reading sys.argv), with one atexit hook that waits: a stand-in for a slow
# exit (Ray's shutdown, torch's hooks, a thread joined), so the second Ctrl-C lands in the exit, wherever in it
SLOW_EXIT = ("import atexit, sys, time\n"
             "from downpour.cli import main\n"
             "atexit.register(lambda: time.sleep(60))\n"
             "sys.exit(main())\n")


def _line_with(proc, marker: str, seen: list[str]) -> None:
    """Read ``proc``'s stderr up to the first line holding ``marker`` (each line kept in ``seen``)."""
    for line in proc.stderr:
        seen.append(line)
        if marker in line:
            return
    raise AssertionError(f"no line with {marker!r}: {''.join(seen)}")


def test_a_second_ctrl_c_in_the_exit_of_a_stopped_run_quits_at_once_in_one_line(tmp_path):
    """A Ctrl-C stops the run (its checkpoint saved), "downpour: interrupted" is said, and a second Ctrl-C comes while
    the process exits: it raised into what ran then, with a traceback (the CLI's own `with` block's end: a real
    `downpour train` on Ray, 2026-12-06; an atexit hook: "Exception ignored in atexit callback", and the hook went
    on). Now it quits at once with one line, the checkpoint kept."""
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
