"""What the faces gave a study cell's face unit: each cell's no-faces twin (the same config and seed with
data.train_faces = 0), scored by the same face test on the same images, and the verdict's words for it."""
import dataclasses
import math

import pytest

from downpour.config import DataConfig, load_config
from downpour.models.registry import resolve
from downpour.studies import measure, trained
from downpour.studies.compare import NO_TWIN, owed_paragraph
from downpour.studies.measure import Measures, train_and_measure
from downpour.studies.trained import OWED, no_faces_twin, owed_figures

pytestmark = pytest.mark.usefixtures("one_thread")

# the UFLDL autoencoder on cat-demo's data, a few steps: the cheapest cell that trains on lfw's faces
# (model.tile = 0: cat-demo's tile 2 would reach the dense autoencoder, which refuses a key it cannot use)
SAE = [("model.name", "ufldl-sae"), ("model.tile", 0), ("model.output", "linear"), ("train.steps", 3),
       ("train.tensorboard", False), ("train.threads", 1)]
SMALL = Measures(probes=(), control_draws=1, bootstrap=20, random_filters=20)


def sae_config(seed=0, extra=()):
    return resolve(load_config("cat-demo", [*SAE, *extra, ("seed", seed)]))


@pytest.mark.parametrize("data, faces", [
    (DataConfig(source="natural+faces"), True),
    (DataConfig(source="faces"), True),
    (DataConfig(source="natural+faces", train_faces=0), False),
    (DataConfig(source="natural+faces", faces_fraction=0.0), False),
    (DataConfig(source="faces", train_faces=0), False),   # lfw's non-faces only
    (DataConfig(source="natural"), False),
    (DataConfig(source="digits"), False),
])
def test_which_data_show_the_network_a_face(data, faces):
    assert data.trains_on_faces() is faces


def test_the_twin_is_the_cells_config_without_the_faces(monkeypatch):
    trained_configs = []
    real = trained.trained_run

    def spy(cfg, *args):
        trained_configs.append(cfg)
        return real(cfg, *args)

    monkeypatch.setattr(trained, "trained_run", spy)
    cfg = sae_config(seed=3)
    with no_faces_twin(cfg) as twin:
        assert twin is not None and twin[0].config.data.train_faces == 0
    (got,) = trained_configs
    assert got.data.train_faces == 0 and got.analysis.report is False
    assert dataclasses.replace(got, data=cfg.data, analysis=cfg.analysis) == cfg     # nothing else differs


def test_no_twin_where_the_data_hold_no_face(monkeypatch):
    monkeypatch.setattr(trained, "trained_run", lambda cfg: pytest.fail("trained a twin of a run without faces"))
    with no_faces_twin(sae_config(extra=[("data.train_faces", 0)])) as twin:
        assert twin is None


def test_owed_is_the_learned_units_auc_minus_the_twins():
    got = owed_figures({"lfw": 0.9, "controls": 0.7, "lfw_no_faces": 0.8, "controls_no_faces": 0.75})
    assert set(got) == set(OWED)
    assert got["face_owed_lfw"] == pytest.approx(0.1) and got["face_owed_controls"] == pytest.approx(-0.05)
    assert got["face_auc_controls_no_faces"] == 0.75
    alone = owed_figures({"lfw": 0.9, "controls": 0.7})          # a cell without a twin: not measured
    assert all(math.isnan(v) for v in alone.values())


def test_a_cell_with_its_twin_measures_the_learned_unit_as_one_without():
    """The twin is one more method in the same face test: the learned unit's figures do not move, and the
    twin's own AUCs are those of a network trained without a face (not the learned one's again)."""
    cfg = sae_config()
    with_twin = train_and_measure(cfg, SMALL, seed=0)
    alone = train_and_measure(cfg, dataclasses.replace(SMALL, no_faces=False), seed=0)
    for key in ("face_auc_lfw", "face_auc_controls", "edge_fraction", "final_loss"):
        assert with_twin[key] == alone[key], key
    assert not set(OWED) & set(alone)
    for k in ("lfw", "controls"):
        assert with_twin[f"face_owed_{k}"] == with_twin[f"face_auc_{k}"] - with_twin[f"face_auc_{k}_no_faces"]
    assert with_twin["face_owed_controls"] != 0.0                   # a different network, a different unit


