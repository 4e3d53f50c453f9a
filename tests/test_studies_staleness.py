"""The staleness study's instruments: the teacher-student task, the in-memory simulator, the
momentum rule and gradient noise of its controls, the matching, and the quick study end to end."""
import dataclasses
import hashlib
import json
import re
import math

import numpy as np
import pytest
import torch

from downpour.config import ConfigError, config_to_dict, load_config
from downpour.data import build_dataset
from downpour.models.registry import create_model, resolve
from downpour.ps.in_memory import simulate
from downpour.ps.rules import make_rule
from downpour.ps.shard import Shard
from downpour.runners import train
from downpour.studies.matching import implicit_momentum, stale_error
from downpour.studies import study_class
from downpour.studies.cells import CellCache
from downpour.studies.cell_hash import ADDED_KEYS, digest, digests
from downpour.studies.run import _context, cells_header, run_study
from downpour.analysis.options import open_run
from downpour.train.rundir import RunDir
from nesting import check_verdict_nests_nothing

pytestmark = pytest.mark.usefixtures("one_thread")


def ts_config(**sets):
    base = {"train.steps": 60, "train.lr": 0.125, "data.samples": 2000, "cluster.workers": 2,
            "cluster.delay": "constant:2", "train.log_every": 20}
    base.update(sets)
    return resolve(load_config("teacher-student", list(base.items())))


# --- the task ------------------------------------------------------------------------------------
def test_population_loss_is_exact():
    """The arc-cosine formula against a large Monte Carlo estimate, 0 at the teacher, and
    invariant to the order of the student's units."""
    torch.manual_seed(0)
    m = create_model("teacher-student", (1, 1, 6), width=6, teacher_width=4)
    x = torch.randn(400_000, 1, 1, 6)
    with torch.no_grad():
        mc = float(0.5 * ((m(x).sum(1) - m.target(x)[:, 0]) ** 2).mean())
    assert m.population_loss() == pytest.approx(mc, rel=0.02)
    with torch.no_grad():
        m.weight.copy_(torch.cat([m.teacher, torch.zeros(2, 6)])[torch.randperm(6)])
    assert m.population_loss() == pytest.approx(0.0, abs=1e-12)


def test_teacher_wider_than_input_is_refused():
    with pytest.raises(ValueError, match="teacher_width = 9"):
        create_model("teacher-student", (1, 1, 8), teacher_width=9)


def test_gaussian_source_and_by_label_split():
    """by-label sorts the rows by label, so worker shards see different labels; iid does not."""
    cfg = load_config("teacher-student", [("data.samples", 800), ("data.split", "by-label")]).data
    data = build_dataset(cfg, 0)
    assert data.input_shape == (1, 1, 8) and len(data) == 800
    assert torch.equal(data.y, data.x.reshape(800, 8).argmax(1))
    first, last = data.shard(0, 4).y, data.shard(3, 4).y
    assert first.max() < last.min()
    iid = build_dataset(load_config("teacher-student", [("data.samples", 800)]).data, 0)
    assert set(iid.shard(0, 4).y.tolist()) == set(range(8))


def test_by_label_needs_labels():
    with pytest.raises(ConfigError, match="data.split = 'by-label' needs labelled data"):
        build_dataset(load_config("ufldl-sae", [("data.split", "by-label"), ("data.samples", 50)]).data, 0)


# --- the simulator in memory ------------------------------------------------------------------------
def test_a_diverged_simulation_reports_no_final_loss():
    # every step of the last pushes is non-finite: their mean loss was 0.0, read as a converged run
    cfg = resolve(load_config("tica-8x8", ["train.threads=1", "data.samples=500", "train.steps=40",
                                           "train.tensorboard=false", "cluster.runner=simulated", "cluster.rule=sgd",
                                           "cluster.lr=1e4"]))
    assert math.isnan(simulate(cfg).final_loss)


def test_in_memory_simulation_equals_the_simulated_runner(tmp_path):
    """simulate() drives the same machinery as `downpour train --runner simulated`: same bits."""
    cfg = ts_config()
    sim = simulate(cfg)
    run = RunDir.create(tmp_path / "run", cfg)
    summary = train(cfg, run)
    model = open_run(run.path)[1]
    for a, b in zip(sim.model.parameters(), model.parameters()):
        assert torch.equal(a, b)
    assert sim.mean_staleness == pytest.approx(summary["mean_staleness"])
    assert sim.pushes == summary["pushes"] and sim.rejected == 0


