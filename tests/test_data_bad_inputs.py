"""Bad inputs the data layer must survive or name: a float image with NaN / Inf pixels (skipped on both
paths), a truncated or damaged array file (one-line DataError naming it), a text file named .npy (the
same message on every path), a class folder with no readable image (numbered alike on both paths), and
a resumed stream's telemetry (the reads, samples and skipped files before the checkpoint are kept)."""
import json
import logging
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from downpour.config import DataConfig
from downpour.data import build_dataset
from downpour.data.arrays import read_arrays
from downpour.data.pipeline import open_data
from downpour.data.stream import StreamingData, open_stream
from downpour.errors import DataError

pytestmark = pytest.mark.usefixtures("one_thread")

BAD_PNG = b"\x89PNG\r\n\x1a\n not a png"


def _pngs(root, n, seed=0, size=(24, 20)):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(root / f"im{i:03d}.png")
    return root


def _float_tiff(path, value):
    """A 24x20 float (mode "F") TIFF in [0, 1] with one pixel set to ``value``."""
    x = np.random.default_rng(1).random((20, 24)).astype(np.float32)
    x[3, 5] = value
    Image.fromarray(x, mode="F").save(path)
    return path


def _cfg(root, **kw):
    base = dict(source="folder", path=str(root), mode="crops", size=8, prefetch=4, loader_workers=0)
    return DataConfig(**{**base, **kw})


# -- 1. a float image with a non-finite pixel is a bad file, on both paths --------------------------------

@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_a_float_image_with_a_non_finite_pixel_is_skipped_in_memory(tmp_path, value, caplog):
    root = _pngs(tmp_path / "imgs", 6)
    bad = _float_tiff(root / "nan.tif", value)
    with caplog.at_level(logging.WARNING, logger="downpour.data"):
        data = build_dataset(_cfg(root, pipeline="memory"), seed=0)
    assert len(data) == 6 and torch.isfinite(data.x).all()
    assert data.info["n_skipped"] == 1 and data.info["skipped"][0]["file"] == str(bad)
    assert "NaN or Inf" in data.info["skipped"][0]["reason"]
    assert sum(str(bad) in r.getMessage() for r in caplog.records) == 1          # named once


@pytest.mark.parametrize("fit", ["patch", "none"])     # met by the fitting sample, or only by the worker
def test_a_float_image_with_a_non_finite_pixel_is_skipped_when_streamed(tmp_path, fit):
    root = _pngs(tmp_path / "imgs", 6)
    bad = _float_tiff(root / "nan.tif", np.nan)
    data = open_data(_cfg(root, pipeline="stream", normalize=fit, whiten="none", fit_sample=7), seed=0)
    assert isinstance(data, StreamingData)
    if fit != "none":
        assert data.info["fit_sample"]["n_skipped"] == 1 and np.isfinite(data.info["fit_sample"]["x_mean"])
    batches = data.batches(3, torch.Generator().manual_seed(0))
    xs = [next(batches).x for _ in range(8)]                                     # past two passes
    assert all(torch.isfinite(x).all() for x in xs)
    report = batches.report()
    assert report["n_skipped"] == 1 and report["skipped"][0]["file"] == str(bad)


# -- 2. and 3. damaged array files: one line naming the file -----------------------------------------------

def _one_line(err, name):
    text = str(err.value)
    assert name in text and "\n" not in text and len(text) < 400
    return text


def test_a_truncated_npy_is_a_data_error_naming_it(tmp_path):
    p = tmp_path / "trunc.npy"
    np.save(p, np.random.default_rng(0).random((50, 16, 16)).astype(np.float32))
    p.write_bytes(p.read_bytes()[:30_000])
    with pytest.raises(DataError) as err:
        read_arrays(p)
    assert "not a readable .npy file" in _one_line(err, "trunc.npy")
    with pytest.raises(DataError) as err:                                         # through the run's entry point
        open_data(DataConfig(source="array", path=str(p), mode="crops", size=8, pipeline="memory"), seed=0)
    _one_line(err, "trunc.npy")


def test_an_npz_with_a_damaged_header_is_a_data_error_naming_it(tmp_path):
    p = tmp_path / "corrupt.npz"
    np.savez(p, x=np.zeros((50, 16, 16), np.float32))                              # stored, not compressed
    raw = p.read_bytes()
    p.write_bytes(raw.replace(b"(50, 16, 16), }", b"(50, 16, 16)D\x83}"))        # same length: the zip stays whole
    with pytest.raises(DataError) as err:
        read_arrays(p)
    assert "not a readable .npz file (Cannot parse header" in _one_line(err, "corrupt.npz")


