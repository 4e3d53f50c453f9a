"""A study on data of your own: the refusals that name the studies that take it, and the note of the files its
cells skipped."""
import json

import numpy as np
import pytest

from downpour import studies
from downpour.config import ConfigError
from downpour.studies.base import Condition
from downpour.studies import study_class
from downpour.studies.run import _check_sets, _pair, run_study
from planted_study import Planted
from planted_study import planted  # noqa: F401 (a fixture)


TAKE_YOUR_DATA = "the studies that train on data of your own .--set data.source, data.path.: "


@pytest.mark.parametrize("study, key", [("staleness", "data.source=folder"), ("costs", "data.path=/tmp/photos"),
                                        ("staleness", "data.path=/tmp/photos")])
def test_a_refused_data_key_names_the_studies_that_take_your_data(study, key, tmp_path):
    """`downpour study costs --set data.source=folder --set data.path=DIR` was refused with its reason alone: a
    user with a folder of their own photos was not told which study would train on it. Each study named takes one.
    (`study staleness --set data.path=DIR` was told by a cell's config to set data.source too, which the study then
    refused as its own: until 2026-12-06.)"""
    from PIL import Image

    target = study_class(study)(quick=True, sets=[_pair(key)])
    with pytest.raises(ConfigError, match=TAKE_YOUR_DATA + "(.*)$") as err:
        _check_sets(target, target.conditions())
    named = str(err.value).rsplit(": ", 1)[1].split(", ")
    assert named == ["templates", "flat-skipping", "mechanisms", "first-layer", "architectures"]
    for i in range(3):
        Image.fromarray(np.full((40, 40), 60 * i, np.uint8)).save(tmp_path / f"{i}.png")
    for name in named:
        taker = study_class(name)(quick=True, sets=[_pair("data.source=folder"), _pair(f"data.path={tmp_path}")])
        _check_sets(taker, taker.conditions())


def test_a_refused_analysis_key_says_how_to_measure_a_concept_of_your_own():
    """`--set analysis.dataset=DIR` on a study was refused without a word on how to measure one's own concept."""
    target = study_class("first-layer")(quick=True, sets=[_pair("analysis.dataset=/tmp/concept")])
    with pytest.raises(ConfigError, match="keeps it as designed: a study measures its cells itself .*train one run "
                                          ".*downpour analyze RUN --set analysis.dataset=DIR --set analysis.positive="):
        _check_sets(target, target.conditions())


def test_a_study_on_your_folder_counts_the_files_its_cells_skipped(tmp_path):
    """`downpour study first-layer --quick --set data.source=folder --set data.path=DIR` over a folder with 2 corrupt
    files: each of its 8 cells skipped them, named in the log 8 times, and study.json and study.html said nothing."""
    from PIL import Image

    from downpour.studies.data_note import data_note, data_sentence
    from downpour.studies.html import write_html

    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (40 + 8 * i, 48), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    target = study_class("first-layer")(quick=True, sets=[_pair("data.source=folder"), _pair(f"data.path={tmp_path}")])
    note = data_note(target.cell_config(target.conditions()[0], 0))
    assert (note["n_images"], note["n_skipped"], note["skipped"][0]["file"]) == (4, 1, str(tmp_path / "bad.jpg"))
    result = {"study": "first-layer", "question": "q", "command": "c", "quick": True, "seeds": [0, 1], "verdict": "v",
              "cells": [], "seconds": 1.0, "figures": [], "data": note}
    page = write_html(result, tmp_path / "study.html").read_text()
    assert f"The cells read 4 images of {tmp_path}; 1 file skipped, unreadable or too small, by every cell " \
           f"(first: {tmp_path / 'bad.jpg'}: UnidentifiedImageError" in page
    assert data_note(study_class("first-layer")(quick=True, sets=[]).cell_config(target.conditions()[0], 0)) is None
    assert data_sentence(None) == ""


def _folder(path, tiny=0, bad=0):
    """4 readable grey photos in ``path``, ``tiny`` of 5x5 (smaller than a 32x32 patch) and ``bad`` corrupt files."""
    from PIL import Image

    path.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (40 + 8 * i, 48), dtype=np.uint8)).save(path / f"{i}.png")
    for i in range(tiny):
        Image.fromarray(rng.integers(0, 256, (5, 5), dtype=np.uint8)).save(path / f"tiny{i}.png")
    for i in range(bad):
        (path / f"bad{i:02}.jpg").write_bytes(b"not a jpeg")
    return path


class SizesVaried(Planted):
    """A study whose conditions read the user's folder at two patch sizes, and a third only whitening differs in."""

    name = "sizes-varied"

    def conditions(self):
        return [Condition("p32", {"k": 1}, (("data.mode", "patches"), ("data.size", 32))),
                Condition("p8", {"k": 2}, (("data.mode", "patches"), ("data.size", 8))),
                Condition("p8z", {"k": 3}, (("data.mode", "patches"), ("data.size", 8), ("data.whiten", "zca")))]


