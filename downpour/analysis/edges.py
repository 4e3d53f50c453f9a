"""Is a first-layer filter an oriented edge or Gabor? A yes/no per filter that spikes and noise cannot pass.

Orientation coherence alone (``orientation.py``) can be fooled: a network that learned only one-pixel spikes in its
filter corners scored 0.853, because a spike on the border has one-sided gradients. Here a filter is edge-like
only if it passes four tests at once, each aimed at the impostors the others let through, on the filter minus its
mean, and its mean holds at most 40% of its energy (``MEAN_SHARE_MAX``: a smooth one-signed blob is a bar once
centred, but it answers to brightness); a bar one or two pixels wide, which peaks past ``FREQ_MAX``, is judged by the
four tests once its (-1)^x or (-1)^y carrier is taken off (the comments above the thresholds say why):

=================  ==================================================  =============================================
measure            edge-like when                                      rejects
=================  ==================================================  =============================================
spread             energy spread over >= 4 pixels' worth               single pixels and 1-3 corner spikes (<= 3.3)
concentration      >= 50% of spectral power within 0.15 cycles/pixel   noise, spikes (flat spectra), plaids (two
                   of the peak p* or its mirror -p*                    peaks), centre-surround rings
peak_frequency     |p*| <= 0.42 cycles/pixel                           checkerboards (0.71), one-pixel stripes (0.5)
coherence          structure-tensor coherence >= 0.3                   blobs, difference-of-Gaussians and
                                                                       low-frequency plaids, whose power all falls
                                                                       in the one disk round the origin
=================  ==================================================  =============================================

Calibration (a script run once, not kept; 4,000 filters per family, 8x8 unless said), fraction that pass:

    Gaussian noise      8x8 0.000, 5x5 0.002, 10x10 0.000, 3x8x8 0.000, 16x16 0.000 (4x4 0.027, 3x3 0.000)
    Gabors              0.995 (sigma 1.2-3 px, 0.08-0.35 cycles/px, any angle and phase, centre in the central half);
                        even 0.985, odd 1.000, +10-20% noise energy 0.974, 3 channels 0.994, 16x16 0.994,
                        5x5 (sigma 1-1.5, 0.15-0.35) 0.953. All failures are sigma x freq < 0.2 (a fifth of a
                        cycle per sigma: an even one is a round blob) and fail on coherence.
    step edges, bars    1.000 (tanh edges 0.3-1.5 px wide; Gaussian ridges)
    impostors           0.000: corner spikes, single pixels, checkerboards plain and windowed, one-pixel stripes
                        plain and windowed, Gaussian blobs, difference-of-Gaussians, plaids at 0.15-0.35 cycles/px
    low plaids          0.036 at 0.08-0.35 cycles/px: below ~0.12 under one cycle fits in 8 px, and two
                        orthogonal ramps add up to one diagonal ramp, which is an edge.

With the mean and the pixel-scale bars (2026-12-07; tests/edge_filters.py's families, 4,000 each, seed 21;
the four tests alone in brackets): Gabors 0.990 (0.994), even 0.977 (0.986), step edges 0.997 (1.000), one-signed
bars 1-2 px wide and 4-8 long 0.999, [+1, -1] bars at the pixel scale 6-8 long off the border 1.000 (0.000; 5-8 long
anywhere 0.77: coherence finds a short box, or one on the border, round), smooth one-signed blobs of aspect 1.6-3
0.004 (1.000), one-signed bars 2.5-3 px wide and 6-8 long 0.157 (1.000: blobs as often as bars to the eye), every
impostor above and rows of alternating pixels 0.000, Gaussian noise as before (5x5 0.002, 4x4 0.028, others 0).

Whole-object templates pass the four tests too, and no threshold of theirs tells them apart: means of 5-40 of
scikit-learn's 8x8 digits of one class pass 0.77 (the 10 class means 8 of 10, single digits 0.33), because at 8x8 a
digit's tall silhouette (bright middle columns, empty side ones) is one vertical ridge at 0.125-0.16 cycles/px. Raising
concentration to 0.65 still passes 0.27 of them and drops 5x5 Gabors from 0.95 to 0.33. What gives them away is the
layer, not the filter: every one is that same vertical ridge. ``edge_orientation_agreement`` = |mean of
exp(2i·orientation)| over the edge-like filters (1: all one orientation) is 0.99 for 100 such templates and for
rbm-digits after 500 steps (77 of 100 edge-like by the four tests, all within 14 degrees of one orientation), against
0.08-0.14 for cat-demo, ufldl-sae and tica-8x8 and 0.09 for 100 random Gabors (16 random Gabors or edges: at most 0.48
in 20 draws). The report reads an agreement of at least ``ONE_ORIENTATION`` over at least ``ONE_ORIENTATION_MIN``
edge-like filters as one structure, not a bank of edges (uniform angles: P(R >= 0.9 | n = 8) ~ exp(-8 * 0.81)).
One-signed templates (the averaged digits: mean share 0.45 or more) fail on their mean; centred ones still need the
agreement. (Measured 2026-12-04: tests/edge_filters.py's ``averaged_digits(rng, 4000)`` and ``gabors(rng,
4000)``, seed 0, through ``edge_like``, and the grid of concentration 0.5-0.65 x coherence 0.3-0.4 over every family
above.)

Notation: f (n, C, H, W) filters, centred per channel; P (n, 4H, 4W) the power of their zero-padded FFT, summed
over channels (the code keeps the half plane kx >= 0); p* = (py, px) the frequency of P's maximum, in cycles/pixel.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

from downpour.analysis.intervals import wilson
from downpour.analysis.orientation import coherence

# Effective pixel count (Σe)²/Σe²: corner spikes reach 3.3, the smallest Gabor (σ 1.2) 4.5. In pixels, not as a
# fraction of H·W, so a small Gabor in a large (20x20) filter still passes. A second lock: a few pixels cannot have
# a narrow spectrum, so concentration rejects them too (1-6 random pixels reach at most 0.49).
SPREAD_MIN_PIXELS = 4.0
CONCENTRATION_MIN = 0.5   # noise's 95th percentile is 0.29 (8x8), 0.40 (5x5); Gabors' 5th is 0.73, 0.63 with noise
CONCENTRATION_RADIUS = 0.15  # cycles/pixel, ~ the spectral σ of the narrowest Gabor (1 / (2π·1.2 px) = 0.13)
FREQ_MAX = 0.42           # Gabors up to 0.35 peak at <= 0.39; one-pixel stripes sit at 0.5, checkerboards at 0.71
COHERENCE_MIN = 0.3       # blobs and centre-surround stay below 0.16 (95%); Gabors' 5th percentile is 0.50
# The tests above read each filter minus its mean. A filter whose mean holds more than this share of its energy,
# HW·Σmean²/Σf², answers to the local brightness as much as to any edge: the main job's (seed 0) one such filter,
# a smooth one-signed blob 7 px by 3-4 (share 0.48), passed the four tests as a bar once centred, yet its mean alone
# carries 44% of its response variance on its training windows. Gabors' 99th percentile is 0.33, offset step edges'
# 0.38, planted 1-2 px bars' 0.39; Gaussian blobs of aspect 1.6-3 (which pass the four tests) sit at 0.54-0.63.
MEAN_SHARE_MAX = 0.4
# A bar one or two pixels wide peaks at or near 0.5 cycles/pixel, past FREQ_MAX, with a spectrum too broad across
# for the concentration test ([+1, -1] across: sin²(πf)). Multiplied by the carrier (-1)^x (or (-1)^y) it is a
# low-frequency bar, which the four tests judge as any other; its stripes must run along it (its peak within
# NYQUIST_ALIGN_DEGREES of the carrier's axis), or a row of alternating pixels would pass as a bar across them.
# Windowed one-pixel stripes and checkerboards become round blobs and one-pixel stripes there, and still fail.
NYQUIST_ALIGN_DEGREES = 30.0
# No FREQ_MIN: a step edge's power peaks at the lowest frequency the padded FFT resolves (~0.09 on 8x8), and a
# constant filter, the one thing a lower bound would catch, is caught as flat below.

CRITERIA = {"spread_min_pixels": SPREAD_MIN_PIXELS, "concentration_min": CONCENTRATION_MIN,
            "concentration_radius": CONCENTRATION_RADIUS, "peak_frequency_max": FREQ_MAX,
            "coherence_min": COHERENCE_MIN, "mean_share_max": MEAN_SHARE_MAX,
            "nyquist_align_degrees": NYQUIST_ALIGN_DEGREES}

ONE_ORIENTATION = 0.9    # edge_orientation_agreement this high: the edge-like filters are one structure (above)
ONE_ORIENTATION_MIN = 8  # ... over at least this many edge-like filters (fewer agree by chance too often)

DUPLICATE_COSINE = 0.9   # two edge-like filters this alike (|cosine|, zero mean) count as one
DISTINCT_SAMPLE = 2000   # edge-like filters compared at most (a 2,000 x 2,000 cosine matrix)

_PAD = 4          # FFT of 4H x 4W: a 1/32 cycles/pixel grid for 8x8, fine enough to place a 0.15 disk
_BLOCK = 1024     # filters per FFT, to bound memory (1024 x 3 x 72 x 37 complex = 130 MB for 18x18 colour)
_FLAT = 1e-12     # centred energy below this fraction of the raw energy: a constant (or zero) filter


def _as_filters(filters: Tensor | np.ndarray) -> np.ndarray:
    """(n, H, W) or (n, C, H, W), numpy or torch -> (n, C, H, W) float64."""
    if isinstance(filters, Tensor):
        filters = filters.detach().cpu().numpy()
    f = np.asarray(filters, dtype=np.float64)
    f = f[:, None] if f.ndim == 3 else f
    if f.ndim != 4:
        raise ValueError(f"filters must be (n, H, W) or (n, C, H, W), got shape {np.shape(filters)}")
    return f


def _too_thin(f: np.ndarray) -> bool:
    """A row of weights (a recurrent model's input map) has no 2-D structure to be oriented."""
    return min(f.shape[2:]) < 3


def _wrap(d: np.ndarray) -> np.ndarray:
    """Frequency differences onto [-0.5, 0.5): the spectrum is periodic; near Nyquist, neighbours lie across it."""
    return (d + 0.5) % 1.0 - 0.5


def _spectral_peak(f: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centred (b, C, H, W) -> concentration, py, px, each (b,)."""
    b, _, h, w = f.shape
    # A real filter's power is mirror-symmetric, P(k) = P(-k), so the half plane kx >= 0 (rfft, half the work) holds
    # it all: columns 0 and Nyquist stand for themselves, every other column also for its mirror.
    spec = np.fft.rfft2(f, s=(_PAD * h, _PAD * w))             # (b, C, 4H, 2W + 1)
    power = (spec.real ** 2 + spec.imag ** 2).sum(axis=1)      # (b, 4H, 2W + 1): channels combined in power
    fy, fx = np.fft.fftfreq(_PAD * h), np.fft.rfftfreq(_PAD * w)
    mirrored = np.full(fx.shape, 2.0)
    mirrored[[0, -1]] = 1.0
    iy, ix = np.unravel_index(power.reshape(b, -1).argmax(axis=1), power.shape[1:])
    py, px = fy[iy], fx[ix]
    # Disks round p* and -p*; their union (not a sum), so a low-frequency peak, whose disks overlap, counts once.
    near = np.zeros(power.shape, dtype=bool)
    for sign in (-1.0, 1.0):
        dy = _wrap(fy[None, :] + sign * py[:, None])           # (b, 4H)
        dx = _wrap(fx[None, :] + sign * px[:, None])           # (b, 2W + 1)
        near |= dy[:, :, None] ** 2 + dx[:, None, :] ** 2 <= CONCENTRATION_RADIUS ** 2
    power *= mirrored
    total = power.sum(axis=(1, 2))
    concentration = (power * near).sum(axis=(1, 2)) / np.where(total > 0, total, 1.0)
    return concentration, py, px


def _centred(f: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, C, H, W) -> the filters centred per channel, (n,) their spread (0 when flat, see :func:`edge_scores`),
    (n,) flat: what :func:`edge_scores` and the cheap tests of :func:`_spread_and_coherence` both start from."""
    raw = (f ** 2).sum(axis=(1, 2, 3))
    f = f - f.mean(axis=(2, 3), keepdims=True)
    energy = (f ** 2).sum(axis=1)                              # (n, H, W)
    total = energy.sum(axis=(1, 2))
    flat = total <= _FLAT * raw                                # also true for all-zero filters (0 <= 0)
    spread = total ** 2 / np.maximum((energy ** 2).sum(axis=(1, 2)), 1e-300) / (f.shape[2] * f.shape[3])
    return f, np.where(flat, 0.0, spread), flat


def edge_scores(filters: Tensor | np.ndarray) -> dict[str, np.ndarray]:
    """Per-filter measures of how edge-like first-layer filters are.

    Parameters
    ----------
    filters : array or Tensor, shape (n, H, W) or (n, C, H, W)
        Filters with H, W >= 3; channels are combined in power. Each filter (and channel) is centred first.

    Returns
    -------
    dict of str to ndarray, each of shape (n,)
        ``spread``: participation ratio (Σe)²/Σe² of the pixel energies e (summed over channels) over H·W,
        ~1/(H·W) for one pixel, ~1/3 for Gaussian noise, 1 for a flat-magnitude pattern.
        ``concentration``: fraction of the zero-padded spectrum's power within ``CONCENTRATION_RADIUS`` of the
        peak p* or its mirror -p*. ``peak_frequency``: |p*| in cycles/pixel. ``orientation``: direction of p*
        in degrees [0, 180), from the +x (column) axis towards +y (row index); stripes run perpendicular to it.
        ``coherence``: :func:`downpour.analysis.orientation.coherence`.
        ``mean_share``: H·W·Σ mean² / Σ f² over channels, the share of the raw filter's energy in its means
        (1 for a constant filter, 0 for a zero-mean one; 0 for an all-zero filter).
        A flat (constant or zero) filter scores spread and concentration 0 and NaN frequency and orientation.
    """
    f = _as_filters(filters)
    if _too_thin(f):
        raise ValueError(f"filters of {f.shape[2]}x{f.shape[3]} are too thin for 2-D structure (need >= 3x3)")
    n, _, h, w = f.shape
    raw = (f ** 2).sum(axis=(1, 2, 3))
    means = f.mean(axis=(2, 3), keepdims=True)                 # (n, C, 1, 1)
    mean_share = (means ** 2).sum(axis=(1, 2, 3)) * h * w / np.where(raw > 0, raw, 1.0)
    f, spread, flat = _centred(f)
    concentration, py, px = np.empty(n), np.empty(n), np.empty(n)
    for start in range(0, n, _BLOCK):
        block = slice(start, start + _BLOCK)
        concentration[block], py[block], px[block] = _spectral_peak(f[block])
    frequency = np.where(flat, np.nan, np.hypot(py, px))
    orientation = np.where(flat, np.nan, np.degrees(np.arctan2(py, px)) % 180.0)
    return {"spread": spread, "concentration": np.where(flat, 0.0, concentration), "peak_frequency": frequency,
            "orientation": orientation, "coherence": coherence(f), "mean_share": mean_share}


def _decide(scores: dict[str, np.ndarray], pixels: int) -> np.ndarray:
    """The four tests of the module docstring; NaN (flat filters) fails every comparison."""
    return ((scores["spread"] * pixels >= SPREAD_MIN_PIXELS) & (scores["concentration"] >= CONCENTRATION_MIN)
            & (scores["peak_frequency"] <= FREQ_MAX) & (scores["coherence"] >= COHERENCE_MIN))


def _pixel_bars(f: np.ndarray, scores: dict[str, np.ndarray]) -> np.ndarray:
    """(n, C, H, W) filters -> (n,) bool: a bar 1-2 pixels wide, judged as a low-frequency bar once its Nyquist
    carrier is taken off (the comment above ``NYQUIST_ALIGN_DEGREES``); only filters peaking past ``FREQ_MAX``."""
    h, w = f.shape[2:]
    y, x = np.mgrid[0:h, 0:w]
    found = np.zeros(len(f), dtype=bool)
    near_nyquist = np.flatnonzero(scores["peak_frequency"] > FREQ_MAX)  # (NaN for flat filters: False)
    for carrier, axis in (((-1.0) ** x, 0.0), ((-1.0) ** y, 90.0)):    # stripes along columns, along rows
        # Only the demodulated filters that pass spread and coherence get the FFT, most of the cost: half of all
        # noise filters peak past FREQ_MAX, and scoring them in full made edge_like 1.6x the four tests alone.
        demodulated = f[near_nyquist] * carrier
        cheap = _spread_and_coherence(demodulated)
        bar = edge_scores(demodulated[cheap])
        gap = np.abs((bar["orientation"] - axis + 90.0) % 180.0 - 90.0)   # on the circle of 180°
        found[near_nyquist[cheap]] |= _decide(bar, h * w) & (gap <= NYQUIST_ALIGN_DEGREES)
    return found


def _spread_and_coherence(f: np.ndarray) -> np.ndarray:
    """(n, C, H, W) filters -> (n,) bool: they pass ``_decide``'s spread and coherence tests, computed as
    :func:`edge_scores` does but without its FFT; a filter failing them fails ``_decide``."""
    f, spread, _ = _centred(f)
    return (spread * f.shape[2] * f.shape[3] >= SPREAD_MIN_PIXELS) & (coherence(f) >= COHERENCE_MIN)


def _edgy(f: np.ndarray, scores: dict[str, np.ndarray]) -> np.ndarray:
    """(n, C, H, W) filters and their :func:`edge_scores` -> (n,) bool, :func:`edge_like`'s decision."""
    bright = scores["mean_share"] > MEAN_SHARE_MAX
    return ~bright & (_decide(scores, f.shape[2] * f.shape[3]) | _pixel_bars(f, scores))


def edge_like(filters: Tensor | np.ndarray) -> np.ndarray:
    """(n, H, W) or (n, C, H, W) filters -> (n,) bool: is each an oriented edge / Gabor-like filter?

    See the module docstring for the four tests, the mean's share and the pixel-scale bars, and their calibration;
    the thresholds are ``CRITERIA``.
    """
    f = _as_filters(filters)
    return _edgy(f, edge_scores(f))


def edge_summary(filters: Tensor | np.ndarray, seed: int = 0, groups: np.ndarray | None = None) -> dict[str, Any]:
    """JSON-able summary: what fraction of the filters are edge-like, beside Gaussian noise filters of the same shape.

    Parameters
    ----------
    filters : array or Tensor, shape (n, H, W) or (n, C, H, W)
    seed : int
        Seed of ``numpy.random.default_rng`` for the noise filters.
    groups : array of int, shape (n,), optional
        Which filters are not independent of each other (one label per filter, every group the same size: a tiled or
        untied layer's map, whose filters in neighbouring banks the L2 pools sum); default: each filter its own.

    Returns
    -------
    dict
        ``count``, ``shape`` [C, H, W], ``edge_fraction``, ``edge_fraction_noise``, ``coherence_mean``,
        ``coherence_noise``, ``criteria`` (the thresholds), and :func:`distinct_edges`'s
        ``edge_distinct_fraction`` and ``edge_mean_abs_cosine``, and ``edge_orientation_agreement`` (|mean of
        exp(2i·orientation)| over the edge-like filters: 1 when all share one orientation; None without any). Filters thinner than 3 pixels (a row of weights has
        no 2-D structure to be oriented) and an empty set get None for the four measures.
        ``edge_fraction_ci``: its 95% interval, Wilson's over the ``edge_fraction_units`` groups, each group's share of
        edge-like filters counted as one unit's (as if a group's filters were copies of each other: the widest its
        groups' shares can spread, so it holds however alike they are); over the filters where each is its own.
        It covers which filters (maps) the layer learned, not another training run's.
    """
    return edge_measures(filters, seed, groups)[0]


def edge_measures(filters: Tensor | np.ndarray, seed: int = 0,
                  groups: np.ndarray | None = None) -> tuple[dict[str, Any], np.ndarray | None]:
    """:func:`edge_summary` and the (n,) bool per-filter decision behind its ``edge_fraction`` (:func:`edge_like`'s;
    None where it measured none), from one scoring: the analysis frames in its figure the filters its summary counted
    (one scoring, not edge_summary's and again edge_like's for the frames)."""
    f = _as_filters(filters)
    summary: dict[str, Any] = {"count": int(f.shape[0]), "shape": [int(s) for s in f.shape[1:]],
                               "edge_fraction": None, "edge_fraction_noise": None, "coherence_mean": None,
                               "coherence_noise": None, "edge_orientation_agreement": None, "criteria": dict(CRITERIA),
                               "edge_fraction_ci": None, "edge_fraction_units": None}
    if f.shape[0] == 0 or _too_thin(f):
        return summary, None
    noise = np.random.default_rng(seed).standard_normal(f.shape)
    ours, theirs = edge_scores(f), edge_scores(noise)
    edgy = _edgy(f, ours)
    summary.update(edge_fraction=float(edgy.mean()),
                   edge_fraction_noise=float(_edgy(noise, theirs).mean()),
                   coherence_mean=float(ours["coherence"].mean()), coherence_noise=float(theirs["coherence"].mean()),
                   edge_orientation_agreement=orientation_agreement(ours["orientation"][edgy]),
                   **distinct_edges(f[edgy], seed), **_fraction_interval(edgy, groups))
    return summary, edgy


def _fraction_interval(edgy: np.ndarray, groups: np.ndarray | None) -> dict[str, Any]:
    """``edge_fraction_ci`` and ``edge_fraction_units`` of (n,) yes/no ``edgy`` (:func:`edge_summary`)."""
    labels = np.arange(len(edgy)) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    sizes = np.bincount(labels)
    if sizes.min() != sizes.max():      # (the shares' mean would not be edge_fraction, nor inside its interval)
        raise ValueError(f"edge_summary: groups must be the same size, got sizes {sorted(set(sizes.tolist()))}")
    shares = np.bincount(labels, weights=edgy) / sizes                       # (G,) each group's edge-like share
    _, low, high = wilson(float(shares.sum()), len(shares))
    return {"edge_fraction_ci": [low, high], "edge_fraction_units": int(len(shares))}


def orientation_agreement(degrees: np.ndarray) -> float | None:
    """|mean of exp(2i·θ)| over orientations θ (n,) in degrees: 1 when all are one orientation, ~1/sqrt(n) when
    they are spread at random (orientations are axial, θ and θ + 180 the same, hence 2θ); None for none."""
    if degrees.size == 0:
        return None
    return float(abs(np.exp(2j * np.radians(degrees)).mean()))


def distinct_edges(edges: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """How many of the edge-like filters ``edges`` (n, C, H, W) are distinct: not a near-duplicate
    (|cosine| >= ``DUPLICATE_COSINE`` of the zero-mean filters, either sign) of one kept before it.

    A first layer can pass the edge test with one filter copied many times (an RBM after 100 steps:
    100% edge-like, mean |cosine| 0.97), which ``edge_fraction`` alone does not show. Over more than
    ``DISTINCT_SAMPLE`` edge-like filters, a seeded sample of that many is measured and the share scaled.
    Returns ``edge_distinct_fraction`` (distinct / edge-like; None without edge-like filters) and
    ``edge_mean_abs_cosine`` (mean |cosine| over pairs of them)."""
    n = edges.shape[0]
    if n == 0:
        return {"edge_distinct_fraction": None, "edge_mean_abs_cosine": None}
    if n > DISTINCT_SAMPLE:
        edges = edges[np.sort(np.random.default_rng(seed).choice(n, DISTINCT_SAMPLE, replace=False))]
    v = edges.reshape(edges.shape[0], -1)
    v = v - v.mean(axis=1, keepdims=True)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    cos = np.abs(v @ v.T)
    kept: list[int] = []
    for i in range(cos.shape[0]):
        if not kept or cos[i, kept].max() < DUPLICATE_COSINE:
            kept.append(i)
    pairs = cos.shape[0] * (cos.shape[0] - 1)
    mean = float((cos.sum() - np.trace(cos)) / pairs) if pairs else None
    return {"edge_distinct_fraction": len(kept) / cos.shape[0], "edge_mean_abs_cosine": mean}
