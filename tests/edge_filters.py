"""Planted filter families for the edge tests (test_analysis_edges.py, test_analysis_edge_scores.py,
test_analysis_edge_summary.py): each (n, size, size) and drawn from its formula, never by the code under test.
``EDGE_LIKE`` holds the families that should pass, ``NOT_EDGE_LIKE`` the impostors."""
from __future__ import annotations

import numpy as np


def yx(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel row and column coordinates, each (1, size, size), ready to broadcast against (n, 1, 1) parameters."""
    y, x = np.mgrid[0:size, 0:size].astype(float)
    return y[None], x[None]


def _uniform(rng, lo, hi, n):
    return rng.uniform(lo, hi, (n, 1, 1))


def gauss(y, x, cy, cx, sigma):
    return np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma ** 2))


def _centres(rng, n, size):
    """Centres anywhere within the central half of the filter."""
    mid = (size - 1) / 2
    return _uniform(rng, mid - size / 4, mid + size / 4, n), _uniform(rng, mid - size / 4, mid + size / 4, n)


def gabors(rng, n, size=8, sigma=(1.2, 3.0), freq=(0.08, 0.35), phase=None, noise=0.0):
    """(n, size, size) Gabors: envelope σ px, carrier cycles/pixel, any angle; ``noise``: fraction of the Gabor's
    (centred) energy added as white noise."""
    y, x = yx(size)
    cy, cx = _centres(rng, n, size)
    s, f, theta = _uniform(rng, *sigma, n), _uniform(rng, *freq, n), _uniform(rng, 0, np.pi, n)
    ph = _uniform(rng, 0, 2 * np.pi, n) if phase is None else phase
    u = (x - cx) * np.cos(theta) + (y - cy) * np.sin(theta)
    g = gauss(y, x, cy, cx, s) * np.cos(2 * np.pi * f * u + ph)
    if np.any(noise):
        z = rng.standard_normal(g.shape)
        energy = ((g - g.mean(axis=(1, 2), keepdims=True)) ** 2).sum(axis=(1, 2), keepdims=True)
        g = g + z * np.sqrt(noise * energy / (z ** 2).sum(axis=(1, 2), keepdims=True))
    return g


def step_edges(rng, n, size=8):
    """A smoothed step (tanh, width 0.3-1.5 px) across the filter at any angle, offset up to a quarter of the side."""
    y, x = yx(size)
    theta, width = _uniform(rng, 0, 2 * np.pi, n), _uniform(rng, .3, 1.5, n)
    offset = _uniform(rng, -size / 4, size / 4, n)
    mid = (size - 1) / 2
    return np.tanh(((x - mid) * np.cos(theta) + (y - mid) * np.sin(theta) - offset) / width)


def corner_spikes(rng, n=None, size=8):
    """Every 1-3-pixel subset of each corner's 2x2 block, random signs and heights: (4 x 14, size, size)."""
    subsets = [s for k in (1, 2, 3) for s in np.array(np.meshgrid(*[[0, 1]] * 4)).reshape(4, -1).T if s.sum() == k]
    out = []
    for cy, cx in [(0, 0), (0, size - 2), (size - 2, 0), (size - 2, size - 2)]:
        for s in subsets:
            f = np.zeros((size, size))
            f[cy:cy + 2, cx:cx + 2] = s.reshape(2, 2) * rng.choice([-1, 1], (2, 2)) * rng.uniform(.5, 1.5, (2, 2))
            out.append(f)
    return np.array(out)


def single_pixels(rng, n=None, size=8):
    """One pixel set, at every position in turn."""
    return np.eye(size * size).reshape(-1, size, size) * rng.choice([-2, 1], (size * size, 1, 1))


def checkerboards(rng, n=None, size=8):
    y, x = yx(size)
    return np.concatenate([(-1.0) ** (x + y), -(-1.0) ** (x + y)])


def windowed(pattern):
    """A pattern (n, size, size) under a Gaussian window of σ 1.2-3 px centred in the central half."""
    def draw(rng, n, size=8):
        y, x = yx(size)
        cy, cx = _centres(rng, n, size)
        return pattern(rng, n, size) * gauss(y, x, cy, cx, _uniform(rng, 1.2, 3, n))
    return draw


def nyquist_stripes(rng, n, size=8):
    """±1 alternating rows or columns (0.5 cycles/pixel)."""
    y, x = yx(size)
    rows = rng.random((n, 1, 1)) < 0.5
    return np.where(rows, (-1.0) ** y, (-1.0) ** x)


def checker_tiles(rng, n, size=8):
    y, x = yx(size)
    return np.repeat((-1.0) ** (x + y), n, axis=0)


def blobs(rng, n, size=8):
    y, x = yx(size)
    cy, cx = _centres(rng, n, size)
    return gauss(y, x, cy, cx, _uniform(rng, .8, 3, n))


def centre_surround(rng, n, size=8):
    """Difference of Gaussians with zero total weight (σ_surround 1.6-3 x σ_centre)."""
    y, x = yx(size)
    cy, cx = _centres(rng, n, size)
    s1 = _uniform(rng, .7, 1.5, n)
    s2 = s1 * _uniform(rng, 1.6, 3, n)
    return gauss(y, x, cy, cx, s1) / s1 ** 2 - gauss(y, x, cy, cx, s2) / s2 ** 2


def plaids(rng, n, size=8):
    """Two gratings 90° apart, equal energy, 0.15-0.35 cycles/pixel (below ~0.12 under one cycle fits in 8 px and
    two orthogonal ramps add up to a single diagonal ramp, which is an edge)."""
    y, x = yx(size)
    f, theta = _uniform(rng, .15, .35, n), _uniform(rng, 0, np.pi, n)
    parts = []
    for angle in (theta, theta + np.pi / 2):
        g = np.cos(2 * np.pi * f * (x * np.cos(angle) + y * np.sin(angle)) + _uniform(rng, 0, 2 * np.pi, n))
        g = g - g.mean(axis=(1, 2), keepdims=True)
        parts.append(g / np.linalg.norm(g, axis=(1, 2), keepdims=True))
    return parts[0] + parts[1]


def bars(rng, n, size=8, fwhm=(1.0, 2.0), length=(4.0, 8.0)):
    """One-signed bars at any angle: a Gaussian profile across (full width at half maximum ``fwhm`` px), ``length``
    px along with soft (logistic) ends, centre in the central half."""
    y, x = yx(size)
    cy, cx = _centres(rng, n, size)
    theta, sigma, half = _uniform(rng, 0, np.pi, n), _uniform(rng, *fwhm, n) / 2.355, _uniform(rng, *length, n) / 2
    across = (x - cx) * np.cos(theta) + (y - cy) * np.sin(theta)
    along = -(x - cx) * np.sin(theta) + (y - cy) * np.cos(theta)
    return np.exp(-across ** 2 / (2 * sigma ** 2)) / (1 + np.exp((np.abs(along) - half) / 0.5))


def pixel_bars(rng, n, size=8):
    """Bars at the pixel scale, along a row or a column: [+1, -1] across (an edge one pixel from dark to light),
    6-8 px long with half-weight ends, off the filter's border; their spectrum peaks at 0.5 cycles/pixel, where
    one-pixel stripes do. (5 px long, or on the border, pass less often: coherence finds short boxes round.)"""
    out = np.zeros((n, size, size))
    for k in range(n):
        length = int(rng.integers(6, size + 1))
        top, column = int(rng.integers(0, size - length + 1)), int(rng.integers(1, size - 2))
        along = np.ones(length)
        along[[0, -1]] = 0.5
        out[k, top:top + length, column], out[k, top:top + length, column + 1] = along, -along
        out[k] = out[k] * rng.choice([-1, 1]) if rng.random() < 0.5 else out[k].T
    return out


def long_blobs(rng, n, size=8):
    """Smooth one-signed Gaussian blobs 1.6-3 times as long as wide (σ 1.2-2 px across): once centred, they look like
    a bar to the four tests, but their mean holds most of their energy."""
    y, x = yx(size)
    cy, cx = _centres(rng, n, size)
    theta, sigma, aspect = _uniform(rng, 0, np.pi, n), _uniform(rng, 1.2, 2, n), _uniform(rng, 1.6, 3, n)
    across = (x - cx) * np.cos(theta) + (y - cy) * np.sin(theta)
    along = -(x - cx) * np.sin(theta) + (y - cy) * np.cos(theta)
    return np.exp(-across ** 2 / (2 * sigma ** 2) - along ** 2 / (2 * (aspect * sigma) ** 2))


def ladders(rng, n, size=8):
    """A row (or column) of 4-8 alternating pixels, sometimes doubled: stripes across its length, not along it."""
    out = np.zeros((n, size, size))
    for k in range(n):
        length = int(rng.integers(4, size + 1))
        row, start = int(rng.integers(1, size - 2)), int(rng.integers(0, size - length + 1))
        out[k, row, start:start + length] = (-1.0) ** np.arange(length)
        if rng.random() < 0.5:
            out[k, row + 1, start:start + length] = (-1.0) ** np.arange(length) * rng.uniform(.3, 1)
        out[k] = out[k] if rng.random() < 0.5 else out[k].T
    return out


def constants(rng, n, size=8):
    return np.ones((n, size, size)) * _uniform(rng, -2, 2, n)


def zeros(rng, n, size=8):
    return np.zeros((n, size, size))


EDGE_LIKE = {
    "gabors at any phase": gabors,
    "even gabors": lambda rng, n: gabors(rng, n, phase=0.0),
    "odd gabors": lambda rng, n: gabors(rng, n, phase=np.pi / 2),
    "gabors with 10-20% noise energy": lambda rng, n: gabors(rng, n, noise=rng.uniform(.1, .2, (n, 1, 1))),
    "gabors on a 16x16 grid": lambda rng, n: gabors(rng, n, size=16),
    "smoothed step edges": step_edges,
    "bars 1-2 px wide": bars,
    "bars at the pixel scale": pixel_bars,
}


NOT_EDGE_LIKE = {
    "corner spikes": corner_spikes, "single pixels": single_pixels, "checkerboards": checkerboards,
    "windowed checkerboards": windowed(checker_tiles), "one-pixel stripes": nyquist_stripes,
    "windowed one-pixel stripes": windowed(nyquist_stripes), "gaussian blobs": blobs,
    "centre-surround": centre_surround, "plaids": plaids, "constant filters": constants, "zero filters": zeros,
    "rows of alternating pixels": ladders,
}


def averaged_digits(rng, n):
    """(n, 8, 8) whole-digit templates: each the mean of 5-40 of scikit-learn's digits of one class, in [0, 1]."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    images, labels = digits.images / 16.0, digits.target
    return np.array([images[rng.choice(np.flatnonzero(labels == rng.integers(10)), rng.integers(5, 40),
                                       replace=False)].mean(axis=0) for _ in range(n)])
