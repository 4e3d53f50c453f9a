"""Frames sampled from video files with PyAV, like the paper's one frame per YouTube video.

``frames_per_video`` = k frames are taken from each file, evenly spaced at the centres of k equal
stretches of the video (frame ``floor((j + 1/2) · T / k)`` for j = 0..k-1 of T frames), so k = 1 is
the middle frame and the black fades at either end are avoided. A frame is turned as players show it:
a phone's portrait video is stored sideways with a display matrix saying so, as a phone's photo is with
an EXIF orientation. A file PyAV cannot open or decode is skipped, named and logged, like an unreadable
image.
"""
from __future__ import annotations

import functools
import math
import os
import struct
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from downpour._names import none_could
from downpour.data.left_out import left_out, say_left_out
from downpour.data.images import UNREADABLE, ImageSet, log, skip, to_chw
from downpour.data.video_list import video_files
from downpour.errors import DataError

if TYPE_CHECKING:
    import av


def _decode_errors() -> tuple[type[BaseException], ...]:
    """What a file PyAV cannot read raises. PyAV is imported where a video is read, not with this module: every
    training process and Ray actor imports this module (data.build, pipeline, stream), and would pay for PyAV:
    0.05-0.08 s of CPU after torch, 0.7-1.0 s of wall on the loaded 2-core VM."""
    import av

    return av.FFmpegError, OSError, ValueError, RuntimeError, EOFError


# Each thread's maker of :func:`_display_matrix`'s 2x2 copies, keeping its converter from frame to frame of one
# size (the frame's own converter makes the RGB copy: taking turns in one, each would be made anew, 4 ms a frame)
_SMALL = threading.local()


def frame_indices(total: int, k: int) -> list[int]:
    """The k evenly spaced frame indices of a T-frame video (fewer when T < k)."""
    if total <= 0:
        return []
    return sorted({int((j + 0.5) * total / k) for j in range(k)})


_CUT = ("was most likely cut short before its index, the 'moov' atom written last (a recording or a copy that stopped); "
        "it cannot be decoded")


def _open(path: Path | str) -> av.container.InputContainer:
    """``av.open``; an .mp4 or .mov cut inside its first media box opens not at all ("Invalid data found when
    processing input"): where its top-level boxes begin with 'ftyp' and hold no 'moov', it says it was most likely cut
    short, as one cut later does (:func:`video_stream`; the first 500 bytes of a 12-frame .mp4 would read as
    FFmpeg's words alone)."""
    import av

    try:
        return av.open(str(path))
    except av.InvalidDataError as err:
        kinds = _boxes(path)
        if kinds[:1] == [b"ftyp"] and b"moov" not in kinds:
            raise ValueError(f"{err.strerror}: its boxes hold no 'moov': an .mp4 or .mov that reads so {_CUT}") from None
        raise


def _boxes(path: Path | str) -> list[bytes]:
    """The kinds of an ISO media file's top-level boxes, in order, as far as their sizes hold within the file."""
    kinds, pos = [], 0
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        while pos + 8 <= size:
            f.seek(pos)
            head = f.read(16)
            n, kind = struct.unpack(">I4s", head[:8])
            n = struct.unpack(">Q", head[8:16])[0] if n == 1 and len(head) == 16 else (size - pos if n == 0 else n)
            if n < 8:
                break
            kinds.append(kind)
            pos += n
    return kinds


def video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    """The video stream a player shows: FFmpeg's best one (``av_find_best_stream``, as ffmpeg and ffplay choose:
    not a cover picture, the one with the most frames probed). Not the first: a .mkv whose cover JPEG is stored
    as a one-frame stream before the video would give that picture alone, whatever
    frames_per_video asked. ValueError when there is none, naming the streams there are: an .mp4 or .mov cut short
    before its index (the 'moov' atom a camera or phone writes last: a recording or a copy that stopped) opens with
    no audio or video stream, and is said to be cut short, not skipped as "no video stream" like a sound file."""
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        if "mov" in container.format.name.split(",") and "audio" not in kinds:
            raise ValueError(f"no video stream (streams: {', '.join(kinds) or 'none'}): an .mp4 or .mov that reads "
                             f"so {_CUT}")
        raise ValueError(f"no video stream (streams: {', '.join(kinds) or 'none'})")
    return container.streams.best("video")


