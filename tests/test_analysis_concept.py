"""The best single neuron for the user's own concept: a labelled folder of generated images (stripes, blobs, noise),
a planted detector found on held-out images, and the folder's mistakes named by key, folder and class."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from downpour.analysis.labelled import load_labelled
from downpour.analysis.options import analysis_options
from downpour.analysis.selectivity import face_neuron_tables
from downpour.config import ConfigError, RunConfig
from downpour.errors import DataError
from downpour.models.base import FeatureModel

SIZE = 32


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


class BandEnergyModel(FeatureModel):
    """(B, 1, H, W) -> (B, units): random linear units on the centred, unit-norm image, except ``planted``, the share of
    the image's (non-constant) spectral power at 3.5-8 cycles per image: a stripes detector by construction (a grating
    of 4-7 cycles puts nearly all its power there; blobs put theirs below, white noise spreads it over the plane)."""

    def __init__(self, input_shape: tuple[int, ...], units: int = 12, planted: int | None = 5, seed: int = 0):
        super().__init__()
        self.input_shape, self.planted = tuple(input_shape), planted
        g = torch.Generator().manual_seed(seed)
        self.encoder = nn.Linear(int(np.prod(input_shape)), units)
        with torch.no_grad():
            self.encoder.weight.copy_(torch.randn(units, int(np.prod(input_shape)), generator=g))

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], -1)
        flat = flat - flat.mean(dim=1, keepdim=True)
        codes = self.encoder(flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-8))
        if self.planted is None:
            return codes
        power = torch.fft.fft2(x[:, 0] - x[:, 0].mean(dim=(1, 2), keepdim=True)).abs() ** 2    # (B, H, W)
        f = torch.fft.fftfreq(x.shape[-1]) * x.shape[-1]                                        # cycles per image
        radius = (f[:, None] ** 2 + f[None, :] ** 2).sqrt()
        band = power[:, (radius >= 3.5) & (radius <= 8)].sum(dim=1) / power.sum(dim=(1, 2)).clamp_min(1e-12)
        return torch.cat([codes[:, :self.planted], band[:, None], codes[:, self.planted + 1:]], dim=1)


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


def test_a_concept_class_of_one_image_or_of_unreadable_files_is_named_with_its_key(tmp_path):
    model = BandEnergyModel((1, SIZE, SIZE))
    root = make_folder(tmp_path / "one", {"blobs": 6, "stripes": 1})
    with pytest.raises(DataError, match=r"class 1 \('stripes', analysis.positive\) holds 1 readable image; .*analysis.dataset"):
        face_neuron_tables(model, load_labelled(str(root), (1, SIZE, SIZE)), [0], positive=1, n_random_filters=5)
    with pytest.raises(DataError, match=r"every class but 'blobs' together holds 1 readable image"):
        face_neuron_tables(model, load_labelled(str(root), (1, SIZE, SIZE)), [0], positive=0, n_random_filters=5)
    root = make_folder(tmp_path / "unread", {"blobs": 4, "noise": 4})
    (root / "zebra").mkdir()
    for name in ("a.jpg", "b.png"):
        (root / "zebra" / name).write_bytes(b"not an image")
    data = load_labelled(str(root), (1, SIZE, SIZE))
    with pytest.raises(DataError, match=r"class 2 \('zebra', analysis.positive\) holds 0 readable images \(2 of its files"):
        face_neuron_tables(model, data, [0], positive=2, n_random_filters=5)
