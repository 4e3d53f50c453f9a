"""data.jpeg_draft: in a folder's crops mode a JPEG decodes at 1/2, 1/4 or 1/8 scale where its crop is the same
pixels at that scale, never below the crop's side, the same way in memory and streamed, turned upright."""
import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from downpour.config import ConfigError, DataConfig
from downpour.data import build_dataset
from downpour.data.folder import load_folder, read_image, read_scaled
from downpour.data.pipeline import open_data
from downpour.train.json_digest import rewrite_json

pytestmark = pytest.mark.usefixtures("one_thread")


def _photo(path, w, h, seed=0, exif=None):
    """A w x h JPEG with structure at every scale (smooth colours, stripes, noise)."""
    rng = np.random.default_rng(seed)
    scene = np.asarray(Image.fromarray(rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC))
    yy, xx = np.mgrid[0:h, 0:w]
    x = scene + 30 * np.sin(xx / 7.0 + yy / 11.0)[..., None] + rng.normal(0, 10, (h, w, 3))
    img = Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))
    if exif is None:
        img.save(path, quality=90)
    else:
        tags = Image.Exif()
        tags[0x0112] = exif
        img.save(path, quality=90, exif=tags)
    return path


@pytest.mark.parametrize("w, h, size, shape", [
    (640, 480, 8, (60, 80)),        # 1/8: its centred square starts 80 px in, ten 8-px blocks
    (640, 480, 60, (60, 80)),       # 1/8 leaves the square at 60 px, enough for 60
    (640, 480, 61, (120, 160)),     # 1/8 would leave 60 < 61: 1/4
    (600, 400, 8, (100, 150)),      # square 100 px in: 1/4 (at 1/8 it would start half a block off)
    (640, 480, 480, (480, 640)),    # no reduction keeps the square >= 480: full
    (643, 480, 8, (480, 643)),      # an odd width: no block grid fits, full
])
def test_a_jpeg_decodes_at_the_largest_reduction_whose_square_still_covers_the_crop(tmp_path, w, h, size, shape):
    path = _photo(tmp_path / "a.jpg", w, h)
    im = read_image(path, True, shrink_to=size)
    assert im.shape == (1, *shape) and min(im.shape[1:]) >= size
    assert read_image(path, True).shape == (1, h, w)              # shrink_to = 0 (patches mode): full