def upright(rgb: np.ndarray, matrix: np.ndarray | None) -> np.ndarray:
    """A decoded (H, W, 3) frame turned by its display matrix (9 int32, FFmpeg's AV_FRAME_DATA_DISPLAYMATRIX)
    as FFmpeg's own players turn it (ffplay's and ffmpeg's autorotate: the angle, then a transpose or flips by
    the matrix's signs). An iPhone's portrait video is stored 1920x1080 with a matrix turning it 90 degrees
    clockwise; unturned, its frames would lie on their side. An angle that is no multiple of 90
    raises DataError (the file is skipped and named: turning by it would invent the corners), not one of the
    decode errors, which after a first frame read as a file cut short."""
    if matrix is None:
        return rgb
    m = [float(v) for v in matrix]
    if math.hypot(m[0], m[3]) == 0 or math.hypot(m[1], m[4]) == 0:
        raise DataError(f"its display matrix {[int(v) for v in matrix]} is degenerate")
    # -av_display_rotation_get(m), in [0, 360): the clockwise turn a player applies
    theta = round(math.degrees(math.atan2(m[1] / math.hypot(m[1], m[4]), m[0] / math.hypot(m[0], m[3]))))
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    if theta == 90:
        out = rgb.transpose(1, 0, 2) if m[3] > 0 else np.rot90(rgb, -1)      # transpose=cclock_flip | clock
    elif theta == 270:
        out = np.rot90(rgb, -1)[::-1] if m[3] < 0 else np.rot90(rgb, 1)      # transpose=clock_flip | cclock
    elif theta == 180:
        out = rgb[:, ::-1] if m[0] < 0 else rgb                              # hflip
        out = out[::-1] if m[4] < 0 else out                                 # vflip
    elif theta == 0:
        out = rgb[::-1] if m[4] < 0 else rgb
    else:
        raise DataError(f"its display matrix turns it by {theta} degrees clockwise; only multiples of 90 are turned upright")
    return np.ascontiguousarray(out)


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    """One decoded frame as (H, W, 3) uint8 RGB, upright as players show it.

    Converted by one thread (``threads=1``): the frame's converter (an FFmpeg SwsContext) then owns no threads.
    By default it starts its own (2 a frame here); a DataLoader process forked while a frame awaited Python's
    cyclic collector inherits the frame but not the threads, and when it collects the frame, freeing the
    converter waits for those threads forever: the streamed run hangs, with no error. One thread
    converted 10 frames of a 1080p H.264 file in the same time (1.06 s decoding and converting; 1.08 s with 2).

    The display matrix is read from a 2x2 copy (:func:`_display_matrix`), not the frame: PyAV's side data and its
    frame hold each other, so a frame whose side data was read would be freed only by the cyclic collector, some
    hundred frames later (400 reads of the middle frame of a 1080p .mp4 peak at 262 MB of RSS, as when collecting
    after every read, where reading the frame's side data peaked at 670-747 MB; 2.6 s of CPU against 2.7 s)."""
    rgb = frame.to_ndarray(format="rgb24", threads=1)
    return upright(rgb, _display_matrix(frame))


def _display_matrix(frame: av.VideoFrame) -> np.ndarray | None:
    """``frame``'s display matrix (9 int32) or None, read from a 2x2 grey copy of it (point-sampled: 8 us for a
    1080p frame; the copy keeps its side data), so that the frame is in no reference cycle; the copy's cycle
    holds a few hundred bytes until the collector runs."""
    from av.sidedata.sidedata import Type
    from av.video.reformatter import VideoReformatter

    if not hasattr(_SMALL, "maker"):
        _SMALL.maker = VideoReformatter()
    copy = _SMALL.maker.reformat(frame, width=2, height=2, format="gray", interpolation="POINT", threads=1)
    side = copy.side_data.get(Type.DISPLAYMATRIX)
    return None if side is None else np.frombuffer(bytes(side), np.int32)


def _decode(path: Path, wanted: set[int]) -> tuple[dict[int, np.ndarray], int, str]:
    """Decode the video stream a player shows; keep frames whose index is in ``wanted`` (H, W, 3) uint8, upright.

    Returns (kept frames, number of frames decoded, why decoding broke off or ""). Stops after the last wanted
    frame. A file that breaks off after its first frame (truncated, damaged) ends there: the frames before the
    break are good, and are used (:func:`sample_frames` records it); one that breaks before any frame raises.
    """
    kept: dict[int, np.ndarray] = {}
    last = max(wanted) if wanted else None
    count, broke = 0, ""
    with _open(path) as container:
        stream = video_stream(container)
        try:
            for count, frame in enumerate(container.decode(stream), start=1):
                if count - 1 in wanted:
                    kept[count - 1] = _rgb(frame)
                if last is not None and count - 1 >= last:
                    break
        except _decode_errors() as err:
            if count == 0:
                raise
            broke = str(err)
    return kept, count, broke


