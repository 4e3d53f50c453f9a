"""downpour plan's memory per partition against what a training step holds: the bytes its graph keeps for the
backward (downpour.plan.counted.step_held_bytes reads them off the graph), besides the parameters and gradients."""
import json
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from torch import nn

from downpour.batch import Outputs
from downpour.cli import main
from downpour.models import registry
from downpour.models.base import FeatureModel
from downpour.settings import Section, setting
from downpour.plan import network_of, plan_config
from downpour.plan.counted import step_held_bytes

pytestmark = pytest.mark.usefixtures("one_thread")

# (--config or --model, name, --set): untied filters at a fixed norm (a normalised copy of W1 each step), tiled
# filters on the untied kernel (the banks expanded twice), a tiled step small enough to run banked, a convolution,
# an untied decoder, free filters, a frozen Gabor first layer with and without a decoder of its own, every pixel
# reconstructed, a joint three-stage network; a stage's own pooled_l2 (off in stage 2; at ε = 0 in stage 1)
CASES = [
    ("config", "cat-demo", []), ("config", "cat-untied", []), ("config", "main", []),
    ("config", "cat-demo", ["train.batch_size=2"]),
    ("model", "cat-3stage", ["train.batch_size=8"]),
    ("model", "cat-3stage", ["train.batch_size=8", "model.tile=3", 'model.decoder="untied"']),
    ("model", "cat-3stage", ["train.batch_size=8", "model.tile=1"]),
    ("model", "cat-3stage", ["train.batch_size=8", "model.filter_norm=0"]),
    ("model", "cat-3stage", ["train.batch_size=8", 'model.first_layer="gabor"']),
    ("model", "cat-3stage", ["train.batch_size=8", 'model.first_layer="gabor"', 'model.decoder="untied"']),
    ("model", "cat-demo", ["train.batch_size=8", 'model.recon="all"']),
    ("model", "cat-3stage", ["train.batch_size=8", "objective.stage2/pooled_l2=0"]),
    ("config", "cat-demo", ["objective.stage1/pooled_l2.eps=0"]),
    # an untied stage of one position (stage 3's codes 1x1): a convolution, which keeps no receptive fields
    ("model", "cat-3stage", ["train.batch_size=8", "model.kernels=[10,6,19]", "model.pools=[3,3,1]"]),
]
# every other shipped preset: built and measured, each layer's share by the module that saved it
MEASURED = ["cnn-digits", "rbm-digits", "rnn-rows", "teacher-student", "tica-8x8", "ufldl-sae"]


def _planned(kind, name, sets):
    cfg, shape = plan_config(**{kind: name}, sets=sets)
    net = network_of(cfg, shape)
    b = cfg.train.batch_size
    per_stage = [4 * b * s.act_floats + 4 * s.copy_floats for s in net.stages]
    return cfg, shape, per_stage if cfg.train.schedule == "greedy" else [sum(per_stage)]


@pytest.mark.parametrize("kind, name, sets", CASES)
def test_the_plans_held_bytes_are_what_a_training_step_keeps_for_its_backward(kind, name, sets):
    """Until 2026-12-04 the plan counted the LCN output and one copy of the codes, and no copy of the filters: cat-demo
    (tile 2, batch 32) read 1.20 MB at stage 1, where the step holds 4.40 MB (two expanded copies of its banks,
    2.56 MB); cat-3stage at batch 8 read 1.80 MB where it holds 10.0 MB (7.6 MB of them its normalised filters)."""
    cfg, shape, planned = _planned(kind, name, sets)
    measured = step_held_bytes(cfg, shape, cfg.train.batch_size)
    # what is left: a few scalars and the expansions' int64 indices (under 0.1%)
    assert planned == pytest.approx(list(measured), rel=1e-3)


@pytest.mark.parametrize("name", MEASURED)
@pytest.mark.parametrize("batch", [None, 7])
def test_a_measured_models_planned_memory_is_what_its_training_step_keeps_for_its_backward(name, batch, capsys):
    """Until 2026-12-04 these were planned from their inference path (each layer's output): ufldl-sae at batch 100
    read 10.0 kB where its step keeps 87.4 kB (its decoder, the cost's sparsity term), rnn-rows at 32 69.6 kB for
    1.04 MB (the GRU's gates at every step, the decoding pass), rbm-digits 8.0 kB for 34.1 kB (its persistent chains,
    21.0 kB whatever the batch)."""
    sets = [f"train.batch_size={batch}"] if batch else []
    cfg, shape, planned = _planned("config", name, sets)
    measured = step_held_bytes(cfg, shape, cfg.train.batch_size)
    assert planned == pytest.approx(list(measured), rel=1e-6)
    assert main(["plan", "--config", name, *(a for s in sets for a in ("--set", s)), "--machines", "2", "--json"]) == 0
    part = json.loads(capsys.readouterr().out)["partition"]
    assert part["act_bytes"] + part["copy_bytes"] == pytest.approx(measured[0], rel=1e-6)


