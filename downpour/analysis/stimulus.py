"""A unit's optimal stimulus (the input of fixed L2 norm that excites it most), its top images, and the stimulus
as a picture (:func:`in_pixels`).

Le et al. 2012 found their face neuron's optimal stimulus by optimising the input under a norm
constraint: x* = argmax_x f(x) subject to ||x||₂ = r. We do projected gradient ascent on that
sphere: step along the normalised gradient, rescale back to norm r, with a step that shrinks
linearly to zero, from several random starts run as one batch; the best start wins. A start the unit
gives no gradient at (a ReLU unit off there) is drawn again; one still without a gradient is silent.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from downpour.analysis.units import check_layer, model_input_shape, unit_response
from downpour.data.preprocess import Preprocess
from downpour.layers import input_gradients_only
from downpour.models.base import FeatureModel


REDRAWS = 10   # times a start the unit gives no gradient at is drawn again before it counts as silent


@dataclass
class Stimulus:
    """The result of :func:`optimal_stimulus`.

    image: (C, H, W), ``||image||₂ = norm``; activation: the unit's response to it; restarts: every
    start's final response (R,); agreement: mean cosine similarity of the other starts' solutions
    to the best one (near 1: one clear optimum; low: several; None with one start: nothing to compare).
    For a unit that answers x and -x alike (``symmetric``: an L2-pooled or TICA unit), x* and -x* are one
    optimum, so the cosines are taken in absolute value. silent_starts: starts the unit never gave a
    gradient (a ReLU unit off there, and at each of its REDRAWS draws again): they never moved from
    their draw, so they are left out of ``agreement`` (None with fewer than two that moved).
    """

    image: Tensor
    activation: float
    norm: float
    restarts: list[float]
    agreement: float | None
    trace: list[float]          # best start's response every few steps, to check convergence
    field_pixels: int = 0       # inputs (C·H·W entries) the unit's response depends on: its receptive field
    symmetric: bool = False     # the unit's response to -x* equals its response to x*
    silent_starts: int = 0      # starts that never had a gradient (left out of agreement)


def _project(x: Tensor, norm: float) -> Tensor:
    flat = x.reshape(x.shape[0], -1)
    return (flat * (norm / flat.norm(dim=1, keepdim=True).clamp_min(1e-12))).reshape(x.shape)


def _response_and_grad(model: FeatureModel, x: Tensor, unit: int, layer: str, sign: int) -> tuple[Tensor, Tensor]:
    x = x.detach().requires_grad_(True)
    response = sign * unit_response(model, x, unit, layer)                     # (R,)
    with input_gradients_only():      # the weights' gradients, which nothing reads, not computed (the same x gradient)
        (grad,) = torch.autograd.grad(response.sum(), x)
    return response.detach(), grad


def optimal_stimulus(model: FeatureModel, unit: int, *, layer: str | None = None, norm: float | None = None,
                     sign: int = 1, steps: int = 300, restarts: int = 4, lr: float = 0.2, seed: int = 0,
                     input_shape: tuple[int, ...] | None = None) -> Stimulus:
    """Maximise ``sign * unit`` over inputs with ||x||₂ = ``norm``.

    norm: the sphere's radius (default sqrt(C·H·W), i.e. unit RMS per pixel; pass the data's typical
    image norm to stay on the data's scale). lr: step length as a fraction of ``norm``. sign = -1
    finds the input that *suppresses* the unit most (for units that fire against a concept).
    """
    if steps < 1 or restarts < 1:
        raise ValueError(f"steps and restarts must be >= 1, got {steps} and {restarts}")
    layer = check_layer(model, layer)
    shape = model_input_shape(model, input_shape)
    norm = float(norm if norm is not None else np.sqrt(np.prod(shape)))
    model = copy.deepcopy(model).eval()
    draws = torch.Generator().manual_seed(seed)
    x = _project(torch.randn((restarts, *shape), generator=draws), norm)                          # (R, C, H, W)
    for _ in range(REDRAWS):    # a start the unit gives no gradient at (a ReLU unit off there) would never move
        off = _response_and_grad(model, x, unit, layer, sign)[1].reshape(restarts, -1).abs().amax(dim=1) == 0
        if not off.any():
            break
        x[off] = _project(torch.randn((int(off.sum()), *shape), generator=draws), norm)
    # Pixels outside the unit's receptive field get no gradient from any start and would keep their
    # random start values for ever; zero them so the whole norm goes where the unit can see it.
    field = (_response_and_grad(model, x, unit, layer, sign)[1] != 0).any(dim=0)                  # (C, H, W)
    if field.any():
        x = _project(x * field, norm)
    trace, moved = [], torch.zeros(restarts, dtype=torch.bool)
    for t in range(steps):
        response, grad = _response_and_grad(model, x, unit, layer, sign)
        if x.dtype == torch.float32 and bool((grad.reshape(restarts, -1).abs().amax(dim=1) == 0).any()):
            # A saturated unit (a sigmoid at z = 20) has a gradient float32 rounds to 0: go on in float64.
            model, x = model.double(), x.double()
            response, grad = _response_and_grad(model, x, unit, layer, sign)
        moved |= grad.reshape(restarts, -1).abs().amax(dim=1) > 0
        with torch.no_grad():
            step = lr * norm * (1.0 - t / steps)
            g = grad.reshape(restarts, -1)
            g = g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
            x = _project(x + step * g.reshape(x.shape), norm)
        if t % max(steps // 20, 1) == 0:
            trace.append(float(response.max()))
    with torch.no_grad():
        final = sign * unit_response(model, x, unit, layer)                     # (R,)
        # (a silent start can tie the best: sign = -1 on a ReLU unit, whose response 0 is its least)
        best = int(final.masked_fill(~moved, -torch.inf).argmax()) if moved.any() else int(final.argmax())
        flat = x.reshape(restarts, -1)
        cos = (flat @ flat[best]) / (flat.norm(dim=1) * flat[best].norm()).clamp_min(1e-12)
        mirrored = sign * unit_response(model, -x[best:best + 1], unit, layer)
        symmetric = bool(torch.isclose(mirrored, final[best:best + 1], rtol=1e-5, atol=1e-8).all())
        others = cos[moved & (torch.arange(restarts) != best)] if moved[best] else cos[:0]
        others = others.abs() if symmetric else others
    trace.append(float(final[best]))
    return Stimulus(image=x[best].detach().float(), activation=float(sign * final[best]), norm=norm,
                    restarts=[float(sign * v) for v in final], trace=trace,
                    agreement=float(others.mean()) if len(others) else None, field_pixels=int(field.sum()),
                    symmetric=symmetric, silent_starts=int((~moved).sum()))


def top_images(responses: np.ndarray, k: int, sign: int = 1) -> np.ndarray:
    """Indices of the ``k`` images that drive a unit hardest (largest ``sign * response``), best first.

    responses: (N,) one unit's response to each image. Returns (min(k, N),) int64.
    """
    responses = np.asarray(responses, dtype=np.float64)
    order = np.argsort(-sign * responses, kind="stable")
    return order[:k].astype(np.int64)


def stimulus_rank(activation: float, responses: np.ndarray, sign: int = 1) -> dict[str, float]:
    """Where the optimal stimulus's response stands among the images': ``percentile``, the share (in %) of
    ``responses`` (N,) it drives the unit beyond (``sign``: which way is "beyond"; a tie counts half), and
    ``best_image``, the response of the image that drives it most. The stimulus's response alone has nothing to read it
    against (an input of the data's norm need not beat a face)."""
    r = sign * np.asarray(responses, dtype=np.float64)
    a = sign * float(activation)
    share = (np.sum(r < a) + 0.5 * np.sum(r == a)) / max(len(r), 1)
    return {"percentile": float(100.0 * share), "best_image": float(sign * r.max()) if len(r) else math.nan}


def in_pixels(prepare: Preprocess, image: torch.Tensor) -> torch.Tensor:
    """A model-input image (C, H, W) as a picture: the steps after whitening undone, then whitening where
    the run's whitener can (whitened space puts every frequency at the same power, so a stimulus there
    looks like noise). ``normalize = "ufldl"`` maps the whitened values into [0.1, 0.9] around 0.5: left
    in, that 0.5 went through the inverse whitening as a constant offset (a ufldl-sae stimulus drawn at
    mean 0.70 instead of -0.24, washed out)."""
    bound = prepare.stats.get("clip", 0.0) if prepare.normalize == "ufldl" else 0.0
    if bound:
        image = (image - 0.5) / 0.4 * bound
    inverse = getattr(prepare.whitener, "inverse", None)
    return inverse(image[None])[0] if inverse is not None else image