@pytest.mark.parametrize("pipeline", ["auto", "stream", "memory"])
def test_a_text_file_named_npy_is_not_called_pickled_on_any_path(tmp_path, pipeline):
    p = tmp_path / "notes.npy"
    p.write_text("this is not an array\n" * 10)
    with pytest.raises(DataError) as err:
        open_data(DataConfig(source="array", path=str(p), mode="crops", size=8, pipeline=pipeline), seed=0)
    text = _one_line(err, "notes.npy")
    assert "not a readable .npy file (it does not start like one)" in text and "pickle" not in text


# -- 4. classes come from the class folders on both paths -------------------------------------------------

def test_a_class_folder_with_no_readable_image_keeps_its_number_on_both_paths(tmp_path, caplog):
    root = tmp_path / "lab"
    _pngs(root / "a", 4, seed=0)
    _pngs(root / "c", 4, seed=1)
    (root / "b").mkdir()
    (root / "b" / "broken.png").write_bytes(BAD_PNG)
    with caplog.at_level(logging.WARNING, logger="downpour.data"):
        memory = build_dataset(_cfg(root, labels=True, pipeline="memory"), seed=0)
    stream = open_stream(_cfg(root, labels=True, pipeline="stream", normalize="none", whiten="none"), seed=0)
    assert memory.info["classes"] == stream.info["classes"] == ["a", "b", "c"]
    assert memory.info["classes_unread"] == ["b"] and any("'b'" in r.getMessage() for r in caplog.records)
    assert sorted(memory.y.tolist()) == [0] * 4 + [2] * 4                         # c is 2, not 1
    by_file = {f.split("/")[-2]: int(k) for f, k in zip(stream.items, stream.labels)}
    assert by_file == {"a": 0, "b": 1, "c": 2}
    batches = stream.batches(8, torch.Generator().manual_seed(0))
    assert sorted(next(batches).y.tolist()) == sorted(memory.y.tolist())          # the same labels on both


# -- 5. a resumed stream keeps the telemetry from before its position ---------------------------------------

def _stream_folder(tmp_path):
    root = _pngs(tmp_path / "imgs", 16)
    for i in range(4):
        (root / f"bad{i}.png").write_bytes(BAD_PNG)
    return open_stream(_cfg(root, pipeline="stream", mode="patches", samples=60, prefetch=1, mix_items=3,
                            normalize="none", whiten="none"), seed=0)     # blocks of 3 of the 20 files


def test_a_resumed_stream_reports_the_whole_run_and_names_bad_files_once(tmp_path, caplog):
    data = _stream_folder(tmp_path)
    whole = data.batches(7, torch.Generator().manual_seed(3))
    for _ in range(10):
        next(whole)
    caplog.clear()                                                               # what the interrupted run logs
    first = data.batches(7, torch.Generator().manual_seed(3))
    with caplog.at_level(logging.WARNING, logger="downpour.data"):
        for _ in range(5):
            next(first)
        position = json.loads(json.dumps(first.position()))                       # as the checkpoint stores it
        before = first.report()
        assert 0 < before["n_skipped"] < 4                                        # some met before the checkpoint
        resumed = data.batches(7, torch.Generator().manual_seed(3), position=position)
        for _ in range(5):
            next(resumed)
    after, expected = resumed.report(), whole.report()
    assert after == expected                                                     # reads, samples, skipped, ...
    assert after["samples"] == 70 and after["batches"] == 10 and after["n_skipped"] == 4
    assert [r["file"] for r in after["skipped"][:before["n_skipped"]]] == [r["file"] for r in before["skipped"]]
    named = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped ")]
    assert len(named) == 4 and len(set(named)) == 4                              # each bad file named once
    for a, b in zip([next(whole).x for _ in range(3)], [next(resumed).x for _ in range(3)]):
        assert torch.equal(a, b)                                                 # and the batches go on alike


