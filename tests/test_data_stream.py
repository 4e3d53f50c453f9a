"""The streaming data path: shards by file, samples equal to the in-memory path's, batches that do not
depend on how many processes decode or how far ahead, an exact resume position, bad files named once,
memory-mapped arrays and videos, and the choice between the two paths."""
import logging
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_data_video import _write_video

import downpour.data.estimate as estimate
import downpour.data.pipeline as pipeline
from downpour.analysis.report_notes import data_note
from downpour.config import ConfigError, DataConfig, load_config
from downpour.data import build_dataset
from downpour.data.loader import StreamBatches, epoch_order, loader_shape
from downpour.data.pipeline import open_data
from downpour.data.telemetry import run_data_info
from downpour.data.estimate import Held, held_bytes
from downpour.data.stream import StreamingData, list_items, open_stream
from downpour.errors import DataError
from downpour.sandblaster.checks import check_sandblaster

pytestmark = pytest.mark.usefixtures("one_thread")


def _folder(root, n=20, bad=(), size=(24, 20), labels=False):
    """n RGB PNGs of distinct random content (``labels``: in class folders a/ and b/), and bad files."""
    rng = np.random.default_rng(0)
    for i in range(n):
        sub = root / ("ab"[i % 2] if labels else "")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(sub / f"im{i:03d}.png")
    for name in bad:
        (root / name).write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    return root


def _cfg(root, **kw):
    base = dict(source="folder", path=str(root), mode="crops", size=8, pipeline="stream", prefetch=4, loader_workers=0)
    return DataConfig(**{**base, **kw})


def _take(batches, n):
    return [next(batches) for _ in range(n)]


def _rows(x):
    """Rows of (N, ...) as a sorted list of byte strings: compare sets of samples, not their order."""
    return sorted(r.numpy().tobytes() for r in x)


@pytest.mark.parametrize("tile", [0, 10])
def test_one_pass_gives_exactly_the_in_memory_samples(tmp_path, tile):
    root = _folder(tmp_path, n=12, size=(24, 20))
    stream = open_data(_cfg(root, tile=tile), seed=0)
    memory = build_dataset(_cfg(root, tile=tile, pipeline="memory"), seed=0)
    per_item = 4 if tile else 1                    # a 24x20 image cut into 10x10 tiles gives 2x2
    assert isinstance(stream, StreamingData) and len(stream) == 12 and len(memory) == 12 * per_item
    batches = stream.batches(per_item * 12, torch.Generator().manual_seed(1))
    assert _rows(next(batches).x) == _rows(memory.x)          # every sample once, bit for bit


def test_shards_split_the_files_disjointly_after_one_seeded_shuffle(tmp_path):
    root = _folder(tmp_path, n=21)
    data = open_data(_cfg(root), seed=0)
    shards = [data.shard(w, 3).items for w in range(3)]
    assert [len(s) for s in shards] == [7, 7, 7]
    assert sorted(f for s in shards for f in s) == sorted(str(p) for p in root.glob("*.png"))
    assert list(data.items) != sorted(data.items)              # shuffled, so each shard is a fair sample
    assert list(open_data(_cfg(root), seed=0).items) == list(data.items)
    with pytest.raises(ValueError, match="cannot split 21 files into 22 shards"):
        data.shard(0, 22)


def test_by_label_split_gives_each_worker_its_own_classes(tmp_path):
    root = _folder(tmp_path, n=20, labels=True)
    data = open_data(_cfg(root, labels=True, split="by-label"), seed=0)
    halves = [set(data.shard(w, 2).labels.tolist()) for w in range(2)]
    assert halves == [{0}, {1}] and data.info["classes"] == ["a", "b"]
    y = next(data.shard(1, 2).batches(6, torch.Generator().manual_seed(0))).y
    assert y.tolist() == [1] * 6


def test_batches_do_not_depend_on_loader_processes_or_prefetch(tmp_path):
    root = _folder(tmp_path, n=15, bad=["bad.png"])
    kw = dict(normalize="patch", whiten="zca", shift=1, flip=True, fit_sample=6)
    runs = []
    for workers, prefetch in [(0, 1), (1, 4), (2, 64)]:
        data = open_data(_cfg(root, loader_workers=workers, prefetch=prefetch, **kw), seed=3).shard(1, 2)
        batches = data.batches(5, torch.Generator().manual_seed(9))
        runs.append(torch.cat([b.x for b in _take(batches, 7)]))   # 35 samples: past the end of the 8-file shard
        batches.close()
    assert all(torch.equal(runs[0], r) for r in runs[1:])
    other = open_data(_cfg(root, **kw), seed=3).shard(1, 2).batches(5, torch.Generator().manual_seed(10))
    assert not torch.equal(runs[0][:5], next(other).x)          # the generator's seed does reach the stream


def test_a_stream_continues_exactly_from_its_position_even_inside_an_item(tmp_path):
    root = _folder(tmp_path, n=9, size=(24, 20))
    data = open_data(_cfg(root, tile=10, shift=1), seed=0)         # 4 samples per item, batches of 3
    whole = data.batches(3, torch.Generator().manual_seed(5))
    first = _take(whole, 5)
    position = whole.position()
    assert position["skip"] == 15 and position["batch"] == 5     # 15 samples of the first block (all 9 items) used
    resumed = data.batches(3, torch.Generator().manual_seed(5), position=position)
    for a, b in zip(_take(whole, 12), _take(resumed, 12)):      # into the next epochs too
        assert torch.equal(a.x, b.x)
    assert all(b.x.shape == (3, 1, 8, 8) for b in first)


