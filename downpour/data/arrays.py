"""Images stored as a NumPy array: ``.npy`` (just ``x``) or ``.npz`` (key ``x``, optional ``y``).

``x``: (N, H, W) or (N, C, H, W), channels first, C in {1, 3}; uint8 is scaled by 1/255, uint16
by 1/65535, float data are kept as they are (so pre-whitened or pre-normalised data survive).
``y``: (N,) integer class labels. Files are read with ``allow_pickle=False``: an object array is
refused, never unpickled.
"""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from downpour.data.images import ImageSet, match_channels, skip
from downpour.errors import DataError


def _as_float(x: np.ndarray, where: str) -> np.ndarray:
    if x.dtype == bool:
        return x.astype(np.float32)
    if np.issubdtype(x.dtype, np.integer):
        unsigned = x.dtype.kind == "u"           # by kind and size: a big-endian '>u2' is uint16 too
        scale = 255.0 if unsigned and x.dtype.itemsize == 1 else 65535.0 if unsigned and x.dtype.itemsize == 2 else 1.0
        return x.astype(np.float32) / scale
    if np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float32)     # rows holding NaN or Inf: load_array skips them
    raise DataError(f"{where}: x has dtype {x.dtype}; expected a numeric array")


def _short(err: Exception, limit: int = 160) -> str:
    """NumPy's reason on one line, cut short (a damaged header is quoted whole in it)."""
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[:limit] + "..."


def check_magic(path: str | Path) -> None:
    """DataError unless ``path`` starts like a ``.npy`` / ``.npz`` (by its suffix). Checked before
    ``np.load``, which treats any other file as a pickle: its "pickled data" error would be misleading
    for a file that is simply not an array."""
    p = Path(path)
    magic = {".npy": b"\x93NUMPY", ".npz": b"PK"}[p.suffix]
    try:
        with open(p, "rb") as fh:
            head = fh.read(len(magic))
    except OSError as err:
        raise DataError(f"{p}: cannot be read ({err.strerror or err})") from None
    if head != magic:
        raise DataError(f"{p}: not a readable {p.suffix} file (it does not start like one)")


def _channels_last(shape: tuple[int, ...]) -> str:
    """The hint for a 4-D array whose channels are its last axis."""
    return " (channels last? store it as (N, C, H, W))" if shape[3] in (1, 3) else ""


def array_header(path: str) -> tuple[int, ...]:
    """The shape of a ``.npy`` read from its header (memory-mapped: nothing read), checked like
    :func:`read_arrays` checks a loaded one."""
    check_magic(path)       # before np.load, which would call a text file "pickled data"
    try:
        rows = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        if "pickle" in str(err) or "Python objects" in str(err):
            raise DataError(f"{path}: holds Python objects (pickled); only numeric arrays are accepted") from None
        raise DataError(f"{path}: not a readable .npy file to memory-map ({err})") from None
    shape = rows.shape
    if len(shape) not in (3, 4) or shape[0] == 0 or min(shape[-2:]) == 0:
        raise DataError(f"{path}: x has shape {shape}; expected (N, H, W) or (N, C, H, W) holding images")
    if len(shape) == 4 and shape[1] not in (1, 3):
        raise DataError(f"{path}: x has shape {shape}: {shape[1]} channels, expected 1 or 3{_channels_last(shape)}")
    if not (np.issubdtype(rows.dtype, np.integer) or np.issubdtype(rows.dtype, np.floating) or rows.dtype == bool):
        raise DataError(f"{path}: x has dtype {rows.dtype}; expected a numeric array")
    return tuple(int(s) for s in shape)


