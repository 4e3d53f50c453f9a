"""Which data path a run takes (``data.pipeline``), and the data a resumed run goes on with (:func:`keep_cut`). The
run's data telemetry: :mod:`downpour.data.telemetry`; what a resume reads from its records: :mod:`downpour.data.resumed`.

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
import logging
from pathlib import Path
from typing import Any

from downpour._names import plural
from downpour.config import FILE_SOURCES, ConfigError, DataConfig
from downpour.data.build import build_dataset, check_config
from downpour.data.dataset import Dataset
from downpour.data.estimate import held_bytes
from downpour.data.patches import DATA_JSON
from downpour.data.resumed import cut_patches, recorded_patches, shrunk_from
from downpour.data.stream import Listing, StreamingData, item_name, list_items, open_stream
from downpour.errors import CheckpointError

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
                 chosen: dict[str, Any] | None = None, listed_at_start: int | None = None) -> DataConfig:
    """``cfg`` with what it reads fixed once, for the run's config.toml: a file source's ``data.path``
    made absolute (a resume from another folder, or a Ray worker, reads the same files), and
    ``data.pipeline = 'auto'`` replaced by its choice, so a resume takes the path the run began on
    whatever the data's size is by then. ``workers`` > 1 each stream items of their own: a stream
    with fewer items than workers is a ConfigError (``check_config`` first; ``resume``: a resumed run's, which keeps
    its workers: :func:`most_workers`). ``chosen``: filled with 'auto''s why (its estimate and parts), for the data
    the run then reads to record (``info["chosen"]``) without listing the folder again. ``listed_at_start``: a
    resume's item count at the run's last start (:func:`~downpour.data.resumed.files_listed_at_start`), which a refusal
    for too few files says beside the count now, where its list shrank."""
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
            shrunk = shrunk_from(listed_at_start, n)
            raise ConfigError(f"cluster.workers = {workers}, but data.path {cfg.path!r} holds only "
                              f"{plural(n, item_name(cfg.source))}{shrunk}, and each streaming "
                              f"worker reads items of its own; {most_workers(n, resume, '; ' + KEEPS_WORKERS)}",
                              key="cluster.workers")
    if pipeline == "memory":
        _check_memory_workers(resolved, listing, workers, resume, listed_at_start)
    return resolved


KEEPS_WORKERS = "a resumed run keeps its workers: restore the files it began with"


def most_workers(n: int, resume: bool, then: str = "") -> str:
    """What to do where the data give only ``n`` items (or samples) for more workers, each training on a share of its
    own: use at most ``n``, ``then`` (a new run); a resume keeps its workers: restore the files it began with, fewer
    workers being a new run's (a resume is not offered "use at most n (--workers n)" first, which it refuses)."""
    return f"{KEEPS_WORKERS} (a new run can use at most {n}: --workers {n})" if resume else \
        f"use at most {n} (--workers {n}){then}"


def _check_memory_workers(cfg: DataConfig, listing: Listing | None, workers: int, resume: bool = False,
                          listed_at_start: int | None = None) -> None:
    """ConfigError where in-memory data give fewer samples than ``workers``, known without loading it: patches mode's
    ``data.samples``, or a folder's image files cut into one crop each (``tile = 0``; a listing, no image read).
    Found here, before config.toml is written into the run folder, not once the data are loaded (ps.setup's
    too_few_for_workers says it where only the load can tell: tiles, a video's frames, bad files)."""
    if workers <= 1:
        return
    if cfg.mode == "patches":
        n = cfg.samples
        what = f"data.samples = {n} gives only {plural(n, 'patch', 'patches')}"
        todo = f"use at most {n} (--workers {n}) or raise data.samples"
    elif cfg.source == "folder" and cfg.tile == 0:
        n = len((listing or list_items(cfg)).items)
        shrunk = shrunk_from(listed_at_start, n)
        what = f"data.path {cfg.path!r} holds only {plural(n, 'image file')}{shrunk}, one crop each"
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
    began = {p.get("patches") for p in recorded} - {None} or {recorded_patches(run / DATA_JSON)} - {None}
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
    # (the first open said what the listing left out: this one does not say it again)
    reopened = open_stream(cfg, seed, per_image=count, say=False)
    reopened.info["chosen"] = data.info.get("chosen")
    return reopened
