"""Which data path a run takes (``data.pipeline``), and the run's data telemetry at its end.

- ``memory``: :func:`~downpour.data.build.build_dataset`: every sample decoded once into one float32
  tensor, shuffled and whitened as a whole; simple and the fastest per batch. The built-in sources
  (natural, faces, natural+faces, digits) and ``.npz`` arrays always take it.
- ``stream``: :func:`~downpour.data.stream.open_stream`: the driver lists files and fits the
  preprocessing on a sample; each worker decodes only its own files, ahead of use, holding
  O(``data.prefetch``) images. For folders, videos and ``.npy`` files of any size.
- ``auto`` (the default): ``stream`` for a folder, video or ``.npy`` source that would take more than
  :data:`STREAM_ABOVE` bytes in memory (:mod:`~downpour.data.estimate`: from the file count and a few
  headers, nothing is decoded), else ``memory``. The choice and the estimate are in ``info``.

    data = open_data(cfg.data, seed)      # Dataset or StreamingData: shard(i, n), batches(...), info, preprocess
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from downpour._names import plural
from downpour.config import FILE_SOURCES, ConfigError, DataConfig
from downpour.config.sections import JPEG_DECODE
from downpour.data.build import build_dataset, check_config
from downpour.data.dataset import Dataset, shard_range
from downpour.data.estimate import held_bytes
from downpour.data.patches import decode_rule, say_enlarged
from downpour.data.stream import STREAMED, Listing, StreamingData, item_name, list_items, open_stream
from downpour.errors import CheckpointError, DownpourError, RunError, stopped_by
from downpour.settings import is_count

log = logging.getLogger(__name__)

# Above this many bytes held (float32 samples, and a folder's one image decoded), ``auto`` streams. A Ray run holds
# the in-memory set in the driver, once more in the object store and a worker's slice in each worker: 1 GiB is
# ~5 GiB of a laptop's memory at 2 workers, before the model.
STREAM_ABOVE = 1 << 30
def choose_pipeline(cfg: DataConfig, stream_ok: bool = True) -> tuple[str, dict[str, Any], Listing | None]:
    """("memory" | "stream", why, the items when they were listed) for ``cfg`` (checked by ``check_config``)."""
    if cfg.pipeline == "memory" or not cfg.can_stream():
        return "memory", {"pipeline": cfg.pipeline}, None
    if cfg.pipeline == "stream":
        return "stream", {"pipeline": "stream"}, None
    if not stream_ok:
        return "memory", {"pipeline": "auto", "why": "this algorithm needs the whole set in memory"}, None
    listing = list_items(cfg)
    held = held_bytes(cfg, listing)
    why = {"pipeline": "auto", "estimate_mb": _mb(held.total), "stream_above_mb": STREAM_ABOVE // 2**20}
    if cfg.source == "folder":      # what it counts: the samples kept, and the one image decoded at a time
        why.update(samples_mb=_mb(held.kept), decoding_mb=_mb(held.decoding))
    return ("stream" if held.total > STREAM_ABOVE else "memory"), why, listing


def _mb(n: int) -> float:
    return round(n / 2**20, 1)


def resolve_data(cfg: DataConfig, stream_ok: bool = True, workers: int = 1, resume: bool = False,
                 chosen: dict[str, Any] | None = None) -> DataConfig:
    """``cfg`` with what it reads fixed once, for the run's config.toml: a file source's ``data.path``
    made absolute (a resume from another folder, or a Ray worker, reads the same files), and
    ``data.pipeline = 'auto'`` replaced by its choice, so a resume takes the path the run began on
    whatever the data's size is by then. ``workers`` > 1 each stream items of their own: a stream
    with fewer items than workers is a ConfigError (``check_config`` first; ``resume``: a resumed run's, which keeps
    its workers: :func:`most_workers`). ``chosen``: filled with 'auto''s why (its estimate and parts), for the data
    the run then reads to record (``info["chosen"]``) without listing the folder again."""
    if cfg.source not in FILE_SOURCES:
        _check_memory_workers(cfg, None, workers)
        return cfg                          # built in: always in memory, whatever 'auto' says
    path, listing = str(Path(cfg.path).absolute()), None
    pipeline = cfg.pipeline
    if pipeline == "auto" and cfg.can_stream():
        pipeline, why, listing = choose_pipeline(cfg, stream_ok)
        if chosen is not None:
            chosen.update(why)
        if "estimate_mb" in why:
            parts = (f": {why['samples_mb']} MB of samples, {why['decoding_mb']} MB for one image decoded"
                     if "samples_mb" in why else "")
            log.info("data.pipeline = 'auto': %s (%s MB held in memory%s; it streams above %s MB)", pipeline,
                     why["estimate_mb"], parts, why["stream_above_mb"])
    resolved = dataclasses.replace(cfg, path=path, pipeline=pipeline)
    if pipeline == "stream" and workers > 1:
        n = len((listing or list_items(resolved)).items)
        if n < workers:
            raise ConfigError(f"cluster.workers = {workers}, but data.path {cfg.path!r} holds only "
                              f"{plural(n, item_name(cfg.source))}, and each streaming worker reads items of "
                              f"its own; {most_workers(n, resume, '; ' + KEEPS_WORKERS)}",
                              key="cluster.workers")
    if pipeline == "memory":
        _check_memory_workers(resolved, listing, workers, resume)
    return resolved


KEEPS_WORKERS = "a resumed run keeps its workers: restore the files it began with"


def most_workers(n: int, resume: bool, then: str = "") -> str:
    """What to do where the data give only ``n`` items (or samples) for more workers, each training on a share of its
    own: use at most ``n``, ``then`` (a new run); a resume keeps its workers: restore the files it began with, fewer
    workers being a new run's (until 2026-12-06 a resume was offered "use at most n (--workers n)" first, refused)."""
    return f"{KEEPS_WORKERS} (a new run can use at most {n}: --workers {n})" if resume else \
        f"use at most {n} (--workers {n}){then}"


