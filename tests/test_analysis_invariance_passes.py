"""The invariance sweeps of ``analyze_run`` share their forward passes (:mod:`downpour.analysis.passes`): the pictured
unit's sweep and its tied units' sweep warp the same images the same ways, so the second reads the first's codes back.
What a sweep reads back is what it would have computed, bit for bit; this counts the model's passes, not time."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from downpour.analysis.invariance import DEFAULT_ANGLES, DEFAULT_SCALES, DEFAULT_SHIFTS, invariance_curves, sweep
from downpour.analysis.passes import Passes
from downpour.models.base import FeatureModel


WARPS = len(DEFAULT_SCALES) + 2 * len(DEFAULT_SHIFTS) + len(DEFAULT_ANGLES)     # 83 since 2026-12-05 (47 before)


class _Counted(FeatureModel):
    """A small convolutional layer (its units: 4 maps x 13 x 13), counting its forward passes."""

    def __init__(self):
        super().__init__()
        self.input_shape = (1, 16, 16)
        self.weight = torch.nn.Parameter(torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(0)))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return F.relu(F.conv2d(x, self.weight)).flatten(1)


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


def _both(model, faces, others, passes_of):
    """The analysis's two sweeps: the pictured unit 5's invariance curves, then its tied set (5 and 40, opposite signs),
    with a prepare step (the same function for both, as analyze_run gives them)."""
    see = lambda t: 2.0 * t - 1.0     # noqa: E731
    one = invariance_curves(model, faces, 5, sign=1, baseline=0.1, prepare=see, negatives=others, passes=passes_of())
    tied = sweep(model, faces, [5, 40], [1, -1], [0.1, -0.2], prepare=see, negatives=others, passes=passes_of())
    return one, tied


def test_the_tied_sweep_reads_the_pictured_units_passes_back_and_gets_the_same_numbers_bit_for_bit():
    faces, others = _images(10, 1), _images(12, 2)
    model = _Counted()
    slow = _both(model, faces, others, lambda: Passes([5, 40], reuse=False))      # every read a pass: the old way
    old_calls, model.calls = model.calls, 0
    shared = Passes([5, 40])
    fast = _both(model, faces, others, lambda: shared)
    assert fast == slow                                                 # every curve, AUC and figure, exactly
    # the old way: per sweep a size check, the unwarped faces, the unturned faces in the rotation's disc, the unwarped
    # negatives once per curve (4) and both sets at each of the sweep's warps; shared: the second sweep makes only its size
    # check
    assert old_calls == 2 * (1 + 1 + 1 + 4 + 2 * WARPS)
    assert model.calls == (1 + 1 + 1 + 2 * WARPS) + 1      # the disc's unturned faces are the rotation's 0-degree pass
    assert shared.made == 1 + 1 + 2 * WARPS


def test_a_sweep_alone_makes_the_unwarped_negatives_pass_once():
    model = _Counted()
    result = sweep(model, _images(6, 3), [7], [1], [0.0], negatives=_images(6, 4))
    assert model.calls == 1 + 1 + 1 + 2 * WARPS       # size check, faces, negatives, the warps of both (0 degrees: the disc's)
    model.calls = 0
    assert sweep(model, _images(6, 3), [7], [1], [0.0], negatives=_images(6, 4), passes=Passes([7], reuse=False)) == result


def test_passes_refuse_a_sweep_of_other_images_or_units():
    model, faces = _Counted(), _images(6, 5)
    passes = Passes([3])
    sweep(model, faces, [3], [1], [0.0], passes=passes)
    with pytest.raises(ValueError, match="other inputs"):
        sweep(model, _images(6, 6), [3], [1], [0.0], passes=passes)      # other faces: its codes would be wrong
    with pytest.raises(ValueError, match="other inputs"):
        sweep(model, faces, [3], [1], [0.0], passes=passes, fill="border")   # another fill, and rotation aperture
    with pytest.raises(ValueError, match="other inputs"):
        sweep(model, faces, [3], [1], [0.0], passes=passes, prepare=lambda t: t)   # another preparation
    with pytest.raises(ValueError, match="unit 4 is not among"):
        sweep(model, faces, [4], [1], [0.0], passes=passes)