def test_in_memory_simulation_runs_downpour_only():
    with pytest.raises(ConfigError, match="simulate\\(\\) runs Downpour"):
        simulate(ts_config(**{"cluster.algorithm": "sandblaster"}))


def test_delay_reaches_the_staleness():
    sync = simulate(ts_config(**{"cluster.workers": 1, "cluster.delay": "constant:0"}))
    late = simulate(ts_config(**{"cluster.workers": 1, "cluster.delay": "constant:4"}))
    assert sync.mean_staleness == 0 and late.mean_staleness == pytest.approx(4, abs=0.2)


# --- the controls' instruments ---------------------------------------------------------------------
def test_momentum_rule_is_heavy_ball():
    rule = make_rule("momentum", lr=0.1, momentum=0.5)
    w, state = torch.zeros(3), rule.init_state(3)
    g1, g2 = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 0.5, -1.0])
    rule.apply(w, g1, state)
    rule.apply(w, g2, state)
    v2 = 0.5 * g1 + g2
    assert torch.allclose(w, -0.1 * g1 - 0.1 * v2)
    with pytest.raises(ValueError, match="momentum must be in"):
        make_rule("momentum", lr=0.1, momentum=1.0)


def test_a_stale_push_weighs_its_own_gradient_not_the_velocity():
    """staleness-lr's 1/s scaled the whole step, so the fresh pushes already in the velocity counted less too."""
    from downpour.ps.rules import apply_live

    rule = make_rule("momentum", lr=0.1, momentum=0.5)
    g2 = torch.tensor([1.0, 0.0, -1.0])
    for live in (None, [(0, 1), (2, 3)]):     # every tensor trained; the middle one held
        w, state = torch.zeros(3), rule.init_state(3)
        g1 = torch.tensor([1.0, 2.0, 3.0])
        rule.apply(w, g1, state)                    # fresh
        apply_live(rule, w, g2, state, lr_scale=0.25, live=live)     # 4 updates stale
        on = torch.tensor([True, live is None, True])   # an exact 0 of a trained tensor coasts
        v2 = torch.where(on, 0.5 * g1 + 0.25 * g2, g1)
        assert torch.allclose(w, -0.1 * g1 - 0.1 * torch.where(on, v2, 0.0))


def test_grad_noise_is_seeded_and_sized():
    def applied(noise, seed):
        s = Shard(0, torch.zeros(20_000), make_rule("sgd", 1.0), workers=[0], noise=noise, seed=seed)
        s.push(0, torch.ones(20_000), 0, 0)
        return -s.params - 1.0          # the noise that came with the gradient

    assert torch.equal(applied(0.0, 1), torch.zeros(20_000))
    a, b, c = applied(0.3, 1), applied(0.3, 1), applied(0.3, 2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.std()) == pytest.approx(0.3, rel=0.03)


@pytest.mark.parametrize("rule", ["sgd", "adagrad", "adam"])
def test_grad_noise_leaves_a_held_stage_still(rule):
    """A stage a greedy schedule holds still has a gradient of exactly 0: staleness adds it no error, so
    neither does its stand-in (under Adagrad or Adam even noise of 1e-6 moved it by about lr per push)."""
    s = Shard(0, torch.zeros(200), make_rule(rule, 0.05), workers=[0], noise=1e-6, seed=1)
    grad = torch.cat([torch.ones(100), torch.zeros(100)])
    for seq in range(20):
        s.push(0, grad, s.version, seq)
    assert torch.equal(s.params[100:], torch.zeros(100)) and bool((s.params[:100] != 0).all())


def test_relative_grad_noise_scales_with_the_gradient():
    def applied(grad):
        s = Shard(0, torch.zeros(20_000), make_rule("sgd", 1.0), workers=[0], noise=0.5, seed=3, noise_relative=True)
        s.push(0, grad, 0, 0)
        return -s.params - grad

    small, large = applied(torch.full((20_000,), 0.01)), applied(torch.full((20_000,), 2.0))
    assert float(small.std()) == pytest.approx(0.005, rel=0.03) and torch.allclose(large, small * 200, atol=1e-4)
    assert torch.equal(applied(torch.zeros(20_000)), torch.zeros(20_000))


