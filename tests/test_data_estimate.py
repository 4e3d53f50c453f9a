"""data.pipeline = 'auto''s estimate: what the in-memory load of a folder holds, cut as each file is read."""
import numpy as np
import pytest
from PIL import Image

import downpour.data.pipeline as pipeline
from downpour.config import DataConfig
from downpour.data.cut_as_read import folder_views
from downpour.data.estimate import held_bytes
from downpour.data.folder import load_folder
from downpour.data.stream import list_items


def _folder(root, sizes):
    root.mkdir()
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate(sizes):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"{i:02d}.{'png' if i % 2 else 'jpg'}")
    return root


@pytest.mark.parametrize("kw", [{"mode": "crops", "size": 8}, {"mode": "crops", "size": 8, "tile": 40},
                                {"mode": "crops", "size": 8, "grey": False, "jpeg_draft": False},
                                {"mode": "patches", "size": 8, "samples": 300}])
def test_the_estimate_is_the_samples_the_load_keeps_and_one_image_decoded(tmp_path, kw):
    """It counted every decoded image (what the load held before it cut each file as read): 12 images of 160x120
    estimated at 12x one image where the load keeps their crops, 12 of 8x8, and decodes one at a time."""
    root = _folder(tmp_path / "imgs", [(160, 120), (96, 128)] * 6)
    cfg = DataConfig(source="folder", path=str(root), **kw)
    x = folder_views(cfg, lambda: np.random.default_rng(0))[1][0]
    one = max(im.nbytes for im in load_folder(root, cfg.grey, False, cfg.jpeg_shrink(), cfg.tile).images)
    held = held_bytes(cfg, list_items(cfg))
    assert (held.kept, held.decoding) == (x.nbytes, one), kw


def test_a_folder_that_fits_once_cut_is_held_in_memory_and_data_json_says_why(tmp_path, monkeypatch):
    """12 images of 160x120: 3.5 MB decoded whole, 24 KB of crops: 'auto' streamed it above 1 MB, as it would stream
    a folder whose decoded images pass 1 GiB and whose crops fit."""
    root = _folder(tmp_path / "imgs", [(160, 120)] * 12)
    monkeypatch.setattr(pipeline, "STREAM_ABOVE", 1 << 20)
    cfg = DataConfig(source="folder", path=str(root), mode="crops", size=8, grey=False, jpeg_draft=False)
    choice, why, _ = pipeline.choose_pipeline(cfg)
    assert choice == "memory", why
    assert why["samples_mb"] == round(12 * 3 * 8 * 8 * 4 / 2**20, 1) and why["decoding_mb"] == 0.2, why


def test_the_log_line_says_the_estimate_and_its_parts(tmp_path, caplog):
    """The CLI settles 'auto' before the run records data.chosen: its log line is where a user reads the parts."""
    import logging

    root = _folder(tmp_path / "imgs", [(160, 120)] * 12)
    cfg = DataConfig(source="folder", path=str(root), mode="crops", size=8, grey=False, jpeg_draft=False)
    with caplog.at_level(logging.INFO, logger="downpour.data.pipeline"):
        pipeline.resolve_data(cfg)
    said = [r.getMessage() for r in caplog.records if "data.pipeline = 'auto'" in r.getMessage()]
    assert said == ["data.pipeline = 'auto': memory (0.2 MB held in memory: 0.0 MB of samples, 0.2 MB for one image "
                    "decoded; it streams above 1024 MB)"], said


def test_the_one_image_decoded_is_the_largest_file_even_off_the_spread_probes(tmp_path):
    """The image decoded at a time was the largest of 16 evenly spaced headers: 40 images of 16x16 and one of 320x240
    at index 1 (off the probes: 0, 2, 5, ...) counted 16x16, 300x too little."""
    from downpour.data.estimate import PROBES

    sizes = [(16, 16)] * 41
    sizes[1] = (320, 240)
    root = _folder(tmp_path / "imgs", sizes)
    cfg = DataConfig(source="folder", path=str(root), mode="crops", size=8, grey=False, jpeg_draft=False)
    assert 1 not in {int(k) for k in np.linspace(0, 40, PROBES)}
    assert held_bytes(cfg, list_items(cfg)).decoding == 320 * 240 * 3 * 4
