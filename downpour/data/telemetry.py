"""A run's data telemetry: where a worker's batches stand and how its loaders ended (:func:`batch_position`,
:func:`close_stream`, :func:`loader_died`), each worker's report of what it read and skipped (:func:`data_report`,
:func:`report_at`), and the run's data.json that sums them (:func:`run_data_info`, :func:`record_data`,
:func:`record_stopped`)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import torch

from downpour.config import DataConfig
from downpour.data.dataset import Dataset
from downpour.data.patches import DATA_JSON, say_enlarged
from downpour.data.stream import STREAMED, StreamingData
from downpour.errors import DownpourError, RunError, stopped_entry

log = logging.getLogger("downpour.data.pipeline")   # the records keep the logger they had before the split


class RunFolder(Protocol):
    """Where data.json goes: a :class:`~downpour.train.rundir.RunDir` (named by its shape: train/ is a floor above)."""
    path: Path

    def write_json(self, name: str, obj: Any) -> Any: ...


def batch_position(batches: Iterable[Any]) -> dict[str, Any] | None:
    """Where a streamed batch iterator stands (None for the in-memory path, which replays instead)."""
    position = getattr(batches, "position", None)
    return position() if position is not None else None


def close_stream(batches: Iterable[Any]) -> str | None:
    """Stop a streamed batch iterator's loader processes (the in-memory path's generator just ends); returns
    how one of them died, if one did (:meth:`StreamBatches.close`)."""
    close = getattr(batches, "close", None)
    died = close() if close is not None else None
    return died if isinstance(died, str) else None


def loader_died(died: str, cfg: DataConfig, err: BaseException) -> BaseException:
    """What a runner raises when its batches' ``err`` came with a loader process's death (``died``, from
    :func:`close_stream`): one line naming it and what to change, in place of torch's traceback from its
    SIGCHLD handler. A DownpourError or an interrupt stays itself: it says what stopped the run."""
    if not isinstance(err, Exception) or isinstance(err, DownpourError):
        return err
    return RunError(f"a DataLoader process decoding the run's files died ({died}; SIGKILL is what the system's "
                    f"out-of-memory killer sends); the steps done so far are checkpointed: resume the run with less "
                    f"memory taken, data.loader_workers or data.prefetch lower (now {cfg.loader_workers} and "
                    f"{cfg.prefetch}, e.g. --set data.loader_workers=0), or more memory free")


def data_report(batches: Iterable[Any]) -> dict[str, Any] | None:
    """A streamed worker's reads and skipped files (None for the in-memory path)."""
    report = getattr(batches, "report", None)
    return report() if report is not None else None


def report_at(data: Dataset | StreamingData, batch_size: int, seed: int,
              position: dict[str, Any] | None) -> dict[str, Any] | None:
    """A stream's report as a checkpoint's ``position`` left it, reading nothing (None in memory): the
    record of a run stopped after its last checkpoint and before it wrote its own. Reads count once per
    epoch up to ``position``, as a resumed stream's do."""
    if position is None:
        return None
    batches = data.batches(batch_size, torch.Generator().manual_seed(seed), position=position)
    try:
        return data_report(batches)
    finally:
        batches.close()


def record_data(run: RunFolder, cfg: DataConfig, info: dict[str, Any]) -> bool:
    """Write ``info`` as ``run``'s data.json where the run has files to account for (:func:`has_data_record`) or it
    says where the run stopped (``stopped``: :func:`record_stopped`, any data); returns whether the run has files to
    account for (its summary sums them). Elsewhere (a built-in set's end) a stop's data.json of an earlier go goes:
    the run's end supersedes it, as a run on files rewrites its own whole."""
    files = has_data_record(cfg, info)
    if not files and "stopped" not in info:
        (run.path / DATA_JSON).unlink(missing_ok=True)
        return False
    if "workers" in info and info.get("n_upscaled"):    # a stream's workers each said their first: here, how many
        say_enlarged(info["upscaled"], cfg.size, cfg.tile, info["n_upscaled"])
    run.write_json(DATA_JSON, info)
    return files