def test_relative_grad_noise_of_a_greedy_push_is_sized_by_the_stages_it_trained():
    """A greedy push names its stages: the noise's RMS is the trained tensors', not the whole slice's. It was the
    slice's, a held stage's zeros counted, so a trained stage sharing its shard with a held one got less noise
    (half held: 0.71x; tiny cat-demo's 2 shards at stage 2: 0.42x). An exact 0 inside a trained tensor (a dead
    ReLU unit) still gets none, and a held stage none."""
    def noise(n_held, stages=(2,)):
        n = 20_000
        s = Shard(0, torch.zeros(n), make_rule("sgd", 1.0), workers=[0], noise=0.5, seed=3, noise_relative=True,
                  stage_pieces={1: [(0, n_held)], 2: [(n_held, n)]} if n_held else {2: [(0, n)]})
        grad = torch.cat([torch.zeros(n_held), torch.full((n - n_held,), 2.0)])
        grad[-100:] = 0.0                                   # dead units of the trained stage
        s.push(0, grad, 0, 0, stages)
        return -s.params - grad

    half, none = noise(10_000), noise(0)
    rms = 2.0 * (9_900 / 10_000) ** 0.5                    # the trained tensor's RMS, its dead units' zeros counted
    assert float(half[10_000:-100].std()) == pytest.approx(0.5 * rms, rel=0.03)
    assert float(none[:-100].std()) == pytest.approx(0.5 * 2.0 * (19_900 / 20_000) ** 0.5, rel=0.03)
    assert torch.equal(half[:10_000], torch.zeros(10_000)) and torch.equal(half[-100:], torch.zeros(100))
    joint = noise(10_000, stages=None)                      # a joint push: the whole slice's RMS, as always
    assert float(joint[10_000:-100].std()) == pytest.approx(0.5 * 2.0 * (9_900 / 20_000) ** 0.5, rel=0.03)
    held = Shard(0, torch.zeros(200), make_rule("adam", 0.05), workers=[0], noise=0.5, noise_relative=True,
                 stage_pieces={1: [(0, 200)]})
    held.push(0, torch.zeros(200), 0, 0, (2,))              # nothing of the slice trained: no noise, no NaN
    assert torch.equal(held.params, torch.zeros(200))


def test_grad_noise_changes_training():
    plain = simulate(ts_config())
    noisy = simulate(ts_config(**{"cluster.grad_noise": 0.05}))
    assert not torch.equal(plain.model.weight, noisy.model.weight)


def test_stale_error_is_zero_without_staleness():
    cfg = ts_config()
    assert stale_error(cfg, [0] * 30) == (0.0, 0.0)
    rms, ratio = stale_error(cfg, [3] * 30)
    assert rms > 0 and 0 < ratio < 10


def test_implicit_momentum():
    mu, lr = implicit_momentum(3.0, 0.2)   # M = 4 workers
    assert mu == pytest.approx(0.75) and lr == pytest.approx(0.05)
    assert lr / (1 - mu) == pytest.approx(0.2)    # the same effective step


# --- the quick study, end to end ------------------------------------------------------------------
@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("staleness")
    run_study("staleness", out, quick=True, seeds=2, jobs=1)   # (in this process: tests/study_quick.py says why)
    return out, json.loads((out / "study.json").read_text())


def test_quick_study_writes_what_the_issue_asks(quick):
    out, result = quick
    for key in ("study", "question", "cells", "seeds", "verdict", "command"):
        assert key in result
    assert result["seeds"] == [0, 1] and result["command"].startswith("downpour study staleness --quick --seeds 2")
    for row in result["cells"]:
        assert row["n"] == 2 and row["params"]
        for value, low, high in row["figures"].values():
            assert math.isnan(value) or low <= value <= high
    assert result["verdict"].startswith("This is the quick setting (")
    assert result["verdict"].count("This is the quick setting") == 1    # (the runner's alone, not the study's too)
    check_verdict_nests_nothing("staleness", result["cells"])     # ("(Δ -25 points (no interval: ...): ...)")
    # its claim and Holm's count, a sentence each, then the study's reading, then its overall reading
    paragraphs = result["verdict"].split("\n\n")
    assert paragraphs[1].startswith("At learning rate 0.125, asynchrony with 4 workers ")
    assert " Holm's count over every comparison: " in paragraphs[1]
    assert paragraphs[2].startswith("Over the phase diagram's ")
    conditions, comparisons = (out / "study.html").read_text().split("<h2>Comparisons</h2>")
    assert conditions.count("<tr>") == len(result["cells"]) + 1
    assert comparisons.count("<tr>") == sum(len(row.get("tests", {})) for row in result["cells"]) + 1
    for f in result["figures"]:
        assert (out / f).stat().st_size > 1000