def _check_memory_workers(cfg: DataConfig, listing: Listing | None, workers: int, resume: bool = False) -> None:
    """ConfigError where in-memory data give fewer samples than ``workers``, known without loading it: patches mode's
    ``data.samples``, or a folder's image files cut into one crop each (``tile = 0``; a listing, no image read).
    Until 2026-12-05 it was found once the data were loaded, after config.toml was written into the run folder
    (ps.setup's too_few_for_workers still says it where only the load can tell: tiles, a video's frames, bad files)."""
    if workers <= 1:
        return
    if cfg.mode == "patches":
        n = cfg.samples
        what = f"data.samples = {n} gives only {plural(n, 'patch', 'patches')}"
        todo = f"use at most {n} (--workers {n}) or raise data.samples"
    elif cfg.source == "folder" and cfg.tile == 0:
        n = len((listing or list_items(cfg)).items)
        what = f"data.path {cfg.path!r} holds only {plural(n, 'image file')}, one crop each"
        todo = most_workers(n, resume, f"; {KEEPS_WORKERS}")   # (a folder's resume, refused --workers, is told so)
    else:
        return
    if n < workers:
        raise ConfigError(f"cluster.workers = {workers}, but {what}, and each worker trains on a share of its own; "
                          f"{todo}", key="cluster.workers")


def check_resumed_on(data: Dataset | StreamingData, streamed: bool, config: Path) -> None:
    """A resume goes on on the path its checkpoint was taken on (``streamed``: it holds a stream's
    position). Only a run whose ``config`` still says ``pipeline = "auto"`` (written before the choice
    was recorded) can find another: ConfigError saying how to go on."""
    if streamed == isinstance(data, StreamingData):
        return
    began, now = ("stream", "memory") if streamed else ("memory", "stream")
    raise ConfigError(f"{config}: data.pipeline = 'auto' chose {began!r} when this run began and chooses {now!r} for "
                      f"its data now (they changed size since); set pipeline = \"{began}\" under [data] in that file "
                      "and resume again")


