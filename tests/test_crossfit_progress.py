"""`downpour crossfit --jobs N`: each fold's output goes to its log, and the command says each running fold's newest
step from there (crossfit._log_progress), once per new step, prefixed by the fold. The progress lines are written by
telemetry's own formatters (a local run's and a cluster's), so a change of their format fails here instead of
silently ending the progress."""
from __future__ import annotations

import io
import logging
import types
from pathlib import Path

import pytest

from downpour.crossfit import _log_progress
from downpour.ps.recorder import ClusterTelemetry
from downpour.train.telemetry import Telemetry

CLUSTER = {"updates_per_s": 12.0, "mean_staleness": 1.5}


def _lines(tmp_path: Path, kind: type[Telemetry], steps: list[tuple[int, float]]) -> list[str]:
    """The progress lines ``kind`` prints for rows at ``steps`` ((step, loss) of a 100-step run), one a row."""
    stream = io.StringIO()
    telemetry = kind(types.SimpleNamespace(path=tmp_path), 100, tensorboard=False, progress_lines=100, stream=stream)
    for step, loss in steps:
        telemetry.log(step, {"recon": loss - 0.01, "sparsity": 0.01}, samples=70, loss=loss, **CLUSTER)
    telemetry.close()
    lines = stream.getvalue().splitlines(keepends=True)
    assert len(lines) == len(steps)
    return lines


def _eta(line: str) -> str:       # the line's own eta (it depends on the clock), its last word before the extras
    return line.split("  eta ", 1)[1].split()[0]


@pytest.mark.parametrize("kind", [Telemetry, ClusterTelemetry])
def test_the_newest_step_past_the_offset_is_said_once_with_its_fold(tmp_path, caplog, kind):
    old, sixty, seventy, eighty = _lines(tmp_path, kind, [(50, 9.9), (60, 0.5), (70, 0.42), (80, 0.4)])
    log_path = tmp_path / "fold-1.log"
    log_path.write_text(old)             # an earlier run's, before the offset
    start = log_path.stat().st_size
    caplog.set_level(logging.INFO, logger="downpour.crossfit")
    with log_path.open("a") as f:
        f.write("downpour: resuming from step 50\n" + sixty + seventy)     # (cli_log's form of a log line)
    offset, said = _log_progress(Path("fold-1"), log_path, start, "")
    assert said == f"step 70/100, loss 0.42, eta {_eta(seventy)}" and offset == log_path.stat().st_size
    assert caplog.messages == [f"crossfit: fold-1: {said}"]
    # nothing new (a warning, and a progress line half written): nothing said, the half line read next time
    with log_path.open("a") as f:
        f.write("downpour: warning: something\n" + eighty[:20])
    offset, again = _log_progress(Path("fold-1"), log_path, offset, said)
    assert again == said and len(caplog.messages) == 1
    with log_path.open("a") as f:
        f.write(eighty[20:])
    _, said = _log_progress(Path("fold-1/no-faces"), log_path, offset, said)
    assert caplog.messages[-1] == f"crossfit: fold-1/no-faces: step 80/100, loss 0.4, eta {_eta(eighty)}"


def test_a_log_not_written_yet_says_nothing(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="downpour.crossfit")
    assert _log_progress(Path("fold-0"), tmp_path / "fold-0.log", 0, "") == (0, "") and not caplog.messages
