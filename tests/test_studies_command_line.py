"""`downpour study` on the command line: the list, each study's help, and the --set keys refused before any
cell (keys a study sets itself, never reads or keeps as designed)."""
from pathlib import Path

import pytest

from downpour import studies
from downpour.cli import main
from downpour.config import ConfigError, load_config
from downpour.studies.about import ABOUT, SECOND
from downpour.studies.base import Condition, Study
from downpour.studies import study_class
from downpour.studies.run import _check_sets, _pair, run_study
from planted_study import CALLS, Planted  # noqa: F401 (Planted: the planted study, by name below)
from planted_study import planted  # noqa: F401 (a fixture)


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


def test_a_term_set_off_by_its_weight_keeps_it_when_a_key_inside_it_is_set():
    """objective.kl_sparsity = 0 then objective.kl_sparsity.rho = 0.1 gave {rho: 0.1}: the weight fell to 3."""
    from downpour.models.registry import resolve

    cfg = resolve(load_config("ufldl-sae", [("objective.kl_sparsity", 0.0), ("objective.kl_sparsity.rho", 0.1)]))
    assert cfg.objective["kl_sparsity"] == {"weight": 0.0, "rho": 0.1}


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
