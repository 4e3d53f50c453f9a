"""A pair, or a learner's folder, as the code saved it before 2026-12-05: its JSON without its own digest
(json_sha256), its tensors file without the safetensors metadata that says the JSON records one. Shared by the tests
that such a save still loads."""
from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from downpour.train.checkpoint import PAIR_KEY, sha256_of
from downpour.train.json_digest import JSON_KEY


def as_written_before_digests(tensors: Path, record: Path, pair_key: bool = True) -> None:
    """The pair as the code wrote it before 2026-12-05: safetensors' save_file without metadata, a JSON without
    json_sha256; with the tensors' SHA-256 (as pairs saved from 2026-12-02 on have it), or (``pair_key`` false) without
    it, as older pairs are."""
    save_file(load_file(str(tensors)), str(tensors))
    meta = json.loads(record.read_text())
    meta.pop(JSON_KEY, None)
    meta.pop(PAIR_KEY)
    record.write_text(json.dumps({**meta, **({PAIR_KEY: sha256_of(tensors)} if pair_key else {})}, indent=1))


def learner_saved_before_digests(folder: Path, pair_key: bool = True) -> None:
    """A saved learner's ``folder`` as saved before 2026-12-05: its model pair (:func:`as_written_before_digests`)
    and learner.json without json_sha256."""
    as_written_before_digests(folder / "model.safetensors", folder / "model.json", pair_key)
    record = json.loads((folder / "learner.json").read_text())
    del record[JSON_KEY]
    (folder / "learner.json").write_text(json.dumps(record))