def twins_scored(monkeypatch):
    """The twin each face test of a cell is given (None: none), appended as the cell measures."""
    seen = []
    real = measure.face_aucs

    def spy(*args, **kwargs):
        seen.append(kwargs.get("no_faces"))
        return real(*args, **kwargs)

    monkeypatch.setattr(measure, "face_aucs", spy)
    return seen


def test_measure_run_reads_the_twin_it_is_given(monkeypatch):
    seen = twins_scored(monkeypatch)
    figures = train_and_measure(sae_config(extra=[("data.train_faces", 0)]), SMALL, seed=0)
    assert seen == [None] and all(math.isnan(figures[k]) for k in OWED)     # nothing to take away: not measured


def row(name, owed, no_faces=0.7, learned=0.8):
    return {"condition": name, "figures": {"face_owed_controls": owed, "face_auc_controls": [learned] * 3,
                                           "face_auc_controls_no_faces": [no_faces, no_faces - 0.05, no_faces + 0.05]}}


def test_the_verdict_names_who_owes_the_faces_something():
    text = owed_paragraph([row("a", [0.10, 0.04, 0.16]), row("b", [0.01, -0.02, 0.03]), row("c", [-0.2, -0.3, -0.1])])
    assert "a +0.100 [+0.040, +0.160], higher (without a face: 0.700 [0.650, 0.750])" in text
    assert "b +0.010 [-0.020, +0.030], no detectable effect" in text and "c -0.200 [-0.300, -0.100], lower" in text
    assert text.endswith("The face unit owes something to the faces in: a.")


def test_the_verdict_says_when_no_one_owes_the_faces_anything_and_when_it_cannot_tell():
    none = owed_paragraph([row("a", [0.01, -0.02, 0.03]), row("b", [-0.2, -0.3, -0.1])])
    assert "No condition's face unit owes the faces anything detectable" in none
    wide = owed_paragraph([row("a", [0.01, -0.02, 0.03]), row("b", [0.05, -0.1, 0.2])])
    assert "No condition is shown to owe its face unit to the faces (too wide to tell: b)." in wide
    unmeasured = owed_paragraph([row("a", [math.nan] * 3)])
    assert "was not measured" in unmeasured and f"a not measured ({NO_TWIN})" in unmeasured
    unchosen = owed_paragraph([row("a", [math.nan] * 3, learned=math.nan)])
    assert "a not measured (no face unit could be chosen)" in unchosen


def test_a_cell_that_diverged_or_has_no_face_unit_is_counted_out_not_the_end_of_the_study(monkeypatch):
    """A measured study's cell whose run diverged (every step non-finite), or whose face test could choose
    no unit (every response non-finite or constant), ended the whole study with a traceback, and the same
    cell ended every rerun. Now: the diverged cell is {"diverged": 1.0}, the face figures NaN."""
    import contextlib

    from downpour.analysis.choice import NoCandidate
    from downpour.errors import Diverged

    @contextlib.contextmanager
    def diverges(cfg, **kwargs):
        raise Diverged("every one of the 3 steps 1..3 had a non-finite cost")
        yield

    with monkeypatch.context() as m:
        m.setattr(measure, "trained_run", diverges)
        diverged = train_and_measure(sae_config(), SMALL, seed=0)

    def no_unit(*args, **kwargs):
        raise NoCandidate("the face test on layer 'codes': no candidate of 25 can be chosen")

    monkeypatch.setattr(trained, "face_controls", no_unit)
    figures = train_and_measure(sae_config(), dataclasses.replace(SMALL, invariance=True), seed=0)
    assert all(math.isnan(figures[k]) for k in ("face_auc_lfw", "face_auc_controls", *OWED))
    assert all(math.isnan(figures[k]) for k in ("inv_scale_octaves", "inv_shift", "inv_rotation"))
    assert math.isfinite(figures["edge_fraction"]) and math.isfinite(figures["final_loss"])
    # they need no training: a diverged run has them, as a finished one's
    assert diverged == {"diverged": 1.0, **{k: figures[k] for k in measure.DESIGN_FIGURES}} and figures["params"] > 0