def test_quick_study_conditions_measure_what_they_say(quick):
    out, result = quick
    rows = {r["condition"]: r for r in result["cells"]}
    assert rows["lr0.125/sync"]["figures"]["mean_staleness"][0] == 0
    assert rows["lr0.125/delay4"]["figures"]["mean_staleness"][0] == pytest.approx(4, abs=0.2)
    assert rows["lr0.125/async4"]["figures"]["mean_staleness"][0] > 1
    assert result["context"]["lr0.125"]["grad_noise"] > 0
    cells = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()[1:]]
    by = {(c["condition"], c["seed"]): c["figures"] for c in cells}
    for seed in (0, 1):   # the noise control is not the plain run of the same seed
        assert by[("lr0.125/noise", seed)]["population_loss"] != by[("lr0.125/sync", seed)]["population_loss"]
    assert all(np.isfinite(by[("sae/serial", s)]["final_cost"]) for s in (0, 1))


def test_a_diverged_autoencoder_seed_is_counted_not_averaged_away(quick):
    out, result = quick
    cells = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()[1:]]
    by = {(c["condition"], c["seed"]): c["figures"] for c in cells}
    by[("sae/async4", 1)] = {**by[("sae/async4", 1)], "final_cost": math.nan}
    study = study_class("staleness")(quick=True)
    rows = {r["condition"]: r for r in study.summarise(study.conditions(), by, [0, 1])}
    row = rows["sae/async4"]
    assert row["extra"]["diverged"] == 1 and rows["sae/serial"]["extra"]["diverged"] == 0
    assert row["figures"]["final_cost"][0] == by[("sae/async4", 0)]["final_cost"]   # the finite seed alone
    assert "async4" in study.verdict(list(rows.values())) and "1 of 2 seeds diverged" in study.verdict(list(rows.values()))


def test_a_diverged_synchronous_baseline_is_not_blamed_on_staleness(quick):
    """'Most seeds diverged in ...: there staleness lowered the stable learning rate' listed sync rows too."""
    out, result = quick
    cells = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()[1:]]
    by = {(c["condition"], c["seed"]): c["figures"] for c in cells}
    study = study_class("staleness")(quick=True)
    for seed in (0, 1):                               # every run at 0.125 diverges, the baseline too
        for name in [c.name for c in study.conditions() if c.name.startswith("lr0.125/")]:
            by[(name, seed)] = {**by[(name, seed)], "diverged": 1.0, "success": 0.0}
    verdict = study.verdict(study.summarise(study.conditions(), by, [0, 1]))
    # (since the blame needs a paired test, the stale rows are named beside their baseline's count, not blamed)
    assert "there staleness lowered the stable learning rate" not in verdict
    assert not re.search(r"(?<![/\w])lr0\.125/sync \(\d", verdict)          # (a baseline is not a stale condition)
    assert "lr0.125/delay4 (2 of 2, against 2 without staleness)" in verdict and "Most seeds diverged in" in verdict


def test_the_width_and_data_sentences_say_when_the_seeds_diverged(quick):
    """'wide/lr0.125/async4 reached 0% vs wide/lr0.125/sync' read as stuck in spurious minima when every
    seed had diverged."""
    out, result = quick
    cells = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()[1:]]
    by = {(c["condition"], c["seed"]): c["figures"] for c in cells}
    study = study_class("staleness")(quick=True)
    for seed in (0, 1):
        by[("wide/lr0.125/async4", seed)] = {**by[("wide/lr0.125/async4", seed)], "diverged": 1.0, "success": 0.0}
    verdict = study.verdict(study.summarise(study.conditions(), by, [0, 1]))
    wide = next(line for line in verdict.splitlines() if "over-parametrised student" in line)
    assert "100% of its seeds diverged" in wide