def _frame_count(path: Path) -> int:
    """The frame count the container declares, else its video packets counted (:func:`_count`); once a file and
    process while it is not rewritten (:func:`_key`). Uncached, every :func:`sample_frames` read of a
    file declaring no count demuxes all of it again: a streamed run reading a 58 MB 600-frame .mkv 50 times spent
    0.75 s of CPU counting it (0.015 s a read; 0.15 s for a 540 MB one, mostly disk time on cold storage)."""
    return _counted(*_key(path))


def _key(path: Path) -> tuple[str, int, int, int, int]:
    """What the per-process counts are keyed by: the resolved path, size, mtime_ns, ctime_ns and inode (a rewritten
    file counts anew). The ctime and inode because size and mtime alone would keep the old counts of a file
    rewritten whole at its old size and given its old mtime back (``cp -p``, ``rsync -t``, ``tar x``, ``touch -r``
    set it): a download that allocates its full size first, cut, then complete, would read 15 of its 30 frames and
    "truncated" to the end."""
    stat = Path(path).stat()                     # (a str is read too, as av.open reads one)
    if stat.st_size == 0:                        # (FFmpeg: "Invalid data found when processing input")
        raise ValueError("empty file (0 bytes)")
    return str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino


# (a DataLoader worker process keeps its own; an entry took 351 B with an 80-character path, so 65,536 files
# hold 23 MB at most)
@functools.lru_cache(maxsize=1 << 16)
def _counted(resolved: str, *changed: int) -> int:
    """:func:`_frame_count` of the file at ``resolved`` (``changed``, the rest of :func:`_key`, keys the cache: a
    rewritten file counts anew; one that cannot be opened raises each time, as lru_cache keeps no exception)."""
    with _open(resolved) as container:
        return _count(container, video_stream(container))


# The frames that really decode, (count, why decoding broke off), of the files whose declared or demuxed count did
# not all decode (truncated, damaged), keyed as :func:`_counted` is; a process's, 65,536 files at most (the oldest
# goes first). Without it such a file is decoded to its break to recount it at every read: 3 decodes a read (the
# declared frames tried, the recount, the frames picked); 40 reads of a 640x360 H.264 .mp4 cut to 203 of its 300
# frames take 42 decodes, 3.3 s (the first read's 3, then 1 a read), against 120, 11.4 s (a busy 2-core machine).
_DECODED: dict[tuple[str, int, int, int, int], tuple[int, str]] = {}
_DECODED_MAX = 1 << 16


def _recounted(path: Path, key: tuple[str, int, int, int, int]) -> tuple[int, str]:
    """(frames that decode, why decoding broke off or "") of ``path``, decoded once a file and process."""
    if key not in _DECODED:
        _, total, broke = _decode(path, set())
        if len(_DECODED) >= _DECODED_MAX:
            _DECODED.pop(next(iter(_DECODED)))
        _DECODED[key] = (total, broke)
    return _DECODED[key]


