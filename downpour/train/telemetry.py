"""Metrics for every runner: one JSON object per logged step in metrics.jsonl, TensorBoard scalars,
and a progress line on the terminal."""
from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from downpour.objectives import is_metric
from downpour.settings import is_count
from downpour.train.rundir import RunDir

# print_progress's line, as `downpour crossfit --jobs N` reads each fold's newest from its log: the step, the steps,
# the loss and the eta (kept beside the line it matches: a change to one is seen beside the other)
PROGRESS_LINE = re.compile(r"step\s+(\d+)/(\d+)\s+loss (\S+).*\beta (\S+)")


def _fmt_duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _over_last(steps: int) -> str:
    """The steps a progress line's samples/s is over: "over the last 5 steps", "over the last step"."""
    return "over the last step" if steps == 1 else f"over the last {steps} steps"


class PartsMean:
    """Averages step results between two log lines, so the curve is not one noisy batch.

    Each part is averaged over the steps that reported it: in the row where a greedy run moves from
    stage 1 to stage 2, stage 1's parts come from the stage-1 steps alone (divided by every step of
    the row they fell to a fraction of their value, a false cliff in every stage's curve). The
    row's ``loss`` is the mean of every step's own total, not the sum of the parts' means: in that
    row the sum would add stage 1's mean to stage 2's (a false spike: 648 where the steps' mean was 368).
    """

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.steps = 0           # results added since the last pop
        self.samples = 0
        self.loss = 0.0          # the sum of the steps' totals

    def add(self, parts: dict[str, float], samples: int = 0, loss: float | None = None) -> None:
        """One step's parts and samples; ``loss``: its total when the caller has it (else the parts' sum)."""
        for k, v in parts.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1
        self.loss += total_loss(parts) if loss is None else loss
        self.steps += 1
        self.samples += samples

    def state(self) -> dict[str, Any]:
        """The row gathered so far, as JSON (a checkpoint taken between two rows keeps it)."""
        return {"sums": self.sums, "counts": self.counts, "steps": self.steps, "samples": self.samples, "loss": self.loss,
                "parts": list(self.sums)}    # (their order: a checkpoint's JSON sorts its keys)

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> "PartsMean":
        mean = cls()
        if state:
            # in the order the model gave them (sorted, the first row after a resume would print stage1/pooled_l2
            # before stage1/reconstruction, unlike every other row); a checkpoint from before 2026-12-06: as saved
            mean.sums, mean.counts = dict(state["sums"]), dict(state["counts"])
            if isinstance(order := state.get("parts"), list) and sorted(order, key=str) == sorted(mean.sums):
                mean.sums = {k: mean.sums[k] for k in order}
            mean.steps, mean.samples, mean.loss = state["steps"], state["samples"], state["loss"]
            counts = [mean.steps, mean.samples, *mean.counts.values()]
            if (mean.sums.keys() != mean.counts.keys() or not all(is_count(v) for v in counts)
                    or not all(isinstance(v, (int, float)) for v in (mean.loss, *mean.sums.values()))):
                raise ValueError(f"the row {state!r} is not sums and counts of the same parts, whole counts >= 0 "
                                 "and a loss")     # (a KeyError at its next log step, saved again on the way out)
        return mean

    def pop(self) -> tuple[dict[str, float], int, float]:
        """(each part's mean, samples since the last pop, the mean of the steps' totals), and start afresh."""
        out = ({k: v / self.counts[k] for k, v in self.sums.items()}, self.samples,
               self.loss / self.steps if self.steps else 0.0)
        self.__init__()
        return out


def total_loss(parts: dict[str, float]) -> float:
    """A step's cost: the sum of its parts (diagnostics are logged, not summed)."""
    return sum(v for k, v in parts.items() if not is_metric(k))