def test_a_resumed_local_run_writes_the_whole_runs_data_record(tmp_path):
    from downpour.config import load_config
    from downpour.runners import train
    from downpour.train.rundir import RunDir

    root = _pngs(tmp_path / "imgs", 30)
    for i in range(4):
        (root / f"bad{i}.png").write_bytes(BAD_PNG)
    base = ["data.source=folder", f"data.path={root}", "data.mode=patches", "data.size=8", "data.samples=100",
            "data.pipeline=stream", "data.prefetch=1", "data.loader_workers=0", "data.fit_sample=4",
            "data.whiten=none", "data.mix_items=4", "train.batch_size=7", "train.log_every=5", "train.tensorboard=false",
            "train.threads=1", "cluster.runner=local"]
    whole_cfg = load_config("ufldl-sae", [*base, "train.steps=10"])
    whole = RunDir.create(tmp_path / "whole", whole_cfg)
    train(whole_cfg, whole)
    half_cfg = load_config("ufldl-sae", [*base, "train.steps=5"])
    half = RunDir.create(tmp_path / "half", half_cfg)
    train(half_cfg, half)
    assert 0 < half.read_json("data.json")["workers"][0]["n_skipped"] < 4      # the rest are met after the resume
    train(whole_cfg, half, resume=True)
    a, b = whole.read_json("data.json"), half.read_json("data.json")
    assert b["workers"] == a["workers"]                                          # reads, samples, batches, skipped
    for key in ("reads", "samples", "items_read", "n_skipped"):
        assert b[key] == a[key], key
    assert b["samples"] == 70 and b["n_skipped"] == 4


def test_a_resume_over_a_changed_file_list_is_said_and_recorded(tmp_path, caplog):
    data = _stream_folder(tmp_path)
    first = data.batches(7, torch.Generator().manual_seed(3))
    for _ in range(3):
        next(first)
    position = json.loads(json.dumps(first.position()))
    same = data.batches(7, torch.Generator().manual_seed(3), position=position)
    assert "listing_changed_on_resume" not in same.report()
    fewer = StreamingData(data.cfg, data.items[:-1], data.labels, data.cut, data.preprocess, data.augment, data.info)
    with caplog.at_level(logging.WARNING, logger="downpour.data"):
        changed = fewer.batches(7, torch.Generator().manual_seed(3), position=position)
    assert changed.report()["listing_changed_on_resume"] is True
    assert any("file list changed since the checkpoint" in r.getMessage() for r in caplog.records)


def test_a_workers_resume_over_a_changed_file_list_names_the_worker(tmp_path, caplog):
    """On the simulator each worker names itself and its own count ("worker 1 of 2: its file list changed since the
    checkpoint ..."): not "the data's file list changed since the checkpoint (125 items now)", the same line once per
    worker, naming none, 125 read as the whole folder's count."""
    mine = _stream_folder(tmp_path).shard(1, 2)
    first = mine.batches(7, torch.Generator().manual_seed(3))
    next(first)
    position = json.loads(json.dumps(first.position()))
    fewer = StreamingData(mine.cfg, mine.items[:-1], mine.labels, mine.cut, mine.preprocess, mine.augment, mine.info)
    with caplog.at_level(logging.WARNING, logger="downpour.data"):
        fewer.batches(7, torch.Generator().manual_seed(3), position=position)
    assert any(r.getMessage().startswith(f"worker 1 of 2: its file list changed since the checkpoint ({len(mine) - 1} "
                                         "items now)") for r in caplog.records)


def test_a_resume_over_a_changed_file_list_names_the_files_it_skipped_not_their_old_numbers(tmp_path):
    """The skipped files are not saved by item number and named from the new list: a good file would be named with
    a bad one's reason, and the bad one, by then at another number, never named (data.json: 2 for 1)."""
    data = _stream_folder(tmp_path)
    first = data.batches(7, torch.Generator().manual_seed(3))
    while not first.report()["skipped"]:
        next(first)
    before = first.report()["skipped"]
    position = json.loads(json.dumps(first.position()))
    shutil.copy(data.items[0], tmp_path / "imgs" / "aa_new.png")
    grown = StreamingData(data.cfg, [str(tmp_path / "imgs" / "aa_new.png"), *data.items], data.labels, data.cut,
                          data.preprocess, data.augment, data.info)
    resumed = grown.batches(7, torch.Generator().manual_seed(3), position=position)
    assert resumed.report()["skipped"] == before
    for _ in range(20):                                                          # past two passes: every bad file met
        next(resumed)
    named = [e["file"] for e in resumed.report()["skipped"]]
    assert sorted(named) == sorted(str(tmp_path / "imgs" / f"bad{i}.png") for i in range(4))   # each once


