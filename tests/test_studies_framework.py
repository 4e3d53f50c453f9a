"""The study framework on a planted study: cached cells and resume, refused mixes, the intervals,
the command line."""
import html
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from downpour import studies
from downpour.cli import main
from downpour.config import ConfigError, load_config
from downpour.studies.about import ABOUT, SECOND
from downpour.studies.base import Condition, Study
from downpour.studies import study_class
from downpour.studies.machine import platform_id
from downpour.train.machine import cpu_fields
from downpour.studies.cell_hash import ADDED_KEYS
from downpour.studies.run import _check_sets, _pair, run_study
from downpour.studies.stats import (effect_words, family_paragraph, flips, holm, mean_ci, paired_difference,
                                    paired_p, paired_proportions, paired_test, proportion_words, record_test, wilson)

CALLS: list[tuple[str, int]] = []


class Planted(Study):
    """Two conditions whose figures are known functions of the seed; no training."""

    name = "planted"
    question = "Does b beat a?"
    base = "teacher-student"
    seeds_quick = 3
    quick_what = "planted figures"

    def conditions(self):
        return [Condition("a", {"k": 1}, (("train.lr", 0.1),)), Condition("b", {"k": 2}, (("train.lr", 0.2),))]

    def run_cell(self, condition, seed, context):
        CALLS.append((condition.name, seed))
        cfg = self.cell_config(condition, seed)
        return {"lr": cfg.train.lr, "seed": float(cfg.seed), "x": float(seed % 2) + (condition.name == "b"),
                "steps": float(cfg.train.steps)}

    def summarise(self, conditions, cells, seeds):
        return [{"condition": c.name, "group": "", "params": c.params, "n": len(seeds),
                 "figures": {"x": list(mean_ci([cells[(c.name, s)]["x"] for s in seeds]))}} for c in conditions]

    def verdict(self, rows):
        return f"b minus a: {rows[1]['figures']['x'][0] - rows[0]['figures']['x'][0]:.1f}"


def quick_warning(seeds):
    """What the runner puts first in a quick verdict of :class:`Planted` (run.verdict_text)."""
    return f"This is the quick setting (planted figures, {seeds} seeds): a smoke test of the machinery, not an answer."


@pytest.fixture
def planted(monkeypatch):
    monkeypatch.setitem(studies.STUDIES, "planted", f"{__name__}:Planted")
    CALLS.clear()


def test_cells_are_cached_and_resumed(planted, tmp_path):
    run_study("planted", tmp_path, quick=True, jobs=1)
    assert len(CALLS) == 6
    result = json.loads((tmp_path / "study.json").read_text())
    assert result["verdict"] == (f"{quick_warning(3)}\n\nb minus a: 1.0") and result["cells_run"] == 6
    # a second run finds every cell; more seeds run only the new ones
    run_study("planted", tmp_path, quick=True, jobs=1)
    assert len(CALLS) == 6
    run_study("planted", tmp_path, quick=True, seeds=4, jobs=1)
    assert sorted(CALLS[6:]) == [("a", 3), ("b", 3)]


def test_seeds_the_folder_holds_beyond_those_asked_for_are_said_not_silently_left_out(planted, tmp_path, capsys):
    run_study("planted", tmp_path, quick=True, seeds=5, jobs=1)
    capsys.readouterr()
    run_study("planted", tmp_path, quick=True, jobs=1)             # the default 3: study.json now holds 3 of 5
    err = capsys.readouterr().err
    assert "also holds seeds 3, 4, left out of this summary; --seeds 5 uses them" in err   # ("seed(s)" until 2026-12-06)
    assert "planted: 2 conditions x 3 seeds; 0 cells to run" in err
    run_study("planted", tmp_path, quick=True, seeds=4, jobs=1)
    assert "also holds seed 4, left out of this summary; --seeds 5 uses them" in capsys.readouterr().err
    run_study("planted", tmp_path, quick=True, seeds=5, jobs=1)
    assert "also holds" not in capsys.readouterr().err


def test_each_cell_records_its_platform_and_a_folder_resumed_on_another_says_so(planted, tmp_path, capsys):
    """Q7's sae lfw probe read 0.860 on one VM and 0.840 on the next, the same code (a cell reproduces bit for bit
    on one platform, not across MKL's kernels), and no file of either folder said where its cells ran."""
    import torch
    run_study("planted", tmp_path, quick=True, seeds=2, jobs=1)
    assert "platforms" not in capsys.readouterr().err
    path = tmp_path / "cells.jsonl"
    header, *lines = path.read_text().splitlines()
    here = json.loads(lines[0])["cost"]["platform"]
    assert here["torch"] == torch.__version__ and here["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    result = json.loads((tmp_path / "study.json").read_text())
    assert result["platforms"] == [{"id": platform_id(here), "platform": here, "cells": 4}]
    assert result["platforms_note"] == "" and "Machines." not in (tmp_path / "study.html").read_text()
    cells = [json.loads(line) for line in lines]
    for cell in cells:                               # the folder's cells ran on another machine
        cell["cost"]["platform"] = {**here, "cpu": "Another CPU", "numpy": "0.0"}
    path.write_text("\n".join([header, *map(json.dumps, cells)]) + "\n")
    run_study("planted", tmp_path, quick=True, seeds=3, jobs=1)     # resumed here: 2 cells more
    err = capsys.readouterr().err
    other = platform_id({**here, "cpu": "Another CPU", "numpy": "0.0"})
    note = (f"its cells ran on 2 platforms (cpu, numpy differ: {other}: Another CPU, 0.0 (4 cells); {platform_id(here)}: "
            f"{here['cpu']}, {here['numpy']} (2 cells)); a cell's figures are reproducible from its seed on its own "
            "platform only")
    assert note in err
    result = json.loads((tmp_path / "study.json").read_text())
    assert [(p["id"], p["cells"]) for p in result["platforms"]] == [(other, 4), (platform_id(here), 2)]
    assert result["platforms_note"].startswith(note) and "(docs/studies.md, Q7)" in result["platforms_note"]
    assert html.escape("Its" + note[3:]) in (tmp_path / "study.html").read_text()


def test_a_cell_records_its_cpus_family_and_model_which_a_generic_model_name_hides(planted, tmp_path, capsys):
    """The VM of 2026-12-04 (AVX-512) and the one of 2026-12-05 (AVX2, family 25 model 1) both named themselves "AMD
    EPYC": Q4's digits probes moved in their last digit between them, and the cells' platform could not say why."""
    info = "processor\t: 0\nmodel name\t: AMD EPYC\ncpu family\t: 25\nmodel\t\t: 1\nstepping\t: 1\n" \
           "processor\t: 1\nmodel name\t: AMD EPYC\ncpu family\t: 25\nmodel\t\t: 1\nstepping\t: 1\n"
    assert cpu_fields(info, "x86_64") == {"cpu": "AMD EPYC", "cpu_id": "family 25 model 1 stepping 1"}
    assert cpu_fields("", "x86_64") == {"cpu": "x86_64"}
    run_study("planted", tmp_path, quick=True, seeds=2, jobs=1)
    path = tmp_path / "cells.jsonl"
    header, *lines = path.read_text().splitlines()
    cells = [json.loads(line) for line in lines]
    here = cells[0]["cost"]["platform"]
    for cell in cells:                  # cached before the id was recorded: not another platform for lacking it
        cell["cost"]["platform"] = {k: v for k, v in here.items() if k != "cpu_id"}
    path.write_text("\n".join([header, *map(json.dumps, cells)]) + "\n")
    run_study("planted", tmp_path, quick=True, seeds=3, jobs=1)
    assert "platforms" not in capsys.readouterr().err
    header, *lines = path.read_text().splitlines()
    cells = [json.loads(line) for line in lines]
    for k, cell in enumerate(cells):    # the same name, another CPU
        cell["cost"]["platform"] = {**here, "cpu": "AMD EPYC", "cpu_id": f"family 25 model {1 if k < 4 else 17}"}
    path.write_text("\n".join([header, *map(json.dumps, cells)]) + "\n")
    run_study("planted", tmp_path, quick=True, seeds=3, jobs=1)
    err = capsys.readouterr().err
    assert "its cells ran on 2 platforms (cpu_id differ: " in err and ": family 25 model 1 (4 cells); " in err
    assert ": family 25 model 17 (2 cells))" in err


def test_a_cell_records_its_cpus_simd_flags_which_its_name_and_model_do_not_give(planted, tmp_path, capsys):
    """2026-12-05: the same cells read differently on a VM with AVX-512 and on one with AVX2 only, as far apart as the
    seeds' spread for some arms (docs/studies.md, Q7), and a cell's platform did not say which instructions it had."""
    info = ("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 fma avx avx2 avx512f avx512_bf16 amx_tile\n"
            "processor\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: fpu\n")
    assert cpu_fields(info, "x86_64") == {"cpu": "AMD EPYC", "simd": "fma avx2 avx512f avx512_bf16 amx_tile"}
    assert cpu_fields("model name\t: AMD EPYC\nflags\t\t: fpu sse2\n", "x86_64") == {"cpu": "AMD EPYC", "simd": ""}
    run_study("planted", tmp_path, quick=True, seeds=2, jobs=1)
    path = tmp_path / "cells.jsonl"
    header, *lines = path.read_text().splitlines()
    cells = [json.loads(line) for line in lines]
    here = cells[0]["cost"]["platform"]
    for k, cell in enumerate(cells):    # the same name and model, AVX-512 on the first two cells' machine
        cell["cost"]["platform"] = {**here, "cpu_id": "family 25 model 1 stepping 1",
                                    "simd": "fma avx2 avx512f" if k < 2 else "fma avx2"}
    path.write_text("\n".join([header, *map(json.dumps, cells)]) + "\n")
    run_study("planted", tmp_path, quick=True, seeds=2, jobs=1)
    assert "its cells ran on 2 platforms (simd differ: " in capsys.readouterr().err
    assert [p["cells"] for p in json.loads((tmp_path / "study.json").read_text())["platforms"]] == [2, 2]


def test_cells_cached_before_their_platform_was_recorded_are_kept_and_counted_as_unknown(planted, tmp_path, capsys):
    """A line without ``cost.platform`` (cached before 2026-12-05) is a cell kept as it is, not run again, and neither
    another machine nor a reason to say the cells ran on several; study.json counts it as unknown."""
    run_study("planted", tmp_path, quick=True, seeds=2, jobs=1)
    path = tmp_path / "cells.jsonl"
    header, *lines = path.read_text().splitlines()
    cells = [json.loads(line) for line in lines]
    here = cells[0]["cost"]["platform"]
    for cell in cells[:3]:
        cell["cost"] = {k: v for k, v in cell["cost"].items() if k != "platform"}
    path.write_text("\n".join([header, *map(json.dumps, cells)]) + "\n")
    calls = len(CALLS)
    run_study("planted", tmp_path, quick=True, seeds=2, jobs=1)
    assert len(CALLS) == calls and "platforms" not in capsys.readouterr().err
    result = json.loads((tmp_path / "study.json").read_text())
    assert result["platforms"] == [{"id": platform_id(here), "platform": here, "cells": 1}, {"id": "unknown", "cells": 3}]
    assert result["platforms_note"] == "" and "Machines." not in (tmp_path / "study.html").read_text()


def test_the_cost_is_of_the_studys_own_seeds(planted, tmp_path):
    """Asked for fewer seeds than the folder holds, study.json said seeds [0, 1] and the cost of three."""
    run_study("planted", tmp_path, quick=True, seeds=3, jobs=1)
    path = tmp_path / "cells.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    for i, line in enumerate(lines):                 # each cell a known cost: 1, 2, 4, ... seconds
        line["cost"] = {"seconds": float(2 ** i), "cpu_seconds": 0.0}
    path.write_text("\n".join([path.read_text().splitlines()[0], *map(json.dumps, lines)]) + "\n")
    run_study("planted", tmp_path, quick=True, seeds=2, jobs=1)
    result = json.loads((tmp_path / "study.json").read_text())
    total = sum(line["cost"]["seconds"] for line in lines if line["seed"] < 2)
    assert result["cells_cost"] == {"seconds": total, "cpu_seconds": 0.0} and result["cells_run"] == 0
    assert result["jobs"] == 0           # the processes this run's cells took: none ran (it said 1, from --jobs)
    # study.html said only this run's time ("0.4 s" for cells that took 32.6 s)
    assert f"its cells took {total} s (0.0 CPU-s) over every run of the folder; this run" in (
        tmp_path / "study.html").read_text()


def test_a_cut_line_is_run_again(planted, tmp_path):
    run_study("planted", tmp_path, quick=True, jobs=1)
    path = tmp_path / "cells.jsonl"
    text = path.read_text()
    path.write_text(text[: len(text) - 12])      # a kill in the middle of the last line
    CALLS.clear()
    run_study("planted", tmp_path, quick=True, jobs=1)
    assert len(CALLS) == 1
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_damaged_lines_run_again_and_a_damaged_header_is_named(planted, tmp_path):
    run_study("planted", tmp_path, quick=True, jobs=1)
    path = tmp_path / "cells.jsonl"
    lines = path.read_bytes().splitlines()
    lines[1] = b"\xff\xfe" + lines[1][2:]                                    # bytes that are not UTF-8
    lines[2] = json.dumps({"condition": "a", "seed": 1}).encode()             # valid JSON, no figures
    path.write_bytes(b"\n".join(lines) + b"\n")
    CALLS.clear()
    run_study("planted", tmp_path, quick=True, jobs=1)
    assert len(CALLS) == 2
    # a bad byte inside a figure's name: the line parsed (the name read as U+FFFD), the rewrite kept it as
    # "\ufffd", and every later run failed on the missing figure
    lines = path.read_bytes().splitlines()
    name = next(iter(json.loads(lines[1])["figures"])).encode()
    lines[1] = lines[1].replace(b'"' + name + b'"', b'"' + name[:1] + b"\xff" + name[2:] + b'"', 1)
    path.write_bytes(b"\n".join(lines) + b"\n")
    CALLS.clear()
    run_study("planted", tmp_path, quick=True, jobs=1)
    assert len(CALLS) == 1
    lines = path.read_text().splitlines()
    row = json.loads(lines[1])
    row["figures"]["\ufffd" + next(iter(row["figures"]))] = row["figures"].pop(next(iter(row["figures"])))
    lines[1] = json.dumps(row)                                                # as a rewrite writes it: escaped
    path.write_text("\n".join(lines) + "\n")
    CALLS.clear()
    run_study("planted", tmp_path, quick=True, jobs=1)
    assert len(CALLS) == 1
    path.write_text(path.read_text()[:20])                                   # the header cut short
    with pytest.raises(ConfigError, match="the study's settings, is damaged"):
        run_study("planted", tmp_path, quick=True, jobs=1)
    path.write_text("5\n")                                                    # JSON, not the settings: AttributeError
    with pytest.raises(ConfigError, match="the study's settings, is damaged"):
        run_study("planted", tmp_path, quick=True, jobs=1)


def test_a_cell_whose_figure_was_renamed_is_named_and_an_empty_cache_is_a_new_one(planted, tmp_path):
    """'success' flipped to 'sucdess' in one line: a bare KeyError traceback from the summary, naming neither the
    file nor the line; an empty cells.jsonl read as 'a study run with other settings'."""
    run_study("planted", tmp_path, quick=True, jobs=1)
    path = tmp_path / "cells.jsonl"
    lines = path.read_text().splitlines()
    row = json.loads(lines[2])
    row["figures"]["y"] = row["figures"].pop("x")
    path.write_text("\n".join([*lines[:2], json.dumps(row), *lines[3:]]) + "\n")
    with pytest.raises(ConfigError, match=rf"cells.jsonl': the cell\(s\) {row['condition']} seed {row['seed']} lack "
                                          "figure 'x'.*delete those lines and run again"):
        run_study("planted", tmp_path, quick=True, jobs=1)
    path.write_text("")
    CALLS.clear()
    run_study("planted", tmp_path, quick=True, jobs=1)
    assert len(CALLS) == 6


class PlantedWithADivergedOutcome(Planted):
    """Planted whose cells record whether their run diverged as an outcome, every figure beside it (staleness's do)."""

    counts_out_diverged = False     # (as staleness: its diverged cells are not counted out, studies/diverged.py)

    def run_cell(self, condition, seed, context):
        return {**super().run_cell(condition, seed, context), "diverged": float(seed == 0)}


def _edit_cells(folder, edit):
    """A study folder's cells.jsonl rewritten with ``edit(row)`` applied to each cell's line, as a hand edit would."""
    path = folder / "cells.jsonl"
    header, *rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        edit(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in [header, *rows]))