def npz_keys(path: str | Path) -> set[str]:
    """The arrays an ``.npz`` holds, from its zip directory (nothing decompressed), checked: an ``x``, and
    nothing but ``x`` and ``y``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as err:
        raise DataError(f"{path}: not a readable .npz file ({_short(err)})") from None
    if "x" not in keys:
        raise DataError(f"{path}: no array named 'x' (keys: {', '.join(sorted(keys)) or 'none'})")
    unknown = keys - {"x", "y"}
    if unknown:
        raise DataError(f"{path}: unexpected keys {sorted(unknown)}; only 'x' and optional 'y' are read")
    return keys


# the largest label a set may hold: a label is a class number, and the largest + 1 is how many classes a supervised
# model scores (an .npz with y = 2**40 would ask for 2**40 + 1 outputs at the first batch)
MAX_LABEL = 2**20 - 1


def check_labels(y: np.ndarray, where: str) -> np.ndarray:
    """``y`` as (N,) int64 class numbers, or DataError naming ``where``, the first label that is none and how many
    are not, before the run folder exists: a negative label let through fails a supervised model at its first batch
    holding one ("IndexError: Target -1 is out of bounds", a traceback, the run folder left behind)."""
    if y.ndim != 1:
        raise DataError(f"{where}: y has shape {y.shape}; expected (N,), one label per image of x")
    if not np.issubdtype(y.dtype, np.integer):
        detail = ""
        if np.issubdtype(y.dtype, np.floating):
            bad = np.flatnonzero(y != np.round(y))          # (NaN too)
            detail = f" (y[{bad[0]}] = {float(y[bad[0]]):g})" if len(bad) else " (whole numbers: save y.astype(int))"
        raise DataError(f"{where}: y has dtype {y.dtype}{detail}; labels must be integers (class numbers 0, 1, 2, ...)")
    negative = np.flatnonzero(y < 0)
    if len(negative):
        raise DataError(f"{where}: y[{negative[0]}] = {int(y[negative[0]])}: labels are class numbers 0, 1, 2, ... "
                        f"({len(negative)} of {len(y)} {'is' if len(negative) == 1 else 'are'} negative; "
                        "a set without labels has no y)")
    if len(y) and int(y.max()) > MAX_LABEL:     # (a model would score y.max() + 1 classes, a probe count as many)
        top = int(np.argmax(y))
        raise DataError(f"{where}: y[{top}] = {int(y[top])}: labels are class numbers 0, 1, 2, ... and this one would "
                        f"ask a model for {int(y[top]) + 1:,} classes (at most {MAX_LABEL + 1:,}); number the classes "
                        "from 0")
    return y.astype(np.int64)


def npz_labels(path: str | Path) -> np.ndarray | None:
    """An ``.npz``'s y, checked (:func:`check_labels`; x is not decompressed), or None when it holds none."""
    if "y" not in npz_keys(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            y = z["y"]
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error, ValueError) as err:
        raise DataError(f"{path}: its y is not readable ({_short(err)})") from None
    return check_labels(y, str(path))


def check_array_path(path: str | Path) -> None:
    """DataError unless ``path`` names an existing ``.npy`` / ``.npz`` file that starts like one."""
    p = Path(path)
    if not str(path):
        raise DataError("data.path is empty: the array source needs a .npy or .npz file")
    if p.is_dir():      # (said as a folder, not as a name that does not end in .npy or .npz)
        raise DataError(f"data.path {str(p)!r} is a folder, and data.source = 'array' reads one .npy or .npz file "
                        "(a folder of images: data.source = 'folder'; of videos: 'video')")
    if p.suffix not in (".npy", ".npz"):
        raise DataError(f"array file {str(p)!r} must end in .npy or .npz")
    if not p.is_file():
        raise DataError(f"array file {str(p)!r} does not exist")
    check_magic(p)


def read_arrays(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """-> (x (N, C, H, W) float32, y (N,) int64 or None), checked; errors name the file and the key."""
    check_array_path(path)
    p = Path(path)
    where = str(p)
    y = None
    try:
        if p.suffix == ".npy":
            x = np.load(p, allow_pickle=False)
        else:
            keys = npz_keys(p)
            with np.load(p, allow_pickle=False) as z:
                x = z["x"]
                y = z["y"] if "y" in keys else None
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise DataError(f"{where}: not a readable {p.suffix} file ({_short(err)})") from None
    except ValueError as err:
        if "pickle" in str(err):
            raise DataError(f"{where}: holds Python objects (pickled); only numeric arrays are accepted") from None
        # a truncated file ("Failed to read all data"), a damaged header ("Cannot parse header"), ...
        raise DataError(f"{where}: not a readable {p.suffix} file ({_short(err)})") from None
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise DataError(f"{where}: x has shape {x.shape}; expected (N, H, W) or (N, C, H, W)")
    if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
        raise DataError(f"{where}: x has shape {x.shape}; it holds no images")
    if x.shape[1] not in (1, 3):
        raise DataError(f"{where}: x has shape {x.shape}: {x.shape[1]} channels, expected 1 or 3{_channels_last(x.shape)}")
    x = _as_float(x, where)
    if y is not None:
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"{where}: y has shape {y.shape}; expected ({len(x)},), one label per image of x")
        y = check_labels(y, where)
    return x, y


def load_array(path: str | Path, grey: bool = True) -> ImageSet:
    """The arrays as an ImageSet (one image per row of x); colour converted to match ``grey``. A row
    holding NaN or Inf is skipped and named (``path[i]``), as the streamed path skips it."""
    x, y = read_arrays(path)
    channels = 1 if grey else 3
    finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if not finite.any():
        raise DataError(f"{path}: every row of x holds NaN or Inf values")
    skipped: list[dict[str, str]] = []
    for i in np.flatnonzero(~finite):
        skip(skipped, f"{path}[{i}]", "NaN or Inf values")
    keep = np.flatnonzero(finite)
    return ImageSet([match_channels(x[i], channels) for i in keep], [f"{path}[{i}]" for i in keep],
                    labels=None if y is None else y[keep].tolist(), skipped=skipped, info={"path": str(path)})