def _greys(root, n=10):
    """n flat 64x64 images, image i of grey level 20 i + 10: a sample's pixel says which image it is from."""
    root.mkdir(exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((64, 64), 20 * i + 10, np.uint8)).save(root / f"im{i}.png")
    return root


def _sources(x):
    return len(np.unique(np.round(x[:, 0, 0, 0].numpy() * 255)))


@pytest.mark.parametrize("cut", [dict(mode="patches", samples=1000), dict(mode="crops", tile=8)])
def test_a_batch_mixes_images_as_the_in_memory_path_does_not_one_images_patches(tmp_path, cut):
    """An image gives many samples (100 patches each, or 64 tiles): handed out in a row, every streamed
    batch of 32 came from one image, where an in-memory batch mixes about nine of the ten."""
    root = _greys(tmp_path / "greys")
    mixed = open_data(_cfg(root, **cut), seed=0).batches(32, torch.Generator().manual_seed(5))
    assert min(_sources(b.x) for b in _take(mixed, 6)) >= 7
    in_a_row = open_data(_cfg(root, mix_items=1, **cut), seed=0).batches(32, torch.Generator().manual_seed(5))
    assert max(_sources(b.x) for b in _take(in_a_row, 3)) <= 2          # the old order, still reachable


def test_a_stream_continues_exactly_from_inside_a_block_and_from_a_half_gathered_one(tmp_path):
    root = _folder(tmp_path, n=10, size=(24, 20))
    data = open_data(_cfg(root, tile=10, mix_items=3), seed=0)   # 4 samples per item: blocks of 12, the last 4
    for size, after, skip in [(5, 3, 3), (12, 1, 0)]:             # 15 samples: 3 of the 2nd block; 12: none of it
        whole = data.batches(size, torch.Generator().manual_seed(5))
        _take(whole, after)
        position = whole.position()
        assert (position["index"], position["skip"]) == (3, skip)     # the block of the 4th to 6th items
        resumed = data.batches(size, torch.Generator().manual_seed(5), position=position)
        for a, b in zip(_take(whole, 12), _take(resumed, 12)):     # across blocks and epochs
            assert torch.equal(a.x, b.x)
        whole.close()


def test_a_stream_resumed_and_checkpointed_before_its_first_batch_keeps_its_place(tmp_path):
    """A simulated worker's position is saved at every push checkpoint, drawn from or not: a stream resumed at
    (block, skip 15) and saved again before its first batch said skip 0, and the next resume handed the 15
    samples out again (a kill, a resume, a kill before that worker drew, a resume: another model)."""
    root = _folder(tmp_path, n=10, size=(24, 20))
    data = open_data(_cfg(root, tile=10, mix_items=4), seed=0)       # 4 samples per item: blocks of 16
    whole = data.batches(5, torch.Generator().manual_seed(5))
    reference = _take(whole, 10)
    first = data.batches(5, torch.Generator().manual_seed(5))
    _take(first, 3)
    position = first.position()
    assert (position["index"], position["skip"]) == (0, 15)
    again = data.batches(5, torch.Generator().manual_seed(5), position=position).position()
    assert again == position                                      # saved before it handed anything out
    resumed = data.batches(5, torch.Generator().manual_seed(5), position=again)
    assert all(torch.equal(a.x, b.x) for a, b in zip(reference[3:], _take(resumed, 7)))


def test_a_resumed_block_that_gives_no_sample_takes_its_skip_with_it(tmp_path):
    """The resumed block's files became unreadable before the resume: its skip (15) was applied to the next
    block, whose first 15 samples were lost, and saved again with the next position."""
    root = _folder(tmp_path, n=10, size=(24, 20))
    data = open_data(_cfg(root, tile=10, mix_items=4), seed=0)       # 4 samples per item: blocks of 16
    reference = torch.cat([b.x for b in _take(data.batches(5, torch.Generator().manual_seed(5)), 8)])
    first = data.batches(5, torch.Generator().manual_seed(5))
    _take(first, 3)
    position = first.position()
    assert (position["index"], position["skip"]) == (0, 15)
    for k in epoch_order(len(data), first.seed, 0)[:4]:              # block 0's files, unreadable now
        (root / data.items[k]).write_bytes(b"not a png")
    resumed = data.batches(5, torch.Generator().manual_seed(5), position=position)
    assert torch.equal(next(resumed).x, reference[16:21])             # block 1 from its start


def test_a_file_skipped_once_and_read_later_is_no_longer_counted_as_skipped(tmp_path):
    """A folder briefly unreadable (unmounted, a file rewritten): its files were named skipped for the whole run,
    in data.json and the report, though every one of them trained later (171 of 384 after an outage, an audit)."""
    root = _folder(tmp_path, n=6, bad=["late.png"])
    data = open_data(_cfg(root), seed=0)
    batches = data.batches(1, torch.Generator().manual_seed(0))
    _take(batches, 6)                                            # a pass: late.png is skipped
    assert [e["file"] for e in batches.report()["skipped"]] == [str(root / "late.png")]
    Image.fromarray(np.zeros((20, 24, 3), dtype=np.uint8)).save(root / "late.png")
    _take(batches, 21)                                           # three more passes: it is read now
    report = batches.report()
    assert report["skipped"] == [] and report["n_skipped"] == 0 and report["recovered"] == [str(root / "late.png")]
    total = run_data_info(data.info, [report])
    assert total["n_skipped"] == 0 and total["skipped"] == [] and total["recovered"] == [str(root / "late.png")]
    assert "1 file unreadable for a while and read later (first: " in data_note(total)


