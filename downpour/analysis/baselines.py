"""Baselines for a selective unit, all on one fixed representation of the images.

A unit's claim to be selective is only as good as the baselines it beats, and a baseline computed
on each run's own prepared input (normalised, ZCA-whitened) changes from run to run: whitening alone
moved "best single pixel" on lfw from 89% to 78%. So every baseline here sees the images as loaded:
grey, at their native size (lfw: 25 x 25), values in [0, 1], no normalisation or whitening, the same
for every run. Only the learned unit and its random-weights twin see the run's prepared input.

- ``pixels``: the fixed representation itself, (N, D); best single pixel = best column;
- ``random_directions``: Gaussian linear filters in that space (best of N);
- ``mean_intensity``, ``contrast`` (per-image std), ``gradient_energy``: one scalar per image;
- ``probe_scores``: logistic regression on the raw pixels (standardised inside the pipeline).

On lfw gradient energy alone separates faces from non-faces at about 94% (faces, once scaled to unit
std, have three times the non-faces' gradient energy). A face unit that does not beat it has not
shown it sees faces.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline


def grey(images) -> np.ndarray:
    """(N, C, H, W) images (numpy or torch) -> (N, H, W) float64, channels averaged."""
    x = np.asarray(images.numpy() if hasattr(images, "numpy") else images, dtype=np.float64)
    if x.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {x.shape}")
    return x.mean(axis=1)


def pixels(images) -> np.ndarray:
    """The fixed representation: (N, C, H, W) -> (N, H·W) grey values as given."""
    g = grey(images)
    return g.reshape(len(g), -1)


def mean_intensity(images) -> np.ndarray:
    """(N,) mean grey value.

    Summed in sorted order, so two images with the same multiset of pixels (flipped, block-shuffled)
    get exactly the same value and tie, instead of differing in the last bit.
    """
    return np.sort(pixels(images), axis=1).mean(axis=1)


def contrast(images) -> np.ndarray:
    """(N,) per-image standard deviation of the grey values (sorted first, like :func:`mean_intensity`)."""
    return np.sort(pixels(images), axis=1).std(axis=1)


def gradient_energy(images) -> np.ndarray:
    """(N,) mean squared finite-difference gradient of each image scaled to zero mean and unit std.

    Scaling first makes it a measure of roughness alone (not of contrast); a flat image scores 0. Every sum is
    taken in sorted order, as :func:`mean_intensity`'s, so an image and its flip score exactly the same (an
    upside-down face's AUC came out 0.4994, not 0.5, and a unit at 0.5 was "above gradient energy").
    """
    g = grey(images)
    flat = np.sort(g.reshape(len(g), -1), axis=1)
    std = flat.std(axis=1)
    z = (g - flat.mean(axis=1)[:, None, None]) / np.where(std > 0, std, 1.0)[:, None, None]
    rows, cols = np.diff(z, axis=1) ** 2, np.diff(z, axis=2) ** 2
    return np.sort(rows.reshape(len(g), -1), axis=1).mean(axis=1) + np.sort(cols.reshape(len(g), -1), axis=1).mean(axis=1)


def statistics(images) -> dict[str, np.ndarray]:
    """The scalar baselines: {name: (N,)}."""
    return {"mean intensity": mean_intensity(images), "contrast (std)": contrast(images),
            "gradient energy": gradient_energy(images)}


def random_directions(dims: int, count: int, seed: int) -> np.ndarray:
    """(dims, count) Gaussian directions: ``pixels @ random_directions(...)`` are the random linear filters."""
    return np.random.default_rng(seed).standard_normal((dims, count))


_FITS: OrderedDict[bytes, Pipeline] = OrderedDict()


def probe(features: np.ndarray, y: np.ndarray) -> Pipeline:
    """Standardise + logistic regression, fitted on (features (n, D), y (n,)). Do not modify the result.

    Memoised on the data's bytes (the last 256 fits): the accuracy table and the face test fit the
    same probe on the same selection split, 50 splits each, and the fits are most of their cost.
    """
    features, y = np.ascontiguousarray(features, dtype=np.float64), np.ascontiguousarray(y, dtype=np.int64)
    key = hashlib.blake2b(repr(features.shape).encode() + features.tobytes() + y.tobytes()).digest()
    if key not in _FITS:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        _FITS[key] = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(features, y)
        if len(_FITS) > 256:
            _FITS.popitem(last=False)
    _FITS.move_to_end(key)
    return _FITS[key]