def _count(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    """The frame count ``container`` declares for ``stream``, else its video packets, demuxed, not decoded: one
    packet a frame (600 of 600 in the H.264 .mkv, VP8 and VP9 .webm and AV1 .mkv files measured), read in
    0.002-0.007 s of CPU where decoding the same 320x240 files took 0.05-0.35 s; 0.15 s for a 540 MB 60 s 720p
    .mkv. A damaged file counts the packets before the damage.

    Matroska, WebM and MPEG-TS declare no count. Their headers' duration times the stream's frame rate is none: it
    counts what the longest stream lasts and assumes a constant rate (a 30-frame 10 fps .mkv or .webm with 60 s of
    audio would count 600 frames, one with 15 frames at 10 fps and 15 at 1 fps 156; packets count both 30)."""
    if stream.frames:
        return int(stream.frames)
    count = 0
    try:
        for packet in container.demux(stream):
            count += packet.size > 0                    # (the flush packet at the end is empty)
    except _decode_errors():
        pass                                            # (decoding finds where it really ends: sample_frames)
    return count


def decoded_pixels(path: Path, k: int) -> int:
    """Pixels ``sample_frames(path, k)`` decodes, counted without decoding: width x height x min(T, k) of the
    frame count :func:`_count` gives, k where it gives none. What ``data.pipeline = 'auto'`` estimates
    memory by: k frames a video would estimate k = 100 on 40 12-frame 640x480 videos at 4,688 MB (streamed, over
    the 1 GiB threshold) where memory holds 563 MB."""
    frames = _frame_count(path)                  # (counted once with the reads that follow in this process)
    with _open(path) as container:
        stream = video_stream(container)
        return stream.codec_context.width * stream.codec_context.height * (min(frames, k) if frames > 0 else k)


def frames_taken(paths: list[Path], k: int) -> float | None:
    """The mean frames per video ``sample_frames(path, k)`` gives over ``paths``, from the frame counts
    :func:`_count` gives (nothing decoded): min(T, k) each; None when none gives one. A Matroska or WebM file,
    which declares no count, gives its packets' count: assuming k, frames_per_video = 100 on 12-frame .mkv files
    would stream 48 patches a pass for data.samples = 120 (counted, 96: the nearest whole count per frame)."""
    counts = []
    for path in paths:
        try:
            declared = _frame_count(Path(path))
        except _decode_errors():
            continue                   # (skipped when read, and named then)
        if declared > 0:
            counts.append(min(declared, k))
    return float(np.mean(counts)) if counts else None


def sample_frames(path: Path, k: int, truncated: list[dict[str, Any]] | None = None) -> list[np.ndarray]:
    """k evenly spaced RGB frames (H, W, 3) uint8 of one file. Raises on a file that cannot be decoded.
    ``truncated``: given {file, frames, reason} when the file broke off before the frames a whole one would give
    (its frames are picked among the ``frames`` before the break), at every read; logged by the run that records it
    (:func:`say_truncated`), once a file, not here at every read."""
    # Matroska and WebM (YouTube's formats) declare no count: their packets are counted instead, not the whole video
    # decoded to count its frames and then again up to the frames taken: the middle frame of a 600-frame 320x240
    # H.264 .mkv costs 0.08 s of CPU, as from an .mp4 of the same frames (which declares its count), where decoding
    # twice cost 0.22 s (a VP9 .webm: 0.18 s against 0.52 s).
    key = _key(path)
    declared = _counted(*key)
    if declared > 0 and key not in _DECODED:
        wanted = frame_indices(declared, k)
        kept, _, _ = _decode(path, set(wanted))
        if len(kept) == len(wanted):
            return [kept[i] for i in wanted]
    # No count, or a wrong one (a truncated file: its declared or demuxed frames do not all decode): count by
    # decoding (once a file and process: :data:`_DECODED`), then pick.
    total, broke = _recounted(path, key)
    if total == 0:
        raise ValueError("no decodable frames")
    wanted = frame_indices(total, k)
    kept, _, _ = _decode(path, set(wanted))
    if broke and truncated is not None:       # recorded in data.json, not in the log alone
        truncated.append({"file": str(path), "frames": total, "reason": broke})
    return [kept[i] for i in wanted if i in kept]


def say_truncated(entry: dict[str, Any]) -> None:
    """Log one video cut short (a :func:`sample_frames` record): by the load in memory, by a stream when it first
    records the file; so once a file and run: not at every read (up to 3 times a read, 302 lines for 40 streamed
    steps on one file), nor once a process (a second run in one Python would say nothing of it)."""
    log.warning("%s: decoding stopped after frame %d (%s); the frames before it are used", entry["file"],
                entry["frames"], entry["reason"])


def load_videos(path: str | Path, frames_per_video: int = 3, grey: bool = True) -> ImageSet:
    """Frames of every video under ``path`` as float32 (C, H, W) images in [0, 1]."""
    if not str(path):
        raise DataError("data.path is empty: the video source needs a video file or folder")
    root = Path(path)
    unlisted: list[dict[str, str]] = []
    aliases: list[dict[str, str]] = []
    files, ignored = video_files(root, unlisted, aliases)
    left = left_out(unlisted, aliases)
    say_left_out(root, left)                # (not dropped unsaid)
    images, names, skipped, truncated = [], [], [], []
    for f in files:
        try:
            frames = sample_frames(f, frames_per_video, truncated)
        except UNREADABLE as err:
            skip(skipped, str(f), f"{type(err).__name__}: {err}")
            continue
        if truncated and truncated[-1]["file"] == str(f):
            say_truncated(truncated[-1])
        images += [to_chw(fr, grey) for fr in frames]
        names += [f"{f}#frame{j}" for j in range(len(frames))]
    if not images:
        raise DataError(f"video path {str(root)!r}: {none_could(len(files), 'video file', 'be decoded')} "
                        f"(first: {skipped[0]['file']}: {skipped[0]['reason']})")
    return ImageSet(images, names, skipped=skipped,
                    info={"path": str(root), "n_videos": len(files) - len(skipped), "frames_per_video": frames_per_video,
                          "n_ignored": ignored, **left, **({"truncated": truncated} if truncated else {})})
