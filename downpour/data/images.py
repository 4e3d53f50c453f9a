"""The image list every source returns, and the conversions into it.

Sources differ (built-in arrays, image files, video frames, ``.npz``), but after loading they all
hand over an :class:`ImageSet`: images of possibly different sizes as float32 ``(C, H, W)`` arrays,
optional integer labels, a name per image (for provenance) and the files that were skipped. The
patch / crop samplers only ever see this one shape of data.
"""
from __future__ import annotations

import logging
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from downpour._names import listed, plural

log = logging.getLogger("downpour.data")

# ITU-R BT.709 luma weights, the ones skimage.color.rgb2gray uses; one formula for every source so
# a photo loaded from skimage and the same photo loaded from a PNG give the same grey image.
_LUMA = np.array([0.2125, 0.7154, 0.0721], dtype=np.float32)


@dataclass
class ImageSet:
    """Images of one source. ``images[i]``: float32 (C, H, W), C the same for all; ``labels``: one int per image or None."""

    images: list[np.ndarray]
    names: list[str]
    labels: list[int] | None = None
    skipped: list[dict[str, str]] = field(default_factory=list)   # {"file": ..., "reason": ...}
    info: dict[str, Any] = field(default_factory=dict)            # source-specific, JSON-able
    root: str = ""          # the folder ``names`` are relative to (a folder source's), else ""
    scales: list[int] | None = None   # each image's JPEG decode reduction (data.jpeg_draft; None: all native)

    def __post_init__(self) -> None:
        if len(self.names) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.names)} names")
        if self.labels is not None and len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        if self.scales is not None and len(self.scales) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.scales)} scales")
        channels = {im.shape[0] for im in self.images}
        if len(channels) > 1:
            raise ValueError(f"images have different channel counts {sorted(channels)}; convert them first")

    def __len__(self) -> int:
        return len(self.images)

    def file(self, name: str) -> str:
        """Where image ``name`` came from, as skip records and logs name files (the folder's path joined; a video
        frame ``clip.mp4#frame2``: its video, the item a stream reads and skips)."""
        head, mark, tail = name.rpartition("#frame")
        if mark and tail.isdigit():
            return head
        return str(Path(self.root) / name) if self.root else name

    def scale(self, i: int) -> int:
        """Image ``i`` holds 1/scale of its file's pixels per side (a JPEG's reduced decode; 1: native)."""
        return 1 if self.scales is None else self.scales[i]

    @property
    def channels(self) -> int:
        return self.images[0].shape[0] if self.images else 0


# What reading one file may raise, for it to be skipped and named (its error's type and message), never to end
# the run: Pillow's format plugins (and PyAV's, NumPy's) raise nearly anything on a damaged or misnamed file
# (NotImplementedError for a DDS whose pixel format is zeroed, AttributeError for a SPIDER header named .png).
UNREADABLE: tuple[type[BaseException], ...] = (Exception,)


LOGGED = 20   # skipped files of one list each logged by name; the rest are in the list (data.json) alone


def item_noun(name: str) -> str:
    """"row" for a row of an array source (``data.npy[3]``, as :mod:`~downpour.data.arrays` names it), "file" for an
    image or video file: what the warnings and the report count ("10 rows enlarged", not "10 files" of one .npy)."""
    return "row" if re.search(r"\.np[yz]\[\d+\]$", name) else "file"


def skip(skipped: list[dict[str, str]], file: str, reason: str, said: bool = False) -> None:
    """Record an unreadable file and log one warning for it, up to :data:`LOGGED` of a list (a folder gone
    mid-run logged every one of its files, 384 lines): a bad file never kills a run. ``said``: logged already
    (a stream's driver named it, skipped by its fitting sample): recorded, not said again."""
    skipped.append({"file": file, "reason": reason})
    if said:
        return
    if len(skipped) <= LOGGED:
        log.warning("skipped %s: %s", file, reason)
    if len(skipped) == LOGGED:
        log.warning("%d files skipped so far; any more are not logged one by one (data.json names every one)", LOGGED)