@dataclass
class _TwiceConfig(Section):
    section: ClassVar[str] = "model"
    hidden: int = setting(16, within="[1, inf)")


class _Twice(FeatureModel):
    """One encoder layer called twice a forward (on the input and on its mirror image), as a weight-shared layer is:
    footprint_table lists it as two rows of one name."""

    config_class = _TwiceConfig

    def __init__(self, config: _TwiceConfig, input_shape: tuple[int, ...]):
        super().__init__()
        self.config, self.input_shape = config, tuple(input_shape)
        self.enc = nn.Linear(64, config.hidden)
        self.dec = nn.Linear(config.hidden, 64)

    def forward(self, x):
        flat = x.reshape(x.shape[0], -1)
        return torch.sigmoid(self.enc(flat)) + torch.sigmoid(self.enc(flat.flip(1)))

    def forward_train(self, batch):
        h = self(batch.x)
        return {"": Outputs(x=batch.x, codes=h, recon=self.dec(h).reshape(batch.x.shape))}


def test_a_layer_called_twice_keeps_what_its_two_calls_saved_in_the_plan(monkeypatch):
    """Until 2026-12-04 the second row of the layer's name overwrote the first's bytes with nothing: at batch 64 the
    plan read 28.7 kB where the step holds 61.4 kB (the encoder's two inputs and two sigmoid outputs, 32.8 kB, gone)."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register_model("twice-test", _Twice, input_shape=(1, 8, 8), objective={"reconstruction": 1.0},
                            description="one layer called twice")
    cfg, shape, planned = _planned("model", "twice-test", [])
    assert [s.name for s in network_of(cfg, shape).stages].count("enc") == 2
    assert planned == pytest.approx(list(step_held_bytes(cfg, shape, cfg.train.batch_size)), rel=1e-6)


@pytest.mark.parametrize("term, less", [("{ weight = 0.0 }", lambda m, o, p: m * o * o + 2 * m * p * p),
                                        ("{ eps = 0.0 }", lambda m, o, p: m * p * p)])
def test_a_cost_without_the_pooled_terms_square_root_holds_less(tmp_path, term, less):
    """Without the term the pooling is not in the cost's graph (the codes' squares and the pooled maps are not kept);
    at its ε = 0, |p| keeps the pooled maps themselves, not a square root's output."""
    path = tmp_path / "plain.toml"
    path.write_text(f'base = "cat-untied"\n\n[objective]\npooled_l2 = {term}\n\n[train]\nbatch_size = 8\n')
    cfg, shape, planned = _planned("config", str(path), [])
    assert planned == pytest.approx(list(step_held_bytes(cfg, shape, 8)), rel=1e-3)
    _, _, with_it = _planned("config", "cat-untied", ["train.batch_size=8"])
    assert [a - b for a, b in zip(with_it, planned)] == [4 * 8 * less(8, 25, 12), 4 * 8 * less(8, 8, 6)]


def test_the_paper_plans_partition_holds_a_normalised_copy_of_its_filters(capsys):
    assert main(["plan", "--json"]) == 0
    part = json.loads(capsys.readouterr().out)["partition"]
    # filter_norm 1 (the default): W1's share, 313 MB of the partition's 625 MB of W1 + W2, and 0.4% of it besides
    assert part["copy_bytes"] == pytest.approx(part["weight_bytes"] / 2, rel=0.01)
    assert part["memory_bytes"] == pytest.approx(part["weight_bytes"] + part["state_bytes"] + part["grad_bytes"]
                                                 + part["act_bytes"] + part["copy_bytes"])
    assert main(["plan", "--json", "--set", "model.filter_norm=0"]) == 0
    free = json.loads(capsys.readouterr().out)["partition"]
    assert free["copy_bytes"] < 1e-4 * free["weight_bytes"]     # the reconstruction's (H, W) weights alone: 24.8 kB


def test_a_greedy_presets_memory_is_its_largest_stages_step(capsys):
    cfg, shape, planned = _planned("config", "cat-demo", [])
    assert main(["plan", "--config", "cat-demo", "--machines", "4", "--json"]) == 0
    part = json.loads(capsys.readouterr().out)["partition"]
    held = max(step_held_bytes(cfg, shape, cfg.train.batch_size))
    assert part["act_bytes"] + part["copy_bytes"] == pytest.approx(held, rel=1e-3)
    assert part["memory_bytes"] == pytest.approx(part["weight_bytes"] + part["state_bytes"] + part["grad_bytes"] + held
                                                 + part["frozen_cache_bytes"], rel=1e-3)   # (its bound: 64 MiB)


