"""`downpour crossfit --jobs N`: each fold's output goes to its log, and the command says each running fold's newest
step from there (crossfit._say_progress), once per new step, prefixed by the fold."""
from __future__ import annotations

import logging
from pathlib import Path

from downpour.crossfit import _say_progress

OLD = "step     50/100  loss 9.9  [recon 9.9]  70 samples/s  eta 1m00s\n"   # an earlier run's, before the offset


def _line(step: int, loss: float, eta: str) -> str:   # as telemetry.print_progress writes it
    return f"step {step:>6}/100  loss {loss:.4g}  [recon {loss:.4g}  sparsity 0.01]  70 samples/s  eta {eta}\n"


def test_the_newest_step_past_the_offset_is_said_once_with_its_fold(tmp_path, caplog):
    log_path = tmp_path / "fold-1.log"
    log_path.write_text(OLD)
    start = log_path.stat().st_size
    caplog.set_level(logging.INFO, logger="downpour.crossfit")
    with log_path.open("a") as f:
        f.write("INFO downpour.train: resuming from step 50\n" + _line(60, 0.5, "40s") + _line(70, 0.42, "30s"))
    offset, said = _say_progress(Path("fold-1"), log_path, start, "")
    assert said == "step 70/100, loss 0.42, eta 30s" and offset == log_path.stat().st_size
    assert caplog.messages == ["crossfit: fold-1: step 70/100, loss 0.42, eta 30s"]
    # nothing new (a warning, and a progress line half written): nothing said, the half line read next time
    with log_path.open("a") as f:
        f.write("WARNING something\n" + _line(80, 0.4, "20s")[:20])
    offset, said = _say_progress(Path("fold-1"), log_path, offset, said)
    assert said == "step 70/100, loss 0.42, eta 30s" and len(caplog.messages) == 1
    with log_path.open("a") as f:
        f.write(_line(80, 0.4, "20s")[20:])
    _, said = _say_progress(Path("fold-1/no-faces"), log_path, offset, said)
    assert caplog.messages[-1] == "crossfit: fold-1/no-faces: step 80/100, loss 0.4, eta 20s"


def test_a_log_not_written_yet_says_nothing(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="downpour.crossfit")
    assert _say_progress(Path("fold-0"), tmp_path / "fold-0.log", 0, "") == (0, "") and not caplog.messages
