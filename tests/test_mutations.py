"""Bugs no other test caught: each test here fails under one single-point mutation of the code.

tests/MUTATIONS.md lists every mutation the suite is known to catch and the test that catches it
(these, and the existing tests that were strengthened for the same review, issue 14). Each
reference below is computed independently of the code it checks: by hand, by a formula written
out here, or by a run with the feature under test switched off.
"""
from __future__ import annotations

import numpy as np
import torch
from safetensors.torch import load_file

from downpour.analysis.selectivity import best_unit, face_neuron_table, split
from downpour.config import load_config
from downpour.ps.checkpoint import load_server, next_seqs, save_server
from downpour.ps.cluster import run_cluster
from downpour.ps.compensation import make_compensation
from downpour.ps.rules import make_rule
from downpour.ps.shard import Shard
from downpour.train.rundir import RunDir
from test_analysis_planted import PlantedModel, lfw_all


# --- the best single neuron: chosen on the selection rows, scored on the test rows only ----------

def test_the_chosen_unit_is_scored_on_the_test_rows_not_the_rows_it_was_chosen_on():
    y = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    select, test = np.arange(4), np.arange(4, 8)
    # unit 0 separates the selection rows perfectly and is exactly wrong on every test row;
    # unit 1 is a weaker rule, so unit 0 is the one chosen
    unit0 = np.r_[y[:4], 1 - y[4:]].astype(float)
    unit1 = np.array([0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    result = best_unit(np.stack([unit0, unit1], axis=1), y, select, test)
    assert result["unit"] == 0 and result["selection_accuracy"] == 1.0
    assert result["test_accuracy"] == 0.0                  # 1.0 if it were scored on the selection rows


def test_the_face_neuron_table_scores_the_learned_unit_on_held_out_images():
    """A unit wired to fire for faces on the selection split and for non-faces on the test split:
    honestly scored it is always wrong on the test images; scored on its own rows, always right."""
    faces = lfw_all()
    seed = 5
    select, test = split(faces.y, 0.5, seed)
    assert len(np.intersect1d(select, test)) == 0 and len(select) + len(test) == len(faces.y)
    target = faces.y.astype(float).copy()
    target[test] = 1.0 - target[test]
    model = PlantedModel(tuple(faces.x.shape[1:]))
    flat = faces.x.reshape(len(faces.y), -1).double()
    flat = flat - flat.mean(dim=1, keepdim=True)
    flat = flat / flat.norm(dim=1, keepdim=True)              # what PlantedModel's units see
    # 200 independent images in 625 dimensions: the minimum-norm solution fits any labelling exactly (outputs +-1)
    w = flat.T @ torch.linalg.solve(flat @ flat.T, torch.as_tensor(2 * target - 1))
    model.plant(3, w.float())
    table = face_neuron_table(model, faces, seed=seed, n_random_filters=20, random_model=PlantedModel((1, 25, 25)))
    learned = table["rows"][0]
    assert learned["unit"] == 3 and learned["selection_accuracy"] == 1.0
    assert learned["test_accuracy"] == 0.0


# --- DC-ASGD must see each worker's fetch on the simulator ---------------------------------------

SIM = ["cluster.runner=simulated", "data.samples=128", "train.batch_size=8", "train.log_every=4", "train.steps=16",
       "train.tensorboard=false", "cluster.workers=2", "cluster.shards=1", "cluster.rule=sgd", "train.lr=0.05",
       'cluster.delay="constant:2"']


def _final_params(path, *overrides):
    cfg = load_config("ufldl-sae", [*SIM, *overrides])
    summary = run_cluster(cfg, RunDir.create(path, cfg))
    return load_file(str(path / "model.safetensors")), summary


def test_dc_asgd_changes_a_stale_simulated_run(tmp_path):
    """DC-ASGD's correction needs the copy each worker fetched; a simulator that fetches without
    saying which worker it is leaves the shard no copy, and DC-ASGD silently becomes plain SGD."""
    plain, summary = _final_params(tmp_path / "none")
    compensated, _ = _final_params(tmp_path / "dc", 'cluster.compensation="dc-asgd"', "cluster.dc_lambda=2.0")
    assert summary["max_staleness"] > 0                                   # there is something to compensate
    assert any(not torch.equal(plain[k], compensated[k]) for k in plain)


# --- a push number seen before a checkpoint is a duplicate after it --------------------------------

def _shard():
    return Shard(0, torch.zeros(4), make_rule("sgd", 0.1), make_compensation("none"), workers=(0, 1))


def test_the_last_push_before_a_checkpoint_is_refused_after_a_resume(tmp_path):
    before = _shard()
    for seq in range(3):                      # worker 0 pushes 0, 1, 2; worker 1 pushes 0
        assert before.push(0, torch.ones(4), before.version, seq).accepted
    assert before.push(1, torch.ones(4), before.version, 0).accepted
    save_server(tmp_path / "server", [before.state_dict()], {"step": 4})
    states, _ = load_server(tmp_path / "server")
    after = _shard()
    after.load_state_dict(*states[0])
    assert next_seqs(states) == {0: 3, 1: 1}
    params = after.params.clone()
    for worker, seq in ((0, 2), (0, 0), (1, 0)):   # retries of pushes the checkpoint already holds
        result = after.push(worker, torch.ones(4), after.version, seq)
        assert not result.accepted and result.reason == "duplicate", (worker, seq)
    assert torch.equal(after.params, params) and after.applied == 4
    assert after.push(0, torch.ones(4), after.version, 3).accepted         # the next one goes through

