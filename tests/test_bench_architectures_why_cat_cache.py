"""bench/architectures_why_cat.py's ``--cache DIR`` (bench/_cell_cache.py): a second run reads each cell instead of
training it; a changed seed, config or code trains again; a damaged cache file is named, skipped and trained again;
the faces arms are cached one by one, their shared twin trained only for the arms missing; ``--keep-networks`` keeps a
cell's networks, opened instead of trained (a damaged one trained again). The training functions are stand-ins that
count their calls and number their rows, so a row read back is told from one trained again."""
import contextlib
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from small_run import trained  # noqa: F401 (a fixture)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import _cell_cache  # noqa: E402
import _why_cat_arms  # noqa: E402
import architectures_why_cat as why  # noqa: E402
from _kept_runs import KeptRuns  # noqa: E402


def _row(calls, variant, seed):
    calls.append((variant, seed))
    return {"variant": variant, "seed": seed, "cpu_s": 1.0, "face_owed_controls": float(len(calls))}


def _stand_ins(monkeypatch):
    calls = []
    monkeypatch.setattr(why, "_cat_cell",
                        lambda study, seed, runs: [_row(calls, "cat", seed), _row(calls, "read-codes", seed)])
    monkeypatch.setattr(why, "_read_cells", lambda cfg, m, seed, base, reads, runs, **said: [
        _row(calls, base, seed), *(_row(calls, r, seed) for r in reads)])
    monkeypatch.setattr(why, "_trained_cell", lambda name, seed: _row(calls, name, seed))
    return calls


def _run(tmp_path, *args, variants="cat,maps-2,pool-read-codes"):
    why.main(["run", "--variants", variants, "--out", str(tmp_path / "cells.jsonl"), "--cache", str(tmp_path / "c"),
              *args])


def _lines(tmp_path):
    return [json.loads(line) for line in open(tmp_path / "cells.jsonl")]


def test_a_second_run_reads_every_cell_from_the_cache_and_appends_the_same_rows(monkeypatch, tmp_path, capsys):
    calls = _stand_ins(monkeypatch)
    _run(tmp_path, "3")
    assert calls == [("cat", 3), ("read-codes", 3), ("whole-pool", 3), ("pool-read-codes", 3), ("maps-2", 3)]
    assert "cached" not in capsys.readouterr().out
    _run(tmp_path, "3")
    assert len(calls) == 5                    # nothing trained the second time
    out = capsys.readouterr().out
    for cell in ("_cat_cell cat", "_read_cells whole-pool", "_trained_cell maps-2"):
        assert f"cached: {cell} seed 3 (" in out
    first, second = _lines(tmp_path)[:5], _lines(tmp_path)[5:]
    assert second == first and [r["face_owed_controls"] for r in first] == [1, 2, 3, 4, 5]
    assert len(list((tmp_path / "c").glob("*.json"))) == 3      # one file a cell, its read-outs with it


def test_without_a_cache_every_run_trains(monkeypatch, tmp_path):
    calls = _stand_ins(monkeypatch)
    for _ in range(2):
        why.main(["run", "--variants", "maps-2", "--out", str(tmp_path / "cells.jsonl"), "3"])
    assert calls == [("maps-2", 3), ("maps-2", 3)]


def test_a_changed_seed_or_config_trains_again(monkeypatch, tmp_path, capsys):
    calls = _stand_ins(monkeypatch)
    _run(tmp_path, "3", variants="maps-2,no-pool")
    _run(tmp_path, "3", "4", variants="maps-2,no-pool")
    assert calls[2:] == [("maps-2", 4), ("no-pool", 4)]       # seed 3 read, seed 4 trained
    # maps-2 with another --set is another config: trained; no-pool, unchanged, read (adding a variant to TRAINED
    # leaves the others' cells valid)
    monkeypatch.setitem(_why_cat_arms.TRAINED, "maps-2", (("model.maps", (8, 3)),))
    monkeypatch.setitem(_why_cat_arms.TRAINED, "new-variant", (("model.tile", 0),))
    _run(tmp_path, "3", variants="maps-2,no-pool")
    assert calls[4:] == [("maps-2", 3)]
    assert "cached: _trained_cell no-pool seed 3" in capsys.readouterr().out


