"""Reading several layers in one pass (``layer_responses``, ``features_at``) gives each layer's own read, bit for bit."""
from __future__ import annotations

import json

import numpy as np
import torch

from downpour.analysis import face_controls as fc
from downpour.analysis.units import layer_responses, randomized_copy, unit_responses
from downpour.models.registry import create_model


def _cat() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("cat-demo", (1, 32, 32), tile=2).eval()


def per_layer(model, x, layers, batch_size=256, dtype=np.float64):
    """The reference: one pass per layer, each read alone."""
    return {layer: unit_responses(model, x, layer, batch_size).astype(dtype) for layer in layers}


def test_every_layer_of_one_pass_is_that_layers_own_read_bit_for_bit_across_batches():
    model = _cat()
    x = torch.randn(23, 1, 32, 32) * 2 + 0.5
    layers = model.feature_layers()[::-1]                 # top first: the pass must still start at stage 1
    fast = layer_responses(model, x, layers, batch_size=10)
    assert list(fast) == layers
    for layer in layers:
        own = unit_responses(model, x, layer, batch_size=10)
        assert fast[layer].dtype == np.float64 and np.array_equal(fast[layer], own), layer
    default = layer_responses(model, x, [None, "stage1"], batch_size=10)     # None: the model's analysis layer
    assert list(default) == [None, "stage1"] and np.array_equal(default[None], fast[model.analysis_layer()])
    single = layer_responses(model, x, ["stage1/pooled", "stage2/codes"], batch_size=10, dtype=np.float32)
    assert single["stage1/pooled"].dtype == np.float32
    assert np.array_equal(single["stage1/pooled"].astype(np.float64), unit_responses(model, x, "stage1/pooled", batch_size=10))
    assert np.array_equal(single["stage2/codes"].astype(np.float64), unit_responses(model, x, "stage2/codes", batch_size=10))


def _face_test(model, twin):
    others = tuple(n for n in model.feature_layers() if n != "stage2/codes")
    return fc.face_controls(model, twin, layer="stage2/codes", input_shape=(1, 32, 32), prepare=None, seeds=[0],
                            n_random_filters=50, replicates=100, other_layers=others, other_replicates=50)


def test_the_face_test_reads_each_network_once_and_scores_what_a_read_per_layer_scores(monkeypatch):
    model = _cat()
    twin = randomized_copy(model, 1)[0]
    calls = {"model": 0, "twin": 0}
    for name, net in (("model", model), ("twin", twin)):
        net.stages[0].register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
    fast = _face_test(model, twin)
    # 200 lfw images and 4 controls of each of 30 held-out faces (320) in batches of 256: 2 passes of stage 1 per
    # network for all six layers (a pass per layer: 12)
    assert calls == {"model": 2, "twin": 2}
    monkeypatch.setattr(fc, "layer_responses", per_layer)
    slow = _face_test(model, twin)
    assert calls == {"model": 2 + 12, "twin": 2 + 12}
    assert [b["layer"] for b in fast["by_layer"]] == ["stage2/codes", *(n for n in model.feature_layers()
                                                                         if n != "stage2/codes")]
    assert json.dumps(fast, sort_keys=True) == json.dumps(slow, sort_keys=True)


def test_the_one_pass_holds_each_layer_once_not_its_batches_and_their_concatenation():
    """Each layer's array is filled batch by batch: kept in a list and concatenated at the end, every layer the pass
    reads would be held twice at once (numpy's allocations, traced: 2.0x the reads' bytes); filled, the face test on
    cat-demo, 8,000 images, peaked 211 MB lower (as the per-layer reads did)."""
    import tracemalloc

    model = _cat()
    x = torch.randn(100, 1, 32, 32)
    layers = model.feature_layers()
    expect = per_layer(model, x, layers, batch_size=10, dtype=np.float32)
    tracemalloc.start()
    try:
        got = layer_responses(model, x, layers, batch_size=10, dtype=np.float32)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = sum(a.nbytes for a in got.values())
    assert all(np.array_equal(got[n], expect[n]) for n in layers)
    assert peak < 1.3 * size, (peak, size)


def test_the_probe_table_reads_the_network_once_and_probes_what_a_read_per_layer_probes(monkeypatch):
    """``probe_table`` reads the probed layers in one pass, not each with a pass of its own (the main job's three:
    stage 1 three times per labelled set)."""
    from downpour.analysis import probe as pr
    from downpour.analysis.labelled import LabelledSet

    model = _cat()
    calls = []
    model.stages[0].register_forward_hook(lambda *_: calls.append(1))
    x = torch.randn(40, 1, 32, 32)
    y = np.arange(40) % 2
    data = LabelledSet(name="planted", x=x, y=y, classes=["a", "b"])
    layers = ["stage1", "stage2/codes", "stage2"]
    fast = pr.probe_table(model, data, layers=layers, folds=2, seed=0)
    assert len(calls) == 1          # one batch of 40, one pass for the three layers (a pass per layer: 3)
    monkeypatch.setattr(pr, "layer_responses", per_layer)
    slow = pr.probe_table(model, data, layers=layers, folds=2, seed=0)
    assert len(calls) == 1 + 3
    assert [r["features"] for r in fast["rows"]] == [pr.INPUT, *layers]
    assert json.dumps(fast, sort_keys=True) == json.dumps(slow, sort_keys=True)
