"""A study's cells.jsonl on a planted study: cells cached and resumed, what each records (its platform, its
cost), and damaged, cut or edited lines run again or named."""
import html
import json

import pytest

from downpour import studies
from downpour.config import ConfigError
from downpour.studies.machine import platform_id
from downpour.train.machine import cpu_fields
from downpour.studies.run import run_study
from planted_study import CALLS, Planted, edit_cells, quick_warning, rename
from planted_study import planted  # noqa: F401 (a fixture)


def test_the_cost_counts_each_run_behind_the_cells_once_and_says_how_many_have_none_recorded(tmp_path):
    """A ``same_as`` copy adds nothing (one run answers both names); a run whose cost is gone (a loop of copies: its
    original's line dropped as damaged and re-run from the copy; or a cell cached before costs were recorded) read as
    0 s, unsaid."""
    from downpour.studies.cells import CellCache
    from downpour.studies.table import cost

    cache = CellCache(tmp_path / "cells.jsonl", {"study": "planted"})
    for (name, seed), spent in {("a", 0): {"seconds": 3.0, "cpu_seconds": 2.0}, ("a-again", 0): {"same_as": "a"},
                                ("b", 0): {"same_as": "b-again"}, ("b-again", 0): {"same_as": "b"},
                                ("c", 0): {}, ("d", 1): {"seconds": 0.5, "cpu_seconds": 0.5}}.items():
        cache.add(name, seed, {"x": 1.0}, spent)
    assert cache.total_cost([("a", 0), ("a-again", 0), ("d", 1)]) == {"seconds": 3.5, "cpu_seconds": 2.5}
    assert cache.total_cost([("a-again", 0)]) == {"seconds": 3.0, "cpu_seconds": 2.0}   # its original's run
    every = cache.total_cost(cache.cells)
    assert every == {"seconds": 3.5, "cpu_seconds": 2.5, "unknown": 2}                 # b's run (once) and c's
    said = cost({"cells_cost": every, "seconds": 0.1, "jobs": 0})
    assert said.startswith("its cells took 3.5 s (2.5 CPU-s) over every run of the folder, and 2 runs whose cost is "
                           "not recorded; this run 0.1 s")


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


def test_a_cell_records_its_install_beside_its_platform_and_a_folder_of_two_installs_says_so(planted, tmp_path,
                                                                                              capsys):
    """A cell recorded its platform (CPU, torch, numpy, scipy, scikit-learn) and commit, not the rest of the install a
    run folder's environment.json holds (ray, scikit-image, pillow, downpour's version): a folder resumed under another
    mixed cells of two installs unsaid. The install is beside the platform, so a cell cached without it keeps its
    platform's id and is not run again."""
    from importlib.metadata import version
    run_study("planted", tmp_path, quick=True, seeds=2, jobs=1)
    path = tmp_path / "cells.jsonl"
    header, *lines = path.read_text().splitlines()
    cells = [json.loads(line) for line in lines]
    here, install = cells[0]["cost"]["platform"], cells[0]["cost"]["install"]
    assert install["ray"] == version("ray") and install["scikit-image"] == version("scikit-image")
    assert install["downpour"] == version("downpour") and "os" in install
    assert not install.keys() & here.keys() and "commit" not in install     # (the cell's own commit, beside it)
    result = json.loads((tmp_path / "study.json").read_text())
    assert result["installs"] == [{"id": platform_id(install), "install": install, "cells": 4}]
    assert result["installs_note"] == ""
    for cell in cells:                              # cached before the install was recorded
        del cell["cost"]["install"]
    path.write_text("\n".join([header, *map(json.dumps, cells)]) + "\n")
    calls = len(CALLS)
    run_study("planted", tmp_path, quick=True, seeds=3, jobs=1)
    assert len(CALLS) == calls + 2 and "installs" not in capsys.readouterr().err
    result = json.loads((tmp_path / "study.json").read_text())
    assert result["platforms"] == [{"id": platform_id(here), "platform": here, "cells": 6}]
    assert result["installs"] == [{"id": platform_id(install), "install": install, "cells": 2},
                                  {"id": "unknown", "cells": 4}]
    header, *lines = path.read_text().splitlines()
    cells = [json.loads(line) for line in lines]
    for cell in cells[:4]:                          # those four ran under another ray, on the same platform
        cell["cost"]["install"] = {**install, "ray": "2.0.0"}
    path.write_text("\n".join([header, *map(json.dumps, cells)]) + "\n")
    run_study("planted", tmp_path, quick=True, seeds=3, jobs=1)
    err = capsys.readouterr().err
    other = platform_id({**install, "ray": "2.0.0"})
    note = (f"its cells ran under 2 installs (ray differ: {other}: 2.0.0 (4 cells); {platform_id(install)}: "
            f"{install['ray']} (2 cells)); a cell's figures are reproducible from its seed under its own install only")
    assert note in err and "platforms" not in err
    result = json.loads((tmp_path / "study.json").read_text())
    assert result["installs_note"].startswith(note) and len(result["platforms"]) == 1
    page = (tmp_path / "study.html").read_text()
    assert "<b>Installs.</b> " + html.escape("Its" + note[3:]) in page and "Machines." not in page


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


def test_an_edited_line_of_a_cell_whose_outcome_is_diverged_is_named(monkeypatch, tmp_path):
    """Since the measured studies' diverged cells (their design's figures alone) were let lack a figure, a staleness
    cell that diverged, which holds every figure, lacked one by an edit unnamed: a bare KeyError traceback."""
    monkeypatch.setitem(studies.STUDIES, "planted", f"{__name__}:PlantedWithADivergedOutcome")
    run_study("planted", tmp_path, quick=True, jobs=1)
    edit_cells(tmp_path, lambda row: row["figures"].pop("x") if (row["condition"], row["seed"]) == ("b", 0) else None)
    with pytest.raises(ConfigError, match=r"the cell\(s\) b seed 0 lack figure 'x'.*delete those lines and run again"):
        run_study("planted", tmp_path, quick=True, jobs=1)


def test_a_damaged_context_is_named(planted, tmp_path):
    run_study("planted", tmp_path, quick=True, jobs=1)
    (tmp_path / "context.json").write_text('{"cut')                           # a kill mid-write: JSONDecodeError
    with pytest.raises(ConfigError, match="context.json' is damaged: delete it"):
        run_study("planted", tmp_path, quick=True, jobs=1)


def test_a_lost_figure_names_only_the_cells_whose_condition_measures_it(planted, tmp_path):
    """It named every cell without the figure, the conditions that never measure it too (the staleness study's
    12 sae/* cells, which have final_cost and no success): deleting them as told ran 12 good cells again."""
    run_study("planted", tmp_path, quick=True, jobs=1)
    # a never measures x here; b's seed 0 lost it
    edit_cells(tmp_path, lambda row: rename(row, "x", "y") if row["condition"] == "a" or row["seed"] == 0 else None)
    with pytest.raises(ConfigError, match=r"the cell\(s\) b seed 0 lack figure 'x'"):
        run_study("planted", tmp_path, quick=True, jobs=1)
