"""Checkpoints as safetensors + JSON, written atomically. Never pickle.

A checkpoint is a stem (``checkpoints/local``): ``stem.safetensors`` holds the tensors, ``stem.json``
everything else (step, optimiser hyper-parameters, counters).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable

from safetensors import SafetensorError
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from downpour.errors import CheckpointError
from downpour.train.json_digest import MARK, digest_problem, digested


log = logging.getLogger(__name__)


class UnreadableFile(CheckpointError):
    """A file this account may not read (permission denied): said so, not as a damaged file (:func:`denied`)."""


def read_tensors(path: Path) -> dict[str, Tensor]:
    """``load_file``, with a damaged file (truncated, not safetensors) reported by name, and one this account may not
    read as :class:`UnreadableFile`."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        if denied(path):
            raise UnreadableFile(f"{str(path)!r} cannot be read (permission denied): give this account read "
                                 "permission on it (chmod +r), or run as one that has it") from None
        raise CheckpointError(f"{str(path)!r} is not a readable safetensors file: {err}") from None


def denied(path: Path) -> bool:
    """Whether ``path`` cannot be opened for want of permission (chmod 000, another account's file). safetensors says
    "No such file or directory" of it, which would be called "cut short or damaged"; opened here, the
    system's own error tells the two apart."""
    try:
        with open(path, "rb"):
            return False
    except PermissionError:
        return True
    except OSError:
        return False


def readable_tensors(path: Path) -> bool:
    """Whether :func:`read_tensors` would read ``path``'s header and find every tensor's bytes there (not cut
    short), found from the header alone: no tensor is loaded."""
    try:
        with safe_open(str(path), "pt"):
            return True
    except (SafetensorError, OSError, ValueError, RuntimeError):
        return False


def _file_mode() -> int:
    """The mode a new file gets here (0o666 less the umask), read once, at import, in the main thread."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _file_mode()


def write_tensors(tensors: dict[str, Tensor], path: Path, layouts: dict[str, str] | None = None) -> None:
    """safetensors' ``save_file``, the file then given the mode any file written here gets: the library writes
    it owner-only (0600), so on a shared file system no other account could read a run's model or checkpoint. Every
    file written here is the tensors of a pair whose JSON records its own digest, and says so (:data:`MARK`).
    ``layouts``: tensor name -> what its axes mean and how it is used, written into the safetensors metadata as
    ``layout.<name>`` (files written before 2026-12-06 have none), for a reader without downpour (docs/training.md,
    "Reading a run without downpour"); metadata only, the tensors' bytes are the same."""
    said = {f"layout.{name}": text for name, text in (layouts or {}).items() if name in tensors}
    save_file(tensors, str(path), metadata={**MARK, **said})
    _metadata_in_order(path)
    os.chmod(path, FILE_MODE)


def _metadata_in_order(path: Path) -> None:
    """Rewrite ``path``'s safetensors header with its metadata's keys sorted, in place (the same bytes, reordered):
    the library writes the metadata from a hash map in an order that differs from one write to the next, so two
    runs of one seed wrote models that differed in their header once there was more than one key (the layouts)."""
    with open(path, "r+b") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
        header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > size:      # never: the same keys and values; a header that grew would move the tensors
            raise CheckpointError(f"{str(path)!r}: its header, reordered, is {len(text)} bytes, not {size}")
        f.seek(8)
        f.write(text.ljust(size))


