"""downpour plan and what a cat step does besides its filters: normalising the filters each step (model.filter_norm),
and the cost's terms a --config or --set gives it."""
import json
import re

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from downpour.cli import main
from downpour.models.registry import build
from downpour.plan import network_of, plan_config
from downpour.plan.counted import step_held_bytes

pytestmark = pytest.mark.usefixtures("one_thread")

# ops that move or make values without arithmetic on them
_NOT_ARITHMETIC = {"detach", "expand", "view", "_unsafe_view", "reshape", "index_select", "scalar_tensor", "clone",
                   "ones_like", "zeros_like", "new_empty_strided", "empty_like", "t", "permute", "unsqueeze", "squeeze", "copy_", "alias"}


class _ElementwiseFlops(TorchDispatchMode):
    """Every value an aten op computes: its output's size, a reduction's input's (one add per value it reads)."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.__name__.split(".")[0]
        if name not in _NOT_ARITHMETIC:
            inputs = [a.numel() for a in args if isinstance(a, torch.Tensor)]
            size = out.numel() if isinstance(out, torch.Tensor) else 0
            self.flops += max(inputs) if name in ("sum", "mean") else size
        return out


@pytest.mark.parametrize("sets", [[], ["model.tile=3"], ['model.first_layer="gabor"'],
                                  ["model.filter_norm=[1.0, 0.0, 2.0]"]])
def test_normalising_the_filters_is_counted_once_a_step_as_torch_runs_it(sets):
    """Until 2026-12-04 the plan left it out: 10 element-wise FLOPs per weight a step (the paper's W1 at batch 100:
    about 0.9% of the filters' own 10 per weight and example); a frozen first layer normalises forward only."""
    batch = 8
    cfg, shape = plan_config("cat-3stage", [f"train.batch_size={batch}", *sets])
    free, _ = plan_config("cat-3stage", [f"train.batch_size={batch}", *sets, "model.filter_norm=0"])
    normed, bare = network_of(cfg, shape).stages, network_of(free, shape).stages
    model, _ = build(cfg, shape)
    for stage, a, b in zip(model.stages, normed, bare):
        weight = stage.filter.weight
        grad = torch.ones(weight.shape)
        with _ElementwiseFlops() as forward:
            w = stage.filter.effective_weight()
        with _ElementwiseFlops() as backward:
            if w.requires_grad:
                w.backward(grad)
        # per example, at the step's batch: the step normalises once, whatever the batch
        assert (a.flops_fwd - b.flops_fwd) * batch == pytest.approx(forward.flops)
        assert (a.flops_fwd_bwd - b.flops_fwd_bwd) * batch == pytest.approx(forward.flops + backward.flops)


def _plan(capsys, *argv):
    assert main(["plan", *argv, "--machines", "2", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("preset, term, by_hand", [
    # tica-8x8's pooled maps are a (64 x 64) product the model computes anyway (forward_train); without the pooled L2
    # term its backward into the codes goes
    ("tica-8x8", "objective.pooled_l2.weight=0", -2 * 64 * 64),
    # ufldl-sae's weight decay and KL sparsity are element-wise: no product comes or goes; the held tensors do
    ("ufldl-sae", "objective.kl_sparsity=0", 0)])
def test_a_measured_models_cost_term_set_on_the_command_line_is_planned(capsys, preset, term, by_hand):
    """Until 2026-12-04 every --set objective.* was refused ("a plan reads only model.KEY, ..."), though the plan of a
    measured model counts its step with the config's cost terms."""
    before, after = _plan(capsys, "--config", preset), _plan(capsys, "--config", preset, "--set", term)
    assert after["network"]["flops_train"] - before["network"]["flops_train"] == by_hand
    cfg, shape = plan_config(config=preset, sets=[term])
    assert after["partition"]["act_bytes"] + after["partition"]["copy_bytes"] == pytest.approx(
        step_held_bytes(cfg, shape, cfg.train.batch_size)[0])
    held = before["partition"]["act_bytes"] + before["partition"]["copy_bytes"]
    assert after["partition"]["act_bytes"] + after["partition"]["copy_bytes"] < held      # the term's tensors gone


def test_the_cat_networks_pooled_term_set_on_the_command_line_changes_what_its_step_holds(capsys, tmp_path):
    """The same numbers as the term written in a --config file (test_plan_held.py checks those against the graph)."""
    path = tmp_path / "plain.toml"
    path.write_text('base = "cat-untied"\n\n[objective]\npooled_l2 = { eps = 0.0 }\n')
    by_file = _plan(capsys, "--config", str(path))["partition"]
    by_set = _plan(capsys, "--config", "cat-untied", "--set", "objective.pooled_l2.eps=0")["partition"]
    plain = _plan(capsys, "--config", "cat-untied")["partition"]
    assert by_set["act_bytes"] == by_file["act_bytes"] < plain["act_bytes"]
    # --model too: the registry's term, merged with the --set (weight 0 drops it: the pooling leaves the cost's graph)
    zero = _plan(capsys, "--model", "cat-demo", "--set", "objective.pooled_l2=0")["partition"]
    assert zero["act_bytes"] < _plan(capsys, "--model", "cat-demo")["partition"]["act_bytes"]


@pytest.mark.parametrize("argv", [["--config", "cat-demo"], ["--model", "cat-3stage"], []])
def test_a_cat_cost_term_the_plan_does_not_count_is_refused_naming_why(capsys, argv):
    assert main(["plan", *argv, "--set", "objective.reconstruction=2"]) == 2
    err = capsys.readouterr().err
    assert "objective.reconstruction" in err and "pooled_l2" in err and "on paper" in err


@pytest.mark.parametrize("how", ["file", "set"])
def test_a_cat_network_without_the_reconstruction_term_is_refused_not_planned_with_its_decoder(capsys, tmp_path, how):
    """The formulas train every decoder by the reconstruction term. Until 2026-12-04 a --config with reconstruction = 0
    was planned as if it had one (cat-untied's stage 1: 3.46 MFLOP per example, where torch counts 1.93 M, and 3.20
    MB held where the step holds 3.07 MB), and --set objective.reconstruction=0 was refused as a term whose weight
    "would not change the plan"."""
    path = tmp_path / "norecon.toml"
    path.write_text('base = "cat-untied"\n\n[objective]\nreconstruction = 0\n')
    argv = ["--config", str(path)] if how == "file" else ["--config", "cat-untied", "--set", "objective.reconstruction=0"]
    assert main(["plan", *argv, "--machines", "2"]) == 2
    err = capsys.readouterr().err
    assert "objective.reconstruction = 0" in err and "decoder" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("term, said", [
    ("stage2/reconstruction=0", "objective.stage2/reconstruction = 0: the cat network is counted on paper with its "
                                "decoder"),
    ("stage2/l1=0.2", "only pooled_l2 is read .* so objective.stage2/l1 would not change the plan"),
    ("stage3/pooled_l2=0", r"^downpour: error: downpour plan --config cat-demo --set objective.stage3/pooled_l2=0: "
                           r"objective.stage3/pooled_l2: the model has no part 'stage3' \(did you mean 'stage2'\?\); "
                           "its parts: stage1, stage2$"),
])
def test_a_stages_own_cost_term_the_plan_cannot_count_is_refused_naming_it(capsys, term, said):
    """A stage's own pooled_l2 is planned (test_plan_held.py); a stage's own reconstruction off, another term, or a
    part the network lacks is refused as the shared term is. Until 2026-12-07 every stage's own term was refused as one
    "would not change the plan", stage2/pooled_l2 included, and a --config's was planned as the shared one."""
    assert main(["plan", "--config", "cat-demo", "--set", f"objective.{term}", "--machines", "2"]) == 2
    assert re.search(said, capsys.readouterr().err)


@pytest.mark.parametrize("model, term, said", [
    ("tica-8x8", "stage2/l1=0.1", "objective.stage2/l1: the model has no part 'stage2'.*; its parts: none"),
    ("rica-8x8", "stage1/l1=0.1", "objective.stage1/l1: the model has no part 'stage1'"),
])
def test_a_part_own_term_on_a_part_a_built_model_lacks_is_refused_as_train_refuses_it(capsys, model, term, said):
    """A model other than the cat network is built and counted by torch: its terms are all read, but one a part of
    its own names is read only where the model has that part. Until 2026-12-07 the plan took it unsaid, and then
    refused it without the command that was typed, which the plan's other refusals begin with."""
    assert main(["plan", "--model", model, "--set", f"objective.{term}", "--set", "objective.l1=0.2",
                 "--machines", "2"]) == 2
    assert re.search(f"^downpour: error: downpour plan --model {model} --set objective.{term}: {said}",
                     capsys.readouterr().err)


@pytest.mark.parametrize("base, said", [("cat-demo", r"the model has no part 'stage3' \(did you mean 'stage2'\?\); "
                                                     "its parts: stage1, stage2$"),
                                        ("tica-8x8", "the model has no part 'stage3'; its parts: none")])
def test_a_config_files_own_term_on_a_part_the_network_lacks_is_refused_naming_the_file(capsys, tmp_path, base, said):
    """The file's term, as a --set's: until 2026-12-07 the cat network's was planned unsaid (only a --set's was
    refused), as if the file had no such term."""
    path = tmp_path / "stage3.toml"
    path.write_text(f'base = "{base}"\n\n[objective]\n"stage3/l1" = 0.2\n')
    assert main(["plan", "--config", str(path), "--machines", "2"]) == 2
    assert re.search(f"^downpour: error: downpour plan --config {re.escape(str(path))}: objective.stage3/l1: {said}",
                     capsys.readouterr().err)


def test_a_stages_own_pooled_l2_in_a_config_file_is_planned_in_that_stage_alone(tmp_path):
    path = tmp_path / "own.toml"
    path.write_text('base = "cat-demo"\n\n[objective]\n"stage2/pooled_l2" = 0\n"stage2/l1" = 0.2\n')
    own, plain, off = (network_of(*plan_config(config=c, sets=sets)).stages for c, sets in (
        (str(path), []), ("cat-demo", []), ("cat-demo", ["objective.pooled_l2=0"])))
    assert own[0].act_floats == plain[0].act_floats > off[0].act_floats       # stage 1 keeps the shared term
    assert own[1].act_floats == off[1].act_floats < plain[1].act_floats       # stage 2's own turns it off there
