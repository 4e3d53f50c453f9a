"""Which cells a study folder mixes on a planted study: what defines a cell (its hash, the keys added since,
the preset, the measure), other settings or another study refused, a context kept only for its settings."""
import json

import pytest

from downpour import studies
from downpour.cli import main
from downpour.config import ConfigError, load_config
from downpour.studies.base import Condition
from downpour.studies.cell_hash import ADDED_KEYS
from downpour.studies.run import run_study
from planted_study import CALLS, Planted
from planted_study import planted  # noqa: F401 (a fixture)


def test_the_cache_knows_what_defines_each_cell(planted, tmp_path, monkeypatch, caplog):
    sets = ["train.steps=3", "train.batch_size=4"]
    run_study("planted", tmp_path, quick=True, jobs=1, sets=sets)
    CALLS.clear()
    run_study("planted", tmp_path, quick=True, jobs=1, sets=sets[::-1])    # the same settings in another order
    assert CALLS == []
    # a condition that now sets something else (its code changed) is not mixed with its old cells
    monkeypatch.setattr(Planted, "conditions", lambda self: [Condition("a", {"k": 1}, (("train.lr", 0.1),)),
                                                            Condition("b", {"k": 2}, (("train.lr", 0.3),))])
    with pytest.raises(ConfigError, match="cells_defined, resolved differ"):   # (and so does what they resolve to)
        run_study("planted", tmp_path, quick=True, jobs=1, sets=sets)
    monkeypatch.undo()
    monkeypatch.setitem(studies.STUDIES, "planted", f"{__name__}:Planted")
    # a folder written before the header held it: its cells are kept, with a warning
    path = tmp_path / "cells.jsonl"
    lines = path.read_text().splitlines()
    old = json.loads(lines[0])
    del old["cells_defined"], old["resolved"]
    old["sets"] = [["train.steps", 3], ["train.batch_size", 4]]               # as given, not in key order
    path.write_text("\n".join([json.dumps(old), *lines[1:]]) + "\n")
    run_study("planted", tmp_path, quick=True, jobs=1, sets=sets)
    assert CALLS == [] and "predates the record" in caplog.text


@pytest.mark.parametrize("section, key", [("cluster", "lr"), ("analysis", "invariance_fill"), ("data", "jpeg_decode")])
def test_a_folder_begun_before_a_key_was_added_at_the_value_that_trains_as_before_is_resumed(planted, tmp_path,
                                                                                             section, key):
    """cluster.lr (2026-12-04; 0 = train.lr) changed the hash of every cell of every study: each folder begun before
    it was refused ("the configs of a, b resolve differently now"), its cells unchanged. The header here is
    rewritten as the code before the key hashed each condition's config (sha256 of its table but the seed).
    analysis.invariance_fill (2026-12-05) did the same to every study, though only the mechanisms study measures
    invariance (its measured_by names the fill, so its folders are refused for it there, not here)."""
    from downpour.models.registry import resolve

    run_study("planted", tmp_path, quick=True, jobs=1, seeds=2)
    # (the key did not exist; one added before it was left out at its old value)
    _hash_as_before(tmp_path / "cells.jsonl", list(ADDED_KEYS))
    CALLS.clear()
    run_study("planted", tmp_path, quick=True, jobs=1, seeds=3)      # its 4 cells kept, the third seed's run
    assert sorted(CALLS) == [("a", 2), ("b", 2)]
    # the key at another value is another cell
    from downpour.studies.cell_hash import digest
    other = {"lr": 0.1, "invariance_fill": "border", "jpeg_decode": 1}[key]
    at = [digest(resolve(load_config("teacher-student", [(f"{section}.{key}", v)])))
          for v in (ADDED_KEYS[section, key], other)]
    assert at[0] != at[1]


