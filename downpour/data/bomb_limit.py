"""Pillow's decompression-bomb limit, and the image files a folder's crops mode reads past it.

Pillow refuses an image over 2 x ``Image.MAX_IMAGE_PIXELS`` (~179 MP) as it opens it. Crops mode with
data.jpeg_draft decodes a JPEG reduced (1/2, 1/4, 1/8), and libjpeg then holds no more than the reduced image of a
JPEG of one scan: such a JPEG is read where its reduced decode is within the limit (:func:`within_bomb_limit`).
A JPEG of several scans (progressive, or baseline with a scan per component) is not: libjpeg keeps every DCT
coefficient of the whole image until its last scan, whatever it decodes to. Everything else over the limit is
refused as Pillow refuses it, skipped and named by the caller.
"""
from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from PIL import Image, UnidentifiedImageError
from PIL.JpegImagePlugin import JpegImageFile

_SOS = 0xDA
_NO_LENGTH = {0x00, 0x01, *range(0xD0, 0xD8)}     # stuffed byte, TEM, RSTn: markers without a length field


def opened(path: Path, reducible: bool = False) -> Image.Image:
    """``Image.open(path)``; an empty file is named so (Pillow: "cannot identify image file", as for a format it
    does not know, which would be a 0-byte download's or placeholder's skip record). ``reducible``
    (crops, data.jpeg_draft): a JPEG over Pillow's decompression-bomb limit (2 x Image.MAX_IMAGE_PIXELS, ~179 MP) is
    opened all the same, for :func:`within_bomb_limit` to judge at the reduction it decodes at (a 200 MP panorama
    cropped to 32 px is no bomb: its 1/8 decode holds 3 MP). Any other file over
    it is refused saying what would let it be read (:func:`_advice`).

    An image over Image.MAX_IMAGE_PIXELS and within the limit (~89.5 MP to ~179 MP: a 108 or 120 MP phone or camera
    photo) is read, as Pillow reads it, without Pillow's DecompressionBombWarning: shown, it is printed by
    each process once for the first such file, naming no file, calling a photo it goes on to read a
    possible "decompression bomb DOS attack" (a streamed run: once per worker and loader process, in the middle of
    the training log). Such a photo is no attack; the files that are too large are refused and named."""
    try:
        with _bomb_warning_dropped():
            return Image.open(path)
    except Image.DecompressionBombError as err:
        if reducible:
            try:
                return JpegImageFile(os.fspath(path))     # the plugin alone: Image.open's size check is not run
            except Exception:                             # noqa: BLE001 - not a JPEG: no reduction, the bomb it is
                pass
        raise Image.DecompressionBombError(f"{str(err).rstrip('.')} ({_advice(path, reducible)})") from None
    except FileNotFoundError:
        if os.path.islink(path):       # (it said "No such file or directory" of a name `ls` lists)
            raise FileNotFoundError(f"a symbolic link to {os.readlink(path)!r}, which is not there") from None
        raise
    except UnidentifiedImageError:
        if os.path.getsize(path) == 0:
            raise ValueError("empty file (0 bytes)") from None
        raise


@contextmanager
def _bomb_warning_dropped() -> Iterator[None]:
    """Pillow's DecompressionBombWarning is not shown meanwhile; every other warning is, as it would be. Not by
    ``warnings.catch_warnings``: any change of the filters makes Python show again every warning it showed once where
    it was raised (a change per file opened would show a warning raised once per file at one place for every
    file). What shows a warning is replaced instead, which the filters do not see."""
    shown = warnings.showwarning

    def show(message, category, *args, **kwargs):   # (warnings.showwarning's arguments)
        if not issubclass(category, Image.DecompressionBombWarning):
            shown(message, category, *args, **kwargs)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