def test_past_twenty_skipped_files_the_log_says_the_rest_are_in_data_json(tmp_path, caplog):
    root = _folder(tmp_path, n=4, bad=[f"bad{i:02d}.png" for i in range(30)])
    with caplog.at_level(logging.WARNING, logger="downpour.data"):
        batches = open_data(_cfg(root), seed=0).batches(4, torch.Generator().manual_seed(0))
        _take(batches, 2)
    assert batches.report()["n_skipped"] == 30                       # every one recorded
    assert sum(m.startswith("skipped ") for m in caplog.messages) == 20
    assert sum("any more are not logged one by one (data.json names every one)" in m for m in caplog.messages) == 1


def test_bad_files_are_skipped_named_once_per_worker_and_counted(tmp_path, caplog):
    root = _folder(tmp_path, n=10, bad=["bad1.png", "bad2.png"])
    (root / "empty.png").write_bytes(b"")
    data = open_data(_cfg(root), seed=0)
    with caplog.at_level(logging.WARNING, logger="downpour.data"):
        streams = [data.shard(w, 2).batches(4, torch.Generator().manual_seed(w)) for w in range(2)]
        for s in streams:
            _take(s, 9)                                          # 36 samples: 5-6 passes over each shard
    reports = [s.report() for s in streams]
    bad = {str(root / n) for n in ("bad1.png", "bad2.png", "empty.png")}
    named = [e["file"] for r in reports for e in r["skipped"]]
    assert sorted(named) == sorted(bad)                          # each once, by the worker that owns it
    for w, r in enumerate(reports):
        assert {e["file"] for e in r["skipped"]} == bad & set(data.shard(w, 2).items)
        assert r["max_reads"] >= 5 and r["samples"] == 36     # read again every pass, named only the first time
    assert sum("skipped" in m for m in caplog.messages) == 3
    total = run_data_info(data.info, reports)
    assert total["n_skipped"] == 3 and total["reads"] == sum(r["reads"] for r in reports)


def test_files_skipped_by_the_fitting_sample_are_logged_by_the_driver_once_not_again_by_their_worker(tmp_path, caplog):
    """The driver's fitting sample (data.fit_sample) recorded its unreadable files in data.json and the count, but never
    logged them: a short streamed run named 4 of its 6 skipped files in the log (its workers' own), counted 6."""
    root = _folder(tmp_path, n=10, bad=["bad1.png", "bad2.png"])
    with caplog.at_level(logging.WARNING, logger="downpour.data"):
        data = open_data(_cfg(root, normalize="patch"), seed=0)       # fitted: the sample reads every file
        fitted = data.info["fit_sample"]["skipped"]
        assert {e["file"] for e in fitted} == {str(root / "bad1.png"), str(root / "bad2.png")}
        assert sorted(m for m in caplog.messages if m.startswith("skipped ")) == sorted(
            f"skipped {e['file']}: {e['reason']}" for e in fitted)   # as a worker's are said
        streams = [data.shard(w, 2).batches(4, torch.Generator().manual_seed(w)) for w in range(2)]
        for s in streams:
            _take(s, 6)                                          # every file of each share read, the bad ones too
    reports = [s.report() for s in streams]
    assert sum(r["n_skipped"] for r in reports) == 2             # each worker records its own ...
    assert sum(m.startswith("skipped ") for m in caplog.messages) == 2   # ... and says none the driver said
    assert run_data_info(data.info, reports)["n_skipped"] == 2


def test_a_shard_of_only_bad_files_is_an_error_not_an_endless_loop(tmp_path):
    root = _folder(tmp_path, n=1, bad=["x.png", "y.png", "z.png"])
    data = open_data(_cfg(root), seed=0)
    only_bad = next(w for w in range(2) if str(root / "im000.png") not in data.shard(w, 2).items)
    with pytest.raises(DataError, match=f"none of the 2 items of worker {only_bad}'s shard \\(2 workers\\)"):
        next(data.shard(only_bad, 2).batches(2, torch.Generator().manual_seed(0)))


def test_a_shard_of_only_bad_files_says_what_to_do_as_a_resume_keeps_its_workers(tmp_path):
    """The error says what to do, as a resume keeps its workers (after "--resume RUN goes on from it" alone, a resume
    meets it again): a by-label split of more files than data.fit_sample puts a class of unreadable files there."""
    root = _folder(tmp_path, n=1, bad=["x.png", "y.png", "z.png"])
    data = open_data(_cfg(root), seed=0)
    only_bad = next(w for w in range(2) if str(root / "im000.png") not in data.shard(w, 2).items)
    with pytest.raises(DataError, match="a resumed run keeps its workers: remove the 2 unreadable files from data.path "
                                        r"\(data.json names them\) .* or start a new run with fewer workers$"):
        next(data.shard(only_bad, 2).batches(2, torch.Generator().manual_seed(0)))


def _share_without(data, good, workers=2):
    """The worker of ``workers`` whose share holds none of the files ``good``, and its share's first batch."""
    w = next(w for w in range(workers) if not set(map(str, good)) & set(data.shard(w, workers).items))
    return w, lambda: next(data.shard(w, workers).batches(2, torch.Generator().manual_seed(0)))