class Telemetry:
    """``log(step, parts, samples, **fields)`` appends
    ``{"step", "time", "loss", <every part>, "samples_per_s", **fields}`` to metrics.jsonl.

    ``samples`` counts the samples processed since the previous ``log`` call, and ``samples_per_s`` divides them
    by the wall seconds since that call (since this object was made, for the first): the rate over the row's own
    steps (``train.log_every`` of them), which the progress line says it is ("over the last 5 steps"), not the
    whole run's. ``time`` is seconds since this object was made (plus ``time_offset`` when a run resumes;
    ``start_step`` is the step it resumed at, so the ETA counts only this process's steps, and TensorBoard drops
    events logged past it; the runner truncates metrics.jsonl itself, :meth:`RunDir.truncate_metrics`). Progress is
    printed about ``progress_lines`` times over the run, so logs stay readable in CI.
    """

    def __init__(self, run: RunDir, total_steps: int, tensorboard: bool = True, progress_lines: int = 20,
                 stream: TextIO | None = None, time_offset: float = 0.0, start_step: int = 0):
        self.run = run
        self.total = max(1, total_steps)
        self.file = open(run.path / "metrics.jsonl", "a")
        self.stream = stream if stream is not None else sys.stderr
        self.every = max(1, self.total // max(1, progress_lines))
        self.offset = time_offset
        self.last_printed = -1
        self.start_step = start_step  # where this process began (a resumed run's step), for the ETA
        self.last_step = start_step   # the previous row's step: the steps a row's samples/s is over
        self.rate_steps = 0           # ... those steps, of the row just logged
        self.writer = None
        if tensorboard:
            # purge_step drops earlier writers' events at steps >= it, so TensorBoard's curves do not double: a
            # resume's (the row at the checkpoint's own step stays), and a restart from step 0 (a shard lost
            # before the first checkpoint, whose events from step 1 on are dropped too)
            self.writer = EventFile(run.path / "tb", purge_step=start_step + 1)
        # the clock starts once the writer is up: its start-up (0.12 s: protobuf) is not the first row's training time
        self.start = self.last_time = time.perf_counter()

    def log(self, step: int, parts: dict[str, float], samples: int, loss: float | None = None,
            **fields: Any) -> dict[str, Any]:
        """``loss``: the row's cost (:meth:`PartsMean.pop`'s mean of the steps' totals); the sum of
        ``parts`` when None (a row of one step)."""
        now = time.perf_counter()
        rate = samples / max(now - self.last_time, 1e-9)
        self.last_time = now
        self.rate_steps, self.last_step = step - self.last_step, step
        loss = total_loss(parts) if loss is None else loss
        row = {"step": step, "time": round(self.offset + now - self.start, 4), "loss": loss,
               **parts, "samples_per_s": round(rate, 2), **fields}
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        if self.writer is not None:
            for key, value in row.items():
                if key not in ("step", "time") and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, step)
            self.writer.flush()
        if step // self.every != self.last_printed // self.every or step >= self.total:
            self.last_printed = step
            self.print_progress(row)
        return row

    def print_progress(self, row: dict[str, Any], extra: str = "") -> None:
        """The row's line; its samples/s is the row's own (:meth:`log`), said over how many steps."""
        step = row["step"]
        elapsed = time.perf_counter() - self.start
        eta = elapsed / max(step - self.start_step, 1) * (self.total - step)
        skip = {"step", "time", "loss", "samples_per_s", "worker", "staleness", "version"}
        parts = "  ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in skip and isinstance(v, float))
        rate = f"{row['samples_per_s']:.0f} samples/s {_over_last(self.rate_steps)}"
        print(f"step {step:>6}/{self.total}  loss {row['loss']:.4g}  [{parts}]  {rate}  "
              f"eta {_fmt_duration(eta)}{extra}", file=self.stream, flush=True)

    def close(self) -> None:
        self.file.close()
        if self.writer is not None:
            self.writer.close()


def event_file_name(tb: Path) -> str:
    """A new event file's name in ``tb``, sorting after every event file there.

    TensorBoard reads a folder's event files in name order and a purge (a restart's ``SessionLog.START``)
    drops only what was read before it, so name order has to be creation order. torch's names end with
    the second, host, pid and a per-process count: two writers opened in one second as the count passes
    9 -> 10 ("...9" sorts after "...10") are read the wrong way round and the restart's purge undone.
    Here: the second and how many event files the folder already holds (6 digits);
    should that not sort last (a clock set back, an older torch name in the same second), the folder's
    last name with that count appended, which does."""
    names = sorted(p.name for p in tb.iterdir() if "tfevents" in p.name)
    name = f"events.out.tfevents.{int(time.time()):010d}.{len(names):06d}.{socket.gethostname()}.{os.getpid()}"
    return name if not names or name > names[-1] else f"{names[-1]}.{len(names):06d}"


class EventFile:
    """TensorBoard scalars written to one new event file of ``tb`` (:func:`event_file_name`), each
    ``flush`` on disk: what torch's SummaryWriter wrote, minus its background thread and its names."""

    def __init__(self, tb: Path, purge_step: int):
        # imported late: 0.12 s (protobuf), which a run with tensorboard off does not need
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event, self._summary = Event, Summary
        tb.mkdir(parents=True, exist_ok=True)
        self.path = tb / event_file_name(tb)
        self._records = RecordWriter(open(self.path, "xb"))   # "x": never one an earlier writer wrote
        self._write(Event(wall_time=time.time(), step=purge_step, file_version="brain.Event:2"))
        self._write(Event(wall_time=time.time(), step=purge_step, session_log=SessionLog(status=SessionLog.START)))
        self.flush()

    def _write(self, event: Any) -> None:
        self._records.write(event.SerializeToString())

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        summary = self._summary(value=[self._summary.Value(tag=tag, simple_value=float(value))])
        self._write(self._event(wall_time=time.time(), step=step, summary=summary))

    def flush(self) -> None:
        self._records.flush()

    def close(self) -> None:
        self._records.close()
