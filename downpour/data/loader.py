"""A worker's endless stream of exact-size batches from its own items, decoded ahead by a DataLoader.

Why a ``torch.utils.data.DataLoader`` with worker *processes*: decoding a JPEG, turning it into
float32 and resizing it is ~1 ms of mostly GIL-holding NumPy and Python per image; in separate
processes it overlaps the training step instead of stealing its time slices, and the DataLoader
already bounds what is in flight (``num_workers * prefetch_factor`` chunks), keeps chunks in
order and cleans its processes up. ``data.loader_workers = 0`` decodes in the training process.

The order is the DataLoader's sampler, computed in this process: epoch e visits the items in a
permutation seeded by (seed, e); every item key is ``(epoch, position, item)``. The DataLoader hands
back chunks of items in that order. An item gives several samples (an image's patches or tiles, a
video's frames; 0 when bad), so handed out in a row a batch would be one image's patches: this class
gathers the samples of each *block* of ``data.mix_items`` consecutive items of the epoch's order,
shuffles them together (a permutation seeded by (seed, epoch, block), so a batch mixes images as the
in-memory path's shuffled rows do; ``mix_items = 1`` hands each item's samples out in a row), re-cuts
them into batches of exactly ``batch_size`` samples, applies the fitted preprocessing and the
augmentation per batch (augmentation seeded by (seed, batch number)), and remembers the key of the
first sample not yet handed out (its block's first position and its place in the block):
:meth:`position`, from which ``batches(..., position=)`` continues the stream exactly (the local
runner's resume: it reads that block again and drops what was used). The position
also carries the telemetry so far (samples handed out, the files skipped), and the reads before it
are a function of it (every item once per finished epoch, the current epoch's order up to it), so a
resumed run's :meth:`report` is the uninterrupted run's, and a bad file is not named again. Nothing in a
batch depends on how many processes decoded it or how far ahead: the same seed gives the same
batches bit for bit.

Memory: at most ``prefetch`` decoded items in flight plus one block, one batch and one chunk here; per item,
one read counter (4 bytes) for the run's telemetry (:meth:`report`).
"""
from __future__ import annotations

import hashlib
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from downpour.batch import Batch
from downpour.data.images import nothing_read, skip
from downpour.data.reader import ItemReader
from downpour.data.patches import say_enlarged
from downpour.data.video import say_truncated
from downpour.errors import DataError

if TYPE_CHECKING:
    from downpour.data.stream import StreamingData

log = logging.getLogger("downpour.data")