def test_a_shard_of_only_images_smaller_than_the_patch_names_data_size_not_unreadable_files(tmp_path):
    """A worker's share of 4x4 images under data.size = 8 (patches) was "none of the 2 items ... can be read", and
    told to remove "the unreadable files": they read, and are too small for the patch, which data.size sets."""
    _folder(tmp_path, n=1, size=(40, 40))
    for name in ("s1.png", "s2.png", "s3.png"):
        Image.new("L", (4, 4), 90).save(tmp_path / name)
    data = open_data(_cfg(tmp_path, mode="patches", samples=8), seed=0)
    w, first_batch = _share_without(data, [tmp_path / "im000.png"])
    with pytest.raises(DataError) as err:
        first_batch()
    said = str(err.value)
    assert said.startswith(f"none of the 2 items of worker {w}'s shard (2 workers) gives a sample: they are images "
                           f"smaller than the 8x8 patch (data.size = 8) (first: {tmp_path}{os.sep}s")
    assert ".png: 4x4 image is smaller than the 8x8 patch); " in said and "unreadable" not in said
    assert said.endswith("a resumed run keeps its workers and data.size: remove the 2 images smaller than the patch from "
                         "data.path (data.json names them) and resume while as many files as workers remain, or start "
                         "a new run with a lower data.size, data.mode = 'crops' or fewer workers")


def test_a_shard_mixing_images_smaller_than_the_patch_with_corrupt_files_counts_each_kind(tmp_path):
    """A worker's share of one 4x4 image under data.size = 8 and one corrupt file is refused by kind, in the words of
    the before-run refusal (ps.setup.unreadable_share): not "none of the 2 items ... can be read", told to remove
    "the unreadable files", and nothing of data.size."""
    _folder(tmp_path, n=2, size=(40, 40), bad=["x.png"])
    Image.new("L", (4, 4), 90).save(tmp_path / "s1.png")
    good = {str(tmp_path / "im000.png"), str(tmp_path / "im001.png")}
    for seed in range(20):        # a seed whose shuffle puts both good files in one share of two
        data = open_data(_cfg(tmp_path, mode="patches", samples=8), seed=seed)
        if (w := next((w for w in range(2) if not good & set(data.shard(w, 2).items)), None)) is not None:
            break
    assert sorted(data.shard(w, 2).items) == [str(tmp_path / "s1.png"), str(tmp_path / "x.png")]
    with pytest.raises(DataError) as err:
        next(data.shard(w, 2).batches(2, torch.Generator().manual_seed(0)))
    said = str(err.value)
    assert said.startswith(f"none of the 2 items of worker {w}'s shard (2 workers) gives a sample: they are images "
                           "smaller than the 8x8 patch (data.size = 8) or files that cannot be read (first: ")
    assert said.endswith("a resumed run keeps its workers and data.size: remove the 1 image smaller than the patch and "
                         "1 unreadable file from data.path (data.json names them) and resume while as many files as "
                         "workers remain, or start a new run with a lower data.size, data.mode = 'crops' or fewer "
                         "workers")


def test_a_shard_of_links_to_nothing_names_where_they_point_and_promises_no_resume_as_is(tmp_path):
    """A worker's share of symbolic links whose targets are missing was "their files are gone from data.path ...;
    resume the run once they are back": the links are there, only what they point to is not, and a resume with
    nothing changed stops alike."""
    _folder(tmp_path, n=1)
    for name in ("l1.png", "l2.png", "l3.png"):
        os.symlink(tmp_path / "unplugged" / name, tmp_path / name)
    data = open_data(_cfg(tmp_path), seed=0)
    w, first_batch = _share_without(data, [tmp_path / "im000.png"])
    with pytest.raises(DataError) as err:
        first_batch()
    said = str(err.value)
    assert "gone" not in said and "once they are back" not in said
    first = re.search(r"\(first: (\S+): FileNotFoundError: a symbolic link to '(\S+)', which is not there\)", said)
    assert first and first.group(2) == str(tmp_path / "unplugged" / Path(first.group(1)).name)
    assert said.startswith(f"none of the 2 items of worker {w}'s shard (2 workers) can be read: they are symbolic links "
                           "to files that are not there (first: ")
    assert said.endswith("; put back what they point to (a resume stops here alike until then), or remove the links "
                         "from data.path (data.json names them) and resume while as many files as workers remain, or "
                         "start a new run with fewer workers")


def test_a_local_stream_of_only_images_smaller_than_the_patch_says_so_when_it_trains(tmp_path):
    """With nothing to fit (data.normalize and data.whiten 'none') no image is read before training: its first pass
    finds only 4x4 images under data.size = 8, and says so (not "none of the 3 items of this stream can be read")."""
    for name in ("s1.png", "s2.png", "s3.png"):
        Image.new("L", (4, 4), 90).save(tmp_path / name)
    data = open_data(_cfg(tmp_path, mode="patches", samples=8, whiten="none", normalize="none"), seed=0)
    with pytest.raises(DataError) as err:
        next(data.batches(2, torch.Generator().manual_seed(0)))
    said = str(err.value)
    assert said.startswith("none of the 3 items of this stream gives a sample: they are images smaller than the 8x8 "
                           f"patch (data.size = 8) (first: {tmp_path}{os.sep}s")
    assert said.endswith("a resumed run keeps data.size: start a new run with a lower data.size or data.mode = 'crops'")


def test_a_stream_whose_images_are_all_smaller_than_the_patch_names_data_size_not_a_bad_file(tmp_path):
    """A folder of 24x20 images and one corrupt file under data.size = 32 is told no patch can be cut, as in memory,
    not of the corrupt file alone ("first bad: a.png: UnidentifiedImageError"), as if it were the cause."""
    root = _folder(tmp_path, n=3, bad=["a.png"])       # sorts first: the sample's first skip
    with pytest.raises(DataError, match=r"\(first bad: .*im00\d.png: 24x20 image is smaller than the 32x32 "
                                        r'patch\); lower data.size or use mode = "crops"$'):
        open_data(_cfg(root, mode="patches", size=32, normalize="patch"), seed=0)


