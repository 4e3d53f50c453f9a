"""Which files a video source reads: a video file, or the video files under a folder (recursive, sorted, each real
file once), PyAV checked before any is read (:mod:`downpour.data.video` decodes them)."""
from __future__ import annotations

from pathlib import Path

from downpour._names import plural
from downpour.data.folder import hidden, image_extensions, once_each, walk_files
from downpour.errors import DataError

# (.mts and .m2ts: camcorders' MPEG-TS; .vob: DVDs; .f4v, .divx, .asf, .mxf, .y4m: each decoded here; an extension
# missing here leaves such files out of a folder, only counted as ignored)
VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ogv", ".flv", ".wmv", ".3gp",
                    ".ts", ".mts", ".m2ts", ".vob", ".f4v", ".divx", ".asf", ".mxf", ".y4m"}


def video_files(path: Path, unlisted: list[dict[str, str]] | None = None,
                aliases: list[dict[str, str]] | None = None) -> tuple[list[Path], int]:
    """(``path`` itself if it is a file, else the video files under it, recursive, sorted; how many other files
    were ignored: hidden, not a video's extension, a second name of one listed). ``unlisted``: filled with the
    sub-folders that cannot be listed (:func:`~downpour.data.folder.walk_files`), ``aliases`` with the second
    names of files listed already (the load logs both)."""
    if path.is_file():
        return [_with_pyav(path)], 0
    if not path.is_dir():
        raise DataError(f"video path {str(path)!r} does not exist")
    unlisted = [] if unlisted is None else unlisted
    links: set[str] = set()
    every = list(walk_files(path, unlisted, links))
    if unlisted and unlisted[0]["folder"] == str(path):
        raise DataError(f"video folder {str(path)!r} cannot be listed: {unlisted[0]['reason']}")
    found = [p for p in every if p.suffix.lower() in VIDEO_EXTENSIONS and not hidden(p, path)]
    # each real file once, as in an image folder: a video linked under two names is not trained twice
    files = once_each(sorted(found), aliases, links)
    if not files:
        # its images named, where it holds some: a folder of images is told more than "holds no video files"
        known = image_extensions()
        images = sorted(p for p in every if p.suffix.lower() in known and not hidden(p, path))
        raise DataError(f"video folder {str(path)!r} holds no video files ({plural(len(every), 'other file')}; "
                        f"extensions {', '.join(sorted(VIDEO_EXTENSIONS))})"
                        + (f"; it holds {plural(len(images), 'image file')} (e.g. "
                           f"{images[0].name!r}): data.source = 'folder' reads images" if images else ""))
    _with_pyav(files[0])
    return files, len(every) - len(files)


def _with_pyav(path: Path) -> Path:
    """``path``, a file the video source reads, once PyAV, which decodes it, imports; else DataError naming it and how
    to install PyAV, so that no file is skipped as "ModuleNotFoundError: No module named 'av'" and a streamed
    run's listing does not raise that bare, a traceback."""
    try:
        import av  # noqa: F401
    except ImportError as err:
        raise DataError(f"{str(path)!r}: data.source = 'video' decodes it with PyAV, which cannot be imported ({err}); "
                        "install it: pip install av") from None
    return path