@contextmanager
def unsaid() -> Iterator[None]:
    """The data layer's warnings (skipped files, classes none of whose images could be read, files left out) not
    logged inside the block: a set read a second time, whose first read said them (an analysis's probe folder, its
    labels checked at the start, its images loaded when its probe runs), says each once."""
    def drop(record: logging.LogRecord) -> bool:
        return False
    log.addFilter(drop)
    try:
        yield
    finally:
        log.removeFilter(drop)


def say_unlogged(skipped: list[dict[str, str]]) -> None:
    """Log the skipped files past the first :data:`LOGGED`, for a run refused before it writes data.json: its
    refusal says the log names them, and the user must remove them (the log would otherwise name 20 of 22 and
    point to a data.json that is not written)."""
    if len(skipped) <= LOGGED:
        return
    log.warning("this run stops before writing data.json, so the other %s are named here",
                plural(len(skipped) - LOGGED, "skipped file"))
    for entry in skipped[LOGGED:]:
        log.warning("skipped %s: %s", entry["file"], entry["reason"])


def too_small(side: str, size: int) -> str:
    """Why an image of ``side`` (W x H) gives no ``size`` x ``size`` patch: a skip's reason, or the reader's refusal,
    which :func:`is_too_small` knows again in a skip record."""
    return f"{side} image is smaller than the {size}x{size} patch"


def is_too_small(reason: str, size: int) -> bool:
    """Whether a skip record's ``reason`` is :func:`too_small`'s, whatever the image's side."""
    return reason.endswith(too_small("", size))


def dangling(file: str) -> bool:
    """Whether ``file`` is a symbolic link to nothing: the link is there, what it points to is not (its skip reason
    names where it points: :mod:`~downpour.data.bomb_limit`)."""
    return os.path.islink(file) and not os.path.exists(file)


def by_kind(reasons: dict[str, str], size: int) -> tuple[list[str], list[str], str]:
    """The files of ``reasons`` (file -> its skip reason) that are images smaller than the ``size`` x ``size`` patch,
    those that are symbolic links to nothing, and what to remove said by kind ("the 1 image smaller than the patch
    and 2 unreadable files"): said alike by a cluster share's refusal before the run
    (:func:`~downpour.ps.setup.unreadable_share`) and by a worker's at its first pass (:func:`nothing_read`)."""
    small = [f for f, why in reasons.items() if is_too_small(why, size)]
    links = [f for f in reasons if f not in small and dangling(f)]
    kinds = [(len(small), "image", "images", " smaller than the patch"),
             (len(links), "link", "links", " to a file that is not there"),
             (len(reasons) - len(small) - len(links), "unreadable file", None, "")]
    return small, links, "the " + listed(plural(k, one, many) + tail for k, one, many, tail in kinds if k)


def nothing_read(whose: str, root: str, skipped: list[dict[str, str]], size: int = 0, shard: bool = False) -> str:
    """Why none of ``whose`` items ("the 4 items of this stream") gave a sample, from its skip records (``root`` "":
    an array's rows): the folder gone (unmounted, moved), its files gone from it, links to files that are not there,
    images smaller than the ``size`` x ``size`` patch, or files that are there and cannot be decoded, each named by
    its first: files gone beside one bad file that stayed are not read as that file's fault ("(first: bad.png:
    UnidentifiedImageError ...)"), images too small for the patch are not "unreadable", and links to nothing are not
    files "gone" ("resume the run once they are back"), as the links stay. ``shard``: the
    items are a cluster worker's share, which a resume keeps (and data.size): what to do says so."""
    def first(entries: list[dict[str, str]]) -> str:
        return f"(first: {entries[0]['file']}: {entries[0]['reason']})"

    none = f"none of {whose} can be read"
    if not root or not skipped:
        return none + (f" {first(skipped)}" if skipped else "")
    if not Path(root).exists():
        return (f"{none}: data.path {root!r} no longer exists (unmounted or moved?); resume the run once it is back "
                f"{first(skipped)}")
    gone = [e for e in skipped if not os.path.lexists(e["file"])]
    bad = [e for e in skipped if e not in gone]
    small, dangle, remove = by_kind({e["file"]: e["reason"] for e in bad}, size)   # (the before-run refusal's words)
    links = [e for e in bad if e["file"] in dangle]
    if small and not gone:      # all smaller than the patch, or some, beside files that cannot be read
        they = f"images smaller than the {size}x{size} patch (data.size = {size})" + (
            "" if len(small) == len(bad) else " or files that cannot be read")
        fix = SMALL_SHARE_FIX.format(remove=remove) if shard else SMALL_FIX
        return f"none of {whose} gives a sample: they are {they} {first(bad)}; {fix}"
    if links and len(links) == len(bad) and not gone:
        fix = (", or remove the links from data.path (data.json names them) and " + SHARE_ENDS if shard
               else " and resume")
        return (f"{none}: they are symbolic links to files that are not there {first(links)}; put back what they point "
                f"to (a resume stops here alike until then){fix}")
    if not gone:
        return f"{none} {first(bad)}" + (f"; {SHARE_FIX.format(remove=remove)}" if shard else "")
    if not bad:
        return f"{none}: their files are gone from data.path {root!r}; resume the run once they are back {first(gone)}"
    there = f"1 more is there and cannot be read ({bad[0]['file']}: {bad[0]['reason']})" if len(bad) == 1 else \
        f"{len(bad)} more are there and cannot be read {first(bad)}"
    return (f"{none}: {len(gone)} of their files are gone from data.path {root!r} (first: {gone[0]['file']}); resume "
            f"the run once they are back; {there}")