def _rename(row, figure, to):
    row["figures"][to] = row["figures"].pop(figure)


def test_an_edited_line_of_a_cell_whose_outcome_is_diverged_is_named(monkeypatch, tmp_path):
    """Since the measured studies' diverged cells (their design's figures alone) were let lack a figure, a staleness
    cell that diverged, which holds every figure, lacked one by an edit unnamed: a bare KeyError traceback."""
    monkeypatch.setitem(studies.STUDIES, "planted", f"{__name__}:PlantedWithADivergedOutcome")
    run_study("planted", tmp_path, quick=True, jobs=1)
    _edit_cells(tmp_path, lambda row: row["figures"].pop("x") if (row["condition"], row["seed"]) == ("b", 0) else None)
    with pytest.raises(ConfigError, match=r"the cell\(s\) b seed 0 lack figure 'x'.*delete those lines and run again"):
        run_study("planted", tmp_path, quick=True, jobs=1)


def test_a_damaged_context_is_named(planted, tmp_path):
    run_study("planted", tmp_path, quick=True, jobs=1)
    (tmp_path / "context.json").write_text('{"cut')                           # a kill mid-write: JSONDecodeError
    with pytest.raises(ConfigError, match="context.json' is damaged: delete it"):
        run_study("planted", tmp_path, quick=True, jobs=1)


def test_a_seed_left_out_of_an_interval_is_said(planted, tmp_path, monkeypatch):
    """A non-finite figure (a diverged run) leaves its seed out of the interval while n counts every seed."""
    plain = Planted.run_cell
    monkeypatch.setattr(Planted, "run_cell", lambda self, c, seed, ctx: {**plain(self, c, seed, ctx),
                                                                         **({"x": math.nan} if (c.name, seed) == ("b", 1) else {})})
    run_study("planted", tmp_path, quick=True, jobs=1)
    rows = {r["condition"]: r for r in json.loads((tmp_path / "study.json").read_text())["cells"]}
    assert rows["b"]["missing"] == {"x": 1} and "missing" not in rows["a"] and rows["b"]["n"] == 3
    assert "(1 of 3 seeds left out)" in (tmp_path / "study.html").read_text()


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


@pytest.mark.parametrize("study, key, quick, said", [
    ("staleness", "cluster.grad_noise=0.05", True, "varies it itself"),
    ("first-layer", "train.log_every=50", True, "varies it itself"),  # its cost curve missed stage 1's last step
    # inside a varied term: it reached the baseline, lost in the term's cells (a penalty's keys are the study's own)
    ("costs", "objective.kl_sparsity.rho=0.2", False, "keeps it as designed: its baseline is reconstruction alone"),
    # the quick setting does not vary KL: every cell, "none" (reconstruction alone) included, carried it
    ("costs", "objective.kl_sparsity=1", True, "keeps it as designed: its baseline is reconstruction alone"),
    # read by no cell (the local runner), accepted and recorded; another runner crashed the measure or changed the design
    ("templates", "cluster.runner=simulated", True, "keeps it as designed: every cell trains on the local runner"),
    ("costs", "cluster.runner=simulated", True, "keeps it as designed: every cell trains on the local runner"),
    ("templates", "cluster.workers=2", True, "--set cluster.workers: no cell of study 'templates' reads it .cell "
                                             "'untied': the local runner reads no .cluster. setting .*keeps its runner"),
    ("staleness", "cluster.checkpoint_every=5", True, "the in-memory simulator writes nothing"),
    ("staleness", "train.log_every=7", True, "the in-memory simulator writes nothing"),
    # the server's rate: every cell learned at it, the study's train.lr (its rate axis) read by none
    ("staleness", "cluster.lr=0.05", False, "keeps it as designed: the study varies the server's learning rate itself"),
])
def test_a_key_a_study_sets_inside_its_cells_or_never_reads_is_refused_as_a_set(study, key, quick, said):
    cls = study_class(study)
    target = cls(quick=quick, sets=[_pair(key)])
    with pytest.raises(ConfigError, match=said):   # what run_study checks before any cell
        _check_sets(target, target.conditions())


def test_a_set_only_a_later_conditions_model_refuses_is_named_before_any_cell():
    """Only the first condition's config was built: the staleness study ran its 11 teacher cells and then
    died at its UFLDL arm, which has no teacher. (That study now keeps its model keys for its teacher arms,
    so the architectures study is the case here: its first arm is the cat network, a later one an RBM.)"""
    target = study_class("architectures")(quick=True, sets=[_pair("model.lcn=3")])
    with pytest.raises(ConfigError, match="model 'grbm-patches': unknown key 'model.lcn'"):
        _check_sets(target, target.conditions())


def test_a_swapped_in_model_takes_a_key_inside_a_cost_term():
    """objective.pooled_l2.eps became a term named 'pooled_l2.eps' when a condition swapped the model."""
    from downpour.studies.measure import config_with_model

    cfg = config_with_model("cat-demo", [("model.name", "multires-none"), ("objective.pooled_l2.eps", 0.001)], 0)
    assert cfg.objective["pooled_l2"]["eps"] == 0.001 and cfg.objective["pooled_l2"]["weight"] > 0