def test_changed_code_trains_again(monkeypatch, tmp_path):
    calls = _stand_ins(monkeypatch)
    cells = tmp_path / "cells_code.py"
    cells.write_text("x = 1\n")
    monkeypatch.setattr(why, "CELL_CODE", [cells])
    _run(tmp_path, "3", variants="maps-2")
    _run(tmp_path, "3", variants="maps-2")
    cells.write_text("x = 2\n")
    _run(tmp_path, "3", variants="maps-2")
    assert calls == [("maps-2", 3), ("maps-2", 3)]


def test_the_code_digest_covers_the_packages_sources_and_the_extra_files_and_nothing_else(tmp_path):
    package, extra = tmp_path / "pkg", tmp_path / "cells.py"
    (package / "sub" / "__pycache__").mkdir(parents=True)
    (package / "a.py").write_text("a = 1\n")
    (package / "sub" / "presets.toml").write_text("x = 1\n")
    extra.write_text("b = 1\n")
    digest = _cell_cache.code_digest([extra], package)
    assert len(digest) == 64 and _cell_cache.code_digest([extra], package) == digest
    (package / "sub" / "__pycache__" / "a.cpython-312.pyc").write_bytes(b"\0")
    (package / "notes.txt").write_text("not code\n")
    assert _cell_cache.code_digest([extra], package) == digest
    seen = {digest}
    for path, text in ((package / "a.py", "a = 2\n"), (package / "sub" / "presets.toml", "x = 2\n"),
                       (extra, "b = 2\n"), (package / "sub" / "new.py", "")):
        path.write_text(text)
        seen.add(_cell_cache.code_digest([extra], package))
    assert len(seen) == 5


def test_a_damaged_cache_file_is_named_skipped_and_trained_again(monkeypatch, tmp_path, capsys):
    calls = _stand_ins(monkeypatch)
    _run(tmp_path, "3", variants="maps-2,no-pool")
    files = sorted((tmp_path / "c").glob("*.json"))
    stored = {f: json.loads(f.read_text()) for f in files}
    maps_2 = next(f for f in files if stored[f]["key"]["cell"] == "_trained_cell maps-2")
    no_pool = next(f for f in files if f != maps_2)
    assert stored[maps_2]["key"]["seed"] == 3 and stored[maps_2]["key"]["config"]["model"]["maps"] == [8, 2]
    maps_2.write_text('{"key": {"cell": "_trained_cell ma')                      # cut mid-write by hand
    no_pool.write_text(json.dumps({**stored[no_pool], "rows": "none"}))           # rows that are no rows
    capsys.readouterr()
    _run(tmp_path, "3", variants="maps-2,no-pool")
    out = capsys.readouterr().out
    assert calls[2:] == [("maps-2", 3), ("no-pool", 3)]
    assert f"cache: {maps_2} is damaged (JSONDecodeError: " in out
    assert f"cache: {no_pool} is damaged (ValueError: its rows are not a list of JSON objects)" in out
    _run(tmp_path, "3", variants="maps-2,no-pool")                              # written over whole: read again
    assert len(calls) == 4 and "is damaged" not in capsys.readouterr().out
    other = json.loads(maps_2.read_text())
    no_pool.write_text(json.dumps({**other, "rows": stored[no_pool]["rows"]}))   # another cell's key in its file
    _run(tmp_path, "3", variants="no-pool")
    assert calls[4:] == [("no-pool", 3)] and "it holds another cell's key" in capsys.readouterr().out


