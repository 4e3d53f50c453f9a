"""A folder in crops mode is cut as each file is read: the in-memory load holds the crops and each image's size, not
every decoded image at full size until all are read (3,010 files so peak at 622 MB RSS for ~12 MB of crops), and
gives the same samples and record as cutting them all at the end."""
import tracemalloc

import numpy as np
from PIL import Image

from downpour.config import DataConfig
from downpour.data.build import build_dataset
from downpour.data.folder import load_folder
from downpour.data.patches import crop_images, enlarged


def _folder(tmp_path, n=24, side=400):
    rng = np.random.default_rng(0)
    for i in range(n):
        w, h = side + 8 * i, side - 4 * i
        Image.fromarray((rng.random((h, w)) * 255).astype(np.uint8), "L").save(tmp_path / f"im{i}.png")
    Image.fromarray(np.zeros((5, 7), np.uint8), "L").save(tmp_path / "tiny.png")   # enlarged: counted by its size
    return tmp_path


def _built_with_peak(cfg, seed):
    """build_dataset's dataset and the peak of Python's traced allocations while it was built."""
    tracemalloc.start()
    try:
        data = build_dataset(cfg, seed=seed)
        return data, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_crops_of_a_folder_hold_no_decoded_image_and_are_the_crops_cut_from_all(tmp_path):
    root = _folder(tmp_path)
    cfg = DataConfig(source="folder", path=str(root), mode="crops", size=16, tile=200, grey=True, whiten="none",
                     pipeline="memory")
    data, peak = _built_with_peak(cfg, seed=0)
    full = load_folder(root, grey=True)
    decoded = sum(im.nbytes for im in full.images)                    # 24 images of ~400x400 float32: ~15 MB
    assert peak < decoded / 3, (peak, decoded)                        # was more than all of them
    x, owner = crop_images(full, 16, 200)
    assert data.info["n_samples"] == len(x) and data.info["n_upscaled"] == len(enlarged(full, 16, 200)) == 1
    assert data.info["upscaled"] == [{"file": str(root / "tiny.png"), "size": "7x5"}]
    again = build_dataset(cfg, seed=0)
    assert np.array_equal(np.asarray(data.x), np.asarray(again.x))


def _all_at_once(root, cfg, seed):
    """The patches as cut all at the end: every image loaded, then drawn and cut."""
    from downpour.data.build import _NATURAL, _rng
    from downpour.data.patches import sample_patches
    return sample_patches(load_folder(root, grey=True), cfg.size, cfg.samples, _rng(seed, _NATURAL))


def _rows(x):
    return sorted(np.asarray(row).tobytes() for row in x)


def _patches_cfg(root):
    return DataConfig(source="folder", path=str(root), mode="patches", size=8, samples=300, grey=True, whiten="none",
                      normalize="none", pipeline="memory")


def test_patches_of_a_folder_hold_no_decoded_image_and_are_the_patches_drawn_from_all(tmp_path):
    root = _folder(tmp_path)
    cfg = _patches_cfg(root)
    data, peak = _built_with_peak(cfg, seed=3)
    decoded = sum(im.nbytes for im in load_folder(root, grey=True).images)
    assert peak < decoded / 3, (peak, decoded)
    x, owner, skipped = _all_at_once(root, cfg, 3)
    assert data.info["skipped"] == skipped and len(skipped) == 1        # tiny.png: smaller than 8x8
    assert data.x.shape == (300, 1, 8, 8) and _rows(data.x) == _rows(x)   # (build_dataset shuffles them)


def test_patches_of_a_file_whose_header_misled_are_drawn_from_the_sizes_read(tmp_path):
    """A PNG whose header reads but whose pixels do not (cut short): the draws from the headers' sizes counted it, so
    they are made again from the images read, as all at once."""
    root = _folder(tmp_path, n=4, side=100)
    whole = (root / "im0.png").read_bytes()
    (root / "cut.png").write_bytes(whole[:len(whole) // 2])
    data = build_dataset(_patches_cfg(root), seed=1)
    x, _, skipped = _all_at_once(root, _patches_cfg(root), 1)
    assert str(root / "cut.png") in [s["file"] for s in data.info["skipped"]]
    assert data.info["skipped"][-len(skipped):] == skipped and _rows(data.x) == _rows(x)


def test_a_redrawn_folder_says_each_small_file_once(tmp_path, caplog):
    """The draw from the headers is quiet: a folder drawn again (a file cut short) says its small files once, not
    twice."""
    root = _folder(tmp_path, n=4, side=100)
    whole = (root / "im0.png").read_bytes()
    (root / "cut.png").write_bytes(whole[:len(whole) // 2])
    with caplog.at_level("WARNING", logger="downpour.data"):
        build_dataset(_patches_cfg(root), seed=1)
    said = [r.getMessage() for r in caplog.records if "tiny.png" in r.getMessage()]
    assert len(said) == 1 and "smaller than the 8x8 patch" in said[0], said