@pytest.mark.parametrize("key", ["data.source=faces", "data.path=/tmp/x.npy"])
def test_a_key_a_study_keeps_as_designed_is_refused_with_its_reason(key):
    """The costs study's held-out windows come from the built-in photographs whatever data.source says."""
    target = study_class("costs")(quick=True, sets=[_pair(key)])
    with pytest.raises(ConfigError, match="keeps it as designed: the held-out patches are windows"):
        _check_sets(target, target.conditions())


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


def test_a_term_set_off_by_its_weight_keeps_it_when_a_key_inside_it_is_set():
    """objective.kl_sparsity = 0 then objective.kl_sparsity.rho = 0.1 gave {rho: 0.1}: the weight fell to 3."""
    from downpour.models.registry import resolve

    cfg = resolve(load_config("ufldl-sae", [("objective.kl_sparsity", 0.0), ("objective.kl_sparsity.rho", 0.1)]))
    assert cfg.objective["kl_sparsity"] == {"weight": 0.0, "rho": 0.1}


def test_one_seed_is_refused_and_a_cell_raising_stopiteration_is_an_error_not_the_end(planted, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="--seeds must be >= 2"):   # its figures failed on infinite error bars
        run_study("planted", tmp_path / "one", quick=True, seeds=1, jobs=1)

    def stops(self, condition, seed, context):
        if (condition.name, seed) == ("b", 1):
            raise StopIteration
        return {"x": 1.0}

    monkeypatch.setattr(Planted, "run_cell", stops)
    with pytest.raises(RuntimeError, match="cell 'b', seed 1: StopIteration"):   # the run ended, cells lost, unsaid
        run_study("planted", tmp_path / "stop", quick=True, jobs=1)


def test_cells_see_the_condition_the_user_and_the_seed(planted, tmp_path):
    run_study("planted", tmp_path, quick=True, sets=["train.steps=7"], jobs=1)
    cells = [json.loads(line) for line in (tmp_path / "cells.jsonl").read_text().splitlines()[1:]]
    for c in cells:
        assert c["figures"]["lr"] == {"a": 0.1, "b": 0.2}[c["condition"]]
        assert c["figures"]["seed"] == c["seed"] and c["figures"]["steps"] == 7


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


def test_the_studies_that_run_the_face_test_name_it():
    from downpour.studies.trained import FACE_TEST, FACE_TEST_WITH_TWIN
    for name in ("first-layer", "templates", "mechanisms", "architectures"):      # each cell with its no-faces twin
        assert studies.study_class(name).measured_by.startswith(FACE_TEST_WITH_TWIN), name
    # and the one whose faces are warped for invariance curves says they are warped in pixels (since 2026-12-01)
    assert "invariance: faces warped in pixels" in studies.study_class("mechanisms").measured_by
    # ... and (since 2026-12-05, later) the sweeps to where the face is gone, shrinks anti-aliased, ends flagged
    assert "scale 1/32x to 8x, shifts to the whole side, turns to 180 degrees, shrinks anti-aliased, ranges at the " \
        "sweep's end flagged" in \
        studies.study_class("mechanisms").measured_by
    # ... and (since 2026-12-05, after that) the rotation ranges that go round past +-180 (downpour/analysis/circle.py)
    assert "rotation ranges wrap round the circle" in studies.study_class("mechanisms").measured_by
    assert studies.study_class("flat-skipping").measured_by == FACE_TEST            # one network, gated or not


def test_a_set_on_a_varied_key_or_a_typo_is_refused_before_any_cell(planted, tmp_path):
    with pytest.raises(ConfigError, match="varies it itself"):
        run_study("planted", tmp_path / "a", quick=True, sets=["train.lr=0.3"], jobs=1)
    with pytest.raises(ConfigError, match=r"^--set train.stepz=3: unknown key 'train.stepz'"):   # (was "the command line")
        run_study("planted", tmp_path / "b", quick=True, sets=["train.stepz=3"], jobs=1)
    with pytest.raises(ConfigError, match=r"^--set train.threads=abc: train.threads must be int"):
        run_study("planted", tmp_path / "c", quick=True, sets=["train.threads=abc"], jobs=1)
    assert CALLS == []


def test_cells_run_in_worker_processes(planted, tmp_path):
    """jobs=2 spawns processes that import this module's study: same cells as in process."""
    run_study("planted", tmp_path / "one", quick=True, jobs=1)
    run_study("planted", tmp_path / "two", quick=True, jobs=2)
    one, two = (json.loads((tmp_path / name / "study.json").read_text()) for name in ("one", "two"))
    assert one["cells"] == two["cells"] and (one["jobs"], two["jobs"]) == (1, 2)


class LeavesATemporaryRun(Planted):
    """Cell (a, 0) fails; every other trains (sleeps) in a temporary folder, as studies/trained.py does."""

    def run_cell(self, condition, seed, context):
        import tempfile
        import time

        if (condition.name, seed) == ("a", 0):        # with 2 workers: once the other is inside its cell
            deadline = time.monotonic() + 60
            while context["jobs"] > 1 and not os.path.exists(context["made"]) and time.monotonic() < deadline:
                time.sleep(0.05)
            raise RuntimeError("planted failure")
        with tempfile.TemporaryDirectory(prefix="downpour-cell-") as run:
            with open(context["made"], "a") as made:
                made.write(run + "\n")
            time.sleep(30)
        return {"x": 0.0}

    def prepare(self):                                  # (in the parent: a worker imports this module afresh)
        return {"made": self.made, "jobs": self.jobs}


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_study_that_stops_leaves_no_temporary_run_behind(planted, tmp_path, monkeypatch, jobs):
    """A failing cell (or Ctrl-C, a stop) terminates the pool: a worker killed mid-cell removed nothing, and left its
    run (up to 6.6 MB each) in the machine's temporary folder."""
    import tempfile

    monkeypatch.setitem(studies.STUDIES, "planted", f"{__name__}:LeavesATemporaryRun")
    monkeypatch.setattr(LeavesATemporaryRun, "made", str(tmp_path / "made.txt"), raising=False)
    monkeypatch.setattr(LeavesATemporaryRun, "jobs", jobs, raising=False)
    before = tempfile.gettempdir()
    with pytest.raises(RuntimeError, match="planted failure"):
        run_study("planted", tmp_path / "study", quick=True, jobs=jobs)
    made = (tmp_path / "made.txt").read_text().split() if (tmp_path / "made.txt").exists() else []
    # (jobs 1: (a, 0) runs first, in this process, and a failure unwinds every cell's folder: this case checks
    # that the process's temporary folder is its own again)
    assert (len(made) >= 1) == (jobs > 1) and not any(map(os.path.exists, made))
    assert tempfile.gettempdir() == before


class ReadsTheEnvironment(Planted):
    """Its figure is an environment variable, as a worker process sees it."""

    def run_cell(self, condition, seed, context):
        import os

        return {"x": float(os.environ["DOWNPOUR_TEST_X"])}


def test_workers_see_the_environment_of_the_study_they_run(planted, tmp_path, monkeypatch):
    """Workers fork from a fork server, which holds the environment it started with: a second study in the
    same process, the variable changed, had its cells read the first study's value."""
    monkeypatch.setitem(studies.STUDIES, "planted", f"{__name__}:ReadsTheEnvironment")
    for value in ("1", "2"):
        monkeypatch.setenv("DOWNPOUR_TEST_X", value)
        run_study("planted", tmp_path / value, quick=True, jobs=2)
        cells = json.loads((tmp_path / value / "study.json").read_text())["cells"]
        assert [row["figures"]["x"][0] for row in cells] == [float(value)] * 2


class Twinned(Planted):
    """A third condition that is condition a's run under another name (``same_run``)."""

    name = "twinned"

    def conditions(self):
        return [*super().conditions(), Condition("a-again", {"k": 1}, (("train.lr", 0.1),))]

    def same_run(self, condition):
        return condition.sets


def test_a_run_shared_by_two_conditions_runs_once_and_costs_are_recorded(monkeypatch, tmp_path):
    monkeypatch.setitem(studies.STUDIES, "twinned", f"{__name__}:Twinned")
    CALLS.clear()
    run_study("twinned", tmp_path, quick=True, jobs=1)
    assert sorted(CALLS) == [("a", s) for s in range(3)] + [("b", s) for s in range(3)]
    lines = [json.loads(line) for line in (tmp_path / "cells.jsonl").read_text().splitlines()[1:]]
    by = {(c["condition"], c["seed"]): c for c in lines}
    for s in range(3):
        assert by[("a-again", s)]["figures"] == by[("a", s)]["figures"]
        assert by[("a-again", s)]["cost"] == {"same_as": "a"}
        assert by[("a", s)]["cost"]["cpu_seconds"] >= 0 and by[("a", s)]["cost"]["seconds"] > 0
    cost = json.loads((tmp_path / "study.json").read_text())["cells_cost"]
    assert cost["seconds"] == pytest.approx(sum(by[(n, s)]["cost"]["seconds"] for n in "ab" for s in range(3)), abs=0.2)
    # resumed with one more seed: the twin is copied from the cache when its original is already there
    (tmp_path / "cells.jsonl").write_text("\n".join(
        [(tmp_path / "cells.jsonl").read_text().splitlines()[0]]
        + [json.dumps(c) for c in lines if c["condition"] != "a-again"]) + "\n")
    CALLS.clear()
    run_study("twinned", tmp_path, quick=True, jobs=1)
    assert CALLS == []
    again = [json.loads(line) for line in (tmp_path / "cells.jsonl").read_text().splitlines()[1:]]
    assert sorted(c["seed"] for c in again if c["condition"] == "a-again") == [0, 1, 2]

class EveryCellDiverges(Planted):
    """Every cell diverged, as a measured cell records it (its design's figures alone); the verdict and the
    figures read a trained figure, as every measured study's do."""

    def conditions(self):
        return [Condition("a", {}, ()), Condition("b", {"vs": "a"}, ())]

    def run_cell(self, condition, seed, context):
        return {"diverged": 1.0, "params": 5.0 + (condition.name == "b")}

    def summarise(self, conditions, cells, seeds):
        from downpour.studies.compare import compare_rows

        return compare_rows(conditions, cells, seeds, {"x": 0.1})

    def verdict(self, rows):
        return f"b minus a: {rows[1]['figures']['x'][0] - rows[0]['figures']['x'][0]:.1f}"

    def figures(self, rows, cells, folder):
        return [folder / f"{rows[0]['figures']['x'][0]}.png"]


def test_a_study_whose_every_cell_diverged_says_so_with_its_design_figures(monkeypatch, tmp_path):
    """Its verdict and figures indexed a trained figure no cell had (KeyError), after every cell had run."""
    monkeypatch.setitem(studies.STUDIES, "planted", f"{__name__}:EveryCellDiverges")
    run_study("planted", tmp_path, quick=True, jobs=1)
    result = json.loads((tmp_path / "study.json").read_text())
    assert result["verdict"].startswith(f"{quick_warning(3)}\n\nEvery one of the 6 cells diverged")
    assert result["figures"] == [] and "a (3 of 3 seeds); b (3 of 3 seeds)" in result["verdict"]
    assert [r["figures"]["params"][0] for r in result["cells"]] == [5.0, 6.0]
    assert "concludes nothing" in (tmp_path / "study.html").read_text()