_ORDER, _AUGMENT, _MIX = 12, 13, 14   # NumPy streams: the epoch orders, the per-batch augmentation, the block shuffles


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation (n,) of the items that ``epoch`` visits."""
    return np.random.default_rng(np.random.SeedSequence([seed, _ORDER, epoch])).permutation(n)


class _Order(Sampler):
    """Endless item keys ``(epoch, position, item)`` from ``(epoch, position)`` on."""

    def __init__(self, n: int, seed: int, epoch: int, position: int):
        self.n, self.seed, self.epoch, self.position = n, seed, epoch, position

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        epoch, start = self.epoch, self.position
        while True:
            order = epoch_order(self.n, self.seed, epoch)
            for p in range(start, self.n):
                yield epoch, p, int(order[p])
            epoch, start = epoch + 1, 0


def listing_digest(items: Any) -> str:
    """A short fingerprint of a shard's items (file paths, or a range of rows), kept in the stream's
    position: a resume over a changed list is said, not silent."""
    # surrogateescape: a file name that is not UTF-8 (bytes on Linux, surrogates in str) is hashed as its bytes
    return hashlib.sha1("\n".join(map(str, items)).encode("utf-8", "surrogateescape")).hexdigest()[:16]


def loader_shape(prefetch: int, workers: int, batch_size: int) -> tuple[int, int]:
    """(items per loader chunk, chunks each loader process works ahead) so that at most about
    ``prefetch`` items are in flight: chunk <= batch, ``workers * ahead * chunk <= max(prefetch, workers * chunk)``."""
    procs = max(1, workers)
    chunk = max(1, min(batch_size, prefetch // procs))
    return chunk, max(1, prefetch // (procs * chunk))


class StreamBatches:
    """``Batch(x (B, C, size, size), y (B,) or None)`` without end, from ``data``'s items (one shard).

    ``seed`` fixes the epoch orders, the patch positions and the augmentation; ``position`` (from
    :meth:`position`) continues a stream where an earlier one stopped.
    """

    def __init__(self, data: "StreamingData", batch_size: int, seed: int, position: dict[str, Any] | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self._reader = ItemReader(data.source, data.items, data.cut, seed, data.path, data.labels, data.frames)
        self._said = {e["file"] for e in (data.info.get("fit_sample") or {}).get("skipped", [])}   # logged by the driver
        pos = position or {"epoch": 0, "index": 0, "skip": 0, "batch": 0}
        self._start = pos
        self._batch = pos["batch"]
        self._drop = pos["skip"]                   # samples of the first block already used before a resume
        self._next = (pos["epoch"], pos["index"])  # the key after the last item received
        self._x: list[torch.Tensor] = []           # pending samples, in order, and their keys (M, 3)
        self._y: list[torch.Tensor] = []
        self._keys: list[np.ndarray] = []
        self._pending = 0
        self._mix = int(data.cfg.mix_items)
        self._block: tuple[int, int] | None = None   # (epoch, first position) of the block being gathered
        self._block_x: list[torch.Tensor] = []       # ... its samples so far (and labels)
        self._block_y: list[torch.Tensor] = []
        self._it: Iterator[dict[str, Any]] | None = None
        self.reads = np.zeros(len(data), np.int32)   # per item: times decoded (bad ones too)
        self.skipped: list[dict[str, str]] = []
        self.truncated: dict[str, dict[str, Any]] = {}   # videos cut short, each once: file -> {file, frames, reason}
        self.upscaled: dict[str, dict[str, str]] = {}    # files whose crops were enlarged to data.size: file -> {file, size}
        self.recovered: list[str] = []           # files skipped once and read later (this process's stream)
        self._bad: dict[int, str] = {}              # item -> why it was skipped, in the order met
        self._barren: set[int] = set()             # items whose last read gave no sample
        self.samples = int(pos.get("samples", 0))
        self.listing = listing_digest(data.items)
        self.listing_changed = "listing" in pos and pos["listing"] != self.listing
        if self.listing_changed:
            shard = data.info.get("shard")      # (each simulated worker names its shard: else all say it alike)
            log.warning("%s file list changed since the checkpoint (%s items now): the resumed stream reads another "
                        "order than the run would have, and will not reproduce from its start",
                        f"worker {shard['index']} of {shard['of']}: its" if shard else "the data's", len(data))
        self._resume_telemetry(pos)

    def _resume_telemetry(self, pos: dict[str, Any]) -> None:
        """What the stream before ``pos`` read and skipped, so the report covers the whole run: items
        before (epoch, index) were read once per epoch, in the epoch orders (re-reading them would
        count the same); the files skipped before are carried in ``pos`` by name, and one still in the
        list is not named again. (Checkpoints before 2026-12-03 carry item numbers: over a changed
        list those name other files, so they are dropped there.)"""
        epoch, index, n = int(pos["epoch"]), int(pos["index"]), len(self.data)
        if n and (epoch or index):
            self.reads[:] = epoch
            self.reads[epoch_order(n, self.seed, epoch)[:index]] += 1
        # (a video cut short, before the position: recorded as it was then, read or not since)
        self.truncated = {f: {"file": f, "frames": int(t), "reason": why} for f, t, why in pos.get("truncated", [])}
        self.upscaled = {f: {"file": f, "size": side} for f, side in pos.get("upscaled", [])}
        carried = pos.get("skipped", [])
        if not carried:
            return
        number = {self._reader.name(k): k for k in range(n)}
        for key, reason in carried:
            if not isinstance(key, str):            # an item number
                if self.listing_changed or not 0 <= int(key) < n:
                    continue
                key = self._reader.name(int(key))
            if key in number:
                self._bad[number[key]] = reason
            self.skipped.append({"file": key, "reason": reason})

    def __iter__(self) -> "StreamBatches":
        return self

    def _loader(self) -> Iterator[dict[str, Any]]:
        d, reader = self.data, self._reader
        workers = d.cfg.loader_workers
        chunk, ahead = loader_shape(d.cfg.prefetch, workers, self.batch_size)
        sampler = _Order(len(d), self.seed, *self._next)
        # its own generator: an iterator's start draws its workers' base seed, and from torch's global RNG that
        # draw, made whenever the stream (re)starts, moved every later random number of the run (not resumable)
        loader = DataLoader(reader, batch_size=chunk, sampler=sampler, collate_fn=reader.collate, num_workers=workers,
                            prefetch_factor=ahead if workers else None,
                            generator=torch.Generator().manual_seed(int(self.seed)))
        return iter(loader)

    def _receive(self) -> None:
        """One chunk from the loader into the pending samples; count reads, name bad items once."""
        if self._it is None:
            self._it = self._loader()
        chunk = next(self._it)
        x, y, at = chunk["x"], chunk["y"], 0
        for (epoch, p, k), count, bad, cut, small in zip(chunk["keys"], chunk["counts"], chunk["bad"], chunk["truncated"],
                                                         chunk["upscaled"]):
            self._gather(epoch, p, x[at:at + count], None if y is None else y[at:at + count])
            at += count
            self.reads[k] += 1
            if cut is not None and cut["file"] not in self.truncated:   # (read every pass, recorded and said once)
                self.truncated[cut["file"]] = cut
                say_truncated(cut)
            if small is not None and small["file"] not in self.upscaled:
                if not self.upscaled:       # said once a stream: data.json counts them all
                    shard = self.data.info.get("shard")
                    say_enlarged([small], self.data.cut.size, self.data.cut.tile, whose=f"worker {shard['index']} of "
                                 f"{shard['of']}" if shard else "this stream")
                self.upscaled[small["file"]] = small
            if bad is not None and k not in self._bad:
                self._bad[k] = bad
                name = self._reader.name(k)
                skip(self.skipped, name, bad, said=name in self._said)   # (the driver's fitting sample named it)
            elif bad is None and count and k in self._bad:     # read after all (a folder back after an outage)
                self._recover(k)
            if count:
                self._barren.discard(k)
            else:
                self._barren.add(k)
            # every item gives nothing: it would never end (counted per item, not as a run of items: an
            # epoch's barren tail and the next epoch's barren head, in another order, are not a whole pass)
            if len(self._barren) >= len(self.data):
                shard = self.data.info.get("shard")
                whose = f"worker {shard['index']}'s shard ({shard['of']} workers)" if shard else "this stream"
                root = "" if self._reader.source == "array" else self.data.cfg.path
                raise DataError(nothing_read(f"the {len(self.data)} items of {whose}", root, self.skipped,
                                             self.data.cut.size, shard=bool(shard)))
            self._next = (epoch + 1, 0) if p + 1 == len(self.data) else (epoch, p + 1)
            if p + 1 == len(self.data) or (p + 1) % self._mix == 0:
                self._close_block()

    def _recover(self, k: int) -> None:
        """Item ``k``, skipped before, gave samples now: no longer skipped; named in ``recovered`` instead."""
        name = self._reader.name(k)
        del self._bad[k]
        self.skipped[:] = [e for e in self.skipped if e["file"] != name]
        self.recovered.append(name)
        log.info("%s: read after all (skipped before)", name)

    def _gather(self, epoch: int, p: int, x: torch.Tensor, y: torch.Tensor | None) -> None:
        """Item ``p`` of ``epoch``'s order gave samples ``x`` (labels ``y``): into its block."""
        if self._block is None:
            self._block = (epoch, p - p % self._mix)
        if len(x):
            self._block_x.append(x)
            if y is not None:
                self._block_y.append(y)

    def _close_block(self) -> None:
        """The block's last item is in: its samples, shuffled together, join the pending ones (a resumed
        stream's first block without the samples used before the stop)."""
        (epoch, start), self._block = self._block, None
        xs, ys, self._block_x, self._block_y = self._block_x, self._block_y, [], []
        drop, self._drop = self._drop, 0         # the resumed block's used samples: its own, even if it gave none
        if not xs:
            return
        x, y = torch.cat(xs), (torch.cat(ys) if ys else None)
        if self._mix > 1:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, _MIX, epoch, start]))
            order = torch.from_numpy(rng.permutation(len(x)))
            x, y = x[order], None if y is None else y[order]
        keys = np.stack([np.full(len(x), epoch), np.full(len(x), start), np.arange(len(x))], axis=1)
        if drop < len(x):
            self._x.append(x[drop:])
            self._keys.append(keys[drop:])
            if y is not None:
                self._y.append(y[drop:])
            self._pending += len(x) - drop

    def __next__(self) -> Batch:
        while self._pending < self.batch_size:
            self._receive()
        b = self.batch_size
        x, keys = torch.cat(self._x), np.concatenate(self._keys)
        y = torch.cat(self._y) if self._y else None
        self._x, self._keys = [x[b:]], [keys[b:]]
        self._y = [] if y is None else [y[b:]]
        self._pending -= b
        x = x[:b]
        d = self.data
        if d.preprocess is not None:
            x = d.preprocess(x)
        if d.augment is not None:
            seed = int(np.random.SeedSequence([self.seed, _AUGMENT, self._batch]).generate_state(1)[0])
            x = d.augment(x, torch.Generator().manual_seed(seed))
        self._batch += 1
        self.samples += b
        return Batch(x.contiguous(), None if y is None else y[:b])

    def position(self) -> dict[str, Any]:
        """Where the next batch starts: the first unused sample's block (epoch, index in the epoch's
        order of its first item), how many of that block's shuffled samples are used (skip), and the
        batch number; with the telemetry so far for a resume: samples handed out, and the skipped files
        ([name, reason]); and the patches cut per image (a resume keeps them: ``pipeline.keep_cut``)."""
        if self._pending:
            epoch, p, j = (int(v) for v in self._keys[0][0])
        # nothing pending: a block half gathered is read again from its start, or the next one is; until a resumed
        # stream's first block closes, that start is the resume's and its used samples are still to skip (as 0,
        # a second resume before any batch handed those samples out again)
        elif self._block is not None:
            (epoch, p), j = self._block, self._drop
        else:
            (epoch, p), j = self._next, self._drop
        return {"epoch": int(epoch), "index": int(p), "skip": j, "batch": self._batch, "samples": self.samples,
                "skipped": [[e["file"], e["reason"]] for e in self.skipped], "listing": self.listing,
                "patches": self.data.cut.patches,
                **({"truncated": [[e["file"], e["frames"], e["reason"]] for e in self.truncated.values()]} if self.truncated else {}),
                **({"upscaled": [[e["file"], e["size"]] for e in self.upscaled.values()]} if self.upscaled else {})}

    def report(self) -> dict[str, Any]:
        """JSON-able: this worker's items, reads and the files it skipped (each named once)."""
        read = self.reads[self.reads > 0]
        shard = self.data.info.get("shard", {"index": 0, "of": 1})
        return {"worker": shard["index"], "of": shard["of"], "items": len(self.data), "items_read": int(len(read)),
                "reads": int(self.reads.sum()), "max_reads": int(read.max()) if len(read) else 0, "samples": self.samples, "batches": self._batch,
                "n_skipped": len(self.skipped), "skipped": list(self.skipped),
                **({"truncated": list(self.truncated.values())} if self.truncated else {}),
                **({"n_upscaled": len(self.upscaled), "upscaled": list(self.upscaled.values())}
                   if self.upscaled else {}),
                **({"recovered": list(self.recovered)} if self.recovered else {}),
                **({"listing_changed_on_resume": True} if self.listing_changed else {})}

    def close(self) -> str | None:
        """Stop the loader's processes (they also stop when this object is collected); returns how one of
        them ended before, if one died (``pid 12049 was killed by signal SIGKILL``: the out-of-memory killer),
        else None. A runner calls it first on a failure: while a dead process is registered with torch,
        torch's SIGCHLD handler raises its RuntimeError again wherever the main thread is (a checkpoint
        being written: the run would be lost), and the death would surface as that or a ConnectionResetError."""
        it, self._it = self._it, None
        if it is None or not hasattr(it, "_shutdown_workers"):
            return None
        died = _died(it)
        try:
            it._shutdown_workers()         # (removes the processes from torch's SIGCHLD check, even when it raises)
        except RuntimeError:               # that handler, on the exit of another process as they stop
            died = died or _died(it)
        return died


def _died(it: Any) -> str | None:
    """How a process of the DataLoader iterator ``it`` ended, where one did not end cleanly (None: none)."""
    for proc in getattr(it, "_workers", []):
        code = proc.exitcode          # (polls it: an exited process is reaped, which torch's check then passes over)
        if code and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = str(-code)
            return f"pid {proc.pid} was killed by signal {name}"
        if code:
            return f"pid {proc.pid} exited with status {code}"
    return None
