"""Optimal stimulus: for a unit with known weights, the answer is those weights at the given norm."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from downpour.analysis.stimulus import optimal_stimulus, stimulus_rank, top_images
from test_analysis_planted import PlantedModel


class LinearUnits(PlantedModel):
    """No per-image normalisation: unit j = act(w_j · x + b_j), so the optimum on a sphere is known."""

    def __init__(self, input_shape, act=lambda t: t, seed=0):
        super().__init__(input_shape, n_units=6, seed=seed)
        self.act = act

    def forward(self, x):
        return self.act(self.encoder(x.reshape(x.shape[0], -1)))


def _cos(a, b):
    return float(F.cosine_similarity(a.reshape(-1).double(), b.reshape(-1).double(), dim=0))


@pytest.mark.parametrize("act", [lambda t: t, torch.sigmoid, torch.tanh], ids=["linear", "sigmoid", "tanh"])
def test_stimulus_converges_to_the_units_weights(act):
    model = LinearUnits((1, 8, 8), act=act)
    w = model.encoder.weight[3].detach()
    stim = optimal_stimulus(model, 3, norm=2.5, steps=150, restarts=3, seed=1)
    assert stim.image.shape == (1, 8, 8)
    assert float(stim.image.norm()) == pytest.approx(2.5, rel=1e-4)
    assert _cos(stim.image, w) > 0.995
    assert stim.agreement > 0.99     # one optimum: every start finds it


def test_a_unit_that_answers_x_and_minus_x_alike_agrees_in_absolute_value_and_one_start_compares_nothing():
    """An energy unit (w·x)² has two optima, w and -w: starts split between them read as a signed mean cosine
    near 0 (tica-8x8's pooled unit: -0.19, |cosine| 0.48); one start reported agreement 1.00."""
    from downpour.analysis.report import _starts

    model = LinearUnits((1, 8, 8), act=torch.square)
    stim = optimal_stimulus(model, 3, norm=2.5, steps=150, restarts=6, seed=0)
    assert stim.symmetric and stim.agreement > 0.99
    assert "in absolute value, as the unit answers x and -x alike" in _starts(vars(stim))
    linear = optimal_stimulus(LinearUnits((1, 8, 8)), 3, norm=2.5, steps=50, restarts=2)
    assert not linear.symmetric
    one = optimal_stimulus(model, 3, norm=2.5, steps=20, restarts=1)
    assert one.agreement is None and _starts(vars(one)).startswith("from one start (nothing to compare")


def test_saturating_unit_still_converges():
    # Near the optimum w·x reaches 25: sigmoid rounds to 1.0 in float32 and its gradient to 0; float64 carries on.
    model = LinearUnits((1, 8, 8), act=torch.sigmoid)
    with torch.no_grad():
        model.encoder.weight.mul_(5.0 / model.encoder.weight[2].norm())
    stim = optimal_stimulus(model, 2, norm=5.0, steps=150, restarts=2)
    assert _cos(stim.image, model.encoder.weight[2].detach()) > 0.99


def test_negative_sign_finds_the_most_suppressing_input():
    model = LinearUnits((1, 8, 8))
    stim = optimal_stimulus(model, 0, norm=1.0, sign=-1, steps=100, restarts=2)
    assert _cos(stim.image, -model.encoder.weight[0].detach()) > 0.995
    assert stim.activation < 0


def test_stimulus_is_reproducible_and_validates():
    model = LinearUnits((1, 4, 4))
    a = optimal_stimulus(model, 1, steps=20, seed=5)
    b = optimal_stimulus(model, 1, steps=20, seed=5)
    assert torch.equal(a.image, b.image)
    with pytest.raises(IndexError, match="out of range"):
        optimal_stimulus(model, 99, steps=2)
    with pytest.raises(ValueError, match="layer"):
        optimal_stimulus(model, 0, layer="nope", steps=2)


def test_top_images_orders_by_signed_response():
    r = np.array([0.1, 3.0, -2.0, 1.5])
    assert top_images(r, 2).tolist() == [1, 3]
    assert top_images(r, 2, sign=-1).tolist() == [2, 0]
    assert top_images(r, 10).tolist() == [1, 3, 0, 2]


def test_starts_a_relu_unit_is_off_at_are_drawn_again_and_those_it_never_answers_are_left_out_and_counted():
    """A ReLU unit off at a start gives it no gradient: the start kept its random draw, and its cosine with the
    optimum (about 0) pulled the agreement down (cnn-digits' conv1 unit: restarts [2.98, 0, 0, 0], agreement -0.28)."""
    from downpour.analysis.report import _starts

    model = LinearUnits((1, 8, 8), act=torch.relu)
    stim = optimal_stimulus(model, 3, norm=2.5, steps=150, restarts=8, seed=0)
    assert stim.silent_starts == 0 and min(stim.restarts) > 0 and stim.agreement > 0.99   # (half were off at first)
    w = model.encoder.weight[3].detach()
    with torch.no_grad():                         # on for about 6% of random draws: some starts stay off
        model.encoder.bias[3] = -1.6 * float(w.norm()) * 2.5 / 8
    stim = optimal_stimulus(model, 3, norm=2.5, steps=150, restarts=8, seed=0)
    assert stim.silent_starts == 4 and sum(r == 0 for r in stim.restarts) == 4
    assert _cos(stim.image, w) > 0.995 and stim.agreement > 0.99      # every start that moved found the optimum
    words = _starts(vars(stim))
    assert "4 of them silent and left out" in words and "the 4 that moved 1.00" in words
    lone = optimal_stimulus(model, 3, norm=2.5, steps=20, restarts=2, seed=0)
    assert lone.silent_starts == 1 and lone.agreement is None and "no second solution" in _starts(vars(lone))
    with torch.no_grad():
        model.encoder.bias[3] = -2.3 * float(w.norm()) * 2.5 / 8
    none = optimal_stimulus(model, 3, norm=2.5, steps=20, restarts=8, seed=1)
    assert none.silent_starts == 8 and "every one of its 8 starts stayed silent" in _starts(vars(none))
    assert "random draw" in _starts(vars(none))
    with torch.no_grad():
        model.encoder.bias[3] = -1.6 * float(w.norm()) * 2.5 / 8
    suppress = optimal_stimulus(model, 3, norm=2.5, steps=20, restarts=8, seed=1, sign=-1)   # all end at response 0
    assert suppress.silent_starts == 6 and suppress.agreement is not None     # a start that moved is the one shown


class SubspaceEnergy(LinearUnits):
    """Unit 0 = the energy of x in the span of 6 orthonormal filters: every x of that span (at the norm) is an
    optimum, so starts end far apart (mean |cosine| of random points of a 6-d sphere ~ 0.34)."""

    def forward(self, x):
        w, _ = torch.linalg.qr(self.encoder.weight.detach().T)          # (64, 6) orthonormal columns
        return (x.reshape(x.shape[0], -1) @ w).square().sum(1, keepdim=True)


def test_starts_that_end_on_different_inputs_are_called_one_of_several_not_the_optimum():
    """cat-demo's 4 starts all reached -6.616 with a mean cosine of 0.01, and the report still called the
    picture "the input that suppresses the unit most"."""
    from downpour.analysis.report import _starts

    flat = optimal_stimulus(SubspaceEnergy((1, 8, 8)), 0, norm=2.5, steps=150, restarts=6, seed=0)
    assert flat.agreement < 0.5 and max(flat.restarts) - min(flat.restarts) < 1e-3 * max(flat.restarts)
    assert "one of several inputs the unit answers about as strongly, not a unique optimum" in _starts(vars(flat))
    peaked = optimal_stimulus(LinearUnits((1, 8, 8)), 3, norm=2.5, steps=150, restarts=3, seed=1)
    assert peaked.agreement > 0.99 and "several" not in _starts(vars(peaked))


def test_the_stimulus_is_ranked_among_the_images_responses_and_the_report_says_where():
    """The report gives the stimulus's response and where it stands among the images', not the response alone."""
    from downpour.analysis.report import _among_pool

    responses = np.arange(100.0)                          # images answering 0 … 99
    assert stimulus_rank(95.5, responses) == {"percentile": 96.0, "best_image": 99.0}
    assert stimulus_rank(95.0, responses)["percentile"] == 95.5          # its tie with image 95 counts half
    assert stimulus_rank(200.0, responses)["percentile"] == 100.0
    lowered = stimulus_rank(-0.5, responses, sign=-1)     # a unit the concept lowers: "beyond" is below
    assert lowered == {"percentile": 100.0, "best_image": 0.0}
    assert stimulus_rank(50.0, responses, sign=-1)["percentile"] == pytest.approx(49.5)
    said = _among_pool({"sign": 1, "among_pool": stimulus_rank(95.5, responses)}, {"pool": 100})
    assert said == " (higher than the responses to 96% of the 100 images the top ones are drawn from; the best image's 99)"
    down = _among_pool({"sign": -1, "among_pool": lowered}, {"pool": 100})
    assert down == (" (lower than the responses to 100% of the 100 images the top ones are drawn from; the image that "
                    "lowers it most: 0)")      # (not "the best image's 0": the image that excites it most?)
    assert _among_pool({"sign": 1}, {"pool": 100}) == ""           # an analysis.json from before: nothing to say