def test_a_quick_study_whose_every_cell_diverged_still_says_it_is_the_quick_setting(monkeypatch, tmp_path):
    """The runner put the quick setting's warning before the study's own reading alone: where every cell diverged, the
    verdict `downpour study --quick` printed ("Every one of the 6 cells diverged ... Rerun it with a smaller learning
    rate") never said it was a few steps on 3 seeds. The full setting's stays the nothing-trained paragraph first."""
    monkeypatch.setitem(studies.STUDIES, "planted", f"{__name__}:EveryCellDiverges")
    run_study("planted", tmp_path / "quick", quick=True, jobs=1)
    quick = json.loads((tmp_path / "quick" / "study.json").read_text())["verdict"].split("\n\n")
    assert quick[0] == quick_warning(3) and quick[1].startswith("Every one of the 6 cells diverged")
    run_study("planted", tmp_path / "full", seeds=2, jobs=1)
    full = json.loads((tmp_path / "full" / "study.json").read_text())["verdict"]
    assert full.startswith("Every one of the 4 cells diverged") and "quick setting" not in full


class EveryCellDivergesAtItsOwnRates(EveryCellDiverges):
    """The same, its conditions setting train.lr themselves (as the architectures study's arms do)."""

    def conditions(self):
        return [Condition("a", {}, (("train.lr", 0.1),)), Condition("b", {"vs": "a"}, (("train.lr", 0.2),))]


def test_a_study_that_sets_its_own_rates_is_not_told_to_rerun_with_a_set_of_train_lr(monkeypatch, tmp_path):
    """The nothing-trained verdict advised `--set train.lr=...` to every study, and a study whose conditions
    set train.lr refuses that --set ("varies it itself"): the advice led to a refusal."""
    monkeypatch.setitem(studies.STUDIES, "planted", f"{__name__}:EveryCellDivergesAtItsOwnRates")
    run_study("planted", tmp_path / "s", quick=True, jobs=1)
    verdict = json.loads((tmp_path / "s" / "study.json").read_text())["verdict"]
    assert verdict.startswith(quick_warning(3)) and verdict.split("\n\n")[1].startswith("Every one of the 6 cells")
    assert "train.lr" not in verdict.split("\n\n")[1]
    with pytest.raises(ConfigError, match="varies it itself"):     # what the advice would have met
        run_study("planted", tmp_path / "again", quick=True, sets=["train.lr=0.01"], jobs=1)


def test_unknown_study_is_named(capsys):
    assert main(["study", "stalenes"]) == 2
    assert "did you mean 'staleness'" in capsys.readouterr().err


def test_study_list_numbers_each_study_as_the_readme_and_docs_do(capsys):
    """`study list` printed names and questions without the Q1-Q7 that the README and docs/studies.md use."""
    assert main(["study", "list"]) == 0
    heading, *lines = capsys.readouterr().out.splitlines()
    assert "six questions as seven studies" in heading
    assert [line.split()[:2] for line in lines] == [[name, f"Q{ABOUT[name][0]}"] for name in studies.STUDIES]
    assert lines[0].startswith("staleness      Q1  Local optima: ")
    assert lines[2].startswith("flat-skipping  Q3  Flat-skipping: ")
    # the heading's counts and numbers as ABOUT has them, and the README's `study list` line says the same
    assert len(ABOUT) == 7 and len({ABOUT[name][0] for name in SECOND}) == 2 and len(ABOUT) - 1 == 6
    assert "Q1-Q7 of the README and docs/studies.md (Q2 and Q3 split the second):" in heading
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "the mission's six questions as seven studies (Q1-Q7; Q2 and Q3 split the second; " in readme