def open_data(cfg: DataConfig, seed: int, stream_ok: bool = True) -> Dataset | StreamingData:
    """The training data of ``cfg`` on the path ``data.pipeline`` chooses. ``stream_ok=False``: the
    caller needs every sample in one tensor (Sandblaster); ``pipeline = "stream"`` is then an error."""
    check_config(cfg)
    if cfg.pipeline == "stream" and not stream_ok:
        raise ConfigError("data.pipeline = 'stream' cannot feed cluster.algorithm = 'sandblaster', whose work units "
                          "index one in-memory tensor; use data.pipeline = 'memory' or cluster.algorithm = 'downpour'")
    choice, why, listing = choose_pipeline(cfg, stream_ok)
    if choice == "memory":
        data: Dataset | StreamingData = build_dataset(cfg, seed)
        data.info["pipeline"] = "memory"
    else:
        data = open_stream(cfg, seed, listing)
        _warn_samples_below_a_pass(cfg, data.info)
    data.info["chosen"] = why
    return data


def _warn_samples_below_a_pass(cfg: DataConfig, info: dict[str, Any]) -> None:
    """A stream cuts at least one patch from every image a pass reads: a data.samples below half of that rounds
    to one per image, and any lower value is the same run (40 images: data.samples = 5 and 10 gave one model,
    bit for bit, where the in-memory path draws 5 or 10)."""
    per_pass = info.get("patches_per_image", 0) * info["n_items"] * info.get("frames_per_video_declared", 1)
    if info.get("patches_per_image") == 1 and cfg.samples < per_pass / 2:
        log.warning("data.samples = %d is fewer than the stream cuts at one patch per image: it reads every one of "
                    "its %d %ss each pass, about %d samples, and a lower data.samples changes nothing; use "
                    "data.pipeline = 'memory' to draw %d, or fewer files", cfg.samples, info["n_items"],
                    info["item"], round(per_pass), cfg.samples)


def keep_cut(data: Dataset | StreamingData, positions: list[dict[str, Any] | None], cfg: DataConfig, seed: int,
             run: Path, checkpoint: Path) -> Dataset | StreamingData:
    """The data a resumed run goes on with: a streamed patch run cuts the patches per image it began with, which
    its checkpoint's stream ``positions`` record (a cluster run's server checkpoint adds its own count, which is
    all a Ray run's holds; a checkpoint from before they did: the run's data.json, if it wrote one); the count
    computed now can differ (a folder's file count changed, or the rule did: for videos on 2026-12-02 and 12-03),
    and a stream cut otherwise would be another run from the checkpoint on, under the same name. The stream is
    then opened again with the recorded count. ``checkpoint``: the JSON file the positions were read from."""
    if cut_patches(data) is None:
        return data
    recorded = [p for p in positions if p]          # (on Ray, its server checkpoint's count: its streams start afresh)
    began = {p.get("patches") for p in recorded} - {None} or {_recorded_patches(run / "data.json")} - {None}
    if not began:
        if recorded and data.info["source"] == "video":
            log.warning("%s: neither its checkpoint nor a data.json records the patches per image it began with; "
                        "they are cut %d per frame now, from the frames the videos declare, "
                        "which may not be what it trained on", run, data.cut.patches)
        return data
    count = began.pop()                # (one: the checkpoint's counts were checked, and found to agree, as it was read)
    if count < 1:                      # what a crop stream records: no patch run's
        raise CheckpointError(f"checkpoint file {str(checkpoint)!r}: its stream position's patches is {count}, the "
                              "count of a stream that cuts no patches, and this run cuts them (a damaged checkpoint)")
    if count == data.cut.patches:
        return data
    log.warning("%s: resumed cutting the %d patches per image it began with (data.samples over the %s now "
                "gives %d)", run, count, data.info["item"] + "s", data.cut.patches)
    # (the first open said what the listing left out: until 2026-12-04 this one said it again, twice a run)
    reopened = open_stream(cfg, seed, per_image=count, say=False)
    reopened.info["chosen"] = data.info.get("chosen")
    return reopened