@pytest.mark.parametrize("runner", ["local", "simulated"])
def test_a_run_that_read_files_into_memory_writes_its_data_record_too(tmp_path, runner):
    from downpour.config import load_config
    from downpour.runners import train
    from downpour.train.rundir import RunDir

    root = _pngs(tmp_path / "imgs", 12)
    (root / "bad.png").write_bytes(BAD_PNG)
    cfg = load_config("ufldl-sae", ["data.source=folder", f"data.path={root}", "data.pipeline=memory", "data.size=8",
                                    "data.samples=100", "data.whiten=none", "train.batch_size=7", "train.steps=3",
                                    "train.tensorboard=false", f"cluster.runner={runner}"])
    run = RunDir.create(tmp_path / "run", cfg)
    train(cfg, run)
    record = run.read_json("data.json")
    assert record["n_skipped"] == 1 and record["skipped"][0]["file"].endswith("bad.png")
    plain = RunDir.create(tmp_path / "plain", load_config("ufldl-sae", ["train.steps=3", "train.tensorboard=false"]))
    train(plain.config, plain)
    assert not (plain.path / "data.json").exists()       # a built-in set has no files to report


def test_a_non_finite_row_of_an_array_is_skipped_in_memory_as_when_streamed(tmp_path):
    """One NaN in row 7 of a float .npy is skipped and named on both paths, the in-memory and the streamed: whether a
    file works must not depend on its size (else the in-memory run stops whole, "x holds NaN or Inf values", no row
    named)."""
    x = np.random.default_rng(0).random((50, 1, 8, 8)).astype(np.float32)
    x[7, 0, 3, 3] = np.nan
    np.save(tmp_path / "rows.npy", x)
    data = build_dataset(DataConfig(source="array", path=str(tmp_path / "rows.npy"), mode="crops", size=8), seed=0)
    assert len(data) == 49 and torch.isfinite(data.x).all()
    assert data.info["n_skipped"] == 1 and data.info["skipped"][0]["file"] == f"{tmp_path / 'rows.npy'}[7]"
    streamed = open_data(DataConfig(source="array", path=str(tmp_path / "rows.npy"), mode="crops", size=8,
                                    pipeline="stream", loader_workers=0), seed=0).shard(0, 1)
    batches = streamed.batches(50, torch.Generator().manual_seed(0))
    assert all(torch.isfinite(next(batches).x).all() for _ in range(2))        # two passes: row 7 met
    report = batches.report()
    assert report["n_skipped"] == 1 and report["skipped"][0]["file"] == f"{tmp_path / 'rows.npy'}[7]"
    x[:] = np.inf
    np.save(tmp_path / "rows.npy", x)
    with pytest.raises(DataError, match="every row of x holds NaN or Inf"):
        build_dataset(DataConfig(source="array", path=str(tmp_path / "rows.npy"), mode="crops", size=8), seed=0)


def _dds_with_no_pixel_format(path):
    """A DDS (a Pillow format, so listed as an image) whose pixel-format flags are zeroed: Pillow raises
    NotImplementedError, which no list of I/O errors had (the stream skipped it, the in-memory read died)."""
    import io
    raw = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(raw, format="DDS")
    data = bytearray(raw.getvalue())
    data[80:84] = b"\0" * 4
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("pipeline", ["memory", "stream"])
def test_a_file_pillow_fails_on_with_any_error_is_skipped_and_named_on_both_paths(tmp_path, pipeline):
    root = _pngs(tmp_path / "imgs", 4)
    bad = _dds_with_no_pixel_format(root / "bad.dds")
    with pytest.raises(NotImplementedError):
        Image.open(bad).load()
    data = open_data(_cfg(root, pipeline=pipeline), seed=0)
    if pipeline == "memory":
        skipped = data.info["skipped"]
    else:
        batches = data.batches(4, torch.Generator().manual_seed(0))
        [next(batches) for _ in range(3)]
        skipped = batches.report()["skipped"]
    assert [s["file"] for s in skipped] == [str(bad)] and skipped[0]["reason"].startswith("NotImplementedError")


def test_a_whole_run_config_for_the_data_config_is_refused_naming_cfg_data():
    # docs/data.md builds from cfg.data; the whole config failed with "'RunConfig' object has no attribute 'source'"
    from downpour.config import load_config
    with pytest.raises(TypeError, match=r"build_dataset: cfg must be a DataConfig \(a RunConfig's cfg\.data\), got a RunConfig"):
        build_dataset(load_config("ufldl-sae"), seed=0)