@pytest.mark.parametrize("outage", ["folder moved", "files deleted"])
def test_a_folder_gone_mid_run_is_named_as_gone_not_as_one_bad_file(tmp_path, outage):
    """After an outage the error says the folder is gone: naming only the first file and its FileNotFoundError, it
    would read as one bad image."""
    root = _folder(tmp_path / "photos", n=4)
    batches = open_data(_cfg(root), seed=0).batches(2, torch.Generator().manual_seed(0))
    _take(batches, 2)
    if outage == "folder moved":
        root.rename(tmp_path / "elsewhere")
    else:
        for f in root.iterdir():
            f.unlink()
    said = "no longer exists" if outage == "folder moved" else "their files are gone from data.path"
    with pytest.raises(DataError, match=f"none of the 4 items of this stream can be read: .*{said}.*resume"):
        _take(batches, 40)


def test_files_gone_beside_a_bad_one_that_stayed_are_named_as_gone_and_the_bad_one_counted_apart(tmp_path):
    """The message named the bad file that stayed, "(first: bad.png: UnidentifiedImageError ...)": one bad image."""
    root = _folder(tmp_path / "photos", n=6, bad=["bad.png"])
    batches = open_data(_cfg(root), seed=0).batches(2, torch.Generator().manual_seed(0))
    _take(batches, 6)
    for f in root.glob("im*.png"):
        f.unlink()
    with pytest.raises(DataError) as err:
        _take(batches, 60)
    said = str(err.value)
    assert said.startswith(f"none of the 7 items of this stream can be read: 6 of their files are gone from data.path "
                           f"{str(root)!r} (first: {root / 'im0'}")
    assert said.endswith(f"resume the run once they are back; 1 more is there and cannot be read ({root / 'bad.png'}: "
                         f"UnidentifiedImageError: cannot identify image file {str(root / 'bad.png')!r})")


def test_a_fitting_sample_of_only_bad_files_names_the_first_as_file_and_reason(tmp_path):
    """Not the skip record, a Python dict."""
    root = _folder(tmp_path, n=0, bad=["x.png", "y.png"])
    with pytest.raises(DataError, match=r"first bad: \S+x\.png: \w+Error") as err:
        open_data(_cfg(root, normalize="patch"), seed=0)
    assert "{" not in str(err.value)


def test_a_channels_last_npy_to_stream_gets_the_hint_the_in_memory_one_gets(tmp_path):
    np.save(tmp_path / "hwc.npy", np.zeros((4, 8, 8, 3), np.float32))
    with pytest.raises(DataError, match=r"channels last\? store it as \(N, C, H, W\)"):
        open_data(DataConfig(source="array", path=str(tmp_path / "hwc.npy"), mode="crops", size=8, pipeline="stream"),
                  seed=0)


def test_a_shard_with_one_good_file_among_bad_ones_streams_on(tmp_path):
    """One readable file, three corrupt: the end of one epoch and the start of the next (another order)
    can hold four barren items in a row; that is not a whole pass without a sample."""
    root = _folder(tmp_path, n=1, bad=["x.png", "y.png", "z.png"])
    data = open_data(_cfg(root), seed=0)
    for seed in range(6):
        batches = data.shard(0, 1).batches(1, torch.Generator().manual_seed(seed))
        assert all(next(batches).x.shape[0] == 1 for _ in range(12))


def test_prefetch_bounds_what_the_loader_has_in_flight():
    assert loader_shape(prefetch=256, workers=1, batch_size=32) == (32, 8)     # 256 items in flight
    assert loader_shape(prefetch=4, workers=1, batch_size=32) == (4, 1)
    assert loader_shape(prefetch=64, workers=2, batch_size=100) == (32, 1)
    for prefetch, workers, batch in [(1, 3, 8), (7, 2, 5), (1000, 4, 64)]:
        chunk, ahead = loader_shape(prefetch, workers, batch)
        assert chunk <= batch and max(1, workers) * ahead * chunk <= max(prefetch, max(1, workers) * chunk)


def test_epochs_visit_every_item_once_in_a_new_order():
    orders = [epoch_order(10, 7, e) for e in range(3)]
    assert all(sorted(o) == list(range(10)) for o in orders)
    assert not np.array_equal(orders[0], orders[1])