def say_resumed_at(data: Dataset | StreamingData, positions: list[dict[str, Any] | None], step: int,
                   workers: int = 1) -> None:
    """One INFO line: where a resumed stream picks up, from its checkpoint's ``positions`` (one a worker, each in its
    share of the files; empty: a Ray run's, whose checkpoint keeps none). Until 2026-12-06 nothing said it.
    ``workers``: the run's (a Ray run of one worker said "each worker" of it until 2026-12-07)."""
    if not isinstance(data, StreamingData):
        return
    n, item = len(positions) or workers, data.info["item"]
    if not any(positions):     # [None]: a local run's checkpoint without one; []: a Ray run's
        who = "it starts a fresh pass over its" if n == 1 else "each worker starts a fresh pass over its own"
        log.info("resuming the stream at step %d: its checkpoint keeps no stream position, so %s %ss", step, who, item)
        return
    at = []
    for w, p in enumerate(positions):
        start, stop = shard_range(w, n, len(data))      # (0, len) for one worker
        said = f"pass {p['epoch'] + 1}, {item} {p['index'] + 1} of {stop - start}" if p else "a fresh pass"
        at.append(f"worker {w}: {said}" if n > 1 else said)
    log.info("resuming the stream at step %d where its checkpoint left it: %s%s", step, "; ".join(at),
             " (each in its share of the files)" if n > 1 else "")


def decode_change(run: Path, cfg: DataConfig) -> str:
    """Why a resume of the run in ``run`` may find its input processing refitted on other pixels, from its data.json:
    the JPEG decoder's rule (``jpeg_decode``) it records differs from the one the resume decodes by (``cfg``'s, set by
    hand), or neither: its files changed. Until 2026-12-04 every refit said "the data changed since?", also where the
    files had not and the decoder had."""
    if not cfg.jpeg_shrink():
        return "the data changed since?"     # JPEGs decoded in full, under every rule
    began, now = recorded(run / "data.json", "jpeg_decode"), decode_rule(cfg)
    if began is None and cfg.decode_rules_differ():
        # the rule was given by hand (--set data.jpeg_decode, as the refusal asks): nothing of the run's vouches for it
        # (until 2026-12-05 this said "decoded by the rule it began with" of a guess; a wrong one refits on other tiles)
        other = 1 if now != 1 else 2     # (the rules 1 and 2: the only two such runs can have begun under)
        return (f"its records predate jpeg_decode and data.jpeg_decode = {now} was given: if the run began under rule "
                f"{other}, the steps from here train on other tiles (put the run back from a copy and resume with "
                f"--set data.jpeg_decode={other}); else the files changed since?")
    if began in (None, now):
        return f"JPEGs decoded by the rule it began with, jpeg_decode {now}: the files changed since?"
    return (f"its data.json records JPEGs decoded by rule jpeg_decode {began}, data.jpeg_decode is {now} "
            "(docs/data.md): the decoder changed, or the files did")


def decode_began(run: Path, cfg: DataConfig) -> int:
    """The data.jpeg_decode a run's config.toml lacks (written before 2026-12-05) read as its start had it: its
    data.json's ``jpeg_decode`` (recorded since 2026-12-04 22:23), else today's where the rules decode its crops alike
    (``DataConfig.decode_rules_differ``), else 0, unknown: a tiled run with data.jpeg_draft = true begun
    2026-12-04 15:25-17:05 decoded its tiles in full, one begun after reduced, and neither recorded which
    (:func:`~downpour.data.patches.decode_rule` refuses it by name). Until 2026-12-05 a resume decoded by today's rule,
    whatever the run began with: such a run trained on reduced tiles from the resume on."""
    began = recorded(run / "data.json", "jpeg_decode")
    if began in (1, 2):
        return began
    return 0 if cfg.decode_rules_differ() else JPEG_DECODE


def cut_patches(data: Dataset | StreamingData) -> int | None:
    """The patches per image a streamed patch run cuts (None for any other data): what a checkpoint records
    for ``keep_cut``."""
    return data.cut.patches if isinstance(data, StreamingData) and data.cut.mode == "patches" else None


def _recorded_patches(path: Path) -> int | None:
    """``patches_per_image`` of a run's data.json (None where it has none or cannot be read)."""
    count = recorded(path, "patches_per_image")
    return count if is_count(count, 1) else None


