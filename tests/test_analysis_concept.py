"""The best single neuron for the user's own concept: a labelled folder of generated images (stripes, blobs, noise),
a planted detector found on held-out images, and the folder's mistakes named by key, folder and class."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from downpour.analysis.options import analysis_options
from downpour.config import ConfigError, RunConfig


def _draw(kind: str, side: int, rng: np.random.Generator) -> np.ndarray:
    """One (side, side) image in [0, 1]: a grating of random angle, frequency and phase; 2-4 Gaussian blobs; or noise."""
    y, x = np.mgrid[0:side, 0:side] / side
    if kind == "stripes":
        angle, cycles = rng.uniform(0, np.pi), rng.uniform(4, 7)
        return 0.5 + 0.4 * np.sin(2 * np.pi * cycles * (x * np.cos(angle) + y * np.sin(angle)) + rng.uniform(0, 2 * np.pi))
    if kind == "blobs":
        image = np.full((side, side), 0.3)
        for _ in range(rng.integers(2, 5)):
            cx, cy, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.2)
            image += 0.5 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
        return np.clip(image, 0, 1)
    return np.clip(0.5 + 0.2 * rng.standard_normal((side, side)), 0, 1)


def make_folder(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """``root/<class>/`` of generated images: PNG and JPEG, grey and RGB, 40-100 px, every other one a level deeper."""
    rng = np.random.default_rng(seed)
    for kind, n in counts.items():
        for k in range(n):
            folder = root / kind / ("deeper" if k % 2 else "")
            folder.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray((_draw(kind, int(rng.choice([40, 48, 64, 100])), rng) * 255).astype(np.uint8))
            image = image.convert("RGB") if k % 3 == 0 else image
            image.save(folder / f"{kind}{k}.{'jpg' if k % 2 else 'png'}")
    return root


def test_the_concepts_number_is_the_loaders_not_a_count_of_every_sub_folder(tmp_path):
    root = make_folder(tmp_path / "set", {"blobs": 3, "stripes": 3})
    (root / "aaa-empty").mkdir()
    (root / ".thumbnails").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / ".thumbnails" / "x.png")
    assert analysis_options(RunConfig(), {"dataset": str(root), "positive": 1}).positive == 1
    with pytest.raises(ConfigError, match=r"analysis.positive = 2: .* has classes 0-1 \(0 = blobs, 1 = stripes\)"):
        analysis_options(RunConfig(), {"dataset": str(root), "positive": 2})     # 4 sub-folders, 2 classes
    only = make_folder(tmp_path / "one", {"stripes": 3})
    (only / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"analysis.dataset: .*at least 2; its images are in \['stripes'\]"):
        analysis_options(RunConfig(), {"dataset": str(only), "positive": 0})
    with pytest.raises(ConfigError, match=r"analysis.dataset: .* holds 2 images at its top level"):
        analysis_options(RunConfig(), {"dataset": str(only / "stripes"), "positive": 0})