def test_a_memory_mapped_npy_streams_its_rows(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (30, 12, 12), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    cfg = DataConfig(source="array", path=str(tmp_path / "x.npy"), mode="crops", size=12, pipeline="stream",
                     loader_workers=1)
    data = open_data(cfg, seed=0)
    assert isinstance(data.items, range) and data.shard(1, 3).items == range(10, 20)   # contiguous rows
    rows = next(data.shard(1, 3).batches(10, torch.Generator().manual_seed(0))).x
    assert _rows(rows) == _rows(torch.from_numpy(x[10:20, None].astype(np.float32) / 255))
    with pytest.raises(ConfigError, match="memory-maps a .npy"):
        np.savez(tmp_path / "x.npz", x=x)
        open_data(DataConfig(source="array", path=str(tmp_path / "x.npz"), pipeline="stream"), seed=0)


def test_a_npy_of_complex_numbers_is_refused_before_any_row_is_read(tmp_path):
    """Accepted as "numeric", it would be skipped row by row: a million rows, a million warnings."""
    np.save(tmp_path / "cx.npy", np.ones((6, 8, 8), np.complex64))
    cfg = DataConfig(source="array", path=str(tmp_path / "cx.npy"), mode="crops", size=8, pipeline="stream",
                     normalize="none", whiten="none", loader_workers=0)
    with pytest.raises(DataError, match=r"cx.npy: x has dtype complex64"):
        open_data(cfg, seed=0)


def test_a_file_name_that_is_not_utf8_streams(tmp_path):
    """Linux names are bytes; one that is not UTF-8 reaches Python with surrogates, which the listing's
    fingerprint could not encode: every streamed run over such a folder died before its first step."""
    root = _folder(tmp_path / "f", n=6)
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(os.fsdecode(bytes(root) + b"/caf\xe9.png"), format="PNG")
    x = next(open_data(_cfg(root), seed=0).batches(7, torch.Generator().manual_seed(0))).x
    assert x.shape[0] == 7


def test_a_video_folder_streams_frames_per_video_like_the_paper(tmp_path):
    for i in range(4):
        _write_video(tmp_path / f"v{i}.mp4", n_frames=8, size=16)
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    cfg = DataConfig(source="video", path=str(tmp_path), frames_per_video=2, mode="crops", size=8, pipeline="stream",
                     loader_workers=0)
    data = open_data(cfg, seed=0)
    batches = data.batches(8, torch.Generator().manual_seed(0))
    x = next(batches).x
    memory = build_dataset(DataConfig(**{**cfg.__dict__, "pipeline": "memory"}), seed=0)
    assert _rows(x) == _rows(memory.x)                           # 2 frames of each of the 4 good videos
    assert [e["file"] for e in batches.report()["skipped"]] == [str(tmp_path / "broken.mp4")]


def test_normalisation_is_fitted_on_a_seeded_sample_of_fit_sample_items(tmp_path):
    root = _folder(tmp_path, n=30)
    a = open_data(_cfg(root, normalize="ufldl", fit_sample=8), seed=0)
    b = open_data(_cfg(root, normalize="ufldl", fit_sample=8), seed=0)
    c = open_data(_cfg(root, normalize="ufldl", fit_sample=20), seed=0)
    assert a.info["fit_sample"]["items"] == 8 and c.info["fit_sample"]["items"] == 20
    assert a.preprocess.stats == b.preprocess.stats != c.preprocess.stats
    x = next(a.batches(16, torch.Generator().manual_seed(0))).x
    assert 0.1 <= float(x.min()) and float(x.max()) <= 0.9      # ufldl's range: applied per batch
    plain = open_data(_cfg(root), seed=0)
    assert plain.info["fit_sample"] == {"items": 0}              # nothing to fit: the driver reads no image
    with pytest.raises(DataError, match="data.fit_sample = 1: its 1 item.*'zca' needs at least 2; raise data.fit"):
        open_data(_cfg(root, normalize="ufldl", whiten="zca", fit_sample=1), seed=0)   # too small, not bad files
    # one sample is enough for a normalisation (as one image's crop is in memory): the sample asked for
    assert open_data(_cfg(root, normalize="ufldl", fit_sample=1), seed=0).info["fit_sample"]["samples"] == 1


def test_auto_streams_only_what_would_not_fit_in_memory(tmp_path, monkeypatch):
    root = _folder(tmp_path, n=10, size=(24, 20))
    auto = DataConfig(source="folder", path=str(root), mode="crops", size=8)
    data = open_data(auto, seed=0)
    assert data.info["pipeline"] == "memory" and "estimate_mb" in data.info["chosen"]
    assert held_bytes(auto, list_items(auto)) == Held(10 * 8 * 8 * 4, 480 * 4)    # 10 crops kept, one image decoded
    monkeypatch.setattr(pipeline, "STREAM_ABOVE", 1000)
    assert open_data(auto, seed=0).info["pipeline"] == "stream"
    assert open_data(DataConfig(source="folder", path=str(root), pipeline="memory"), seed=0).info["pipeline"] == "memory"
    assert open_data(DataConfig(source="digits", mode="crops"), seed=0).info["pipeline"] == "memory"
    assert isinstance(open_data(auto, seed=0, stream_ok=False).x, torch.Tensor)   # Sandblaster keeps it in memory
    opened = []
    monkeypatch.setattr(estimate, "_probe", lambda cfg, path: opened.append(path) or (480, 1))
    for n in (3, 31, 1000):      # the estimate reads at most 16 headers, spread over the list (31 read 31)
        opened.clear()
        estimate.estimate_bytes(auto, pipeline.Listing([str(k) for k in range(n)], None))
        assert len(opened) == min(n, 16) and opened[0] == "0" and opened[-1] == str(n - 1)


def test_stream_is_refused_where_it_cannot_work(tmp_path):
    with pytest.raises(ConfigError, match="built-in source 'natural'"):
        open_data(DataConfig(pipeline="stream"), seed=0)
    root = _folder(tmp_path, n=4)
    with pytest.raises(ConfigError, match="sandblaster"):
        open_data(_cfg(root), seed=0, stream_ok=False)
    cfg = load_config("ufldl-sae", ["cluster.runner=simulated", "cluster.algorithm=sandblaster", "data.source=folder",
                                    f"data.path={root}", "data.pipeline=stream"])
    with pytest.raises(ConfigError, match="data.pipeline = 'memory'"):
        check_sandblaster(cfg)


def test_a_shard_crosses_to_a_process_as_its_file_list_only(tmp_path):
    import pickle

    root = _folder(tmp_path, n=40)
    shard = open_data(_cfg(root, normalize="patch"), seed=0).shard(0, 2)
    blob = pickle.dumps(shard)
    assert len(blob) < 20 * 40 * 100 and isinstance(shard.batches(4, torch.Generator()), StreamBatches)
    again = pickle.loads(blob)
    assert list(again.items) == list(shard.items) and again.preprocess.stats == shard.preprocess.stats
    assert isinstance(open_stream(_cfg(root), 0), StreamingData)


def test_the_loader_may_change_on_resume_but_not_what_is_read():
    from downpour.resume_checks import check_resume

    saved = load_config("ufldl-sae", ["data.pipeline=stream"])
    check_resume(saved, load_config("ufldl-sae", ["data.pipeline=stream", "data.prefetch=8", "data.loader_workers=3"]))
    with pytest.raises(ConfigError, match="data.fit_sample"):
        check_resume(saved, load_config("ufldl-sae", ["data.pipeline=stream", "data.fit_sample=5"]))


@pytest.mark.parametrize("normalize, whiten", [("patch", "none"), ("ufldl", "spectral"), ("none", "spectral")])
def test_a_folder_of_one_image_trains_in_crops_streamed_as_in_memory(tmp_path, normalize, whiten):
    """One 24x20 image, crops: the in-memory path trained on its one sample, the stream refused it ('fitting
    data.normalize / data.whiten needs at least 2'), though these fits are defined on one sample."""
    root = _folder(tmp_path, n=1)
    kept = _cfg(root, normalize=normalize, whiten=whiten, fit_sample=1000)
    streamed = next(open_data(kept, seed=0).batches(3, torch.Generator().manual_seed(0))).x
    held = open_data(_memory(kept), seed=0)
    assert held.x.shape == (1, 1, 8, 8) and torch.isfinite(streamed).all()     # (grey: the default)
    assert torch.allclose(streamed, held.x.expand(3, -1, -1, -1), atol=1e-5)     # its one sample, thrice


def test_a_folder_of_one_image_trains_the_same_model_streamed_as_in_memory(tmp_path):
    """Its every batch is one sample repeated on both paths, so the runs are the same bit for bit: the stream's
    fit drew its DataLoader's seed from torch's global RNG, which moved the model's initial weights (final loss
    80.63 streamed, 64.99 in memory, after 3 steps)."""
    from safetensors.torch import load_file

    from downpour.runners import train
    from downpour.train.rundir import RunDir

    root = _folder(tmp_path / "one", n=1)
    models = []
    for pipeline_ in ("memory", "stream"):
        cfg = load_config("ufldl-sae", ["data.source=folder", f"data.path={root}", "data.mode=crops", "data.size=8",
                                        f"data.pipeline={pipeline_}", "data.whiten=none", "data.normalize=patch",
                                        "train.batch_size=8", "train.steps=3", "train.tensorboard=false"])
        run = RunDir.create(tmp_path / pipeline_, cfg)
        train(cfg, run)
        models.append(load_file(str(run.path / "model.safetensors")))
    assert all(torch.equal(models[0][k], models[1][k]) for k in models[0])


@pytest.mark.parametrize("pipeline_", ["memory", "stream"])
def test_a_folder_of_one_image_is_refused_zca_alike_on_both_paths_naming_the_folder(tmp_path, pipeline_):
    """ZCA's covariance of one sample is zero: refused alike on both paths, naming the folder (not 'ZCA needs at least
    2 samples, got 1', naming nothing, in memory, and other words streamed). Not told to raise data.fit_sample, which
    cannot help."""
    root = _folder(tmp_path, n=1)
    cfg = _cfg(root, normalize="patch", whiten="zca")
    with pytest.raises(DataError, match=rf"'{root}': its 1 image file gave 1 sample, and fitting "
                                        r"data.whiten = 'zca' needs at least 2; .*data.whiten = 'spectral'") as err:
        open_data(cfg if pipeline_ == "stream" else _memory(cfg), seed=0)
    assert "raise data.fit_sample" not in str(err.value)
    assert open_data(_cfg(root, normalize="patch", tile=8, fit_sample=1000), seed=0).info["fit_sample"]["samples"] == 6


def _memory(cfg):
    """``cfg`` on the in-memory path (the stream's own keys back to their defaults: memory refuses them set)."""
    import dataclasses

    defaults = DataConfig()
    return dataclasses.replace(cfg, pipeline="memory", prefetch=defaults.prefetch, loader_workers=defaults.loader_workers,
                               fit_sample=defaults.fit_sample)

def test_a_data_samples_below_one_patch_per_image_is_warned_by_name(tmp_path, caplog):
    """The stream cuts max(1, round(samples / images)) patches per image: on 20 images data.samples = 3 and 9 were
    one run, bit for bit, 20 samples a pass (in memory: 3 or 9 patches), without a word."""
    root = _folder(tmp_path / "f")
    caplog.set_level("WARNING", logger="downpour.data.pipeline")
    few = [open_data(_cfg(root, mode="patches", samples=n), seed=0) for n in (3, 9)]
    assert [d.info["patches_per_image"] for d in few] == [1, 1]
    first = [next(d.shard(0, 1).batches(20, torch.Generator().manual_seed(1))).x for d in few]
    assert torch.equal(*first)                                    # the same stream whatever the lower value
    assert caplog.text.count("data.samples = ") == 2
    assert "data.samples = 3 is fewer than the stream cuts at one patch per image" in caplog.text
    assert "its 20 image files each pass, about 20 samples" in caplog.text
    caplog.clear()
    open_data(_cfg(root, mode="patches", samples=40), seed=0)     # 2 per image: what it asks for
    open_data(_cfg(root, mode="patches", samples=10), seed=0)     # (half a pass rounds up to one per image)
    assert "data.samples" not in caplog.text


def test_crops_of_an_image_smaller_than_the_size_are_counted_and_said_once_in_memory_streamed_and_resumed(tmp_path, caplog):
    """A 4x4 thumbnail among 24x20 photos trains as an 8x8 blur: it is counted and said once, in the log and
    data.json, alike in memory and streamed (a folder whose only readable file it is trains on it alone)."""
    from downpour.data.positions import position_problem

    root = _folder(tmp_path, n=5)
    Image.fromarray(np.full((4, 4, 3), 128, np.uint8)).save(root / "tiny.png")
    small = [{"file": str(root / "tiny.png"), "size": "4x4"}]
    with caplog.at_level(logging.WARNING, logger="downpour.data"):
        memory = build_dataset(_cfg(root, pipeline="memory"), seed=0).info
    said = [m for m in caplog.messages if "smaller than data.size = 8" in m]
    assert memory["n_upscaled"] == 1 and memory["upscaled"] == small
    assert len(said) == 1 and "enlarged 1 file smaller than" in said[0] and "tiny.png (4x4)" in said[0]
    caplog.clear()
    stream = open_data(_cfg(root), seed=0)
    with caplog.at_level(logging.WARNING, logger="downpour.data"):
        batches = stream.batches(4, torch.Generator().manual_seed(0))
        _take(batches, 5)                                   # 20 samples: 3 passes, the thumbnail read each
    streamed = run_data_info(stream.info, [batches.report()])
    assert streamed["n_upscaled"] == 1 and streamed["upscaled"] == small
    assert sum("smaller than data.size = 8" in m and "tiny.png (4x4)" in m for m in caplog.messages) == 1
    position = batches.position()
    assert position["upscaled"] == [[str(root / "tiny.png"), "4x4"]] and not position_problem(position)
    assert stream.batches(4, torch.Generator().manual_seed(0), position=position).report()["upscaled"] == small
    (root / "tiny.png").unlink()
    assert "n_upscaled" not in build_dataset(_cfg(root, pipeline="memory"), seed=0).info   # only what happened


def test_tiles_smaller_than_the_size_name_the_tiles_not_the_file_as_smaller(tmp_path, caplog):
    """data.tile = 4 under data.size = 8: every 24x20 photo's 4x4 tiles are enlarged; the warning and data.json called
    each photo 'smaller than data.size = 8' by its 24x20, and told to lower data.size or leave the files out."""
    root = _folder(tmp_path, n=2)
    tiled = [{"file": str(root / f"im00{i}.png"), "size": "24x20 in 4x4 tiles"} for i in range(2)]
    with caplog.at_level(logging.WARNING, logger="downpour.data"):
        memory = build_dataset(_cfg(root, pipeline="memory", tile=4, whiten="none"), seed=0).info
    assert memory["upscaled"] == tiled
    said = [m for m in caplog.messages if "crops mode enlarged" in m]
    assert len(said) == 1 and "the 4x4 tiles (data.tile) of 2 files, smaller than data.size = 8," in said[0]
    assert "raise data.tile to 8 or more" in said[0]
    caplog.clear()
    stream = open_data(_cfg(root, tile=4, whiten="none"), seed=0)
    with caplog.at_level(logging.WARNING, logger="downpour.data"):
        batches = stream.batches(4, torch.Generator().manual_seed(0))
        _take(batches, 2)
    assert sorted(run_data_info(stream.info, [batches.report()])["upscaled"], key=lambda e: e["file"]) == tiled
    assert any("the 4x4 tiles (data.tile) of a file" in m and "(24x20 in 4x4 tiles)" in m for m in caplog.messages)


def test_a_worker_whose_report_is_missing_is_named_in_the_run_data(tmp_path):
    """On Ray a lost worker's report is lost with it: the sums then leave out the files it read and skipped, and
    data.json says so: ``workers_unreported`` lists it, and none when every report came (else, 2 workers, worker 1
    killed: items_read 1501 of n_items 3003, n_skipped 1 where the console named 6 bad files, unexplained)."""
    root = _folder(tmp_path, n=10, bad=["bad1.png"])
    data = open_data(_cfg(root), seed=0)
    streams = [data.shard(w, 2).batches(4, torch.Generator().manual_seed(w)) for w in range(2)]
    for s in streams:
        _take(s, 2)
    reports = [s.report() for s in streams]
    assert run_data_info(data.info, [reports[0]])["workers_unreported"] == [1]
    assert "workers_unreported" not in run_data_info(data.info, reports)


def test_a_stopped_stream_none_of_whose_workers_reported_names_them_all_as_unreported(tmp_path):
    """A stop whose every worker missed the report's wait (on Ray: lost, or blocked past the 5 s): data.json has both
    ``workers`` and ``workers_unreported``, the sums 0 and ``skipped`` only what the driver's fitting sample skipped
    (else only the source's info, as if no worker had read a file, where the partial case names the missing ones);
    a run in memory (no reports to miss) is left as it is."""
    import json
    from types import SimpleNamespace

    from downpour.data.telemetry import record_stopped

    root = _folder(tmp_path / "data", n=10, bad=["bad1.png"])
    data = open_data(_cfg(root, fit_sample=20, normalize="patch"), seed=0)
    written = {}
    run = SimpleNamespace(path=tmp_path, write_json=lambda name, obj: written.update({name: json.loads(json.dumps(obj))}))
    record_stopped(run, data.cfg, data.info, lambda: [], 3, 10, KeyboardInterrupt(), 2)
    got = written["data.json"]
    assert got["workers"] == [] and got["workers_unreported"] == [0, 1]
    assert (got["reads"], got["samples"], got["items_read"]) == (0, 0, 0)
    assert [e["file"] for e in got["skipped"]] == [str(root / "bad1.png")] and got["n_skipped"] == 1
    assert got["stopped"]["step"] == 3
    memory = open_data(_cfg(root, pipeline="memory"), seed=0)
    assert "workers_unreported" not in run_data_info(memory.info, [None, None], 2)