def test_a_success_interval_that_leaves_out_0_and_reads_inconclusive_says_mcnemars_p(quick):
    """'wide/lr0.125/async4 reached 0% vs wide/lr0.125/sync (Δ -100 points [-100, -7]: inconclusive)': the
    reading is McNemar's (4 of 4 seeds lost: p = 0.125), which the sentence never said."""
    out, result = quick
    cells = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()[1:]]
    by = {(c["condition"], s): c["figures"] for c in cells for s in range(4) if c["seed"] == s % 2}
    study = study_class("staleness")(quick=True)
    for seed in range(4):
        by[("wide/lr0.125/sync", seed)] = {**by[("wide/lr0.125/sync", seed)], "diverged": 0.0, "success": 1.0}
        by[("wide/lr0.125/async4", seed)] = {**by[("wide/lr0.125/async4", seed)], "diverged": 0.0, "success": 0.0}
    rows = study.summarise(study.conditions(), by, list(range(4)))
    wide = next(r for r in rows if r["condition"] == "wide/lr0.125/async4")
    assert wide["figures"]["delta_vs_success"][2] < 0 and wide["extra"]["reading"] == "inconclusive"
    said = next(line for line in study.verdict(rows).splitlines() if "over-parametrised student" in line)
    assert "inconclusive, McNemar's exact p = 0.125 on the 4 seeds where only one of the two succeeded" in said
    assert said.count("McNemar") == 1          # (not beside a reading whose interval holds 0)


def test_a_compared_rate_is_said_beside_its_baselines_and_each_count_says_what_it_counts(quick):
    """'wide/lr0.125/async4 reached 0% vs wide/lr0.125/sync (Δ -75 points)': 0% against what; and 'Over 2
    comparisons ...' above 'Holm's correction over the 9 paired comparisons' in the same verdict, neither saying
    which comparisons it counted."""
    from downpour.studies.holm import family_paragraph, holm
    out, result = quick
    cells = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()[1:]]
    by = {(c["condition"], s): c["figures"] for c in cells for s in range(4) if c["seed"] == s % 2}
    study = study_class("staleness")(quick=True)
    for seed in range(4):                            # planted: the baseline succeeds in 3 of 4 seeds, async4 in none
        by[("wide/lr0.125/sync", seed)] = {**by[("wide/lr0.125/sync", seed)], "diverged": 0.0, "success": float(seed > 0)}
        by[("wide/lr0.125/async4", seed)] = {**by[("wide/lr0.125/async4", seed)], "diverged": 0.0, "success": 0.0}
    rows = study.summarise(study.conditions(), by, list(range(4)))
    verdict = study.verdict(rows)
    assert "wide/lr0.125/async4 reached 0% against wide/lr0.125/sync's 75% (Δ -75 points [" in verdict
    assert "the noise-matched control reached " in verdict and " against async4's " in verdict
    phase = sum(r["group"] == "phase" and bool(r["params"]["vs"]) for r in rows)
    tests = holm(rows)
    assert tests > phase
    # (first: the runner puts the quick setting's warning before it, run.verdict_text)
    assert verdict.split("\n\n")[0].startswith(f"Over the phase diagram's {phase} success-rate comparisons (each stale condition against "
                              "synchronous SGD at the same rate and seeds; not the controls or the arms below), ")
    assert family_paragraph(rows).startswith(
        f"Holm's correction over all {tests} paired comparisons this verdict reads (every figure it compares between a "
        "condition and its reference, in all its paragraphs)")


@pytest.mark.parametrize("key", ["cluster.runner=local", "cluster.address=10.0.0.1:6379", "train.optimizer=adam",
                                 "cluster.algorithm=sandblaster", "cluster.restarts=3"])
def test_a_set_the_simulated_cells_never_read_is_refused(tmp_path, key):
    """Accepted and recorded in study.json, while every cell ran on the simulator anyway."""
    with pytest.raises(ConfigError, match="runs Downpour on the in-memory simulator"):
        run_study("staleness", tmp_path / "s", quick=True, seeds=2, sets=[key])


