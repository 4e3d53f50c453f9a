"""Running a study's cells on a planted study: in this process or in workers, a failure or a stop, a run shared
by two conditions, a study whose every cell diverged."""
import json
import os

import pytest

from downpour import studies
from downpour.config import ConfigError
from downpour.studies.base import Condition
from downpour.studies.run import run_study
from planted_study import CALLS, EveryCellDiverges, Planted, quick_warning
from planted_study import planted  # noqa: F401 (a fixture)


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


class SetsTheEnvironment(Planted):
    """Its cells change the environment, as torch's first optimiser step does (it sets TORCHINDUCTOR_CACHE_DIR to a
    folder in the temporary one: a study's, in a cell)."""

    def run_cell(self, condition, seed, context):
        import tempfile

        os.environ["DOWNPOUR_TEST_CACHE"] = os.path.join(tempfile.gettempdir(), "cache")
        os.environ["DOWNPOUR_TEST_X"] = "changed"
        os.environ.pop("DOWNPOUR_TEST_GONE", None)
        return super().run_cell(condition, seed, context)


def test_a_study_run_in_this_process_leaves_its_environment_as_it_found_it(planted, tmp_path, monkeypatch):
    """What cells run in a worker change in the environment ends with the worker; run in the study's own process
    (jobs 1) it stayed (until 2026-12-07): TORCHINDUCTOR_CACHE_DIR named the study's removed folder, and the next
    process started from this one made it again (a test run left one in /tmp)."""
    monkeypatch.setitem(studies.STUDIES, "planted", f"{__name__}:SetsTheEnvironment")
    monkeypatch.setenv("DOWNPOUR_TEST_X", "1")
    monkeypatch.setenv("DOWNPOUR_TEST_GONE", "kept")
    monkeypatch.delenv("DOWNPOUR_TEST_CACHE", raising=False)
    before = dict(os.environ)
    run_study("planted", tmp_path, quick=True, jobs=1)
    assert dict(os.environ) == before


class Streams(Planted):
    """Its cells read through a DataLoader with a process of its own, as a streamed run's data do (data.loader_workers
    1, the default)."""

    def run_cell(self, condition, seed, context):
        from torch.utils.data import DataLoader

        assert [int(x) for x in DataLoader(range(3), num_workers=1)] == [0, 1, 2]
        return super().run_cell(condition, seed, context)


def test_a_cell_in_a_worker_process_may_start_processes_of_its_own(planted, tmp_path, monkeypatch):
    """A pool's workers are daemonic: a cell streaming its data with data.loader_workers >= 1 under --jobs 2 failed
    with "daemonic processes are not allowed to have children" (until 2026-12-07)."""
    monkeypatch.setitem(studies.STUDIES, "planted", f"{__name__}:Streams")
    run_study("planted", tmp_path, quick=True, jobs=2)
    assert json.loads((tmp_path / "study.json").read_text())["jobs"] == 2


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