# the SAE cell at Adam's rate 1000, a row a step: 570.1 at step 1 -> 5.1e+10 at step 6, every number finite
RUNAWAY = {"lr": 1000.0, "steps": 6, "log_every": 1}


def ran_away(cfg):
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **RUNAWAY))


def test_a_cell_whose_loss_ran_away_with_finite_numbers_is_counted_out_and_named(caplog):
    """runners.train says such a run diverged (summary["diverged"]), but a measured cell counted one out only when
    every step was non-finite: this one was measured as trained, its AUCs and probes in the intervals."""
    from downpour.data.build import sample_shape
    from downpour.studies.base import Condition
    from downpour.studies.compare import compare_rows
    from downpour.studies.diverged import count_diverged
    from downpour.studies.stats import diverged_paragraph

    cfg = ran_away(sae_config())
    got = train_and_measure(cfg, SMALL, seed=0)
    assert got == {"diverged": 1.0, **measure.design_figures(cfg, sample_shape(cfg.data))}
    assert "seed 0 diverged: its loss grew from 570.1 at step 1 to" in caplog.text
    conditions = [Condition("ref", {"vs": ""}), Condition("arm", {"vs": "ref"})]
    cells = {(c.name, s): {"face_auc_lfw": 0.6 + 0.01 * s, "params": got["params"]} for c in conditions for s in range(4)}
    cells[("arm", 0)] = got
    rows = compare_rows(conditions, cells, list(range(4)), {"face_auc_lfw": 0.02})
    count_diverged(rows, cells, list(range(4)))
    assert rows[1]["diverged"] == 1 and "arm (1 of 4 seeds)" in diverged_paragraph(rows)


def test_a_twin_whose_loss_ran_away_is_counted_out_and_the_run_measured(monkeypatch):
    """The no-faces twin's run that ran away with finite numbers was the twin its unit's AUCs were scored beside."""
    real = trained.no_faces_config
    monkeypatch.setattr(trained, "no_faces_config", lambda cfg: ran_away(real(cfg)))
    seen = twins_scored(monkeypatch)
    figures = train_and_measure(sae_config(), SMALL, seed=0)
    assert seen == [None] and all(math.isnan(figures[k]) for k in OWED)
    assert math.isfinite(figures["face_auc_lfw"]) and "diverged" not in figures


def test_a_gain_the_same_in_every_seed_has_the_sign_tests_interval_not_a_zero_width_one():
    """face_owed_* are per-seed paired differences: 0.06 in each of 3 seeds read "+0.060 [+0.060, +0.060],
    higher" through the t interval of their mean; the paired difference's rule says 3 seeds cannot tell."""
    from downpour.studies.compare import figure_ci

    assert figure_ci("face_owed_controls", [0.06, 0.06, 0.06]) == (pytest.approx(0.06), -math.inf, math.inf)
    assert figure_ci("face_auc_controls", [0.06, 0.06, 0.06])[1:] == (pytest.approx(0.06), pytest.approx(0.06))
    text = owed_paragraph([row("x", list(figure_ci("face_owed_controls", [0.06, 0.06, 0.06])))])
    assert "x +0.060 (no interval: too few seeds to tell), inconclusive" in text and "owes something to the faces in" not in text


def test_a_twin_whose_units_cannot_be_chosen_leaves_the_runs_own_face_figures(monkeypatch):
    """The twin's units are chosen in the same test as the run's: a dead twin made the run's own face
    figures NaN too, and the verdict said no face unit of the run could be chosen."""
    from downpour.analysis.choice import NoCandidate

    real = trained.face_controls

    def dead_twin(*args, **kwargs):
        if kwargs.get("no_faces") is not None:
            raise NoCandidate("the face test on layer 'codes': no candidate of 25 can be chosen")
        return real(*args, **kwargs)

    monkeypatch.setattr(trained, "face_controls", dead_twin)
    figures = train_and_measure(sae_config(), SMALL, seed=0)
    assert math.isfinite(figures["face_auc_lfw"]) and math.isfinite(figures["face_auc_controls"])
    assert all(math.isnan(figures[k]) for k in OWED)