def test_the_teacher_students_model_keys_stay_out_of_the_autoencoder_arms():
    """model.teacher_width reached ufldl-sae, whose error named that model."""
    study = study_class("staleness")(quick=True, sets=[("model.teacher_width", 4)])
    by_group = {c.group: c for c in study.conditions()}
    assert study.cell_config(by_group["sae"], 0).model.name == "ufldl-sae"
    student = study.cell_config(next(c for c in study.conditions() if c.group != "sae"), 0)
    assert student.model.options["teacher_width"] == 4


def test_a_cells_hash_is_the_same_with_the_report_on_or_off():
    """analysis.report is read by `downpour train` after its training alone, never by a cell: turning the
    teacher-student preset's on (2026-12-06) would have changed every staleness cell's hash, and the study refused
    every folder begun before, its cells unchanged."""
    study = study_class("staleness")(quick=True)
    for condition in study.conditions():
        cfg = study.cell_config(condition, 0)
        on, off = (dataclasses.replace(cfg, analysis=dataclasses.replace(cfg.analysis, report=r)) for r in (True, False))
        assert digest(on) == digest(off), condition.name
    assert digest(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=0.5))) != digest(cfg)   # one that trains


def _hashed_before(cfg):
    """A cell's hash as the study wrote it before 2026-12-06, independently of cell_hash.digest: the sha256 of its config's
    table but the seed and the added keys at their old values, with analysis.report off, as the preset had it."""
    table = {k: v for k, v in config_to_dict(cfg).items() if k != "seed"}
    table["analysis"] = {**table["analysis"], "report": False}
    for (section, key), value in ADDED_KEYS.items():
        if table[section].get(key) == value:
            table[section] = {k: v for k, v in table[section].items() if k != key}
    return hashlib.sha256(json.dumps(table, sort_keys=True, default=str).encode()).hexdigest()[:16]


def test_a_folder_whose_cells_were_hashed_with_the_report_off_is_resumed_with_its_calibration(tmp_path, monkeypatch):
    """A staleness folder begun before the preset's report was on: its cells are kept, its header stays as it was, and
    so does its context.json's settings digest, so its calibration is not computed again (a hash that left the key
    out would have accepted the folder but rewritten its header, and recalibrated it)."""
    study = study_class("staleness")(quick=True)
    conditions = study.conditions()
    assert all(study.cell_config(c, 0).analysis.report for c in conditions)   # the preset's since 2026-12-06
    old = {**cells_header(study, conditions, []),
           "resolved": {c.name: _hashed_before(study.cell_config(c, 0)) for c in conditions}}
    cell = {"condition": conditions[0].name, "seed": 0, "figures": {"success": 1.0, "diverged": 0.0}, "cost": {}}
    (tmp_path / "cells.jsonl").write_text(json.dumps(old) + "\n" + json.dumps(cell) + "\n")
    settings = hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:16]   # as the study wrote it
    (tmp_path / "context.json").write_text(json.dumps({"lr0.125": {"grad_noise": 0.5}, "settings_digest": settings}))
    header = cells_header(study, conditions, [])
    cache = CellCache(tmp_path / "cells.jsonl", header, digests(study, conditions))
    assert cache.cells == {(conditions[0].name, 0): cell["figures"]}
    assert json.loads((tmp_path / "cells.jsonl").read_text().splitlines()[0]) == old
    monkeypatch.setattr(type(study), "prepare", lambda self: pytest.fail("the calibration was computed again"))
    assert _context(study, tmp_path, header, vouched=True) == {"lr0.125": {"grad_noise": 0.5}}


@pytest.mark.parametrize("n_seeds, caused", [(2, False), (8, True)])
def test_staleness_is_said_to_cause_divergence_only_when_the_paired_test_says_so(quick, n_seeds, caused):
    """2 of 2 stale seeds diverged against 0 of 2 synchronous ones (McNemar p = 0.5, read 'inconclusive' in the
    same paragraph) was told as 'there staleness lowered the stable learning rate'."""
    out, result = quick
    cells = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()[1:]]
    by = {(c["condition"], s): c["figures"] for c in cells for s in range(n_seeds) if c["seed"] == s % 2}
    study = study_class("staleness")(quick=True)
    for seed in range(n_seeds):
        by[("lr0.125/sync", seed)] = {**by[("lr0.125/sync", seed)], "diverged": 0.0}
        by[("lr0.125/delay4", seed)] = {**by[("lr0.125/delay4", seed)], "diverged": 1.0, "success": 0.0}
    rows = study.summarise(study.conditions(), by, list(range(n_seeds)))
    verdict = study.verdict(rows)
    assert ("there staleness lowered the stable learning rate" in verdict) == caused
    if not caused:
        assert "lr0.125/delay4 (2 of 2, against 0 without staleness); with these seeds that is not shown" in verdict


