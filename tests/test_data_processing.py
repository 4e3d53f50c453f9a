"""Processing: patch sampling, crops and tiles, per-patch normalisation, ZCA whitening, config checks."""
import numpy as np
import pytest
import torch

from downpour.config import ConfigError, DataConfig
from downpour.data import ZCAWhitener, build_dataset
from downpour.data.images import ImageSet
from downpour.data.normalize import normalize
from downpour.data.patches import crop_images, sample_patches
from downpour.errors import DataError


def _images(*shapes):
    rng = np.random.default_rng(0)
    ims = [rng.random(s, dtype=np.float32) for s in shapes]
    return ImageSet(ims, [f"im{i}" for i in range(len(ims))])


def test_patches_are_real_windows_of_their_image():
    images = _images((1, 20, 30), (1, 9, 9))
    patches, owner, skipped = sample_patches(images, 5, 40, np.random.default_rng(1))
    assert patches.shape == (40, 1, 5, 5) and skipped == [] and set(owner) == {0, 1}
    for p, i in zip(patches, owner):
        windows = np.lib.stride_tricks.sliding_window_view(images.images[i], (5, 5), axis=(1, 2))
        assert (windows == p[:, None, None]).all(axis=(0, 3, 4)).any()


def test_images_smaller_than_the_patch_are_reported():
    images = _images((1, 20, 20), (1, 4, 30))
    _, owner, skipped = sample_patches(images, 6, 10, np.random.default_rng(0))
    assert set(owner) == {0} and skipped[0]["file"] == "im1" and "smaller" in skipped[0]["reason"]


def test_crops_whole_image_and_tiles():
    images = _images((1, 40, 60), (1, 10, 10))
    whole, owner = crop_images(images, 8)
    assert whole.shape == (2, 1, 8, 8) and owner.tolist() == [0, 1]
    tiles, owner = crop_images(images, 8, tile=20)
    # 40x60 -> a 2x3 grid of 20px tiles; the 10x10 image is under one tile: its centred square
    assert tiles.shape == (7, 1, 8, 8) and owner.tolist() == [0] * 6 + [1]
    same, _ = crop_images(_images((1, 8, 8)), 8)
    assert np.array_equal(same[0], _images((1, 8, 8)).images[0])   # already the right size: untouched


def test_normalize_patch_and_ufldl():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(500, 1, 4, 4)).astype(np.float32)
    patch, _ = normalize(x, "patch")
    flat = patch.reshape(500, -1)
    assert np.allclose(flat.mean(1), 0, atol=1e-5) and np.allclose(flat.std(1), 1, atol=0.05)
    ufldl, info = normalize(x, "ufldl")
    assert ufldl.min() >= 0.1 - 1e-6 and ufldl.max() <= 0.9 + 1e-6
    assert abs(float(np.median(ufldl)) - 0.5) < 0.02 and info["clip"] > 0
    flat_ones, _ = normalize(np.ones((3, 1, 2, 2), np.float32), "ufldl")
    assert np.allclose(flat_ones, 0.5)
    with pytest.raises(ValueError, match="data.normalize"):
        normalize(x, "batch")


def test_zca_whitened_covariance_is_identity_and_inverse_round_trips():
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(16, 16))
    x = torch.from_numpy((rng.normal(size=(4000, 16)) @ mixing).astype(np.float32)).reshape(-1, 1, 4, 4)
    zca = ZCAWhitener(eps=1e-6).fit(x)
    white = zca.transform(x).reshape(len(x), -1).double()
    cov = (white - white.mean(0)).T @ (white - white.mean(0)) / len(x)
    assert torch.allclose(cov, torch.eye(16, dtype=torch.float64), atol=2e-3)
    assert torch.allclose(zca.inverse(zca.transform(x)), x, atol=1e-3 * float(x.abs().max()))
    # ZCA is symmetric: the closest whitening to the identity, unlike PCA whitening
    assert torch.allclose(zca.matrix_, zca.matrix_.T, atol=1e-5)
    # a unit's response to whitened input equals its pixel-space filter's response to centred pixels
    w = torch.randn(3, 1, 4, 4)
    on_white = w.reshape(3, -1) @ zca.transform(x[:5]).reshape(5, -1).T
    on_pixels = zca.pixel_filters(w).reshape(3, -1) @ (x[:5].reshape(5, -1) - zca.mean_).T
    assert torch.allclose(on_white, on_pixels, rtol=1e-3, atol=1e-3)
    restored = ZCAWhitener.from_state_dict(zca.state_dict())
    assert torch.equal(restored.transform(x), zca.transform(x)) and restored.input_shape == (1, 4, 4)


def test_zca_eps_damps_the_weak_directions():
    x = torch.randn(2000, 1, 3, 3) * torch.tensor([10.0] + [0.01] * 8).reshape(1, 1, 3, 3)
    zca = ZCAWhitener(eps=0.1).fit(x)
    white = zca.transform(x)
    assert float(white[:, 0, 1:].std()) < 0.1          # noise-level pixels are not blown up to unit variance
    assert zca.summary()["components_above_eps"] == 1


def test_build_with_zca_exposes_the_whitener():
    data = build_dataset(DataConfig(size=6, samples=2000, normalize="patch", whiten="zca", zca_eps=1e-3), seed=0)
    assert data.whitener is not None and data.info["whitening"]["dim"] == 36
    flat = data.x.reshape(len(data), -1).double()
    cov = flat.T @ flat / len(flat)
    top = data.info["whitening"]["components_above_eps"]
    assert abs(float(torch.linalg.eigvalsh(cov)[-top:].mean()) - 1) < 0.1
    raw = build_dataset(DataConfig(size=6, samples=2000, normalize="patch"), seed=0)
    assert torch.allclose(data.whitener.inverse(data.x), raw.x, atol=1e-3)


