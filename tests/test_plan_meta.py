"""The plan counts a training step's FLOPs on torch's meta device (downpour/plan/counted.py): the counts must be the
built step's, each one, for every model it plans by counting (the paper's network on a 64x64 crop, greedy: 14.6 s of
CPU built, 1.4 on meta; 2026-12-06)."""
import pytest

from downpour.models.registry import build
from downpour.plan import counted
from downpour.plan.run_config import plan_config


def _built_only(*args):
    raise RuntimeError("counted on the built model")


SMALL_CAT = ["model.kernels=[5,3]", "model.maps=[2,2]"]      # on 16x16 (its frozen stage 1 below stage 2 too)


@pytest.mark.parametrize("name, sets, meta", [
    ("cat-demo", SMALL_CAT, True), ("cat-demo", [*SMALL_CAT, "train.schedule=joint"], True), ("tica-8x8", [], True),
    ("ufldl-sae", [], True), ("teacher-student", [], True),
    # a step that reads a value (an .item()) is counted on the built model: an RBM's, a classifier's
    ("rbm-digits", [], False), ("cnn-digits", [], False)])
def test_the_meta_devices_counts_are_the_built_steps(monkeypatch, name, sets, meta):
    cfg, shape = plan_config(None, sets, name)
    shape = (1, 16, 16) if name == "cat-demo" else shape
    on_meta = []
    count_on_meta = counted._count_on_meta
    monkeypatch.setattr(counted, "_count_on_meta", lambda *a: on_meta.append(count_on_meta(*a)) or on_meta[-1])
    flops = counted.step_flops(cfg, shape, build(cfg, shape))
    assert bool(on_meta) == meta                  # (counted there: not every step falling back to the built model)
    monkeypatch.setattr(counted, "_count_on_meta", _built_only)
    assert flops == counted.step_flops(cfg, shape, build(cfg, shape))