# A worker's share that gives nothing fails at its first pass whatever is resumed: a resume keeps the workers, so
# the share stays, and the error says what to do, not only "--resume RUN goes on from it".
SHARE_ENDS = "resume while as many files as workers remain, or start a new run with fewer workers"
# ({remove}: by_kind's words, "the 2 unreadable files", which of a share mixing images smaller than the patch with
# files that cannot be read say both, and so data.size)
SHARE_FIX = ("each worker streams a share of its own, and a resumed run keeps its workers: remove {remove} from "
             f"data.path (data.json names them) and {SHARE_ENDS}")
SMALL_SHARE_FIX = ("each worker streams a share of its own, and a resumed run keeps its workers and data.size: remove "
                   "{remove} from data.path (data.json names them) and resume while as many files as workers remain, "
                   "or start a new run with a lower data.size, data.mode = 'crops' or fewer workers")
SMALL_FIX = "a resumed run keeps data.size: start a new run with a lower data.size or data.mode = 'crops'"


def to_chw(array: np.ndarray, grey: bool) -> np.ndarray:
    """Any image array -> float32 (C, H, W) with C = 1 (``grey``) or 3.

    Accepts (H, W), (H, W, 1), (H, W, 3) and (H, W, 4) (alpha dropped). Integer arrays are scaled
    by their type's maximum (uint8 -> /255, uint16 -> /65535), booleans become 0/1, floats are kept.
    """
    a = np.asarray(array)
    if a.dtype == bool:
        a = a.astype(np.float32)
    elif np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float32) / float(np.iinfo(a.dtype).max)
    elif np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32)
    else:
        raise ValueError(f"image dtype {a.dtype} is not numeric")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        chw = a[None]
        return chw if grey else np.repeat(chw, 3, axis=0)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"image shape {a.shape} is not (H, W), (H, W, 3) or (H, W, 4)")
    rgb = a[:, :, :3]
    if grey:
        return np.ascontiguousarray((rgb @ _LUMA)[None])
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


def match_channels(chw: np.ndarray, channels: int) -> np.ndarray:
    """(C, H, W) -> (channels, H, W): grey is repeated into RGB, RGB turned to grey."""
    if chw.shape[0] == channels:
        return chw
    if chw.shape[0] == 1 and channels == 3:
        return np.repeat(chw, 3, axis=0)
    if chw.shape[0] == 3 and channels == 1:
        return np.tensordot(_LUMA, chw, axes=1)[None].astype(np.float32)
    raise ValueError(f"cannot turn {chw.shape[0]} channels into {channels}")


def resize(stack: np.ndarray, size: int) -> np.ndarray:
    """(N, C, h, w) -> (N, C, size, size), bilinear with anti-aliasing when shrinking."""
    if stack.shape[-2:] == (size, size):
        return np.ascontiguousarray(stack, dtype=np.float32)
    t = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32))
    shrink = stack.shape[-1] > size or stack.shape[-2] > size
    out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
    return out.numpy()