def test_study_list_names_a_registered_study_whose_question_is_its_class_own(monkeypatch, capsys):
    """`study list` read QUESTIONS alone: a study registered in STUDIES whose class says its own question
    (as every study did before QUESTIONS) was left out of the listing without a word, though it runs."""
    monkeypatch.setitem(studies.STUDIES, "planted", f"{__name__}:Planted")
    assert main(["study", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]      # (below the heading)
    assert any(line.split(None, 1) == ["planted", "Does b beat a?"] for line in lines), lines
    assert [line.split()[0] for line in lines] == list(studies.STUDIES)


# --- intervals ---------------------------------------------------------------------------------------
def test_wilson_known_values():
    p, lo, hi = wilson(8, 10)
    assert p == 0.8 and lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert wilson(0, 160)[2] < 0.03


def test_paired_proportions_need_flips():
    same = paired_proportions([True, False] * 10, [True, False] * 10)
    assert same[0] == 0 and same[1] < 0 < same[2]               # no flips is not a zero-width interval
    gain = paired_proportions([False] * 40, [True] * 30 + [False] * 10)
    assert gain[0] == 0.75 and gain[1] > 0.5
    assert flips([False, True, True], [True, True, False]) == {"gained": 1, "lost": 1, "mcnemar_p": 1.0}
    # 4 of 4 seeds gained: the adjusted Wald interval leaves out 0, McNemar's exact p is 0.125: not "higher"
    four = paired_proportions([False] * 4, [True] * 4)
    assert four[1] > 0 and effect_words(*four, 0.1) == "higher"
    assert proportion_words(*four, 0.1, flips([False] * 4, [True] * 4)["mcnemar_p"]) == "inconclusive"
    assert proportion_words(*gain, 0.1, flips([False] * 40, [True] * 30 + [False] * 10)["mcnemar_p"]) == "higher"


def test_paired_difference_and_words():
    d = paired_difference([1.0, 2.0, 3.0, 4.0], [1.5, 2.4, 3.6, 4.5])
    assert d[0] == pytest.approx(0.5) and d[1] > 0
    assert math.isnan(paired_difference([float("nan")], [1.0])[0])
    assert effect_words(0.5, 0.1, 0.9, 0.1) == "higher"
    assert effect_words(-0.5, -0.9, -0.1, 0.1) == "lower"
    assert effect_words(0.0, -0.05, 0.05, 0.1) == "no detectable effect"


def test_a_difference_with_no_spread_needs_the_sign_tests_seeds():
    # a discrete figure (images right of 30) that moved by the same amount in every seed: the t
    # interval has zero width, and two seeds read "higher"
    two = paired_difference([0.5, 0.6], [0.55, 0.65])
    assert two[0] == pytest.approx(0.05) and two[1] == -math.inf and two[2] == math.inf
    assert effect_words(*two, resolution=0.01) == "inconclusive"
    assert paired_difference([0.0] * 5, [1.0] * 5)[1] == -math.inf      # 2 * 0.5**5 = 0.0625
    assert paired_difference([0.0] * 6, [1.0] * 6) == (1.0, 1.0, 1.0)    # 2 * 0.5**6 < 0.05
    assert paired_difference([1.0, 2.0], [1.0, 2.0]) == (0.0, -math.inf, math.inf)   # nothing moved, on 2 seeds
    assert paired_difference([1.0] * 6, [1.0] * 6) == (0.0, 0.0, 0.0)                 # nothing moved, on 6
    assert paired_difference([1.0, 2.0, 3.0], [1.1, 2.0, 3.3])[1] > -math.inf
    assert effect_words(0.0, -0.3, 0.3, 0.1) == "inconclusive"


def test_a_discrete_difference_with_a_little_spread_needs_the_sign_tests_seeds_too():
    # controls passed of 4, four seeds moved +1, +1, +1, +2: the t interval [0.45, 2.05] read "higher"
    # where every sign test says p = 0.125
    four = paired_difference([0.0, 1.0, 2.0, 1.0], [1.0, 2.0, 3.0, 3.0])
    assert four[0] == pytest.approx(1.25) and four == (four[0], -math.inf, math.inf)
    assert effect_words(*four, resolution=0.1) == "inconclusive"
    six = paired_difference([0.0, 1.0, 2.0, 1.0, 0.0, 1.0], [1.0, 2.0, 3.0, 3.0, 1.0, 2.0])
    assert six[1] > 0 and effect_words(*six, resolution=0.1) == "higher"           # 2 * 0.5**6 < 0.05
    assert paired_difference([0.1, 0.2, 0.3, 0.4], [0.5, 0.62, 0.69, 0.81])[1] > 0    # not whole numbers: t


def test_a_difference_with_no_finite_pair_warns_nothing():
    """Every pair non-finite (a condition diverged in every seed) is not measured, quietly: the discrete-figure check
    took the mean of no differences and numpy printed "Mean of empty slice" under the study's output."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = paired_difference([math.nan] * 3, [1.0, 2.0, 3.0], discrete=True)
    assert all(math.isnan(x) for x in d)


def test_a_fraction_of_a_count_takes_the_whole_numbers_rule():
    """An edge fraction (of 16 filters) moving +1/16, +1/16, +1/16, +2/16 over 4 seeds had a t interval: by hand,
    mean 5/64, sd 1/32, t = 5 on 3 degrees of freedom, p = 0.015, [0.028, 0.128]: "higher", where the sign test of
    4 seeds gives 0.125."""
    before, after = [0.25, 0.5, 0.5, 0.25], [0.3125, 0.5625, 0.5625, 0.375]
    row = {"condition": "gabor"}
    d, reading = paired_test(row, "delta_edge_fraction", before, after, 0.01)
    assert d == [pytest.approx(5 / 64), -math.inf, math.inf] and reading == "inconclusive"
    assert row["tests"]["delta_edge_fraction"]["p"] == 1.0
    d, reading = paired_test(row, "d_edge_fraction", before, after, 0.01)          # compare.py's name for it
    assert d[1] == -math.inf and reading == "inconclusive"
    # a figure not named discrete keeps Student's t (the same numbers as a probe accuracy)
    d, reading = paired_test(row, "d_probe_digits", before, after, 0.01)
    assert d[1] == pytest.approx(5 / 64 - stats.t.ppf(0.975, 3) / 64) and reading == "higher"
    assert row["tests"]["d_probe_digits"]["p"] == pytest.approx(stats.ttest_1samp([1, 1, 1, 2], 0).pvalue)


def test_a_seed_that_did_not_move_tells_the_sign_test_nothing():
    """Whole numbers 0, +1, +1, +1, +1, +2 over 6 seeds had a t interval (by hand: mean 1, sd sqrt(0.4), t = 3.87 on 5
    degrees of freedom, p = 0.012): "higher", where the sign test has 5 nonzero differences, p = 2 * 0.5**5 = 0.0625."""
    before, after = [0.0] * 6, [0.0, 1.0, 1.0, 1.0, 1.0, 2.0]
    assert paired_difference(before, after) == (1.0, -math.inf, math.inf)
    assert paired_p(before, after) == 1.0
    seven = paired_difference([0.0] * 7, [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0])     # 6 moved: t again
    assert seven[1] > 0 and paired_p([0.0] * 7, [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0]) < 0.05


def test_a_fraction_whose_moves_cancel_keeps_students_t_whatever_the_rounding():
    """One filter more in one seed and one fewer in another, the other 4 seeds still: the mean is 0 and Student's t
    (by hand: sd sqrt(2 s**2 / 5), s one filter's share, half-width 2.571 sd / sqrt(6) = 1.05 s) reads "no detectable
    effect" within 0.10. Of 1,352 filters the differences' float mean was -7e-20, not 0, and the pattern read
    "inconclusive" (the under-6-seed rule's unbounded interval) where the same moves of 16 filters did not."""
    for n, (k, j) in ((16, (3, 7)), (1352, (3, 7))):
        before = [k / n, j / n, 0.25, 0.25, 0.5, 0.5]
        after = [(k + 1) / n, (j - 1) / n, 0.25, 0.25, 0.5, 0.5]
        m, low, high = paired_difference(before, after, discrete=True)
        assert high == pytest.approx(stats.t.ppf(0.975, 5) * math.sqrt(2 / 5) / n / math.sqrt(6)), n
        assert effect_words(m, low, high, resolution=0.10) == "no detectable effect"
        assert paired_p(before, after, discrete=True) == pytest.approx(1.0)


def test_each_comparisons_p_is_the_test_its_interval_inverts():
    rng = np.random.default_rng(0)
    for n in (3, 6, 12):
        for shift in (0.0, 0.3, 0.6, 1.0):
            a = rng.normal(size=n)
            b = a + shift + rng.normal(size=n)
            _, low, high = paired_difference(a, b)
            p = paired_p(a, b)
            assert p == pytest.approx(stats.ttest_rel(b, a).pvalue)
            assert (p < 0.05) == (low > 0 or high < 0)
    # the special cases of paired_difference: no spread (the sign test from 6 seeds), whole numbers
    # with a little spread under 6 seeds, nothing moved, one pair
    assert paired_p([0.0] * 6, [1.0] * 6) == pytest.approx(2 * 0.5 ** 6)
    assert paired_p([0.0] * 5, [1.0] * 5) == 1.0
    assert paired_p([0.0, 1.0, 2.0, 1.0], [1.0, 2.0, 3.0, 3.0]) == 1.0
    assert paired_p([1.0, 2.0], [1.0, 2.0]) == 1.0 and paired_p([1.0], [3.0]) == 1.0
    assert math.isnan(paired_p([math.nan, 1.0], [2.0, math.nan]))      # not measured: not in Holm's family
    assert paired_p([1.0, math.nan, 2.0, 3.0], [2.0, 5.0, 3.1, 3.9]) == pytest.approx(
        stats.ttest_rel([2.0, 3.1, 3.9], [1.0, 2.0, 3.0]).pvalue)


def test_holm_adjusts_the_whole_study_and_says_which_readings_hold():
    rows = [{"condition": "a", "tests": {}}, {"condition": "b", "tests": {}}]
    record_test(rows[0], "d_probe", "higher", 0.01)
    record_test(rows[0], "d_auc", "lower", 0.04)
    record_test(rows[1], "d_probe", "higher", 0.03)
    record_test(rows[1], "d_auc", "inconclusive", 0.5)
    record_test(rows[1], "d_edge", "inconclusive", math.nan)       # not measured: not in the family
    assert holm(rows) == 4
    # by hand: sorted 0.01, 0.03, 0.04, 0.5 times 4, 3, 2, 1 = 0.04, 0.09, 0.08, 0.5, each at least the one before
    got = [rows[0]["tests"]["d_probe"], rows[1]["tests"]["d_probe"], rows[0]["tests"]["d_auc"], rows[1]["tests"]["d_auc"]]
    assert [t["p_holm"] for t in got] == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert math.isnan(rows[1]["tests"]["d_edge"]["p_holm"])
    said = family_paragraph(rows)
    # (what the count is over: a study's own count in an earlier paragraph, over one kind of comparison, read as
    # contradicting it: "Over 2 comparisons ..." then "Holm's correction over the 9 paired comparisons")
    assert said.startswith("Holm's correction over all 4 paired comparisons this verdict reads (every figure it "
                           "compares between a condition and its reference, in all its paragraphs): 1 of the 3 readings")
    assert "hold (family-wise 5%): a: probe accuracy higher." in said      # (the key was printed: "a: d_probe higher")
    assert "These are leads to recheck with more seeds, not findings: a: auc lower; b: probe accuracy higher." in said
    d, reading = paired_test(rows[1], "d_new", [0.0] * 6, [1.0] * 6, 0.1)
    assert (d, reading) == ([1.0, 1.0, 1.0], "higher") and rows[1]["tests"]["d_new"]["p"] == pytest.approx(0.03125)
    assert family_paragraph([{"condition": "a"}]) == ""
    rows = [{"condition": "a", "tests": {"d": {"reading": "inconclusive", "p": 0.2}}}]
    holm(rows)
    assert family_paragraph(rows).endswith("none reads higher or lower, so there is nothing for it to take back.")


def test_holms_paragraph_says_which_of_its_family_are_correlations_and_reads_their_sign():
    """The costs study's rank correlations joined the family (2026-12-05), and the paragraph still called every
    member "a figure it compares between a condition and its reference" and listed a lead as "higher"."""
    rows = [{"condition": "less/none", "tests": {}}, {"condition": "less/l1", "tests": {}}]
    record_test(rows[0], "rho", "higher", 0.012, correlation=True)
    record_test(rows[1], "d_gap", "lower", 0.001)
    record_test(rows[1], "d_probe", "inconclusive", 0.4)
    holm(rows)          # by hand: 0.001 x 3 = 0.003 holds; 0.012 x 2 = 0.024 holds
    said = family_paragraph(rows)
    assert said.startswith("Holm's correction over all 3 readings this verdict reads (2 figures compared between a "
                           "condition and its reference and 1 rank correlation, each read for its sign, in all its "
                           "paragraphs): 2 of the 2 readings higher or lower hold")
    assert "less/none: rho positive" in said and "less/l1: over-fitting gap lower" in said
    record_test(rows[0], "rho", "lower", 0.2, correlation=True)
    holm(rows)
    assert family_paragraph(rows).endswith("This is a lead to recheck with more seeds, not a finding: less/none: rho "
                                           "negative.")
    alone = [{"condition": "less/none", "tests": {}}]
    record_test(alone[0], "rho", "higher", 0.01, correlation=True)
    holm(alone)
    assert family_paragraph(alone).startswith("Holm's correction over the 1 reading this verdict reads (the rank "
                                              "correlation it reads for its sign, in all its paragraphs)")


def test_a_reading_holms_correction_does_not_keep_is_called_a_lead_where_the_verdict_says_it():
    """The mechanisms and architectures verdicts said "higher for pooled" in their summary lines, and Holm's
    paragraph below called the same reading a lead."""
    from downpour.studies.compare import difference_sentence, tally
    rows = []
    for name, p in (("kept", 0.001), ("lead", 0.04)):
        row = {"condition": name, "figures": {"d_probe": [0.1, 0.02, 0.18]}, "extra": {"d_probe": "higher"}}
        record_test(row, "d_probe", "higher", p)
        rows.append(row)
    holm(rows)                                                     # 0.002 and 0.04 * 1: both kept
    assert "lead" not in difference_sentence(rows[1], "probe", "probe accuracy")
    record_test(rows[0], "d_other", "inconclusive", 0.9)
    record_test(rows[1], "d_other", "inconclusive", 0.02)
    holm(rows)                                                     # 4 tests: 0.004, 0.06, 0.08, 0.9
    assert difference_sentence(rows[0], "probe", "probe accuracy").endswith(", higher")
    assert difference_sentence(rows[1], "probe", "probe accuracy").endswith(", higher (a lead: not after Holm's correction)")
    assert tally(rows, "probe")["higher"] == ["kept", "lead (a lead)"]


def test_the_quick_settings_warning_says_the_seeds_it_ran():
    """Every quick verdict said "2 seeds" (or "two") whatever --seeds gave (each quick study's test module checks
    its verdict holds this paragraph: tests/study_quick.py)."""
    name = "mechanisms"
    study = study_class(name)(quick=True)
    assert study.quick_paragraph([{"n": 4}, {"n": 4}]).endswith("(a few training steps, 4 seeds): a smoke test "
                                                                "of the machinery, not an answer.")
    assert study_class(name)(quick=False).quick_paragraph([{"n": 4}]) == ""


@pytest.mark.parametrize("name", list(studies.STUDIES))
def test_every_design_says_its_quick_setting_and_the_runner_puts_it_first_once(name, monkeypatch):
    """The quick setting's warning is the runner's, once, first (until 2026-12-05 each of the seven studies' verdict()
    inserted it itself, with its own words for the setting): a design says those words (``quick_what``), and the
    verdict the runner records holds the warning before the study's reading, once; none on the full setting."""
    from downpour.studies.run import verdict_text

    cls = study_class(name)
    assert isinstance(getattr(cls, "quick_what", None), str) and cls.quick_what.strip(), name
    monkeypatch.setattr(cls, "verdict", lambda self, rows: "The reading.\n\nIn short, nothing.")
    rows = [{"condition": "a", "n": 3}]
    quick = verdict_text(cls(quick=True), rows, trained=True, lr_fixed=True).split("\n\n")
    warning = f"This is the quick setting ({cls.quick_what}, 3 seeds): a smoke test of the machinery, not an answer."
    assert quick == [warning, "The reading.", "In short, nothing."]
    assert verdict_text(cls(quick=False), rows, trained=True, lr_fixed=True) == "The reading.\n\nIn short, nothing."


def test_verdict_words():
    from downpour.studies import words
    assert words.percent(0.624) == "62%" and words.percent(float("nan")) == "–"
    assert words.percent_ci([0.62, 0.55, 0.69]) == "62% [55, 69]"
    assert words.percent_ci([1.0, float("nan"), float("nan")]) == "100%"
    assert words.points([0.031, -0.01, 0.07]) == "+3.1 [-1.0, +7.0]"
    assert words.points([0.031, -0.01, 0.07], 0, " points") == "+3 points [-1, +7]"
    assert words.signed([0.031, -0.01, 0.07]) == "+0.031 [-0.010, +0.070]"
    assert words.signed([0.7449, 0.6031, 0.886], ".3g") == "+0.745 [+0.603, +0.886]"
    # a difference no seed measured, and one with no interval: said, not printed as nan or inf
    assert words.signed([math.nan, math.nan, math.nan]) == "not measured"
    assert words.points([0.05, -math.inf, math.inf], 1, " points") == "+5.0 points (no interval: too few seeds to tell)"
    assert words.value_ci([0.4529, 0.45, 0.46]) == "0.4529 [0.45, 0.46]"


def test_a_difference_that_rounds_to_zero_is_said_unsigned_but_an_interval_end_below_zero_keeps_its_sign():
    """The costs verdict printed "probe 93.2% (Δ -0.0 points [-0.8, +0.8], ...)" and templates' "-0.000 [-0.010,
    +0.010]": a sign the rounding had emptied. An end that rounds to 0 keeps its side: "[-2.1, -0.0], lower". Since
    2026-12-06 an end near zero first takes up to 2 more decimals (as the run report's, auc_words.off_zero), and so does
    the difference where its interval is on one side of 0: only one that still rounds to 0 is said so, unsigned for a
    value, signed for an end."""
    from downpour.studies import words
    # (the difference itself takes more decimals only where its interval is on one side of 0: else its sign is noise,
    # and the costs verdict's probe read "-0.03 points [-0.8, +0.8]" for a while on 2026-12-06)
    assert words.points([-0.0003, -0.008, 0.008], 1, " points") == "0.0 points [-0.8, +0.8]"
    assert words.signed([-0.0001, -0.01, 0.01]) == "0.000 [-0.010, +0.010]"
    assert words.signed([0.0002, -0.01, 0.01], ".3f") == "0.000 [-0.010, +0.010]"
    assert words.signed([-0.0002, -0.01, -0.0001]) == "-0.0002 [-0.010, -0.0001]"   # one side of 0: off zero
    assert words.points([0.0, 0.0, 0.0]) == "0.0 [0.0, 0.0]"                       # nothing moved in any seed
    assert words.points([-0.011, -0.021, -0.0004]) == "-1.1 [-2.1, -0.04]"
    assert words.points([-0.011, -0.021, -1e-7]) == "-1.1 [-2.1, -0.0]"            # 0 to 3 decimals: keeps its side
    assert words.difference([-1e-9, -0.1, 0.2], "{:+.3g}") == "-1e-09 [-0.1, +0.2]"    # not zero to .3g
    assert words.signed([-1e-7, -math.inf, math.inf]) == "0.000 (no interval: too few seeds to tell)"


def test_seeds_a_paired_difference_leaves_out_for_its_baseline_are_said():
    """The baseline's NaN dropped two of four pairs from d_probe_digits, and nothing said so."""
    from downpour.studies.base import Condition
    from downpour.studies.compare import compare_rows
    from downpour.studies.html import rows_table
    from downpour.studies.run import note_missing

    conditions = [Condition("ref", {"vs": ""}), Condition("arm", {"vs": "ref"})]
    ref, arm = [0.90, math.nan, math.nan, 0.91], [0.80, 0.95, 0.96, 0.82]
    cells = {**{("ref", s): {"probe_digits": v} for s, v in enumerate(ref)},
             **{("arm", s): {"probe_digits": v} for s, v in enumerate(arm)}}
    rows = compare_rows(conditions, cells, [0, 1, 2, 3], {"probe_digits": 0.02})
    note_missing(rows, cells, [0, 1, 2, 3])
    assert rows[1]["missing"] == {"d_probe_digits": 2} and rows[0]["missing"] == {"probe_digits": 2}
    assert "2 of 4 seeds left out" in rows_table(rows).split("<tr>")[-1]


def test_a_cell_that_ran_without_a_figure_its_seeds_hold_is_refused_by_name_not_left_out():
    """A cell measured before a figure was recorded read it as NaN: its seed left out of the figure and of the
    paired difference without a word (2 of 4 pairs here). A diverged cell (its design's figures alone) stays."""
    from downpour.studies.base import Condition
    from downpour.studies.compare import FigureMissing, compare_rows

    conditions = [Condition("ref", {"vs": ""}), Condition("arm", {"vs": "ref"})]
    cells = {**{("ref", s): {"probe": 0.9 + 0.01 * s, "params": 5.0} for s in range(4)},
             **{("arm", s): {"probe": 0.8 + 0.01 * s, "params": 6.0} for s in range(4)}}
    cells[("ref", 3)] = {"diverged": 1.0, "params": 5.0}
    assert compare_rows(conditions, cells, [0, 1, 2, 3], {"probe": 0.02})[1]["figures"]["d_probe"]
    cells[("arm", 1)] = cells[("arm", 2)] = {"params": 6.0}             # ran before "probe" was recorded
    with pytest.raises(FigureMissing, match=r"'arm' seed 1, 'arm' seed 2 ran but lack figure 'probe'.*run the "
                                            "study again") as err:
        compare_rows(conditions, cells, [0, 1, 2, 3], {"probe": 0.02})
    assert err.value.args[0] == "probe" and err.value.cells == [("arm", 1), ("arm", 2)]


class ComparedWithADivergedSeed(EveryCellDiverges):
    """compare_rows' study whose cells run, but a's seed 0, which diverged."""

    def run_cell(self, condition, seed, context):
        return ({"diverged": 1.0, "params": 5.0} if (condition.name, seed) == ("a", 0) else
                {"x": float(seed), "params": 5.0 + (condition.name == "b")})


def test_a_cached_cell_lacking_a_compared_figure_is_named_with_what_to_do_not_a_diverged_one(monkeypatch, tmp_path):
    """compare_rows read b's seed 1 without x as a seed left out; the study wrote its summary with 2 of 3 pairs."""
    monkeypatch.setitem(studies.STUDIES, "planted", f"{__name__}:ComparedWithADivergedSeed")
    run_study("planted", tmp_path, quick=True, jobs=1)
    _edit_cells(tmp_path, lambda row: row["figures"].pop("x") if (row["condition"], row["seed"]) == ("b", 1) else None)
    with pytest.raises(ConfigError, match=r"cells.jsonl': the cell\(s\) b seed 1 lack figure 'x', which the study's "
                                          r"summary reads \(measured before the figure was recorded.*delete those "
                                          "lines and run again"):
        run_study("planted", tmp_path, quick=True, jobs=1)


def test_cells_measured_by_two_versions_are_not_told_to_run_again_into_the_same_refusal():
    """Seeds 0-1 measured when the figure was "probe_old", seed 2 since it became "probe": the refusal named seed 2 as
    lacking "probe_old" and told to run it again, which records "probe" again, refused again. It says both sides."""
    from downpour.studies.base import Condition
    from downpour.studies.compare import FigureMissing, compare_rows

    cells = {("ref", 0): {"params": 5.0, "probe_old": 0.9}, ("ref", 1): {"params": 5.0, "probe_old": 0.8},
             ("ref", 2): {"params": 5.0, "probe": 0.85}}
    with pytest.raises(FigureMissing, match=r"'ref' seed 2 ran but lack figure 'probe_old' and hold 'probe', which the "
                                            r"condition's seeds holding 'probe_old' lack: .*measured by two versions of "
                                            r"the study .*delete the older version's lines") as err:
        compare_rows([Condition("ref", {"vs": ""})], cells, [0, 1, 2], {})
    assert err.value.instead == ["probe"]


def test_a_study_whose_cells_two_versions_measured_names_both_figures(monkeypatch, tmp_path):
    """run.py's refusal of the same: b's seeds 0 and 1 hold x under its old name, seed 2 under its new one."""
    monkeypatch.setitem(studies.STUDIES, "planted", f"{__name__}:ComparedWithADivergedSeed")
    run_study("planted", tmp_path, quick=True, jobs=1)
    _edit_cells(tmp_path, lambda row: _rename(row, "x", "x_old") if row["condition"] == "b" and row["seed"] < 2 else None)
    with pytest.raises(ConfigError, match=r"cells.jsonl': the cell\(s\) b seed 2 lack figure 'x_old' and hold 'x', "
                                          r"which the cells holding 'x_old' lack: .*measured by two versions of the study "
                                          r".*delete the older version's lines"):
        run_study("planted", tmp_path, quick=True, jobs=1)


def test_a_figure_the_same_in_every_seed_is_shown_as_such_not_as_a_zero_width_interval():
    """A probe right on 27 of 30 images in both seeds read 0.900 [0.900, 0.900] on the page: as certain as a
    thousand seeds. Student's t has nothing to say without spread; the page says what it is."""
    from downpour.studies.html import rows_table
    rows = [{"condition": "a", "params": {}, "n": 2, "figures": {"probe": list(mean_ci([0.9, 0.9])),
                                                                 "loss": list(mean_ci([1.0, 2.0]))}}]
    cells = rows_table(rows).split("<tr>")[-1]
    assert "0.9 <small>(the same in every seed)</small>" in cells and "[0.9, 0.9]" not in cells
    assert "1.5 <small>[" in cells                                  # spread: the interval as t gives it
    rows[0]["n"], rows[0]["missing"] = 3, {"probe": 1}                # a third seed not measured: not "every seed"
    assert "(the same in every seed measured)</small> <small>(1 of 3 seeds left out)" in rows_table(rows)


def test_a_comparison_never_measured_is_not_in_holms_family_and_a_diverged_first_seed_is_counted():
    """An all-NaN figure's paired comparison was recorded as "inconclusive" with p = 1: in Holm's family,
    it doubled the other comparison's adjusted p. And a first seed whose cell holds no figure (a diverged
    run) hid every other figure's missing seeds."""
    from downpour.studies.base import Condition
    from downpour.studies.compare import compare_rows
    from downpour.studies.run import note_missing
    from downpour.studies.stats import holm

    conditions = [Condition("ref", {"vs": ""}), Condition("arm", {"vs": "ref"})]
    seeds = [0, 1, 2, 3, 4, 5]
    cells = {("ref", s): {"x": math.nan, "y": 0.5 + 0.01 * s} for s in seeds}
    cells.update({("arm", s): {"x": math.nan, "y": 0.7 + 0.012 * s} for s in seeds})
    rows = compare_rows(conditions, cells, seeds, {"x": 0.02, "y": 0.02})
    assert holm(rows) == 1
    tests = rows[1]["tests"]
    assert tests["d_x"]["reading"] == "not measured" and math.isnan(tests["d_x"]["p_holm"])
    assert tests["d_y"]["reading"] == "higher" and tests["d_y"]["p_holm"] == tests["d_y"]["p"]
    cells[("arm", 0)] = {"diverged": 1.0}
    rows = compare_rows(conditions, cells, seeds, {"y": 0.02})
    note_missing(rows, cells, seeds)
    assert rows[1]["missing"]["y"] == 1


def test_a_cells_failure_names_the_cell(monkeypatch):
    """A cell's error said nothing of which condition and seed it came from."""
    from downpour.errors import DataError
    from downpour.studies import cells

    cells._init(f"{Planted.__module__}:{Planted.__name__}", True, [], {})

    def fails(self, condition, seed, context):
        raise (DataError if condition.name == "a" else KeyError)("bad")

    monkeypatch.setattr(Planted, "run_cell", fails)
    with pytest.raises(DataError, match=r"^study planted: cell 'a', seed 1: bad$"):
        cells._run(("a", 1))
    with pytest.raises(KeyError) as err:                  # a bug: its traceback, with the cell noted under it
        cells._run(("b", 2))
    assert err.value.__notes__ == ["study planted: cell 'b', seed 2"]


def test_a_failed_set_up_in_this_process_does_not_fail_the_next_study():
    """With one job the cells run in this process: a set-up that failed once re-raised in every later study."""
    from downpour.studies import cells

    cells._init("no_such_module:Nothing", True, [], {})
    with pytest.raises(ModuleNotFoundError):
        cells._run(("a", 0))
    cells._init(f"{Planted.__module__}:{Planted.__name__}", True, [], {})
    assert cells._FAILED is None


def test_a_percent_interval_never_reads_minus_zero():
    from downpour.studies.words import percent_ci

    assert percent_ci((0.08, -0.003, 0.16)) == "8% [0, 16]"          # it read "8% [-0, 16]"
    assert percent_ci((0.5, 0.25, 0.75)) == "50% [25, 75]" and percent_ci((0.5, float("-inf"), float("inf"))) == "50%"


@pytest.mark.parametrize("study", ["staleness", "architectures", "costs"])
@pytest.mark.parametrize("key, match", [
    ("analysis.layer=stage9", "keeps it as designed: a study measures its cells itself"),
    ("analysis.bootstrap=7", "keeps it as designed: a study measures its cells itself"),
    ("sandblaster.units=4", "only Sandblaster L-BFGS reads \\[sandblaster\\]"),
])
def test_a_key_no_cell_reads_is_refused_not_recorded(study, key, match):
    """`downpour study staleness --set analysis.layer=stage9 --set sandblaster.units=4` ran, recorded both in
    study.json, and gave the same cells as without them."""
    target = study_class(study)(quick=True, sets=[_pair(key)])
    with pytest.raises(ConfigError, match=match):
        _check_sets(target, target.conditions())


@pytest.mark.parametrize("study, key, match", [
    # only the model refused it, in prepare(), with a traceback
    ("staleness", "model.teacher_width=10", "in study 'staleness', cell 'lr0.125/sync': model 'teacher-student' on "
                                           "1x1x8 samples .*teacher_width = 10 needs inputs of dimension >= it"),
    ("templates", "objective.kl_sparsity.rho=0.1", "model 'cat-demo' has no 'kl_sparsity' cost term"),
])
def test_a_set_a_cell_would_refuse_or_never_read_is_refused_before_any_cell(study, key, match):
    target = study_class(study)(quick=True, sets=[_pair(key)])
    with pytest.raises(ConfigError, match=match):
        _check_sets(target, target.conditions())


@pytest.mark.parametrize("keys", [["cluster.compensation=dc-asgd"], ["cluster.compensation=dc-asgd", "cluster.dc_lambda=0.1"],
                                  ["cluster.warm_start=2"]])
def test_a_key_some_cells_read_is_accepted(keys):
    """The staleness study's sync and one-worker cells read no compensation or warm start; its async cells do:
    a key is refused where no cell reads it, not where one does not (they were refused for a day)."""
    target = study_class("staleness")(quick=True, sets=[_pair(key) for key in keys])
    _check_sets(target, target.conditions())


def test_of_several_sets_the_one_no_cell_reads_is_named():
    """The message listed every --set ("--set train.lr, train.momentum: ... reads it"): which one?"""
    target = study_class("templates")(quick=True, sets=[_pair("train.batch_size=16"), _pair("train.momentum=0.5")])
    with pytest.raises(ConfigError, match="^--set train.momentum: no cell of study 'templates' reads it"):
        _check_sets(target, target.conditions())


class Unweighted(Study):
    """Every cell has a KL term at weight 0 (as the costs study's quick setting had, before its penalties became its
    own keys): a --set of the term's target was accepted, recorded and read by nothing."""
    name, question, base = "unweighted", "", "ufldl-sae"
    base_sets = (("objective.kl_sparsity", 0.0),)

    def conditions(self):
        return [Condition("a", {}), Condition("b", {}, (("train.lr", 0.5),))]


def test_a_term_key_no_cell_gives_a_weight_is_refused():
    target = Unweighted(quick=True, sets=[_pair("objective.kl_sparsity.rho=0.1")])
    with pytest.raises(ConfigError, match="no cell of study 'unweighted' \\(quick\\) gives kl_sparsity a weight"):
        _check_sets(target, target.conditions())


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


def test_a_lost_figure_names_only_the_cells_whose_condition_measures_it(planted, tmp_path):
    """It named every cell without the figure, the conditions that never measure it too (the staleness study's
    12 sae/* cells, which have final_cost and no success): deleting them as told ran 12 good cells again."""
    run_study("planted", tmp_path, quick=True, jobs=1)
    # a never measures x here; b's seed 0 lost it
    _edit_cells(tmp_path, lambda row: _rename(row, "x", "y") if row["condition"] == "a" or row["seed"] == 0 else None)
    with pytest.raises(ConfigError, match=r"the cell\(s\) b seed 0 lack figure 'x'"):
        run_study("planted", tmp_path, quick=True, jobs=1)


def test_a_table_cell_holding_a_record_reads_as_words_not_a_python_dict():
    from downpour.studies.table import plain as _plain

    shown = _plain({"seeds": [0, 1, 4], "delta": [0.0, -0.4619679414498926, 0.1], "reading": "inconclusive"})
    assert shown == "seeds 0, 1, 4; delta 0, -0.462, 0.1; reading inconclusive"


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


def test_an_interval_never_runs_past_what_its_figure_can_be(planted, tmp_path, monkeypatch):
    """Student's t on 2 seeds printed a probe accuracy of 0.867 [0.231, 1.502], an edge-like fraction of 83%
    [-16, 182] and a time per step below 0; cut at the figure's range, in study.json, the verdict and the page."""
    values = {"probe_digits": (0.5, 1.0), "edge_fraction": (0.9, 0.7), "face_owed_controls": (-0.9, 0.8),
              "seconds_per_step": (0.001, 0.05), "final_loss": (-3.0, 9.0), "inv_shift": (1.9, 1.5),
              "inv_rotation": (350.0, 300.0)}

    def summarise(self, conditions, cells, seeds):
        figures = {k: list(mean_ci(v)) for k, v in values.items()}
        figures["d_probe_digits"] = list(paired_difference([0.0, 1.0], [1.0, 0.0]))     # -1, +1: t on 2 seeds
        figures["d_edge_fraction"] = list(paired_difference([0.0, 0.0], [0.5, 0.5]))   # no spread: unbounded
        return [{"condition": "a", "group": "", "params": {}, "n": 2, "figures": figures}]

    monkeypatch.setattr(Planted, "summarise", summarise)
    monkeypatch.setattr(Planted, "verdict", lambda self, rows: f"probe {rows[0]['figures']['probe_digits']}")
    run_study("planted", tmp_path, quick=True, seeds=2, jobs=1)
    result = json.loads((tmp_path / "study.json").read_text())
    got = result["cells"][0]["figures"]
    assert mean_ci([0.5, 1.0])[1] < 0 and got["probe_digits"] == [0.75, 0.0, 1.0]       # t: [-2.43, +3.93]
    assert got["edge_fraction"] == [pytest.approx(0.8), 0.0, 1.0]
    assert got["face_owed_controls"][1:] == [-1.0, 1.0]
    assert got["seconds_per_step"][1] == 0.0 and got["seconds_per_step"][2] > 0.05
    assert got["final_loss"] == list(mean_ci((-3.0, 9.0)))          # a name that says no range: as t gives it
    assert got["inv_shift"][2] == 2.0 and got["inv_rotation"][2] == 360.0     # the widest the sweep can see (±1.0, ±180)
    assert got["d_probe_digits"] == [0.0, -1.0, 1.0]
    assert got["d_edge_fraction"] == [0.5, -math.inf, math.inf]     # unbounded (under 6 seeds) stays unbounded
    assert result["verdict"].startswith(f"{quick_warning(2)}\n\nprobe [0.75, ") and "1.0]" in result["verdict"]


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


def test_study_help_lists_the_studies_and_a_named_studys_help_says_its_question_and_seeds():
    """`downpour study staleness --help` printed the generic flags alone: nothing of the study's question,
    conditions, seeds or time. It says them, importing that study's design alone (studies/designs/; its module,
    until 2026-12-05: torch, 3-4 s); `study --help` lists every study (one line each) and imports none."""
    import subprocess
    import sys

    code = ("import contextlib, io, sys\nfrom downpour.cli import main\n"
            "for argv in (['study', '--help'], ['study', 'first-layer', '--help']):\n"
            "    out = io.StringIO()\n"
            "    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
            "        main(argv)\n"
            "    print(out.getvalue())\n"
            "    print('IMPORTED', sorted(m for m in sys.modules if m.rsplit('.', 1)[-1] in\n"
            "          ('staleness', 'templates', 'flat_skipping', 'mechanisms', 'first_layer', 'costs', 'architectures')))\n")
    generic, named, imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout.split("IMPORTED")
    listed = [line.split()[0] for line in generic.split("studies (")[1].splitlines()[1:] if line.strip()]
    assert listed == list(studies.STUDIES) and "Q1 local optima" in generic
    assert named.startswith(" []\n")                       # the generic help imported no study
    assert "downpour study first-layer: Q5 of docs/studies.md" in named
    assert "must the first layer's edge" in " ".join(named.split())   # its question, wrapped
    assert "conditions: 4 (4 with --quick)" in named and "learned, gabor, random, gabor-init" in named
    assert "seeds: 8 per condition by default, 2 with --quick" in named
    assert imported.strip() == "['downpour.studies.designs.first_layer']"   # that study's design alone


def test_every_studys_help_says_the_conditions_and_seeds_its_run_has():
    """The help reads a study's design (studies/designs/, no torch), the run its class: each class is its design's
    subclass and says no question, seeds or conditions of its own, so the two cannot tell different studies; nor
    can a helper the conditions call (a step count, a threshold) overridden by the class: each setting's conditions
    are the design's, Condition by Condition."""
    for name in studies.STUDIES:
        design, cls = studies.design_class(name), studies.study_class(name)
        own = f"downpour.studies.designs.{cls.__module__.split('.')[-1]}"
        assert issubclass(cls, design) and design.__module__ == own
        for attr in ("name", "question", "seeds_full", "seeds_quick", "conditions"):
            assert getattr(cls, attr) is getattr(design, attr), (name, attr)
        for quick in (False, True):
            assert repr(cls(quick=quick).conditions()) == repr(design(quick=quick).conditions()), (name, quick)


def test_study_help_of_an_unknown_study_names_the_nearest(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["study", "stalenes", "--help"])
    assert exit.value.code == 2 and "did you mean 'staleness'" in capsys.readouterr().err


def test_every_studys_heading_and_time_in_the_docs_are_the_ones_its_help_prints():
    """`downpour study NAME --help` printed a wall time copied by hand from docs/studies.md: either could change
    alone. Each study's section there opens with its **Time** line, which must read as about.ABOUT does."""
    import re
    from pathlib import Path

    from downpour.studies import design_class
    from downpour.studies.about import ABOUT, QUICK, describe

    text = (Path(__file__).resolve().parents[1] / "docs" / "studies.md").read_text()
    sections = re.findall(r"^## Q(\d+) — (\S+):.*\n\n\*\*Time\*\* \(what `downpour study (\S+) --help` prints\): "
                          r"(.+) on 2 cores at the default seeds", text, re.M)
    assert all(name == again for _, name, again, _ in sections)
    assert {name: (int(n), wall) for n, name, _, wall in sections} == ABOUT
    # the table at the top, every study's command, seeds and time in one place (since 2026-12-06), reads the same
    table = re.findall(r"^\| Q(\d+) \| `downpour study (\S+)` \| [^|]+ \| (\d+) \| ([^|]+) \| ([^|]+) \|$", text, re.M)
    assert {name: (int(n), wall) for n, name, _, wall, _ in table} == ABOUT
    assert all(int(seeds) == design_class(name).seeds_full for _, name, seeds, _, _ in table)
    # and the quick setting's, measured per study (until 2026-12-06 --help said "<= 2 min" of every one; staleness's
    # took 3-7 min)
    assert {name: quick for _, name, _, _, quick in table} == QUICK
    assert all(f"--quick: {QUICK[name]} (the longer beside other jobs)" in describe(name) for name in QUICK)


def test_holms_paragraph_says_a_count_of_one_or_none_in_english():
    """"over all 0 paired comparisons" and "1 of the 1 readings higher or lower hold": a family of none, a single
    reading."""
    one = [{"condition": "a", "tests": {"d": {"reading": "higher", "p": 0.01}}}]
    holm(one)
    assert family_paragraph(one).startswith("Holm's correction over the 1 paired comparison this verdict reads (")
    assert family_paragraph(one).endswith("): the one reading higher or lower holds (family-wise 5%): a: d higher.")
    lead = [{"condition": "a", "tests": {"d": {"reading": "lower", "p": 0.04}, "e": {"reading": "inconclusive", "p": 0.5}}}]
    holm(lead)
    assert (": the one reading higher or lower does not hold (family-wise 5%). This is a lead to recheck with more "
            "seeds, not a finding: a: d lower.") in family_paragraph(lead)
    none = [{"condition": "a", "tests": {"d": {"reading": "not measured", "p": math.nan}}}]
    holm(none)
    assert family_paragraph(none).startswith("Holm's correction over the 0 paired comparisons this verdict reads (")


def test_the_pages_footnote_counts_its_own_comparisons_and_says_intervals_are_cut(tmp_path):
    """study.html's footnote said "35 comparisons ... about 1.75 times" whatever the study read (the quick staleness
    study reads 11), and that a bounded figure's interval "can reach past 0 or 1 ...: it is shown as computed",
    which stopped being so when `stats.within_range` began cutting intervals at their figure's range (2026-12-04)."""
    from downpour.studies.html import write_html

    test = {"reading": "inconclusive", "p": 1.0, "p_holm": 1.0}
    rows = [{"condition": f"c{i}", "params": {}, "n": 2, "figures": {"d_probe": [0.1, -0.2, 0.4]},
             "tests": {"d_probe": test, "d_auc": test}} for i in range(5)]
    result = {"study": "planted", "question": "q", "command": "c", "quick": True, "seeds": [0, 1], "verdict": "v",
              "cells": rows, "seconds": 1.0, "figures": []}
    page = write_html(result, tmp_path / "study.html").read_text()
    assert "its 10 comparisons at 95% would leave 0 out about 0.5 times (at least once in 40% of studies" in page
    assert "35 comparisons" not in page and "shown as computed" not in page
    assert "cut at what its figure can be" in page
    one = dict(result, cells=[dict(rows[0], tests={"d_probe": test})])     # ("its 1 comparisons")
    assert "its 1 comparison at 95% would" in write_html(one, tmp_path / "one.html").read_text()


def test_a_mean_with_no_spread_up_to_rounding_reads_the_same_in_every_seed():
    """The quick mechanisms study's pyramid3 lfw probe, 0.9 in both seeds, was stored as 0.8999999999999999
    [0.8999999999999989, 0.9000000000000009] and shown as "0.9 [0.9, 0.9]", as certain as a thousand seeds."""
    from downpour.studies.html import rows_table

    row = {"condition": "pyramid3", "params": {}, "n": 2,
           "figures": {"probe_lfw": [0.8999999999999999, 0.8999999999999989, 0.9000000000000009],
                       "probe_digits": [0.918, 0.886, 0.95]}}
    table = rows_table([row])
    assert "0.9 <small>(the same in every seed)</small>" in table and "0.918 <small>[0.886, 0.95]</small>" in table


def test_a_reading_named_as_its_figure_has_a_column_of_its_own_name():
    """The mechanisms study keeps each paired difference's reading in `extra` under the figure's own name: the
    page's table had two columns headed d_probe_digits, one the interval and one "lower"."""
    from downpour.studies.html import rows_table

    row = {"condition": "glimpse", "params": {}, "n": 2, "figures": {"d_probe_digits": [-0.44, -0.567, -0.313]},
           "extra": {"d_probe_digits": "lower", "steps": 30}}
    table = rows_table([row])
    assert table.count("<th>d_probe_digits</th>") == 1
    assert "<th>d_probe_digits reading</th>" in table and "<th>steps</th>" in table


def test_a_verdicts_mean_with_no_spread_reads_the_same_in_every_seed():
    """The quick first-layer verdict said "learned 0% [0, 0]" on 2 seeds (and flat-skipping "skipped lfw 22% [22, 22]")
    where study.html's table says "(the same in every seed)": a zero-width t interval is no certainty."""
    from downpour.studies import words

    assert words.percent_ci([0.0, 0.0, 0.0]) == "0% (the same in every seed)"
    assert words.percent_ci([0.2171875, 0.21718749999999998, 0.2171875000000001]) == "22% (the same in every seed)"
    assert words.percent_ci([0.0975, 0.0969, 0.0982]) == "10% [10, 10]"        # a real spread, rounded, stays
    assert words.value_ci([180.6, 180.6, 180.6]) == "180.6 (the same in every seed)"
    assert words.value_ci([0.4529, 0.45, 0.46]) == "0.4529 [0.45, 0.46]"


def test_a_study_stopped_by_ctrl_c_says_what_it_kept_and_how_to_resume(planted, tmp_path, monkeypatch, capsys):
    """`timeout -s INT 20 downpour study staleness --quick` kept its finished cells but said only "downpour:
    interrupted": not that they were kept, nor the command that resumes."""
    run_cell = Planted.run_cell

    def stopped(self, condition, seed, context):
        if (condition.name, seed) == ("a", 1):
            raise KeyboardInterrupt
        return run_cell(self, condition, seed, context)

    monkeypatch.setattr(Planted, "run_cell", stopped)
    with pytest.raises(KeyboardInterrupt):
        run_study("planted", tmp_path / "s", quick=True, jobs=1)
    err = capsys.readouterr().err
    assert (f"downpour study planted: stopped; 2 of 6 cells are kept in {str(tmp_path / 's')!r} (cells.jsonl): "
            f"`downpour study planted --quick --seeds 3 --out {tmp_path / 's'}` resumes it") in err
    monkeypatch.setattr(Planted, "run_cell", run_cell)
    CALLS.clear()
    run_study("planted", tmp_path / "s", quick=True, jobs=1)
    assert sorted(CALLS) == [("a", 1), ("a", 2), ("b", 1), ("b", 2)]


def test_a_study_stopped_while_writing_its_pages_says_its_cells_are_kept_and_the_command_that_writes_them(
        planted, tmp_path, monkeypatch, capsys):
    """A Ctrl-C after the last cell, while the figures and pages were written, said "downpour: interrupted" alone,
    though every cell was in cells.jsonl and the same command writes the pages without running one again."""
    from downpour.studies import run as study_run

    write_html = study_run.write_html

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(study_run, "write_html", stopped)
    with pytest.raises(KeyboardInterrupt):
        run_study("planted", tmp_path / "s", quick=True, jobs=1)
    err = capsys.readouterr().err
    assert (f"downpour study planted: stopped while writing its pages; all 6 cells are kept in {str(tmp_path / 's')!r} "
            f"(cells.jsonl): `downpour study planted --quick --seeds 3 --out {tmp_path / 's'}` writes the pages, running "
            "no cell again") in err
    monkeypatch.setattr(study_run, "write_html", write_html)
    CALLS.clear()
    run_study("planted", tmp_path / "s", quick=True, jobs=1)
    assert CALLS == [] and (tmp_path / "s" / "study.html").is_file() and (tmp_path / "s" / "study.md").is_file()


def test_study_md_has_study_htmls_cells_in_markdown(tmp_path):
    """study.md (2026-12-06): the conditions table's cells are study.html's, a "|" in a name escaped so the row keeps
    its columns, a study's own HTML cell (staleness's 4 × 0.125) as text, asides in plain brackets."""
    from downpour.studies.markdown import write_markdown

    rows = [{"condition": "a|b", "params": {"lr": 0.5}, "n": 3, "figures": {"probe": [0.9, 0.8, 1.0],
             "d_probe": [0.0, -math.inf, math.inf]}, "missing": {"probe": 1}, "tests": {}}]
    result = {"study": "x", "question": "Q?", "quick": False, "seeds": [0, 1, 2], "seconds": 1.0, "cells_run": 3,
              "jobs": 1, "command": "downpour study x --out D", "verdict": "One.\n\nTwo.", "cells": rows,
              "figures": ["figures/f.png"]}
    page = write_markdown(result, tmp_path / "study.md", lambda row, key: "0.5 (4 &times; 0.125)" if key == "lr"
                          else None).read_text()
    assert "| a\\|b | 0.5 (4 × 0.125) | 3 | 0.9 [0.8, 1] (1 of 3 seeds left out) | 0 (no seed differed: " in page
    assert "> One.\n>\n> Two." in page and "![f](figures/f.png)" in page and "<small>" not in page


def test_study_md_comparisons_align_as_study_htmls(tmp_path):
    """study.md's comparisons table sets its text columns left as study.html does: "under Holm" ("holds", "a lead") is
    text (right-aligned as a number in study.md until 2026-12-06)."""
    from downpour.studies.html import tests_table
    from downpour.studies.markdown import write_markdown

    rows = [{"condition": "a", "params": {}, "n": 3, "figures": {}, "tests": {"probe": {"reading": "higher", "p": 0.01,
                                                                                       "p_holm": 0.02}}}]
    result = {"study": "x", "question": "Q?", "quick": False, "seeds": [0, 1, 2], "seconds": 1.0, "cells_run": 3,
              "jobs": 1, "command": "downpour study x", "verdict": "One.", "cells": rows, "figures": []}
    page = write_markdown(result, tmp_path / "study.md").read_text()
    assert "| condition | comparison | reading | p | Holm p | under Holm |\n| --- | --- | --- | ---: | ---: | --- |" in page
    assert "| a | probe accuracy | higher |" in page       # the verdict's words for the figure, not its key "probe"
    assert tests_table(rows).endswith("<td>0.01</td><td>0.02</td><td class=l>holds</td></tr></table>")
    assert "<td class=l>probe accuracy</td>" in tests_table(rows)