def test_a_calibration_that_never_finished_stops_the_study_instead_of_recording_its_control_as_diverged(monkeypatch):
    """Every replay of async4 diverged: the noise control's cells were recorded as diverged runs without running,
    and the verdict read them as 'noise lowered the success rate'."""
    from downpour.studies import staleness

    monkeypatch.setattr(staleness, "stale_error", lambda cfg, stale: (math.nan, math.nan))
    with pytest.raises(ConfigError, match="noise-matched control's calibration: the stale-gradient error of lr0.125/async4 is not finite"):
        study_class("staleness")(quick=True).prepare()


def _planted_rows(n_seeds, outcome):
    """The quick staleness study's rows over ``n_seeds`` planted seeds: the autoencoder rows a fixed cost, every
    other row ``outcome(condition, seed)`` -> (succeeded, diverged)."""
    from downpour.studies.staleness import StalenessStudy

    study = StalenessStudy(quick=True)
    conditions, seeds, cells = study.conditions(), list(range(n_seeds)), {}
    for c in conditions:
        for s in seeds:
            if c.group == "sae":
                cells[(c.name, s)] = {"final_cost": 1.0 + 0.01 * s, "mean_staleness": 0.0}
            else:
                won, diverged = outcome(c, s)
                cells[(c.name, s)] = {"success": float(won), "diverged": float(diverged), "mean_staleness": 0.0}
    return study, study.summarise(conditions, cells, seeds)


def test_holms_family_holds_only_the_divergence_tests_the_verdict_reads():
    """diverged_vs was recorded for width and data rows too, which no verdict sentence reads: it grew the family
    (9 to 12) and the Holm paragraph named readings the verdict never made."""
    def outcome(c, s):                  # every stale width and data row diverges; the phase rows do not
        diverged = bool(c.params["vs"]) and c.group in ("width", "data")
        return not diverged, diverged

    _, rows = _planted_rows(8, outcome)
    # (the phase rows' enter whatever diverged: test_holms_family_is_fixed_by_the_design_not_by_which_conditions_diverged)
    assert not [r["condition"] for r in rows if "diverged_vs" in r.get("tests", {}) and r["group"] != "phase"]


def test_holms_family_is_fixed_by_the_design_not_by_which_conditions_diverged():
    """diverged_vs entered Holm's family only where most of a condition's seeds diverged: the outcome chose the
    family (the quick study's 9 comparisons with no divergence, 10 with lr0.125/delay4's), so the other readings'
    correction depended on it. Every stale phase row's divergence test enters now, whatever diverged."""
    from downpour.studies.holm import holm

    study, calm = _planted_rows(8, lambda c, s: (True, False))
    _, stormy = _planted_rows(8, lambda c, s: (c.name != "lr0.125/delay4", c.name == "lr0.125/delay4"))
    stale = [c.name for c in study.conditions() if c.group == "phase" and c.params["vs"] and not c.params["control"]]
    for rows in (calm, stormy):
        assert sorted(r["condition"] for r in rows if "diverged_vs" in r.get("tests", {})) == sorted(stale)
    assert holm(calm) == holm(stormy)