def _hash_as_before(path, left_out):
    """Rewrite the header of ``path`` (a planted study's cells.jsonl) as an older version of the code hashed each
    condition's config, independently of :func:`~downpour.studies.cell_hash.digest`: the sha256 of its table but the seed,
    without the keys ``left_out`` ((section, key) pairs). Returns the header written."""
    import hashlib

    from downpour.config import config_to_dict
    from downpour.models.registry import resolve

    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    for condition in Planted().conditions():
        table = {k: v for k, v in config_to_dict(resolve(load_config("teacher-student", [*condition.sets, ("seed", 0)]))).items()
                 if k != "seed"}
        for section, key in left_out:
            del table[section][key]
        table["analysis"]["report"] = False       # (the teacher-student preset's until 2026-12-06, and every cell's)
        header["resolved"][condition.name] = hashlib.sha256(
            json.dumps(table, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    return header


def test_a_folder_begun_while_an_added_key_was_hashed_is_resumed_too(planted, tmp_path):
    """data.jpeg_decode (2026-12-05) was hashed from its start: folders begun since (staleness, mechanisms) hold it
    in their hashes, those begun before do not. Leaving it out at 2 alone would have refused the first kind; a
    folder's hash is read as the same config with or without each added key."""
    run_study("planted", tmp_path, quick=True, jobs=1, seeds=2)
    path = tmp_path / "cells.jsonl"
    # as the code of 2026-12-05 morning hashed: jpeg_decode in (at 2), no fill key
    assert load_config("teacher-student").data.jpeg_decode == 2
    header = _hash_as_before(path, [("analysis", "invariance_fill"), ("cluster", "lr")])
    CALLS.clear()
    run_study("planted", tmp_path, quick=True, jobs=1, seeds=3)      # its 4 cells kept, the third seed's run
    assert sorted(CALLS) == [("a", 2), ("b", 2)]
    assert json.loads(path.read_text().splitlines()[0])["resolved"] != header["resolved"]   # rewritten as today's


def test_cells_of_a_preset_that_changed_since_are_not_mixed_with_new_ones(planted, tmp_path, monkeypatch):
    """The header held the base preset's name: after an edit of its file, a resume kept the old cells and ran
    the new seeds with the new config (2 seeds at lr 0.25, a third at 0.5, one mean)."""
    base = tmp_path / "base.toml"
    base.write_text('base = "teacher-student"\n[train]\nmomentum = 0.5\n')
    monkeypatch.setattr(Planted, "base", str(base))
    run_study("planted", tmp_path / "study", quick=True, jobs=1, seeds=2)
    base.write_text('base = "teacher-student"\n[train]\nmomentum = 0.9\n')
    with pytest.raises(ConfigError, match="resolved differ; the configs of a, b resolve differently now"):
        run_study("planted", tmp_path / "study", quick=True, jobs=1, seeds=3)


def test_other_settings_in_the_same_folder_are_refused(planted, tmp_path):
    run_study("planted", tmp_path, quick=True, jobs=1)
    with pytest.raises(ConfigError, match="other settings.*quick"):
        run_study("planted", tmp_path, quick=False, seeds=3, jobs=1)


def test_cells_measured_another_way_are_refused(planted, monkeypatch, tmp_path):
    """A folder whose cells an earlier version of a measure wrote (here: none named) is not mixed with new ones."""
    run_study("planted", tmp_path, quick=True, jobs=1)
    monkeypatch.setattr(Planted, "measured_by", "face test v2")
    with pytest.raises(ConfigError, match="other settings.*measured_by"):
        run_study("planted", tmp_path, quick=True, jobs=1)
    run_study("planted", tmp_path / "new", quick=True, jobs=1)
    assert json.loads((tmp_path / "new" / "cells.jsonl").read_text().splitlines()[0])["measured_by"] == "face test v2"
    run_study("planted", tmp_path / "new", quick=True, jobs=1)      # the same measure resumes


def test_cells_measured_by_the_face_test_before_its_cohens_d_tie_break_are_refused_saying_so(planted, monkeypatch, tmp_path):
    """The tie-break moved to the larger Cohen's d (2026-12-04) without FACE_TEST changing: a folder of cells chosen
    with ties to the lowest index was read beside new ones. Now the header differs, and the refusal names both."""
    from downpour.studies.trained import FACE_TEST
    old = "unit chosen on lfw's training part, 5 control draws"             # the string until 2026-12-04
    assert FACE_TEST != old and "Cohen's d" in FACE_TEST
    monkeypatch.setattr(Planted, "measured_by", old)
    run_study("planted", tmp_path, quick=True, jobs=1)
    monkeypatch.setattr(Planted, "measured_by", FACE_TEST)
    with pytest.raises(ConfigError, match=r"measured_by differ; its cells were measured by \"unit chosen on lfw's "
                                          r"training part, 5 control draws\", this version measures .*Cohen's d"):
        run_study("planted", tmp_path, quick=True, jobs=1)
    for name in ("first-layer", "templates", "mechanisms", "architectures", "flat-skipping"):
        assert "ties to the larger Cohen's d" in studies.study_class(name).measured_by, name
    # and the invariance ranges, since the same day the mean over the units tied at the top
    assert "the mean over the units tied at the top" in studies.study_class("mechanisms").measured_by


def test_a_folder_refused_before_its_first_cell_is_taken_over_and_a_context_follows_its_settings(planted, tmp_path,
                                                                                                  monkeypatch):
    """A folder whose run failed before any cell was locked to those settings; and context.json, the study's
    calibration, was reused whatever settings the folder's cells were run with next."""
    prepared = []
    monkeypatch.setattr(Planted, "prepare", lambda self: prepared.append(self.sets) or {"made_with": len(prepared)},
                        raising=False)
    (tmp_path / "cells.jsonl").write_text(json.dumps({"study": "planted", "quick": True, "sets": [["train.steps", 5]]})
                                          + "\n")
    (tmp_path / "context.json").write_text('{"made_with": "those settings"}')   # no digest: written before it existed
    run_study("planted", tmp_path, quick=True, jobs=1)                  # not "holds a study run with other settings"
    assert len(CALLS) == 6 and len(prepared) == 1
    run_study("planted", tmp_path, quick=True, jobs=1)                  # the same settings: the same calibration
    assert len(prepared) == 1
    (tmp_path / "cells.jsonl").unlink()
    run_study("planted", tmp_path, quick=True, jobs=1, sets=["train.steps=7"])
    assert len(prepared) == 2
    assert json.loads((tmp_path / "study.json").read_text())["context"] == {"made_with": 2}


def test_a_context_without_its_digest_is_kept_only_for_the_cells_run_with_it(planted, tmp_path, monkeypatch, capsys):
    """A context.json without its settings' digest was taken as made for the current settings: one made for other
    settings, its digest deleted (or written before it), calibrated the next study run in the folder, unsaid. An
    old folder's, whose cells.jsonl holds cells of these settings, is still kept, and its cells re-used."""
    prepared = []
    monkeypatch.setattr(Planted, "prepare", lambda self: prepared.append(self.sets) or {"made_with": len(prepared)},
                        raising=False)
    path = tmp_path / "context.json"

    def undigested() -> None:
        path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "settings_digest"}))

    run_study("planted", tmp_path, quick=True, jobs=1, sets=["train.steps=7"])
    (tmp_path / "cells.jsonl").unlink()
    undigested()
    capsys.readouterr()
    run_study("planted", tmp_path, quick=True, jobs=1)                     # other settings: computed again, said
    assert len(prepared) == 2 and json.loads((tmp_path / "study.json").read_text())["context"] == {"made_with": 2}
    assert "has no settings_digest" in capsys.readouterr().err
    undigested()                     # an old folder: its cells ran with this context, under these settings
    CALLS.clear()
    run_study("planted", tmp_path, quick=True, jobs=1)
    assert CALLS == [] and len(prepared) == 2 and "kept, as the calibration" in capsys.readouterr().err
    assert "settings_digest" in json.loads(path.read_text())      # said once: the digest is written now
    run_study("planted", tmp_path, quick=True, jobs=1)
    assert len(prepared) == 2 and "context.json" not in capsys.readouterr().err