@pytest.mark.parametrize("tile, size, scale", [
    (100, 8, 2),      # 4x6 tiles of 100 px, margins 40 and 80 px: at 1/2 tiles of 50 >= 4 x 8; at 1/4 25 < 32
    (128, 8, 4),      # margins 96 and 0: at 1/4 tiles of 32 = 4 x 8; at 1/8 16 < 32
    (100, 13, 1),     # at 1/2 tiles of 50 < 4 x 13: the resize after would be nearly none, so in full
    (110, 8, 1),      # the 90-px margin halves to 45 px, not whole 2-px blocks: in full
    (500, 8, 8),      # under one tile: its centred square, as without a tile
])
def test_a_tiled_crop_decodes_reduced_only_where_its_tiles_stay_four_crops_wide_on_whole_blocks(tmp_path, tile,
                                                                                                 size, scale):
    """A grid (a side >= tile) decodes reduced where its tiles stay four crops wide on whole blocks, not always in
    full."""
    path = _photo(tmp_path / "a.jpg", 640, 480)
    assert read_scaled(path, True, shrink_to=size, tile=tile)[0].shape == (1, 480 // scale, 640 // scale)
    assert read_scaled(path, True, shrink_to=size, tile=tile)[1] == scale


@pytest.mark.parametrize("tile", [100, 128])
def test_reduced_tiles_are_the_native_grid_within_a_grey_level_of_the_full_decodes(tmp_path, tile):
    """The same grid of tiles (laid on native pixels, cut at 1/s), each within the whole-image path's tolerance."""
    _photo(tmp_path / "a.jpg", 640, 480, seed=1)
    _photo(tmp_path / "b.jpg", 600, 400, seed=2, exif=6)
    kw = dict(source="folder", path=str(tmp_path), mode="crops", size=8, tile=tile)
    full = build_dataset(DataConfig(**kw, jpeg_draft=False), 0)
    draft = build_dataset(DataConfig(**kw), 0)
    native = (640 // tile) * (480 // tile) + (400 // tile) * (600 // tile)      # the grid of each native image
    assert len(full.x) == len(draft.x) == native
    gap = np.abs(draft.x.numpy() - full.x.numpy())
    assert 0 < gap.max() < 0.01 and gap.mean() < 0.002


def test_other_formats_decode_in_full(tmp_path):
    Image.open(_photo(tmp_path / "a.jpg", 640, 480)).save(tmp_path / "a.png")
    assert np.array_equal(read_image(tmp_path / "a.png", False, shrink_to=8), read_image(tmp_path / "a.png", False))


def test_the_reduced_crop_is_within_a_grey_level_of_the_full_decodes(tmp_path):
    """The same native pixels, filtered by the DCT's scaling instead of the resize alone: 1/255 = 0.0039."""
    _photo(tmp_path / "a.jpg", 640, 480, seed=1)
    _photo(tmp_path / "b.jpg", 600, 400, seed=2)
    full = build_dataset(DataConfig(source="folder", path=str(tmp_path), mode="crops", size=16, jpeg_draft=False), 0)
    draft = build_dataset(DataConfig(source="folder", path=str(tmp_path), mode="crops", size=16), 0)
    gap = np.abs(draft.x.numpy() - full.x.numpy())
    assert 0 < gap.max() < 0.01 and gap.mean() < 0.002
    assert draft.info["jpeg_draft"] is True and full.info["jpeg_draft"] is False


def test_the_exif_turn_is_applied_to_the_reduced_image(tmp_path):
    turned = read_image(_photo(tmp_path / "t.jpg", 640, 480, exif=6), True, shrink_to=8)
    stored = read_image(_photo(tmp_path / "s.jpg", 640, 480), True, shrink_to=8)   # the same pixels, no tag
    assert turned.shape == (1, 80, 60)
    assert np.allclose(turned[0], np.rot90(stored[0], k=-1), atol=1e-6)   # orientation 6: turn clockwise (luma sums in another order)


def test_patches_and_unaligned_tiles_read_the_same_samples_with_or_without_it(tmp_path):
    _photo(tmp_path / "a.jpg", 640, 480)
    for kw in ({"mode": "patches", "samples": 50}, {"mode": "crops", "tile": 110}):
        on, off = (build_dataset(DataConfig(source="folder", path=str(tmp_path), size=8, jpeg_draft=d, **kw), 0)
                   for d in (True, False))
        assert torch.equal(on.x, off.x)


@pytest.mark.parametrize("tile", [0, 100])
def test_the_stream_reads_exactly_the_in_memory_samples(tmp_path, tile):
    for i in range(6):
        _photo(tmp_path / f"im{i}.jpg", 640 if i % 2 else 600, 480 if i % 2 else 400, seed=i, exif=6 if i == 3 else None)
    base = dict(source="folder", path=str(tmp_path), mode="crops", size=8, tile=tile, prefetch=4, loader_workers=0)
    memory = build_dataset(DataConfig(**base, pipeline="memory"), seed=0)
    stream = open_data(DataConfig(**base, pipeline="stream"), seed=0)
    x = next(stream.batches(len(memory), torch.Generator().manual_seed(1))).x
    assert sorted(r.numpy().tobytes() for r in x) == sorted(r.numpy().tobytes() for r in memory.x)
    full = build_dataset(DataConfig(**base, pipeline="memory", jpeg_draft=False), seed=0)
    assert not torch.equal(full.x, memory.x)          # reduced on both paths (tiled: at 1/2, tiles of 50 px)
    assert load_folder(tmp_path, shrink_to=8).images[0].shape == (1, 100, 150)   # 600x400 at 1/4


def test_the_switch_is_a_checked_bool():
    with pytest.raises(ConfigError, match="jpeg_draft"):
        DataConfig(jpeg_draft="yes")


def test_a_folder_crops_run_from_before_it_decoded_in_full_and_is_another_recipe_today(tmp_path):
    """A run written before 2026-12-04 has no data.jpeg_draft: it reads as false (full decode), so the default
    is another run's data where a folder is cropped, and no difference at all where nothing reads the key."""
    from downpour.config import load_config
    from downpour.config_diff import config_differences
    from downpour.train.recorded import config_fills

    (tmp_path / "config.toml").write_text('[data]\nsource = "folder"\nmode = "crops"\n')
    assert ("data.jpeg_draft", False) in config_fills(tmp_path / "config.toml")
    crops = load_config("cat-demo", ["data.source=folder", f"data.path={tmp_path}", "data.mode=crops"])
    old = dataclasses.replace(crops, data=dataclasses.replace(crops.data, jpeg_draft=False))
    assert [k for k, _, _ in config_differences(old, crops)] == ["data.jpeg_draft"]
    patches = dataclasses.replace(crops, data=dataclasses.replace(crops.data, mode="patches"))
    assert config_differences(dataclasses.replace(patches, data=dataclasses.replace(patches.data, jpeg_draft=False)),
                              patches) == []


def test_pipeline_auto_estimates_the_reduced_images_the_memory_path_holds(tmp_path):
    """data.pipeline = 'auto' estimated every JPEG's full size (what build_dataset held before data.jpeg_draft):
    640x480 photos cropped to 8 px hold 1/64 of that, so it streamed folders 64x under its threshold."""
    from downpour.data import pipeline
    from downpour.data.estimate import held_bytes

    for i in range(4):
        _photo(tmp_path / f"im{i}.jpg", 640 if i % 2 else 600, 480 if i % 2 else 400, seed=i)
    Image.open(tmp_path / "im0.jpg").save(tmp_path / "im9.png")          # not a JPEG: in full, as read
    for kw in ({"mode": "crops", "size": 8}, {"mode": "crops", "size": 8, "jpeg_draft": False},
               {"mode": "crops", "size": 8, "tile": 100}, {"mode": "patches", "size": 8}):
        cfg = DataConfig(source="folder", path=str(tmp_path), **kw)
        one = max(im.nbytes for im in load_folder(tmp_path, True, False, cfg.jpeg_shrink(), cfg.tile).images)
        assert held_bytes(cfg, pipeline.list_items(cfg)).decoding == one, kw      # decoded one at a time


def _tiled_run(tmp_path, steps, resume=False, sets=()):
    from downpour.cli import main

    base = ["data.source=folder", f"data.path={tmp_path / 'photos'}", "data.mode=crops", "data.tile=256",
            "data.size=32", "train.checkpoint_every=2", "train.schedule=joint"]
    where = ["--resume", str(tmp_path / "run")] if resume else ["--config", "cat-demo", "--out", str(tmp_path / "run")]
    args = ["train", *where, "--runner", "local", "--no-report", "--steps", str(steps)]
    return main(args + [a for s in ([] if resume else base) + list(sets) for a in ("--set", s)])


def _as_written_before_the_record(run):
    """The run folder as a run of 2026-12-04 15:25-22:23 left it: none of its files says jpeg_decode."""
    import json
    import re

    data = json.loads((run / "data.json").read_text())
    del data["jpeg_decode"]
    (run / "data.json").write_text(json.dumps(data))
    for name, data in (("model.json", lambda r: r["data"]), ("checkpoints/local.json", lambda r: r["config"]["data"])):
        rewrite_json(run / name, lambda record: data(record).pop("jpeg_decode"))
    toml = (run / "config.toml").read_text()
    (run / "config.toml").write_text(re.sub(r"(?m)^jpeg_decode = \d+\n", "", toml, count=1))
    assert "jpeg_decode" not in (run / "config.toml").read_text()


def test_a_tiled_run_begun_when_tiles_decoded_in_full_resumes_on_full_tiles_or_is_refused_naming_the_rule(
        tmp_path, caplog, capsys):
    """Runs of 2026-12-04 15:25-17:05 decoded a tile grid's JPEGs in full, later ones reduced, both recording
    jpeg_draft = true alone; a resume of the first kind must not train on reduced tiles from the resume on
    (refitted, warned). Its records cannot say which rule it began under: the resume is refused, naming the key, and
    resumes by the rule it is given, on the pixels it began with (no refit)."""
    import json
    import logging

    from downpour.train.rundir import RunDir

    (tmp_path / "photos").mkdir()
    for i in range(16):
        _photo(tmp_path / "photos" / f"p{i:02d}.jpg", 512, 512, seed=i)
    assert read_scaled(tmp_path / "photos" / "p00.jpg", True, 32, 256)[1] == 2     # today: tiles decoded at 1/2
    assert read_scaled(tmp_path / "photos" / "p00.jpg", True, 32, 256, rule=1)[1] == 1   # 15:25-17:05: in full
    assert _tiled_run(tmp_path, 2, sets=["data.jpeg_decode=1"]) == 0
    run = tmp_path / "run"
    _as_written_before_the_record(run)
    capsys.readouterr()
    assert _tiled_run(tmp_path, 4, resume=True) != 0
    said = capsys.readouterr().err
    assert "data.jpeg_decode is unknown" in said and "--set data.jpeg_decode=1 or =2" in said
    assert not (run / "checkpoints" / "step_000004.safetensors").exists() and json.loads(
        (run / "data.json").read_text()).get("jpeg_decode") is None          # nothing written by the refusal
    with caplog.at_level(logging.WARNING, logger="downpour.train.refit"):
        assert _tiled_run(tmp_path, 4, resume=True, sets=["data.jpeg_decode=1"]) == 0
    assert not [r for r in caplog.records if r.name == "downpour.train.refit"]   # fitted on the pixels it began on
    assert RunDir.open(run).config.data.jpeg_decode == 1                  # config.toml keeps it from here on
    assert json.loads((run / "data.json").read_text())["jpeg_decode"] == 1
    d = RunDir.open(run).config.data
    assert set(load_folder(d.path, d.grey, False, d.jpeg_shrink(), d.tile, d.jpeg_decode).scales) == {1}   # in full


def test_a_run_written_before_config_toml_kept_the_rule_reads_it_from_data_json_or_where_rules_agree_today(tmp_path):
    """A config.toml without data.jpeg_decode: its data.json's record (runs from 2026-12-04 22:23 on), else the rule
    where both rules decode its crops alike; unknown (0) only for tiles rule 2 reduces, refused by name there."""
    import json

    from downpour.data.patches import decode_rule
    from downpour.data.resumed import decode_began

    tiled = DataConfig(source="folder", path=str(tmp_path), mode="crops", size=32, tile=256)
    (tmp_path / "data.json").write_text(json.dumps({"jpeg_draft": True}))
    assert decode_began(tmp_path, tiled) == 0
    with pytest.raises(ConfigError, match="data.jpeg_decode is unknown"):
        decode_rule(dataclasses.replace(tiled, jpeg_decode=0))
    for agree in (dataclasses.replace(tiled, tile=255), dataclasses.replace(tiled, tile=0),
                  dataclasses.replace(tiled, jpeg_draft=False), dataclasses.replace(tiled, mode="patches")):
        assert decode_began(tmp_path, agree) == 2 and decode_rule(dataclasses.replace(agree, jpeg_decode=0)) == 2
    for began in (1, 2):
        (tmp_path / "data.json").write_text(json.dumps({"jpeg_draft": True, "jpeg_decode": began}))
        assert decode_began(tmp_path, tiled) == began


def test_a_resume_names_a_changed_decoder_rule_or_else_the_files(tmp_path):
    import json

    from downpour.data.resumed import decode_change

    cfg = DataConfig(source="folder", path=str(tmp_path), mode="crops", size=32, tile=256)
    record = {"jpeg_draft": True, "jpeg_decode": 1}
    (tmp_path / "data.json").write_text(json.dumps(record))
    assert "rule jpeg_decode 1, data.jpeg_decode is 2" in decode_change(tmp_path, cfg)
    assert "the files changed since?" in decode_change(tmp_path, dataclasses.replace(cfg, jpeg_decode=1))
    full = dataclasses.replace(cfg, jpeg_draft=False)        # decoded in full under every rule
    assert decode_change(tmp_path, full) == "the data changed since?"


@pytest.mark.parametrize("pipeline", ["memory", "stream"])
def test_data_json_records_the_jpeg_decoders_rule_where_jpegs_decode_reduced(tmp_path, pipeline):
    from downpour.data.patches import JPEG_DECODE

    for i in range(4):
        _photo(tmp_path / f"p{i}.jpg", 512, 512, seed=i)
    cfg = DataConfig(source="folder", path=str(tmp_path), mode="crops", size=32, tile=256, pipeline=pipeline,
                     normalize="none", whiten="none", loader_workers=0)
    assert open_data(cfg, seed=0).info["jpeg_decode"] == JPEG_DECODE
    assert "jpeg_decode" not in open_data(dataclasses.replace(cfg, jpeg_draft=False), seed=0).info


def test_a_jpeg_over_the_bomb_limit_is_cropped_from_its_reduced_decode_and_a_real_bomb_still_refused(tmp_path,
                                                                                                       monkeypatch):
    """Pillow refuses images over 2 x Image.MAX_IMAGE_PIXELS (~179 MP) at open; in crops mode a JPEG decoded at 1/8
    holds 1/64 of them, and was skipped all the same (a large scan or panorama lost). The limit is lowered here so
    512x512 files play the part."""
    from PIL import Image

    _photo(tmp_path / "big.jpg", 512, 512)
    Image.fromarray(np.zeros((512, 512), np.uint8)).save(tmp_path / "big.png")    # no reduced decode: refused
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 512 * 512 // 2 - 1)
    images = load_folder(tmp_path, shrink_to=32)
    assert images.names == ["big.jpg"] and images.scales == [8]
    assert images.images[0].shape == (1, 64, 64)
    assert [e["file"] for e in images.skipped] == [str(tmp_path / "big.png")]
    assert "DecompressionBombError" in images.skipped[0]["reason"]
    with pytest.raises(Image.DecompressionBombError):       # patches cut native pixels: a full decode, refused
        read_image(tmp_path / "big.jpg", True)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 // 2 - 1)   # its 1/8 decode over the limit too
    with pytest.raises(Image.DecompressionBombError, match="decoded at 1/8: 4096 pixels"):
        read_image(tmp_path / "big.jpg", True, 32)


def test_a_progressive_jpeg_over_the_bomb_limit_is_refused_whatever_it_decodes_to(tmp_path, monkeypatch):
    """libjpeg holds a progressive JPEG's every coefficient (2 bytes a pixel a component) at any reduction: an
    8000x8000 grey one at 1/8 grew the peak memory by 125 MB, a full decode 64 MB. Its 1/8 size let it past the
    limit, so a file declaring 65500 x 65500 would have had libjpeg allocate 8.6 GB a component."""
    from PIL import Image

    pixels = (np.random.default_rng(0).random((512, 512)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "baseline.jpg", quality=90)
    Image.fromarray(pixels).save(tmp_path / "progressive.jpg", quality=90, progressive=True)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 512 * 512 // 2 - 1)
    images = load_folder(tmp_path, shrink_to=32)
    assert images.names == ["baseline.jpg"] and images.scales == [8]       # a baseline JPEG: its 1/8 decode alone
    assert [e["file"] for e in images.skipped] == [str(tmp_path / "progressive.jpg")]
    assert "DecompressionBombError" in images.skipped[0]["reason"] and "progressive" in images.skipped[0]["reason"]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)                    # within the limit: read reduced as before
    assert read_scaled(tmp_path / "progressive.jpg", True, 32)[1] == 8


def _flat_jpeg(path, side, scans):
    """A flat grey side x side baseline (SOF0) JPEG of 3 components, written by hand: Pillow writes one interleaved
    scan and cannot write several. ``scans``: the components of each scan ([[0, 1, 2]]: one interleaved scan;
    [[0], [1], [2]]: one scan per component). Every block codes DC difference 0 and EOB, one-bit codes each."""
    def segment(marker, body):
        return (0xFF00 + marker).to_bytes(2, "big") + (len(body) + 2).to_bytes(2, "big") + body

    one_code = bytes([1] + [0] * 15) + bytes([0])          # one code of length 1, symbol 0 (DC 0; AC 0 = EOB)
    out = b"\xff\xd8" + segment(0xDB, bytes(1) + bytes([1] * 64))
    out += segment(0xC0, bytes([8]) + side.to_bytes(2, "big") * 2 + bytes([3]) + b"".join(bytes([c + 1, 0x11, 0])
                                                                                              for c in range(3)))
    out += segment(0xC4, bytes([0x00]) + one_code) + segment(0xC4, bytes([0x10]) + one_code)
    blocks = (side // 8) ** 2
    for scan in scans:
        header = bytes([len(scan)]) + b"".join(bytes([c + 1, 0]) for c in scan) + bytes([0, 63, 0])
        out += segment(0xDA, header) + bytes(2 * blocks * len(scan) // 8)     # 2 bits a block: whole bytes
    path.write_bytes(out + b"\xff\xd9")
    return path


@pytest.mark.parametrize("scans", [[[0], [1], [2]], [[0], [1, 2]]])
def test_a_baseline_jpeg_of_several_scans_over_the_bomb_limit_is_refused_like_a_progressive_one(tmp_path, monkeypatch,
                                                                                                scans):
    """libjpeg holds every coefficient of a JPEG whose first scan lacks a component (has_multiple_scans), baseline or
    not, at any reduction: a 14000 x 14000 one of three scans cropped to 8 px raised a run's peak memory from 356 MB
    (its one-scan twin) to 1,424 MB, at 1/8 as in full. Its header says baseline, so it passed as one scan."""
    _flat_jpeg(tmp_path / "one_scan.jpg", 512, [[0, 1, 2]])
    _flat_jpeg(tmp_path / "scans.jpg", 512, scans)
    assert (np.asarray(Image.open(tmp_path / "scans.jpg")) == np.asarray(Image.open(tmp_path / "one_scan.jpg"))).all()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 512 * 512 // 2 - 1)
    images = load_folder(tmp_path, shrink_to=32)
    assert images.names == ["one_scan.jpg"] and images.scales == [8]
    assert [e["file"] for e in images.skipped] == [str(tmp_path / "scans.jpg")]
    reason = images.skipped[0]["reason"]
    assert "DecompressionBombError" in reason and f"its first scan holds {len(scans[0])} of its 3 components" in reason
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)                    # within the limit: read reduced as before
    assert read_scaled(tmp_path / "scans.jpg", True, 32)[1] == 8


@pytest.mark.parametrize("name", ["scan.png", "scan.tif"])
def test_a_png_or_tiff_over_the_bomb_limit_is_skipped_saying_what_to_do_with_it(tmp_path, monkeypatch, name):
    """Neither decodes reduced, and Pillow's crop of a lazily opened one loads it whole (an 8000x8000 RGB PNG cropped
    to 32 px grew the peak memory by 245 MB, a full load by 244 MB; a striped TIFF alike): refused, skipped, and the
    reason says what would let the file be read, not only 'could be decompression bomb DOS attack'."""
    _photo(tmp_path / "small.jpg", 64, 64)
    Image.fromarray(np.zeros((512, 512), np.uint8)).save(tmp_path / name)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 512 * 512 // 2 - 1)
    limit = 512 * 512 - 2
    images = load_folder(tmp_path, shrink_to=32)                        # crops: the run goes on without it
    assert images.names == ["small.jpg"] and [e["file"] for e in images.skipped] == [str(tmp_path / name)]
    reason = images.skipped[0]["reason"]
    assert reason.startswith("DecompressionBombError: Image size (262144 pixels) exceeds limit of")
    assert (f"a {name[-4:]} file is decoded whole, whatever is cropped from it: downscale it below {limit} pixels, "
            "or save it as a baseline JPEG, which crops mode decodes reduced") in reason
    with pytest.raises(Image.DecompressionBombError, match=f"decoded whole here: downscale it below {limit} pixels"):
        read_image(tmp_path / name, True)                               # patches: a full decode whatever the format


def test_pipeline_auto_counts_a_jpeg_over_the_bomb_limit_at_the_reduced_size_it_is_read_at(tmp_path, monkeypatch):
    """A JPEG over Pillow's bomb limit that crops mode reads reduced counted 0 pixels in 'auto''s estimate (its
    Image.open refused it), so a folder of large panoramas estimated 0 bytes and was held in memory, however many."""
    from downpour.data import pipeline
    from downpour.data.estimate import held_bytes

    for i in range(3):
        _photo(tmp_path / f"pano{i}.jpg", 512, 512, seed=i)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 512 * 512 // 2 - 1)
    cfg = DataConfig(source="folder", path=str(tmp_path), mode="crops", size=32)
    one = max(im.nbytes for im in load_folder(tmp_path, True, False, cfg.jpeg_shrink(), cfg.tile).images)
    assert one == 64 * 64 * 4
    assert held_bytes(cfg, pipeline.list_items(cfg)).decoding == one


def test_a_resume_given_the_wrong_rule_for_a_run_whose_records_predate_it_says_the_rule_may_be_wrong(tmp_path, caplog):
    """A tiled run whose records predate jpeg_decode is resumed with the rule the user gives; given the wrong one
    (it began under 2, told 1), its input processing is refitted on other pixels, and the warning does not vouch for
    the guess (as "JPEGs decoded by the rule it began with, jpeg_decode 1: the files changed since?" would)."""
    import logging

    (tmp_path / "photos").mkdir()
    for i in range(16):
        _photo(tmp_path / "photos" / f"p{i:02d}.jpg", 512, 512, seed=i)
    assert _tiled_run(tmp_path, 2) == 0                                          # rule 2: tiles reduced
    _as_written_before_the_record(tmp_path / "run")
    with caplog.at_level(logging.WARNING, logger="downpour.train.refit"):
        assert _tiled_run(tmp_path, 4, resume=True, sets=["data.jpeg_decode=1"]) == 0
    said = " ".join(r.getMessage() for r in caplog.records if r.name == "downpour.train.refit")
    assert "the rule it began with" not in said
    assert "records predate jpeg_decode" in said and "data.jpeg_decode = 1 was given" in said, said


@pytest.mark.parametrize("tile", [256, 0])
def test_a_new_run_with_jpeg_decode_0_is_refused_naming_the_key_before_anything_is_written(tmp_path, capsys, tile):
    """0 is what an old run's resume reads where its rule is unknown. A new run given it is refused, naming the key,
    and its folder is never made: else, tiled, it is refused with the resume's words ("... predate its record") after
    config.toml is written; untiled, it trains and config.toml keeps 0."""
    (tmp_path / "photos").mkdir()
    for i in range(4):
        _photo(tmp_path / "photos" / f"p{i:02d}.jpg", 512, 512, seed=i)
    assert _tiled_run(tmp_path, 2, sets=[f"data.tile={tile}", "data.jpeg_decode=0"]) != 0
    said = capsys.readouterr().err
    assert "data.jpeg_decode = 0" in said and "give 1 or 2" in said and "predate its record" not in said
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("pipeline", ["memory", "stream"])
def test_a_photo_over_pillows_warning_size_and_within_its_limit_is_read_without_the_bomb_warning(tmp_path,
                                                                                                 monkeypatch, pipeline):
    """Pillow warns (DecompressionBombWarning) of an image over Image.MAX_IMAGE_PIXELS (~89.5 MP) and refuses one over
    twice that. A 120 MP photo is read all the same, and quietly (not with the warning once a process for the first such
    file, naming none and calling it a possible DOS attack); one over the limit is still skipped and named. The limit is
    lowered so 64x64 files play the part."""
    import warnings

    from PIL import Image

    _photo(tmp_path / "large.jpg", 64, 64)                 # 4096 pixels: over 3000, within 6000
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(tmp_path / "huge.png")       # 10000: over the limit
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)
    cfg = DataConfig(source="folder", path=str(tmp_path), mode="crops", size=16, pipeline=pipeline,
                     normalize="none", whiten="none", loader_workers=0, fit_sample=2)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        data = open_data(cfg, seed=0)
        if pipeline == "stream":
            batches = data.batches(2, torch.Generator().manual_seed(0))
            next(batches)
            data = batches.report()
    assert not [w for w in said if issubclass(w.category, Image.DecompressionBombWarning)]
    skipped = data.info["skipped"] if pipeline == "memory" else data["skipped"]
    assert [e["file"] for e in skipped] == [str(tmp_path / "huge.png")]
    assert "DecompressionBombError" in skipped[0]["reason"]


def _said_here() -> None:
    import warnings

    warnings.warn("a warning shown once where it is raised", UserWarning)


def test_reading_images_leaves_a_warning_shown_once_shown_once(tmp_path):
    """Python shows a warning once where it is raised (the default action) until its filters change, and a change
    makes them show it again. A file opened must not go through a change of the filters (such as the bomb warning's
    ``catch_warnings``): a warning raised once per file at one place (Pillow's, a loader's) would be shown once per
    file instead of once per process."""
    import warnings

    from downpour.data.bomb_limit import opened

    _photo(tmp_path / "a.jpg", 16, 16)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("default")
        for _ in range(3):
            _said_here()
            opened(tmp_path / "a.jpg").close()
    assert [str(w.message) for w in said] == ["a warning shown once where it is raised"]