def within_bomb_limit(img: Image.Image, s: int) -> None:
    """Refuse, as Pillow would, an image over its decompression-bomb limit unless its decode at 1/``s`` is within it:
    the decoder then holds no more than the limit allows, whatever size the file declares. Not a JPEG of several
    scans: libjpeg keeps every DCT coefficient of the whole image until its last scan, 2 bytes a pixel a component at
    any reduction, so it is judged at its native size. A progressive one (an 8000x8000 grey one decoded at 1/8 grew
    the peak memory by 125 MB, its baseline twin's by 3 MB, a full decode holds 64 MB; judged at its 1/8 size a file
    declaring 65500 x 65500 would pass, for coefficients of 8.6 GB a component), and so is a
    baseline one whose first scan lacks a component (an 8000x8000 RGB one of a scan per component grew it by 370 MB
    at 1/8, its one-scan twin by 4 MB; a 14000x14000 one raised a crops run's peak from 356 MB to 1,424 MB)."""
    limit = 2 * Image.MAX_IMAGE_PIXELS
    scans = _several_scans(img) if s > 1 else ""
    reduced = (img.width // s) * (img.height // s)
    if not scans and reduced <= limit:
        return
    if scans:
        why = (f"{scans}: its decoder holds every pixel's coefficients at any reduction; save it as a baseline JPEG of "
               f"one scan, or downscale it below {limit} pixels")
    elif s > 1:
        why = f"decoded at 1/{s}: {reduced} pixels; downscale it below {limit} pixels"
    else:
        why = _advice(Path(), reducible=False)
    raise Image.DecompressionBombError(f"Image size ({img.width * img.height} pixels) exceeds limit of {limit} pixels, "
                                       f"could be decompression bomb DOS attack ({why})")


def _advice(path: Path, reducible: bool) -> str:
    """What would let a file Pillow refused as a bomb at open be read: a smaller file. A region of it is not to be
    had cheaply: Pillow's crop of a lazily opened PNG or TIFF loads it whole (an 8000x8000 RGB PNG cropped to 32 px
    grew the peak memory by 245 MB, a full load by 244 MB; a striped TIFF alike), and crops mode's centred square
    spans the rows of most images anyway. The refusal says what would let the file be read, not only Pillow's
    'could be decompression bomb DOS attack'."""
    limit = 2 * Image.MAX_IMAGE_PIXELS
    if not reducible:
        return f"decoded whole here: downscale it below {limit} pixels"
    return (f"a {Path(path).suffix.lower() or 'such'} file is decoded whole, whatever is cropped from it: downscale it "
            f"below {limit} pixels, or save it as a baseline JPEG, which crops mode decodes reduced")


def _several_scans(img: Image.Image) -> str:
    """What makes libjpeg buffer the whole of JPEG ``img``'s coefficients ("": nothing, one interleaved scan): its
    progressive mode, or a first scan holding fewer components than the frame (libjpeg's has_multiple_scans, jdinput.c).
    Pillow reads the frame header, not the scan's: a baseline file of a scan per component looks like one of a scan."""
    if img.info.get("progressive") or img.info.get("progression"):
        return "a progressive JPEG"
    held = _first_scan_components(img)
    if held < img.layers:
        return f"a JPEG of several scans, its first scan holds {held} of its {img.layers} components"
    return ""


def _first_scan_components(img: Image.Image) -> int:
    """How many components the first scan of the opened, not yet loaded JPEG ``img`` holds (0: no scan header found):
    its markers walked from the file's start by their lengths, the first scan's header read; nothing of the
    compressed data is, as it follows that header."""
    fp, here = img.fp, img.fp.tell()
    try:
        fp.seek(2)                                     # after SOI
        while byte := fp.read(1):
            if byte != b"\xff":
                continue                               # junk between segments, skipped as Pillow skips it
            marker = fp.read(1)
            while marker == b"\xff":                   # fill bytes before a marker
                marker = fp.read(1)
            if not marker or marker[0] in _NO_LENGTH:
                continue
            length = int.from_bytes(fp.read(2), "big")
            if length < 2:                             # a damaged length: no header to be found by it
                return 0
            if marker[0] == _SOS:
                count = fp.read(1)
                return count[0] if count else 0
            fp.seek(length - 2, os.SEEK_CUR)
        return 0
    finally:
        fp.seek(here)