def record_stopped(run: RunFolder, cfg: DataConfig, info: dict[str, Any],
                   reports: Callable[[], list[dict[str, Any] | None]], step: int, steps: int, err: BaseException,
                   workers: int | None = None) -> None:
    """On a run's stop (Ctrl-C, SIGTERM, a DataError, every worker lost), best effort, whatever its data: data.json
    with ``stopped`` saying at which ``step`` of ``steps`` and why (the report's stop line reads it: a local run has
    no other record), and its data telemetry so far (``reports``: each worker's, asked for now; a built-in set's
    source info alone), so the files it skipped are named before any resume (whose end rewrites the file whole, its
    stream's report going on from the checkpoint's, or removes a built-in set's), not only once it is resumed. Never
    raises: the stop's own error is the one the user must see. ``workers``: the run's (:func:`run_data_info`)."""
    try:
        data_info = run_data_info(info, reports(), workers)
        record_data(run, cfg, {**data_info, "stopped": stopped_entry(step, steps, err)})
    except Exception as failure:  # noqa: BLE001 -- a report lost with its process, a full disk: said, not raised
        log.warning("the run's data.json could not be written on the way out (%s: %s)", type(failure).__name__, failure)


def has_data_record(cfg: DataConfig, info: dict[str, Any]) -> bool:
    """Whether a run writes ``data.json`` at its end: a stream (each worker's report), or files read into memory
    (what was skipped, even when nothing was); a built-in set has no files to report (its data.json says a stop
    alone: :func:`record_stopped`)."""
    return "workers" in info or cfg.source in STREAMED


def run_data_info(info: dict[str, Any], reports: list[dict[str, Any] | None],
                  workers: int | None = None) -> dict[str, Any]:
    """The run's data telemetry: the source's ``info`` plus, for a stream, each worker's report and
    the sums; a file skipped by the driver's fitting sample and by its worker is named once, and so is a video
    cut short (``truncated``: {file, frames, reason}, as the in-memory path records it) and one whose crops were
    enlarged (``upscaled``: {file, size}, counted in ``n_upscaled``). ``workers``: the run's count (a cluster's), so
    a stream none of whose reports came still says whose are missing (``workers_unreported``)."""
    reports = [r for r in reports if r is not None]
    of = reports[0].get("of", 1) if reports else workers
    if not reports and not (of and info.get("pipeline") == "stream"):
        return info
    read = {name for r in reports for name in r.get("recovered", [])}     # skipped once, then read
    skipped = [e for e in _once_per_file(info, reports, "skipped") if e["file"] not in read]
    cut, small = _once_per_file(info, reports, "truncated"), _once_per_file(info, reports, "upscaled")
    totals = {key: sum(r[key] for r in reports) for key in ("reads", "samples", "items_read")}
    # a worker whose report is not here (on Ray: lost, not restarted, or silent on a stop) read and skipped files the
    # sums leave out, so it is said (2 workers, 1 killed: n_items 3003, items_read 1501, its 5 bad files absent from
    # n_skipped and skipped); a stream none of whose reports came (a stop whose workers all missed its wait) says it
    # too, with ``workers``, not as if no worker had run
    missing = sorted(set(range(of)) - {r.get("worker", 0) for r in reports})
    return {**info, "workers": reports, **totals, "n_skipped": len(skipped), "skipped": skipped,
            **({"workers_unreported": missing} if missing else {}),
            **({"truncated": cut} if cut else {}), **({"recovered": sorted(read)} if read else {}),
            **({"n_upscaled": len(small), "upscaled": small} if small else {})}


def _once_per_file(info: dict[str, Any], reports: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The entries under ``key`` ({file, ...}) of the driver's fitting sample and of every worker's report, each
    file once, as first met: a file skipped (``skipped``), a video cut short (``truncated``), a file whose crops were
    enlarged (``upscaled``)."""
    once: dict[str, dict[str, Any]] = {}
    for entry in [*info.get("fit_sample", {}).get(key, []), *(e for r in reports for e in r.get(key, []))]:
        once.setdefault(entry["file"], entry)
    return list(once.values())