def test_the_faces_arms_are_cached_one_by_one_and_only_the_missing_ones_trained(monkeypatch, tmp_path, capsys):
    asked = []

    def faces_cells(study, seed, arms):
        asked.append(list(arms))
        return [{"variant": a, "seed": seed, "cpu_s": 1.0, "face_owed_controls": float(len(asked))} for a in arms]

    monkeypatch.setattr(why, "_faces_cells", faces_cells)
    out, cache = str(tmp_path / "faces.jsonl"), str(tmp_path / "c")
    why.main(["faces", "--arms", "cat,faces-18", "--out", out, "--cache", cache, "5"])
    why.main(["faces", "--arms", "faces-35,cat,faces-18", "--out", out, "--cache", cache, "5"])
    why.main(["faces", "--arms", "cat,faces-35", "--out", out, "--cache", cache, "5"])
    assert asked == [["cat", "faces-18"], ["faces-35"]]
    rows = [(r["variant"], r["face_owed_controls"]) for r in map(json.loads, open(out))]
    assert rows == [("cat", 1), ("faces-18", 1), ("faces-35", 2), ("cat", 1), ("faces-18", 1), ("cat", 1),
                    ("faces-35", 2)]
    assert "cached: _faces_cells faces-35 seed 5" in capsys.readouterr().out


def test_keep_networks_needs_a_cache_folder(tmp_path):
    with pytest.raises(SystemExit, match="--keep-networks keeps them in the --cache folder: name one"):
        why.main(["run", "--variants", "cat", "--out", str(tmp_path / "c.jsonl"), "--keep-networks", "0"])


def test_keep_networks_hands_the_kept_runs_to_the_cells_that_read_their_networks(monkeypatch, tmp_path):
    handed = []
    monkeypatch.setattr(why, "_cat_cell", lambda study, seed, runs: handed.append(runs) or [{"variant": "cat",
                                                                                             "seed": seed, "cpu_s": 0}])
    _run(tmp_path, "3", "--keep-networks", variants="cat")
    _run(tmp_path, "4", variants="cat")
    assert isinstance(handed[0], KeptRuns) and handed[0].cache.folder == tmp_path / "c" and handed[1] is None


def test_a_kept_network_is_opened_instead_of_trained_and_a_damaged_one_trained_again(monkeypatch, trained, tmp_path,
                                                                                      capsys):
    """``trained``: a small run (tests/small_run.py), copied by the stand-in for ``trained_run`` as if trained."""
    from downpour.analysis.options import open_run
    from downpour.studies import trained as studies_trained
    from downpour.train.rundir import RunDir

    made = []

    @contextlib.contextmanager
    def trained_run(cfg):
        path = tmp_path / f"trained-{len(made)}"
        shutil.copytree(trained, path)
        made.append(path)
        yield (*open_run(path), {"final_loss": 2.5, "steps": 4})

    monkeypatch.setattr(studies_trained, "trained_run", trained_run)
    cfg = RunDir.open(trained).config
    runs = KeptRuns(_cell_cache.CellCache(tmp_path / "c", "code-1"))
    with runs.trained_run(cfg) as (run, model, summary):
        weights = {k: v.clone() for k, v in model.state_dict().items()}
        assert run.path == made[0] and summary["final_loss"] == 2.5
    kept = runs.path(runs.cache.key("network", cfg, cfg.seed))
    assert (kept / "run" / "model.safetensors").is_file() and (kept / "run" / "checkpoints").is_dir()
    with runs.trained_run(cfg) as (run, model, summary):
        assert len(made) == 1 and run.path == kept / "run" and summary == {"final_loss": 2.5, "steps": 4}
        assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert f"kept network: seed {cfg.seed} ({kept})" in capsys.readouterr().out
    (kept / "run" / "model.safetensors").write_bytes(b"not a tensor file")
    with runs.trained_run(cfg) as (run, model, summary):
        assert len(made) == 2 and run.path == made[1]
    assert f"cache: the network in {kept} cannot be opened (" in capsys.readouterr().out
    with runs.trained_run(cfg):                           # kept again, whole
        assert len(made) == 2
    (kept / "key.json").write_text(json.dumps({**runs.cache.key("network", cfg, cfg.seed), "seed": 99}))
    with runs.trained_run(cfg):
        assert len(made) == 3
    assert "(ValueError: its key.json is another network's)" in capsys.readouterr().out
    other = KeptRuns(_cell_cache.CellCache(tmp_path / "c", "code-2"))     # other code: another network, trained
    with other.trained_run(cfg):
        assert len(made) == 4 and other.path(other.cache.key("network", cfg, cfg.seed)) != kept