def test_a_success_reading_holms_correction_does_not_keep_is_called_a_lead():
    """'async4 38% (Δ +38 points [...]: higher)' and 'staleness raised the success rate in 2' while Holm's
    paragraph below called one of the two a lead to recheck (McNemar p = 0.031 over a family of 9)."""
    from downpour.studies.holm import holm

    # synchronous SGD never succeeds; delay4 at 0.125 always, async4 in 6 of 16 seeds
    study, rows = _planted_rows(16, lambda c, s: (c.name == "lr0.125/delay4" or (c.name == "lr0.125/async4" and s < 6),
                                                  False))
    assert holm(rows) > 2
    by = {r["condition"]: r for r in rows}
    held = {k: by[f"lr0.125/{k}"]["tests"]["delta_vs_success"]["p_holm"] < 0.05 for k in ("delay4", "async4")}
    assert held == {"delay4": True, "async4": False}
    verdict = study.verdict(rows)
    assert re.search(r"delay4 100% \(Δ \+100 points [^)]*: higher\)", verdict)
    assert re.search(r"async4 38% \(Δ \+38 points [^)]*: higher, a lead\)", verdict)     # (no parenthesis inside)
    assert "raised the success rate in 2 (1 of them a lead: not after Holm's correction)" in verdict


def test_a_divergence_holms_correction_does_not_keep_is_not_blamed_on_staleness_as_a_finding():
    """8 of 8 stale seeds diverged against 0 of 8 (McNemar p = 0.0078, 0.0078 * 10 after Holm's correction) was
    told as 'significantly more ...: there staleness lowered the stable learning rate'."""
    from downpour.studies.holm import holm

    study, rows = _planted_rows(8, lambda c, s: (c.name != "lr0.125/delay4", c.name == "lr0.125/delay4"))
    holm(rows)
    verdict = study.verdict(rows)
    assert "there staleness lowered the stable learning rate" not in verdict
    assert ("Most seeds diverged in lr0.125/delay4, more than at the same rate without staleness (a lead: not after "
            "Holm's correction): staleness may have lowered") in verdict


def test_the_table_says_what_diverged_vs_counts_and_what_a_sync4_rate_averages():
    """study.html's diverged_vs cell read "seeds 0, 0, 4" (diverged without staleness, with it, out of how many:
    read as seed numbers), and het/lr0.125/sync4's lr a bare 0.5 (four gradients averaged at four times 0.125)."""
    from downpour.studies.html import rows_table

    study, rows = _planted_rows(4, lambda c, s: (False, c.name.endswith("async4") and s < 3))
    table = rows_table(rows, study.shown, study.headings)
    by = {r.split("</td>")[0].split(">")[-1]: r for r in table.split("<tr>")[2:]}
    assert "seeds diverged in its vs condition vs in this one" in table and "seeds 0" not in table
    assert "0 of 4 vs 3 of 4; Δ +75 points" in by["het/lr0.125/async4"]
    assert "0.5 (4 × 0.125: a round averages 4 gradients)" in by["het/lr0.125/sync4"]
    assert "(4 ×" not in by["sae/sync4"] and "(4 ×" not in by["lr0.125/async4"]


def test_the_figures_say_their_seeds_and_reference_line(tmp_path, monkeypatch):
    """The phase diagram shows rates without intervals: its title says how many seeds each cell is of (the quick
    setting's 0.50 against 0.00 from 2 seeds read as a finding); the controls' dashed line is named (sync's rate)."""
    from downpour.studies import staleness
    titles = {}
    monkeypatch.setattr(staleness, "phase_diagram",
                        lambda grid, rows, cols, path, title, label: titles.update(phase=title, phase_bar=label))
    monkeypatch.setattr(staleness, "interval_bars", lambda *a, **k: titles.update(controls=a[3], controls_axis=a[4]))
    monkeypatch.setattr(staleness, "distributions", lambda *a, **k: None)
    study = study_class("staleness")(quick=True)
    rows = [{"condition": c.name, "n": 3, "figures": {"p_success": [0.5, 0.1, 0.9]}} for c in study.conditions()]
    cells = {(c.name, s): {"final_cost": 1.0} for c in study.conditions() for s in range(3)}
    study.figures(rows, cells, tmp_path)
    assert titles["phase"] == "P(global optimum), teacher-student k=8, 3 seeds per cell"
    assert titles["controls"].endswith("Wilson 95% intervals over seeds\n(dashed: sync's)")   # (whose: 2026-12-06)
    # one name for one figure: the phase diagram's colour bar and the controls' axis said P(success) until 2026-12-06
    assert titles["phase_bar"] == titles["controls_axis"] == "P(global optimum)"
    assert titles["controls"].startswith("P(global optimum) at lr 0.125")