def save_state(stem: str | Path, tensors: dict[str, Tensor], meta: dict[str, Any],
               layouts: dict[str, str] | None = None) -> None:
    """Write ``stem.safetensors`` and ``stem.json``. The JSON records the tensors file's SHA-256
    (``safetensors_sha256``), so :func:`load_state` can tell a pair that does not belong together (a
    kill between the two renames, a file copied in by hand) from a true one, and its own (``json_sha256``,
    :mod:`~downpour.train.json_digest`), so it tells a JSON edited or damaged since (a digit of its step) too.

    Both files are written in full under temporary names first, then renamed back to back; the pair
    they replace is kept (hard links ``stem.prev.*``) until both renames are done, so a kill at any
    moment leaves either the new pair or the previous one whole, and :func:`load_state` reads that.
    ``layouts``: as :func:`write_tensors`'s."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu().clone() for k, v in tensors.items()}
    tensor_path, meta_path = _pair(stem)
    tmp_t, tmp_m = tensor_path.with_name(tensor_path.name + ".tmp"), meta_path.with_name(meta_path.name + ".tmp")
    write_tensors(tensors, tmp_t, layouts)
    tmp_m.write_text(json.dumps(digested({**meta, PAIR_KEY: sha256_of(tmp_t)}), indent=1, sort_keys=True))
    if _replaced_whole(stem):                       # keep the pair being replaced until the new one is in
        for path, prev in zip(_pair(stem), _pair(_prev(stem))):
            prev.unlink(missing_ok=True)
            os.link(path, prev)
    os.replace(tmp_t, tensor_path)
    os.replace(tmp_m, meta_path)
    for prev in _pair(_prev(stem)):                 # the new pair is whole: the safety copy has done its work
        prev.unlink(missing_ok=True)


def _pair(stem: Path) -> tuple[Path, Path]:
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def _prev(stem: Path) -> Path:
    return stem.with_name(stem.name + ".prev")


def _replaced_whole(stem: Path) -> bool:
    """Whether the pair a save of ``stem`` replaces is whole, so kept until the new one is in. Hashed (:func:`_whole`)
    only where a save was cut short (some of ``stem.prev.*`` is left): otherwise the last save went through and its
    pair is whole, or was damaged since, and then keeping it does no harm (a cut in this save finds no whole pair
    either way); so a save hashes one file, the one it writes, not two."""
    if any(path.exists() for path in _pair(_prev(stem))):
        return _whole(stem)
    return all(path.is_file() for path in _pair(stem))


def _whole(stem: Path) -> bool:
    """Both files of ``stem`` exist, the JSON matches its own digest and the tensors the one it records (an older
    pair without digests, its tensors not marked as written with them, counts as whole)."""
    tensor_path, meta_path = _pair(stem)
    if not (tensor_path.is_file() and meta_path.is_file()):
        return False
    try:
        meta = json.loads(meta_path.read_text())
        digest = meta.get(PAIR_KEY)
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False
    return digest_problem(meta, tensor_path) is None and (digest is None or digest == sha256_of(tensor_path))


PAIR_KEY = "safetensors_sha256"


def sha256_of(path: Path) -> str:
    """The file's SHA-256, hex (what :data:`PAIR_KEY` records of a pair's tensors file, and model.json of
    model.safetensors): a file damaged inside its data, its size and header intact, is told from the one written.

    A file of :data:`HASHED_ONCE_FROM` bytes or more is hashed once per process while it stays the same file, unchanged
    (its inode, size, mtime and ctime): one `downpour analyze` asked model.safetensors' three times (model_step twice,
    load_model), a resume its checkpoint's twice (reached, the restore), each a full read of a model of gigabytes. A
    file replaced (a save renames a new one in) or written since is hashed again; a small one always is (hashing it
    takes less than the file system's clock tick, which an unchanged mtime could hide a write within)."""
    st = os.stat(path)
    if st.st_size < HASHED_ONCE_FROM:
        return _sha256(path)
    key = (str(Path(path).resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _HASHED:
        if len(_HASHED) >= 64:
            _HASHED.clear()
        _HASHED[key] = _sha256(path)
    return _HASHED[key]


HASHED_ONCE_FROM = 16 << 20
_HASHED: dict[tuple[Any, ...], str] = {}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


CHECKPOINT = "checkpoint"                          # what load_state calls the pair it reads: "checkpoint file ..."
PREPROCESS_RECORD = "the run's preprocessing record"   # preprocess.*, its fitted input processing: no checkpoint


def load_state(stem: str | Path, meta_keys: Iterable[str] = (), tensor_keys: Iterable[str] = (),
               kind: str = CHECKPOINT) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read ``stem.safetensors`` and ``stem.json`` (or, when those do not belong together because a
    write was killed between its renames, or the JSON does not match its own digest, the previous pair
    ``stem.prev.*`` that :func:`save_state` kept); raises :class:`CheckpointError` naming the file when one is
    missing, damaged or lacks one of ``meta_keys`` / ``tensor_keys``. ``kind``: what its words call the pair
    (:data:`PREPROCESS_RECORD` for a run's preprocess.*, not a "checkpoint file")."""
    stem, verified = _verified_stem(Path(stem), kind)
    tensor_path, meta_path = _pair(stem)
    for p in (tensor_path, meta_path):
        if not p.is_file():
            raise CheckpointError(f"{kind} file {str(p)!r} is missing")
    meta = _json_object(meta_path, kind)
    tensors = read_tensors(tensor_path)        # a damaged file is named as such first
    _check_meta(stem, meta, verified, kind, paired=True)
    for keys, have, path in ((meta_keys, meta, meta_path), (tensor_keys, tensors, tensor_path)):
        for key in keys:
            if key not in have:
                raise CheckpointError(f"{str(path)!r} lacks key {key!r}")
    return tensors, meta


def verified_meta(stem: str | Path, kind: str = CHECKPOINT) -> dict[str, Any]:
    """``stem.json`` read and checked as :func:`load_state` reads and checks it, its tensors not read: a JSON that
    does not match its own digest, or tensors whose SHA-256 is not the one it records, refused in its words. A
    tensors file missing or cut short is not refused here (a run shared without it), nor hashed."""
    stem, verified = _verified_stem(Path(stem), kind)
    tensor_path, meta_path = _pair(stem)
    if not meta_path.is_file():
        raise CheckpointError(f"{kind} file {str(meta_path)!r} is missing")
    meta = _json_object(meta_path, kind)
    _check_meta(stem, meta, verified, kind, paired=readable_tensors(tensor_path))
    return meta


def _verified_stem(stem: Path, kind: str) -> tuple[Path, bool]:
    """``stem``, or its previous pair ``stem.prev.*`` where ``stem`` does not verify and that one does (killed
    between save_state's two renames, or damaged since: said in a warning); and whether the pair verified."""
    if _whole(stem):
        return stem, True
    if not _whole(_prev(stem)):
        return stem, False
    said = (kind, str(stem.resolve()), *(path.stat().st_mtime_ns for path in _pair(stem) if path.exists()))
    if said not in _SAID:   # (once a process: `analyze` checks the pair, then loads it; a resume reads it twice too)
        _SAID.add(said)
        log.warning("%s %s does not verify (its JSON does not match its own SHA-256, or its tensors are not the ones "
                    "it records the SHA-256 of: a write killed between its two files, or bytes changed on disk "
                    "since); going on from its previous copy %s.*, which does", kind, stem, _prev(stem).name)
    return _prev(stem), True


_SAID: set[tuple[Any, ...]] = set()   # the pairs _verified_stem said it went on past, with their files' mtimes


def _json_object(meta_path: Path, kind: str) -> dict[str, Any]:
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{kind} file {str(meta_path)!r} is not valid JSON: {err}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{kind} file {str(meta_path)!r} does not hold a JSON object")
    return meta


def _check_meta(stem: Path, meta: dict[str, Any], verified: bool, kind: str, paired: bool) -> None:
    """CheckpointError where ``stem``'s JSON ``meta`` does not match its own digest, or (``paired``: its tensors
    file there, whole) the tensors' SHA-256 is not the one it records; nothing for a pair that ``verified``."""
    if verified:
        return
    tensor_path, meta_path = _pair(stem)
    problem = digest_problem(meta, tensor_path)
    if problem:
        raise CheckpointError(f"{kind} file {str(meta_path)!r} (of {str(tensor_path)!r}) cannot be read back: "
                              f"{problem}, and no earlier copy of it ({_prev(stem).name}.*) verifies; put an intact "
                              "copy of the run back (a change made on purpose: downpour.train.json_digest.rewrite_json "
                              "writes it with its digest)")
    if paired and PAIR_KEY in meta and meta[PAIR_KEY] != sha256_of(tensor_path):   # (older: no digest)
        way_on = "resume from another copy of the run" if kind == CHECKPOINT else "put an intact copy of the run back"
        raise CheckpointError(f"{kind} files {str(tensor_path)!r} and {str(meta_path)!r} do not belong together: "
                              "the tensors' SHA-256 is not the one the JSON recorded when they were written (bytes "
                              "changed on disk since, a damaged copy, a write cut between the two files, or one "
                              f"replaced), and no earlier copy of it verifies; {way_on}")