def test_an_out_folder_holding_other_things_and_no_study_is_refused_and_left_as_it_was(planted, tmp_path, capsys):
    """`--out docs` ran the study into the docs folder: cells.jsonl, context.json, study.json, study.html and
    figures/ written among the pages. A study's own folder, or an empty one, is still taken."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "studies.md").write_text("# pages\n")
    (docs / ".gitkeep").write_text("")
    assert main(["study", "planted", "--quick", "--out", str(docs)]) == 2
    err = capsys.readouterr().err
    assert str(docs) in err and "studies.md" in err and "no study" in err
    assert sorted(p.name for p in docs.iterdir()) == [".gitkeep", "studies.md"] and not CALLS
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".gitkeep").write_text("")
    run_study("planted", empty, quick=True, jobs=1)
    (empty / "notes.md").write_text("mine\n")         # a study's folder with the user's notes: resumed
    run_study("planted", empty, quick=True, seeds=4, jobs=1)
    assert len(CALLS) == 8


@pytest.mark.parametrize("command", [["analyze"], ["report"], ["train", "--resume"]])
def test_a_study_folder_given_as_a_run_is_named_with_its_report_or_the_command_that_finishes_it(
        planted, tmp_path, capsys, command):
    """`downpour report studies/x` said "not a downpour run directory (no config.toml); give the --out directory of
    a `downpour train` run": a study keeps no run, so the user was sent looking for one."""
    run_study("planted", tmp_path, quick=True, jobs=1)
    capsys.readouterr()
    assert main([*command, str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"is a `downpour study planted` folder, not a run: its report is {str(tmp_path / 'study.html')!r}" in err
    (tmp_path / "study.html").unlink()                      # as a study stopped before its report leaves it
    assert main([*command, str(tmp_path)]) == 2
    assert f"stopped before its report: `downpour study planted --quick --out {tmp_path}` again finishes it" in \
        capsys.readouterr().err


class Other(Planted):
    name = "other"


def test_a_folder_of_another_study_or_setting_is_refused_naming_the_study_it_holds(planted, monkeypatch, tmp_path):
    """`study costs --out F` over `study staleness --quick`'s F named only "cells_defined, conditions, resolved,
    study differ": not which study the folder holds."""
    monkeypatch.setitem(studies.STUDIES, "other", f"{__name__}:Other")
    run_study("planted", tmp_path, quick=True, jobs=1)
    with pytest.raises(ConfigError, match="holds the cells of `downpour study planted --quick`, not of "
                                          "`downpour study other --quick`: another study's folder; use another --out"):
        run_study("other", tmp_path, quick=True, jobs=1)     # (not its keys, nor "an unnamed earlier measure")
    with pytest.raises(ConfigError, match="holds the cells of `downpour study planted --quick`, not of "
                                          "`downpour study planted`: "):
        run_study("planted", tmp_path, quick=False, seeds=3, jobs=1)