def test_a_study_note_says_which_cells_skipped_which_files_where_its_conditions_vary_the_data(tmp_path, monkeypatch):
    """The note loaded the first condition's data alone and said "by every cell": a study whose conditions vary
    data.size in patch mode skips a 20x20 image at 32 and reads it at 8, and the note said 2 skipped by every cell."""
    from PIL import Image

    from downpour.studies.data_note import data_sentence

    monkeypatch.setitem(studies.STUDIES, "sizes-varied", f"{__name__}:SizesVaried")
    folder = _folder(tmp_path / "d", bad=1)
    Image.fromarray(np.full((20, 20), 128, dtype=np.uint8)).save(folder / "small.png")
    sets = ["data.source=folder", f"data.path={folder}"]
    run_study("sizes-varied", tmp_path / "s", quick=True, jobs=1, sets=sets)
    note = json.loads((tmp_path / "s" / "study.json").read_text())["data"]
    by = {tuple(s["conditions"]): s for s in note["settings"]}
    assert sorted(by) == [("p32",), ("p8", "p8z")]          # whitening alone reads the same files: one load
    assert {k: (s["n_skipped"], s["differs"]) for k, s in by.items()} == {("p32",): (2, {"size": 32}),
                                                                         ("p8", "p8z"): (1, {"size": 8})}
    assert [e["file"] for e in by["p8", "p8z"]["skipped"]] == [str(folder / "bad00.jpg")]
    assert note["n_skipped"] == 2 and {e["file"] for e in note["skipped"]} == {str(folder / "bad00.jpg"),
                                                                                 str(folder / "small.png")}
    said = data_sentence(note)
    assert "by every cell" not in said
    assert said.startswith(f"The cells' data settings skipped different files of {folder}")
    assert "p32 (data.size = 32) read 5 images, 2 files skipped" in said
    assert "p8, p8z (data.size = 8) read 5 images, 1 file skipped" in said
    (folder / "small.png").unlink()                          # the same files skipped at both sizes: "by every cell"
    run_study("sizes-varied", tmp_path / "t", quick=True, jobs=1, sets=sets)
    note = json.loads((tmp_path / "t" / "study.json").read_text())["data"]
    assert "settings" not in note and "1 file skipped, unreadable or too small, by every cell" in data_sentence(note)


def test_a_study_notes_load_does_not_log_the_cells_warnings_again(tmp_path, caplog):
    """The note loads the first cell's data once more after the cells ran and logged its skipped and enlarged files:
    until 2026-12-06 the log said each of them again (the note itself names the skipped ones)."""
    import logging

    from downpour.data.pipeline import open_data
    from downpour.studies.data_note import data_note

    folder = _folder(tmp_path / "d", tiny=1, bad=2)
    target = study_class("first-layer")(quick=True, sets=[_pair("data.source=folder"), _pair(f"data.path={folder}")])
    cfg = target.cell_config(target.conditions()[0], 0)
    with caplog.at_level(logging.WARNING, logger="downpour.data"):
        note = data_note(cfg)
    assert note["n_skipped"] == 2
    assert not [r.getMessage() for r in caplog.records if "skipped" in r.getMessage() or "enlarged" in r.getMessage()]
    with caplog.at_level(logging.WARNING, logger="downpour.data"):   # a cell's load says both
        open_data(cfg.data, cfg.seed)
    said = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("skipped ") for m in said) and any(m.startswith("crops mode enlarged") for m in said)


def test_a_study_note_names_every_skipped_file_and_says_read_not_trained_on(tmp_path):
    """study.json named the first 3 of 25 bad files, the log the first 20 of a cell and the cells' data.json were gone,
    yet the line said 'the log each'; and in patch mode a 5x5 image counted among the images 'trained on'."""
    from downpour.studies.data_note import data_note, data_sentence

    folder = _folder(tmp_path / "d", tiny=1, bad=25)
    target = study_class("first-layer")(quick=True, sets=[_pair("data.source=folder"), _pair(f"data.path={folder}"),
                                                           _pair("data.mode=patches")])
    note = data_note(target.cell_config(target.conditions()[0], 0))
    assert (note["n_images"], note["n_skipped"], len(note["skipped"])) == (5, 26, 26)
    said = data_sentence(note)
    assert said.startswith(f"The cells read 5 images of {folder}; 26 files skipped") and "trained on" not in said
    assert said.endswith("study.json's data names every one.") and "the log each" not in said


def test_a_cached_study_on_your_folder_keeps_its_note_and_does_not_load_the_folder_again(planted, tmp_path,
                                                                                          monkeypatch):
    """Every run of a study loaded the first cell's data again, all cells cached too (up to 1 GiB decoded for a
    re-render), and said what the folder holds now, not what the cached cells read."""
    from downpour.studies import data_note as module

    folder = _folder(tmp_path / "d", bad=1)
    sets = ["data.source=folder", f"data.path={folder}"]
    run_study("planted", tmp_path / "s", quick=True, jobs=1, sets=sets)
    first = json.loads((tmp_path / "s" / "study.json").read_text())["data"]
    assert first["n_skipped"] == 1
    (folder / "bad00.jpg").unlink()                     # the folder changed after the cells ran

    def refuse(*_):
        raise AssertionError("the folder was loaded again, every cell cached")

    monkeypatch.setattr(module, "open_data", refuse)
    run_study("planted", tmp_path / "s", quick=True, jobs=1, sets=sets)
    assert json.loads((tmp_path / "s" / "study.json").read_text())["data"] == first