def test_ufldl_normalisation_runs_after_zca_so_its_range_survives():
    data = build_dataset(DataConfig(size=6, samples=500, whiten="zca", normalize="ufldl"), seed=0)
    assert float(data.x.min()) >= 0.1 - 1e-6 and float(data.x.max()) <= 0.9 + 1e-6
    assert data.whitener is not None


@pytest.mark.parametrize("normalize_mode, whiten", [("ufldl", "zca"), ("patch", "zca"), ("patch", "none"), ("none", "none"),
                                                     ("patch", "spectral")])
def test_the_fitted_processing_is_saved_with_a_run_and_replays_exactly(tmp_path, normalize_mode, whiten):
    from downpour.config import RunConfig
    from downpour.train.rundir import RunDir

    data = build_dataset(DataConfig(size=6, samples=500, whiten=whiten, normalize=normalize_mode), seed=0)
    run = RunDir.create(tmp_path / "r", RunConfig())
    assert run.load_preprocess() is None                  # a run that never saved one
    run.save_preprocess(data.preprocess)
    again = RunDir.open(tmp_path / "r").load_preprocess()
    new = torch.rand(7, 1, 6, 6) * 3
    assert torch.equal(again(new), data.preprocess(new))
    assert (again.whitener is None) == (whiten == "none") and again.normalize == normalize_mode


def test_zca_refuses_huge_inputs():
    with pytest.raises(DataError, match="whiten"):
        ZCAWhitener().fit(torch.zeros(4, 3, 64, 64))


@pytest.mark.parametrize("field, value, match", [
    ("source", "natrual", "did you mean 'natural'"),
    ("mode", "tiles", "data.mode"),
    ("whiten", "pca", "data.whiten"),
    ("size", 0, "data.size"),
    ("faces_fraction", 1.5, "faces_fraction"),
    ("source", "folder", "needs data.path"),
    ("labels", True, "labels"),
    ("path", "/some/frames", "data.path = '/some/frames' is read only by"),   # it trained on the built-in photos
])
def test_bad_config_is_a_clear_error(field, value, match):
    with pytest.raises(ConfigError, match=match):
        build_dataset(DataConfig(**{field: value}), seed=0)


@pytest.mark.parametrize("norm, whiten", [("patch", "zca"), ("ufldl", "zca"), ("ufldl", "none"), ("none", "none"),
                                          ("patch", "spectral")])
def test_prepare_replays_the_training_processing_on_new_images(norm, whiten):
    from downpour.data import digits

    raw = digits().x
    data = build_dataset(DataConfig(source="digits", mode="crops", normalize=norm, whiten=whiten), seed=0)
    prepared = data.prepare(raw)
    # the build shuffled the rows; every training row is the prepared version of one raw digit
    exact = "donot_use_mm_for_euclid_dist"   # the matmul shortcut alone is off by ~1e-3
    assert float(torch.cdist(data.x.flatten(1), prepared.flatten(1), compute_mode=exact).min(1).values.max()) < 1e-4
    assert data.shard(1, 2).prepare(raw[:3]).shape == (3, 1, 8, 8)
    with pytest.raises(ValueError, match="shape"):
        data.prepare(torch.zeros(2, 1, 6, 6))


def test_sample_shape_follows_grey_for_every_source_and_zca_size_is_checked_before_sampling(tmp_path):
    from downpour.data.build import check_config, sample_shape

    assert sample_shape(DataConfig(source="digits", grey=False, size=8)) == (3, 8, 8)   # digits become RGB too
    assert sample_shape(DataConfig(source="natural", size=16)) == (1, 16, 16)
    # an array's images are cut into data.size squares with data.grey's channels too (not None: "only the
    # file can tell", which would turn off the dry batch and the ZCA limit for arrays)
    assert sample_shape(DataConfig(source="array", path=str(tmp_path), size=12, grey=False)) == (3, 12, 12)
    with pytest.raises(ConfigError, match="limit 4096"):
        check_config(DataConfig(size=80, whiten="zca"))
    with pytest.raises(ConfigError, match="does not exist"):
        check_config(DataConfig(source="folder", path=str(tmp_path / "missing")))


def test_a_data_path_under_an_unexpanded_tilde_says_the_path_it_meant(tmp_path, monkeypatch):
    """`--set data.path=~/images` reaches downpour as typed (no shell expands a ~ after `data.path=`): it is told
    the path it meant, not only "data.path '~/images' does not exist", of a folder that is there."""
    from downpour.data.build import check_config

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "images").mkdir()
    with pytest.raises(ConfigError, match=f"a ~ is not expanded here: data.path = '{tmp_path}/images'$"):
        check_config(DataConfig(source="folder", path="~/images"))
    with pytest.raises(ConfigError, match="'~/other' does not exist \\(data.source = 'folder' reads it\\)$"):
        check_config(DataConfig(source="folder", path="~/other"))       # (not there either: nothing to point to)
    with pytest.raises(ConfigError, match="'~nosuchuser-x/images' does not exist \\(data.source = 'folder' reads it\\)$"):
        check_config(DataConfig(source="folder", path="~nosuchuser-x/images"))   # (pathlib: RuntimeError, no home)
