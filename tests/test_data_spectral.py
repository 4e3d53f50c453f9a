"""Spectral whitening: fitted on images whose spectrum is known, it must give back white images."""
import math

import pytest
import torch
import torch.nn.functional as F

from downpour.config import DataConfig
from downpour.data import build_dataset
from downpour.data import spectral
from downpour.data.preprocess import Preprocess
from downpour.data.spectral import SpectralWhitener
from downpour.errors import DataError


def _coloured(n: int, size: int, seed: int, blur: float = 0.8) -> torch.Tensor:
    """(n, 1, size, size) white noise blurred by a Gaussian: neighbouring pixels strongly correlated."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, 1, size + 16, size + 16, generator=g)
    r = torch.arange(-6, 7, dtype=torch.float32)
    k = torch.exp(-r ** 2 / (2 * blur ** 2))
    k = (k[:, None] * k[None, :] / k.sum() ** 2)[None, None]
    return F.conv2d(noise, k)[:, :, 2:2 + size, 2:2 + size]


def _neighbour_correlation(x: torch.Tensor) -> float:
    """Mean correlation of horizontally adjacent pixels, over the images' central parts."""
    c = x[:, :, 4:-4, 4:-4]
    a, b = c[..., :-1].flatten(), c[..., 1:].flatten()
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).mean() / (a.std() * b.std()))


def test_blurred_noise_comes_out_white():
    train, new = _coloured(400, 32, seed=0), _coloured(50, 32, seed=1)
    assert _neighbour_correlation(new) > 0.6
    w = SpectralWhitener().fit(train)
    # not 0: the images' borders leak broadband power into the fitted spectrum (0.13-0.14 with
    # reflect, zero or no padding alike), while a filter fitted on the wrong spectrum stays > 0.6
    assert abs(_neighbour_correlation(w.transform(new))) < 0.2


def test_band_powers_are_flat_after_whitening():
    x = _coloured(300, 32, seed=2)
    out = SpectralWhitener().fit(x).transform(x)[:, 0].double()
    power = (torch.fft.fft2(out).abs() ** 2).mean(0)
    f = torch.fft.fftfreq(32).abs()
    radius = (f[:, None] ** 2 + f[None, :] ** 2).sqrt()
    before = (torch.fft.fft2(x[:, 0].double()).abs() ** 2).mean(0)
    band = lambda p, lo, hi: float(p[(radius > lo) & (radius < hi)].mean())
    assert band(before, 0.05, 0.1) / band(before, 0.3, 0.4) > 10
    assert 0.5 < band(power, 0.05, 0.1) / band(power, 0.3, 0.4) < 2


def test_the_mean_is_removed_and_a_constant_image_whitens_to_zero():
    w = SpectralWhitener().fit(torch.rand(20, 2, 16, 16))
    assert w.transform(torch.full((2, 2, 16, 16), 0.7)).abs().max().item() < 1e-5
    assert w.transform(torch.rand(3, 2, 16, 16)).mean(dim=(2, 3)).abs().max().item() < 0.1


def test_the_images_brightness_does_not_change_the_whitening():
    # the power floor was relative to the strongest bin, the mean's (DC): an offset of 4 floored 85%
    # of the frequencies (the whitened high/low band power fell from 0.8 to 0.04)
    x = _coloured(300, 32, seed=3) * 0.05
    plain, bright = SpectralWhitener().fit(x).transform(x), SpectralWhitener().fit(x + 4.0).transform(x + 4.0)
    assert (plain - bright).abs().max().item() < 1e-3


def test_the_whitener_fits_unit_std_and_round_trips_its_state():
    x = torch.rand(40, 1, 16, 16)
    w = SpectralWhitener().fit(x)
    assert w.transform(x).std().item() == pytest.approx(1.0, rel=1e-4)
    again = SpectralWhitener.from_state_dict(w.state_dict())
    assert torch.equal(again.transform(x[:3]), w.transform(x[:3]))
    with pytest.raises(KeyError, match="power"):
        SpectralWhitener.from_state_dict({"scale": torch.ones(1), "input_shape": torch.tensor([1, 16, 16])})
    with pytest.raises(ValueError, match="fitted on"):
        w.transform(torch.rand(2, 1, 12, 12))


def test_whiten_spectral_builds_crops_too_big_for_zca():
    # ZCA refuses 64x64 crops (a 4096-square matrix); the spectrum has 64·33 numbers
    data = build_dataset(DataConfig(source="natural", mode="crops", size=64, normalize="patch", whiten="spectral"), seed=0)
    assert data.info["whitening"]["method"] == "spectral"
    assert data.x.std().item() == pytest.approx(1.0, rel=1e-3)
    assert math.isfinite(data.info["whitening"]["power_min"])