def recorded(path: Path, key: str) -> Any:
    """``key`` of the JSON object in ``path`` (None where it has none or cannot be read)."""
    try:
        return json.loads(path.read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None


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
    :func:`close_stream`): one line naming it and what to change (until 2026-12-04, torch's traceback from its
    SIGCHLD handler). A DownpourError or an interrupt stays itself: it says what stopped the run."""
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


def record_data(write_json: Callable[[str, Any], Any], cfg: DataConfig, info: dict[str, Any]) -> bool:
    """Write ``info`` as the run's data.json (``write_json``: its run folder's) where the run has files to
    account for (:func:`has_data_record`); returns whether it did."""
    if not has_data_record(cfg, info):
        return False
    if "workers" in info and info.get("n_upscaled"):    # a stream's workers each said their first: here, how many
        say_enlarged(info["upscaled"], cfg.size, cfg.tile, info["n_upscaled"])
    write_json("data.json", info)
    return True


def record_stopped(write_json: Callable[[str, Any], Any], cfg: DataConfig, info: dict[str, Any],
                   reports: Callable[[], list[dict[str, Any] | None]], step: int, steps: int, err: BaseException,
                   workers: int | None = None) -> None:
    """On a run's stop (Ctrl-C, a DataError, every worker lost), best effort: its data telemetry so far as data.json
    (``reports``: each worker's, asked for now), with ``stopped`` saying at which ``step`` of ``steps`` and why, so the
    files it skipped are named before any resume (whose end rewrites the file whole, its stream's report going on
    from the checkpoint's). Until 2026-12-04 a stopped run had no data.json until it was resumed. Never raises:
    the stop's own error is the one the user must see. ``workers``: the run's (:func:`run_data_info`)."""
    try:
        data_info = run_data_info(info, reports(), workers)
        record_data(write_json, cfg, {**data_info, "stopped": {"step": step, "steps": steps, "by": stopped_by(err)}})
    except Exception as failure:  # noqa: BLE001 -- a report lost with its process, a full disk: said, not raised
        log.warning("the run's data.json could not be written on the way out (%s: %s)", type(failure).__name__, failure)


def has_data_record(cfg: DataConfig, info: dict[str, Any]) -> bool:
    """Whether a run writes ``data.json``: a stream (each worker's report), or files read into memory (what
    was skipped, even when nothing was); a built-in set has no files to report."""
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
    seen: dict[str, dict[str, str]] = {}
    read = {name for r in reports for name in r.get("recovered", [])}     # skipped once, then read
    for entry in [*info.get("fit_sample", {}).get("skipped", []), *(e for r in reports for e in r["skipped"])]:
        if entry["file"] not in read:
            seen.setdefault(entry["file"], entry)
    cut, small = _once_per_file(info, reports, "truncated"), _once_per_file(info, reports, "upscaled")
    totals = {key: sum(r[key] for r in reports) for key in ("reads", "samples", "items_read")}
    # a worker whose report is not here (on Ray: lost, not restarted, or silent on a stop) read and skipped files the
    # sums leave out; until 2026-12-06 nothing said so (2 workers, 1 killed: n_items 3003, items_read 1501, its 5 bad
    # files dropped from n_skipped and skipped, without a word), and until later that day a stream none of whose reports
    # came (a stop whose workers all missed its wait) had neither ``workers`` nor this, as if no worker had run
    missing = sorted(set(range(of)) - {r.get("worker", 0) for r in reports})
    return {**info, "workers": reports, **totals, "n_skipped": len(seen), "skipped": list(seen.values()),
            **({"workers_unreported": missing} if missing else {}),
            **({"truncated": cut} if cut else {}), **({"recovered": sorted(read)} if read else {}),
            **({"n_upscaled": len(small), "upscaled": small} if small else {})}


def _once_per_file(info: dict[str, Any], reports: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The entries under ``key`` ({file, ...}) of the driver's fitting sample and of every worker's report, each
    file once, as first met: a video cut short (``truncated``), a file whose crops were enlarged (``upscaled``)."""
    once: dict[str, dict[str, Any]] = {}
    for entry in [*info.get("fit_sample", {}).get(key, []), *(e for r in reports for e in r.get(key, []))]:
        once.setdefault(entry["file"], entry)
    return list(once.values())