def test_what_the_cost_saves_is_on_its_own_row_apart_from_the_models_ops_outside_its_layers(capsys):
    """Until 2026-12-04 both were one row, "(held outside: the cost, classifier)": cnn-digits' 108.0 kB at batch 32, of
    which its cost (cross-entropy) keeps 1.5 kB and its own max-pooling and ReLUs, outside its layers, the rest."""
    assert main(["plan", "--config", "cnn-digits", "--machines", "2", "--json"]) == 0
    stages = {s["stage"]: s for s in json.loads(capsys.readouterr().out)["stages"]}
    # by hand: per example the log-probabilities (10 floats, saved by log_softmax and by the NLL loss) and the label
    # (an int64), and once a step the NLL's total weight (a float)
    # (the row's acts since 2026-12-04 include what it keeps once a step)
    assert stages["(held by the cost)"]["partition"]["act_bytes_batch"] == 32 * (10 * 4 + 8) + 4
    outside = next(s for name, s in stages.items() if name.startswith("(held outside"))
    assert "cost" not in outside["stage"] and outside["partition"]["act_bytes_batch"] > 100_000


@pytest.mark.parametrize("kind, name, sets", [("config", n, []) for n in MEASURED] + CASES)
def test_a_models_buffers_are_model_state_counted_once_whatever_its_step_saves(kind, name, sets, capsys):
    """Until 2026-12-04 a buffer was "held" only where the step's graph saved it: tica-8x8's pooling matrix read as
    "held whatever the batch 16.40kB", and teacher-student's teacher, which no graph saves, was not counted."""
    cfg, shape = plan_config(**{kind: name}, sets=sets)
    built = registry.create_model(cfg.model.name, shape, **cfg.model.options)
    buffers = sum(b.numel() * b.element_size() for b in built.buffers())
    argv = ["plan", f"--{kind}", name, *(a for s in sets for a in ("--set", s)), "--partitions", "1", "--json"]
    assert main(argv) == 0
    part = json.loads(capsys.readouterr().out)["partition"]
    assert part["state_bytes"] == pytest.approx(buffers)
    assert part["memory_bytes"] == pytest.approx(sum(part[k] for k in ("weight_bytes", "frozen_bytes", "state_bytes",
                                                                       "grad_bytes", "act_bytes", "copy_bytes",
                                                                       "frozen_cache_bytes")))


def test_a_cost_term_set_to_zero_does_not_take_the_models_buffers_with_it(capsys):
    """tica-8x8's pooling matrix (64 x 64 floats) stays in memory with the pooled_l2 term off: the plan used to read
    177.2 -> 109.6 kB, a 16.4 kB saving that was the matrix's, as the graph no longer saved it."""
    def plan(*sets):
        assert main(["plan", "--config", "tica-8x8", *(a for s in sets for a in ("--set", s)), "--json"]) == 0
        return json.loads(capsys.readouterr().out)["partition"]
    on, off = plan(), plan("objective.pooled_l2.weight=0")
    assert on["state_bytes"] == off["state_bytes"] == 64 * 64 * 4
    # what goes is the term's per-example tensors (by hand, batch 100: the pooled maps' square root and the codes'
    # squares, 64 floats each, and the matrix product's input), 51.2 kB, and its weight's 8-byte scalar
    assert on["memory_bytes"] - off["memory_bytes"] == 100 * 2 * 64 * 4 + 8


def test_a_cost_terms_weight_is_held_by_the_cost_and_said_with_the_activations(capsys):
    """The 8-byte float64 autograd keeps of a term's Python weight (w * term) is the cost's: tica-8x8's two terms'
    16 B are on its cost's row, and the memory line no longer lists them apart as "held whatever the batch"."""
    assert main(["plan", "--config", "tica-8x8", "--json"]) == 0
    stages = {s["stage"]: s for s in json.loads(capsys.readouterr().out)["stages"]}
    assert stages["(held by the cost)"]["partition"]["act_bytes_batch"] == 100 * 2 * 64 * 4 + 2 * 8
    assert stages["(model)"]["partition"]["act_bytes_batch"] == 100 * 3 * 64 * 4
    assert main(["plan", "--config", "tica-8x8"]) == 0
    out = capsys.readouterr().out
    assert "held whatever the batch" not in out and "model state (buffers) 16.38 kB" in out


def test_a_torch_without_the_private_node_numbers_still_plans_putting_the_weights_outside_the_cost(monkeypatch, capsys):
    """The cost's weights are told apart by autograd's private Node._sequence_nr. A torch without it (pyproject bounds
    torch below 2.14; a later one may drop it) used to end ``downpour plan`` with an AttributeError; now the plan is
    made, the 16 B of tica-8x8's two weights on the model's row, "16B of them whatever the batch"."""
    from downpour.plan import counted

    monkeypatch.setattr(counted, "_order", lambda node: None)
    assert main(["plan", "--config", "tica-8x8", "--json"]) == 0
    stages = {s["stage"]: s for s in json.loads(capsys.readouterr().out)["stages"]}
    assert stages["(held by the cost)"]["partition"]["act_bytes_batch"] == 100 * 2 * 64 * 4
    assert main(["plan", "--config", "tica-8x8"]) == 0
    assert "(16 B of them whatever the batch)" in capsys.readouterr().out