def test_half_strength_leaves_half_the_slope():
    x = _coloured(300, 32, seed=3)
    f = torch.fft.fftfreq(32).abs()
    radius = (f[:, None] ** 2 + f[None, :] ** 2).sqrt()

    def ratio(images):
        p = (torch.fft.fft2(images[:, 0].double()).abs() ** 2).mean(0)
        return float(p[(radius > 0.05) & (radius < 0.1)].mean() / p[(radius > 0.3) & (radius < 0.4)].mean())

    half = SpectralWhitener(strength=0.5).fit(x).transform(x)
    # in log power, half the way from the data's slope to flat (borders blur it a little)
    assert math.log(ratio(half)) == pytest.approx(0.5 * math.log(ratio(x)), rel=0.25)
    with pytest.raises(ValueError, match="strength"):
        SpectralWhitener(strength=0.0).fit(x)


def test_inverse_undoes_the_whitening_up_to_the_mean():
    x = _coloured(100, 24, seed=4) + 0.3
    w = SpectralWhitener(strength=0.75).fit(x)
    back = w.inverse(w.transform(x[:5]))
    centred = x[:5] - x[:5].mean(dim=(2, 3), keepdim=True)
    # not exact: a padded image's mean is not its crop's, and cropping loses what the padding carried
    assert float((back - centred).abs().max()) < 0.05 * float(centred.abs().max())
    assert float(torch.corrcoef(torch.stack([back.flatten(), centred.flatten()]))[0, 1]) > 0.999


def test_a_large_set_is_whitened_a_chunk_at_a_time_with_the_same_numbers():
    """The set was transformed in one FFT: 5,000 32x32 crops (19.5 MB) took 838 MB more at the peak."""
    x = torch.rand(600, 1, 16, 16)
    w = SpectralWhitener(0.75).fit(x)
    out = w.transform(x)
    whole = torch.cat([w.transform(x[i:i + 1]) for i in (0, 299, 599)])
    torch.testing.assert_close(out[[0, 299, 599]], whole, rtol=0, atol=0)
    assert out.dtype == torch.float32 and abs(float(out.std()) - 1.0) < 1e-4


def test_fitting_on_flat_images_only_is_a_data_error_not_nan_data():
    """All the power at the mean: the floor was 0, 0 ** -0.5 = inf, and the data NaN (the run then
    failed as 'every step non-finite: lower train.lr')."""
    for side in (16, 20, 7):         # at 20 and 7 the padded FFT leaves ~1e-27 of round-off beside the mean
        flat = torch.arange(6, dtype=torch.float32).reshape(6, 1, 1, 1).expand(6, 1, side, side) / 6
        with pytest.raises(DataError, match="flat"):
            SpectralWhitener().fit(flat)
        with pytest.raises(DataError, match="flat"):       # a float32 resize's noise is no contrast either
            SpectralWhitener().fit(flat + 1e-8 * torch.randn(flat.shape))
    one_busy = flat.clone()
    one_busy[0, 0, 3, 4] = 1.0                    # one image with contrast: fitted, finite
    assert torch.isfinite(SpectralWhitener().fit(one_busy).transform(one_busy)).all()


def test_contrast_is_judged_relative_to_the_values_scale_and_before_a_per_patch_normalisation():
    """Whitening is scale-free: images with values around 1e-6 (a .npy of physical quantities) were refused as
    flat by an absolute floor; and a per-patch normalisation blew flat images' round-off up to std 1 first."""
    import numpy as np

    from downpour.data.preprocess import Preprocess

    blurred = F.avg_pool2d(torch.rand(64, 1, 36, 36, generator=torch.Generator().manual_seed(0)), 5, 1)
    blurred = (blurred - blurred.min()) / (blurred.max() - blurred.min())
    at_1 = SpectralWhitener().fit(blurred).transform(blurred)
    tiny = SpectralWhitener().fit(blurred * 1e-7).transform(blurred * 1e-7)
    assert torch.allclose(tiny, at_1, atol=1e-3)
    flat = np.repeat(np.arange(6, dtype=np.float32).reshape(6, 1, 1, 1) / 6, 1024, axis=3).reshape(6, 1, 32, 32)
    noisy = (flat + 1e-8 * np.random.default_rng(0).standard_normal(flat.shape)).astype(np.float32)
    for normalize in ("none", "patch", "ufldl"):
        with pytest.raises(DataError, match="flat"):
            Preprocess.fit(noisy.copy(), normalize, "spectral", 0.1)


