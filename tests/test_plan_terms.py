"""downpour plan and what a cat step does besides its filters: normalising the filters each step (model.filter_norm),
and the cost's terms a --config or --set gives it."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from downpour.models.registry import build
from downpour.plan import network_of, plan_config

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
        assert (a.flops_train - b.flops_train) * batch == pytest.approx(forward.flops + backward.flops)
