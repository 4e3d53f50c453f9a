"""A part's own cost terms (``objective."stage2/l1"``): they replace the shared term in that part alone."""
import pytest
import torch

from downpour.batch import Batch, Outputs
from downpour.config import ConfigError, load_config
from downpour.models.registry import build, resolve_objective
from downpour.objectives import Objective
from downpour.preflight import check_run_config


def test_a_parts_own_terms_replace_the_shared_one_there_and_nowhere_else():
    x = torch.zeros(2, 2)
    stage1 = Outputs(x=x, codes=torch.tensor([[1.0, -2.0], [0.0, 3.0]]), recon=x, pooled=torch.tensor([[4.0], [2.0]]))
    stage2 = Outputs(x=x, codes=torch.tensor([[0.5, 0.5], [-1.0, 0.0]]), recon=x, pooled=torch.tensor([[8.0], [6.0]]))
    objective = Objective.from_config({"reconstruction": 1.0, "pooled_l2": {"weight": 0.5, "eps": 0.0},
                                       "stage2/pooled_l2": 0, "stage2/l1": 2.0})
    total, parts = objective({"stage1": stage1, "stage2": stage2})
    assert set(parts) == {"stage1/reconstruction", "stage1/pooled_l2", "stage2/reconstruction", "stage2/l1"}
    assert parts["stage1/pooled_l2"].item() == 0.5 * (4 + 2) / 2     # stage 1's pooled codes, the shared term
    assert parts["stage2/l1"].item() == 2.0 * (1 + 1) / 2             # stage 2's codes (not its pooled), |.| summed
    assert total.item() == 1.5 + 2.0


def test_a_part_whose_own_terms_turn_every_shared_one_off_is_refused_naming_them():
    o = Outputs(x=torch.zeros(2, 2), codes=torch.zeros(2, 2), recon=torch.zeros(2, 2))
    objective = Objective.from_config({"reconstruction": 1.0, "stage2/reconstruction": 0})
    with pytest.raises(ValueError, match=r"model part 'stage2' has no cost term .*\(stage2/reconstruction\)"):
        objective({"stage1": o, "stage2": o})


def test_the_cat_networks_stage_2_takes_a_per_unit_l1_on_its_own_codes_with_its_pools_kept():
    cfg = check_run_config(load_config("cat-demo", ["objective.stage2/pooled_l2=0", "objective.stage2/l1=0.3"]))
    model, objective = build(cfg, (1, 32, 32))
    assert model.config.pools == (3, 3)
    x = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, parts = objective(model.forward_train(Batch(x)))
        codes = model.features(x, "stage2/codes")                   # (4, 8, 8, 8): before its pool
    assert set(parts) == {"stage1/reconstruction", "stage1/pooled_l2", "stage2/reconstruction", "stage2/l1"}
    assert parts["stage2/l1"].item() == pytest.approx(0.3 * codes.abs().sum(dim=(1, 2, 3)).mean().item(), rel=1e-5)


def test_a_parts_own_term_merges_over_the_shared_terms_resolved_spec():
    merged = resolve_objective("cat-demo", {"stage2/pooled_l2": 0.3, "pooled_l2": {"eps": 0.5}})
    assert merged["stage2/pooled_l2"] == {"weight": 0.3, "eps": 0.5}     # the shared override reached it, eps kept
    assert merged["pooled_l2"] == {"weight": 0.1, "eps": 0.5}
    assert resolve_objective("cat-demo", merged) == merged               # (resolved twice: the same)


@pytest.mark.parametrize("config, sets, message, key", [
    ("cat-demo", ["objective.stage3/l1=0.1"], r"no part 'stage3' \(did you mean 'stage2'\?\); its parts: stage1, "
     "stage2", "objective.stage3/l1"),
    ("ufldl-sae", ["objective.stage2/l1=0.1"], "its parts: none", "objective.stage2/l1"),
    ("cat-demo", ["objective./l1=0.1"], "PART/TERM", "objective./l1"),
    ("cat-demo", ["objective.stage2/l3=0.1"], "unknown cost term 'stage2/l3'", "objective.stage2/l3"),
    ("cat-demo", ["objective.stage2/kl_sparsity.rho=0.1"], "give a weight", "objective.stage2/kl_sparsity"),
    ("cat-demo", ["model.top=gru", "objective.stage3/l1=0.1"], "'stage3/l1'.*takes only the cost terms "
     r"\['reconstruction'\]", None),
    ("cat-demo", ["objective.stage2/weight_l2=0.1"], "^objective.stage2/weight_l2 on .*fixed norm",
     "objective.stage2/weight_l2"),
    ("cat-demo", ["objective.stage2/kl_sparsity={weight=1, rho=0.05}"], "^objective.stage2/kl_sparsity needs codes",
     "objective.stage2/kl_sparsity"),
    # the runners' refusals see a part's own term as the shared one, and name it
    ("cat-untied", ["cluster.runner=ray", "cluster.workers=2", "cluster.shards=4", "cluster.partitions=2",
                    "model.filter_norm=[0.0]", "objective.stage1/weight_l2=0.01"],
     "^objective.stage1/weight_l2 = 0.01 with cluster.partitions = 2 on Ray", "objective.stage1/weight_l2"),
    ("cat-demo", ["cluster.runner=simulated", "cluster.algorithm=sandblaster", "objective.stage2/denoising=0.1"],
     "cannot minimise cost term 'stage2/denoising': it corrupts the input", None),
])
def test_a_parts_own_term_nothing_can_read_is_refused_naming_it(config, sets, message, key):
    with pytest.raises(ConfigError, match=message) as err:
        check_run_config(load_config(config, sets))
    assert err.value.key == key