def test_diverged_seeds_are_counted_and_said_not_read_as_a_figure(monkeypatch):
    """A diverged cell's {"diverged": 1.0} became a figure: "1.000 [-inf, inf] (5 of 6 seeds left out)";
    and the architectures study's run_cell read its 'steps' (KeyError: the study ended)."""
    from downpour.studies import architectures
    from downpour.studies.base import Condition
    from downpour.studies.compare import compare_rows
    from downpour.studies.diverged import count_diverged
    from downpour.studies.run import note_missing
    from downpour.studies.stats import diverged_paragraph

    seeds = list(range(6))
    conditions = [Condition("ref", {"vs": ""}), Condition("arm", {"vs": "ref"})]
    cells = {(c.name, s): {"probe": 0.5 + 0.01 * s} for c in conditions for s in seeds}
    cells[("arm", 0)] = {"diverged": 1.0}
    rows = compare_rows(conditions, cells, seeds, {"probe": 0.02})
    count_diverged(rows, cells, seeds)
    note_missing(rows, cells, seeds)
    assert "diverged" not in rows[1]["figures"] and rows[1]["diverged"] == 1 and "diverged" not in rows[0]
    assert rows[1]["missing"]["probe"] == 1
    assert diverged_paragraph(rows) == ("Diverged (every step non-finite, or the loss ran away: left out of every "
                                        "trained figure's interval above): arm (1 of 6 seeds).")
    monkeypatch.setattr(architectures, "train_and_measure", lambda cfg, measures, seed: {"diverged": 1.0})
    study = architectures.ArchitecturesStudy(quick=True)
    cat = study.conditions()[0]
    assert study.run_cell(cat, 0, {"steps": {cat.name: 3}, "flops_per_step": {cat.name: 2.0}}) == {
        "diverged": 1.0, "steps": 3.0, "train_flops": 6.0}       # the budget it spent, as a finished arm's


def test_a_gain_from_the_faces_that_holms_correction_does_not_keep_is_called_a_lead():
    """The quick architectures verdict said "rbm +0.159 [+0.059, +0.260], higher" and "The face unit owes something
    to the faces in: rbm, sae." while its last paragraph named both gains leads, not findings."""
    from downpour.studies.holm import holm

    kept, lead = row("a", [0.10, 0.04, 0.16]), row("b", [0.10, 0.04, 0.16])
    kept["tests"] = {"face_owed_controls": {"reading": "higher", "p": 0.001}}
    lead["tests"] = {"face_owed_controls": {"reading": "higher", "p": 0.2}}   # (Holm p 0.2)
    holm([kept, lead])
    text = owed_paragraph([kept, lead])
    assert "a +0.100 [+0.040, +0.160], higher (without a face" in text
    assert "b +0.100 [+0.040, +0.160], higher, a lead (without a face" in text     # (not "(a lead: ...) (without")
    assert text.endswith("The face unit owes something to the faces in: a, b (a lead).")


def test_the_owed_figure_title_names_no_condition(tmp_path, monkeypatch):
    """Its bars are every condition's gain from the faces; "learned minus no-faces twin" (until 2026-12-06) read, in the
    first-layer study, whose reference condition is "learned", as that condition's alone."""
    from downpour.studies import compare
    got = {}
    monkeypatch.setattr(compare, "interval_bars", lambda names, triples, path, title, *a, **k: got.update(title=title))
    compare.owed_figure([{"condition": "learned", "figures": {}}, {"condition": "gabor", "figures": {}}], tmp_path / "f.png")
    assert got["title"] == "face AUC on the controls (95% intervals):\ntrained with faces minus its no-faces twin"