@pytest.mark.parametrize("keep_chunks", [0, 1, 3])     # none kept, the first of three, all three (the last one short)
def test_fit_transform_gives_the_bits_of_fit_then_transform(monkeypatch, keep_chunks):
    x = _coloured(2 * spectral._CHUNK + 40, 16, seed=3)
    chunk_bytes = spectral._CHUNK * x[0].numel() * 8        # a full chunk, whitened in float64
    monkeypatch.setattr(spectral, "KEEP_BYTES", keep_chunks * chunk_bytes)
    reference = SpectralWhitener(0.75).fit(x)
    fast = SpectralWhitener(0.75)
    out = fast.fit_transform(x)
    assert torch.equal(out, reference.transform(x))         # every chunk at its place, scaled once, same rounding
    assert out.dtype == torch.float32 and fast.scale_ == reference.scale_ and torch.equal(fast.power_, reference.power_)


def test_preprocess_whitens_the_training_set_once(monkeypatch):
    """Preprocess.fit (build_dataset's) takes the fit's whitened chunks instead of whitening the set a second time."""
    calls = []
    whitened = SpectralWhitener._whitened
    counted = staticmethod(lambda x, gain, spectrum=None: calls.append(len(x)) or whitened(x, gain, spectrum))
    monkeypatch.setattr(SpectralWhitener, "_whitened", counted)
    x = _coloured(spectral._CHUNK + 10, 16, seed=4).numpy()
    _, xt, _ = Preprocess.fit(x, "patch", "spectral", 0.01, 0.75)
    assert calls == [spectral._CHUNK, 10]                   # the fit's std pass only; the transform took its chunks
    assert torch.equal(xt, Preprocess.fit(x, "patch", "spectral", 0.01, 0.75)[0](torch.from_numpy(x)))


def test_fit_transform_keeps_at_most_keep_bytes(monkeypatch):
    """The kept chunks hold KEEP_BYTES, not their padded irfft2's storage: each a view of it would hold 4x the
    counted bytes (256 MB counted, ~1 GiB held)."""
    x = _coloured(2 * spectral._CHUNK + 40, 16, seed=5)
    monkeypatch.setattr(spectral, "KEEP_BYTES", 2 * spectral._CHUNK * x[0].numel() * 8)
    kept = SpectralWhitener(0.75)._fit(x, spectral.KEEP_BYTES)
    assert len(kept) == 2 and sum(k.untyped_storage().nbytes() for k in kept) <= spectral.KEEP_BYTES


def test_the_fit_takes_each_chunks_spectrum_once_with_the_bits_of_taking_it_twice(monkeypatch):
    """The std pass whitens the spectra the power pass took (up to KEEP_BYTES of them), not padding and transforming
    every chunk again (a quarter of the main job's whitening: bench/start_up.py)."""
    x = _coloured(2 * spectral._CHUNK + 40, 16, seed=6)
    taken, spectrum = [], spectral._padded_spectrum
    monkeypatch.setattr(spectral, "_padded_spectrum", lambda t: taken.append(len(t)) or spectrum(t))
    fast = SpectralWhitener(0.75)
    out = fast.fit_transform(x)
    assert taken == [spectral._CHUNK, spectral._CHUNK, 40]
    monkeypatch.setattr(spectral, "KEEP_BYTES", 0)          # nothing kept: every pass takes its spectra again
    taken.clear()
    slow = SpectralWhitener(0.75)
    assert torch.equal(out, slow.fit_transform(x)) and len(taken) == 9
    assert fast.scale_ == slow.scale_ and torch.equal(fast.power_, slow.power_)


def test_the_fit_takes_again_the_spectra_past_keep_bytes_with_the_same_bits(monkeypatch):
    """Above KEEP_BYTES the std pass takes the later chunks' spectra again (memory bounded for a large set)."""
    x = _coloured(2 * spectral._CHUNK + 40, 16, seed=7)
    out = SpectralWhitener(0.75).fit_transform(x)
    taken, spectrum = [], spectral._padded_spectrum
    monkeypatch.setattr(spectral, "_padded_spectrum", lambda t: taken.append(len(t)) or spectrum(t))
    one, _ = spectrum(x[:spectral._CHUNK])
    monkeypatch.setattr(spectral, "KEEP_BYTES", one.numel() * one.element_size())     # the first chunk's only
    assert torch.equal(out, SpectralWhitener(0.75).fit_transform(x))
    assert taken == [spectral._CHUNK, spectral._CHUNK, 40, spectral._CHUNK, 40]   # its whitened chunks all kept
