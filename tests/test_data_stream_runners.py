"""Streamed data under the runners: on the simulator and on a local Ray, with 2 workers and a folder
larger than the prefetch budget, each worker opens only its own files and the driver only its
fitting sample; bad files are named once; the simulator is bit for bit the same whatever the
loader's processes and prefetch; the local runner resumes its stream exactly, the simulator's
workers from where their streams stood (their reports go on).

Reads are counted below the code under test: ``tests/audit_reads/sitecustomize.py`` logs every
``open`` of a file under the data folder with the opening process's id, from Python's audit
hook. On PYTHONPATH before Ray starts, it runs in every Ray worker; here it is installed in-process
(the simulator's DataLoader processes are forked from this one and inherit it).
"""
import importlib.util
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from downpour.config import load_config
from downpour.data.stream import open_stream
from downpour.errors import DataError
from downpour.runners import train
from downpour.train.json_digest import rewrite_json
from downpour.train.rundir import RunDir

# its Ray is its own, started after `folder` put the read hook on the PYTHONPATH Ray's workers inherit
pytestmark = pytest.mark.own_ray
HOOK = Path(__file__).parent / "audit_reads"
BAD = ("broken.png", "empty.png", "truncated.png")
PREFETCH, BATCH = 4, 8
STREAM = ["data.source=folder", "data.mode=crops", "data.size=8", "data.pipeline=stream", f"data.prefetch={PREFETCH}",
          "data.fit_sample=8", "data.normalize=patch", "data.whiten=none", f"train.batch_size={BATCH}",
          "train.log_every=5", "train.tensorboard=false", "train.threads=1", "cluster.workers=2", "cluster.shards=2"]


@pytest.fixture(scope="module", autouse=True)
def folder(tmp_path_factory):
    """48 good 16x16 PNGs and 3 bad files (one per kind of bad), read-logged; before any Ray starts."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(48):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / f"im{i:02d}.png")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    (root / "empty.png").write_bytes(b"")
    good = (root / "im00.png").read_bytes()
    (root / "truncated.png").write_bytes(good[:len(good) // 2])
    log = tmp_path_factory.mktemp("reads") / "reads.log"
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "DOWNPOUR_READ_ROOT", "DOWNPOUR_READ_LOG")}
    os.environ.update({"PYTHONPATH": os.pathsep.join(filter(None, [str(HOOK), saved["PYTHONPATH"]])),
                       "DOWNPOUR_READ_ROOT": str(root), "DOWNPOUR_READ_LOG": str(log)})
    spec = importlib.util.spec_from_file_location("audit_reads_hook", HOOK / "sitecustomize.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    yield root, log
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _reads(log):
    """{pid: Counter(file -> opens)} from the log, which is then emptied for the next run."""
    out = defaultdict(Counter)
    for line in log.read_text().splitlines() if log.exists() else []:
        pid, path = line.split("\t")
        out[int(pid)][path] += 1
    log.write_text("")
    return out


def _check_reads(run, cfg, reads, folder):
    """Each worker's files were opened by one process of its own and by no other; the driver opened
    only its fitting sample; each worker's own count matches the log; bad files named once."""
    root = folder
    shards = [set(open_stream(cfg.data, cfg.seed).shard(w, 2).items) for w in range(2)]
    driver = reads.pop(os.getpid(), Counter())
    assert sum(driver.values()) == 8                            # data.fit_sample, nothing else
    assert len(reads) == 2                                      # one DataLoader process per worker
    by_worker = {}
    for pid, opened in reads.items():
        owner = [w for w in range(2) if set(opened) == shards[w]]
        assert owner, f"process {pid} opened {len(set(opened) - shards[0])} files outside shard 0 and " \
                      f"{len(set(opened) - shards[1])} outside shard 1"
        by_worker[owner[0]] = opened
    assert set(by_worker) == {0, 1}                             # every file of each shard read, only by its worker
    info = run.read_json("data.json")
    bad = {str(root / n) for n in BAD}
    assert [e["file"] for e in info["skipped"]] and sorted(e["file"] for e in info["skipped"]) == sorted(bad)
    assert info["n_skipped"] == 3
    for report in info["workers"]:
        w, opened = report["worker"], by_worker[report["worker"]]
        assert report["items"] == len(shards[w]) and report["items_read"] == len(shards[w])
        # what the worker counted is what it opened, but for at most the prefetch still in flight at the end
        assert report["reads"] <= sum(opened.values()) <= report["reads"] + PREFETCH
        assert min(opened.values()) >= 2                        # past one pass: files are read again, not held
        assert sorted(e["file"] for e in report["skipped"]) == sorted(bad & shards[w])
    return by_worker


def _model(run):
    return load_file(str(run.path / "model.safetensors"))


def test_simulated_workers_read_only_their_own_files_bit_for_bit_whatever_the_loader(tmp_path, folder):
    root, log = folder
    _reads(log)
    runs = {}
    for name, loader in [("procs", ["data.loader_workers=1"]), ("inline", ["data.loader_workers=0", "data.prefetch=64"])]:
        cfg = load_config("ufldl-sae", [*STREAM, f"data.path={root}", "cluster.runner=simulated", "train.steps=40",
                                        'cluster.delay="exponential:2"', *loader])
        runs[name] = RunDir.create(tmp_path / name, cfg)
        train(cfg, runs[name])
        if name == "procs":
            _check_reads(runs[name], cfg, _reads(log), root)
    a, b = _model(runs["procs"]), _model(runs["inline"])
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert runs["procs"].metrics() and [r["loss"] for r in runs["procs"].metrics()] == \
        [r["loss"] for r in runs["inline"].metrics()]


def test_the_local_runner_resumes_its_stream_exactly(tmp_path, folder):
    root, _ = folder
    # denoising draws from torch's global RNG: the loader's start drew from it too, so the resume drifted
    base = [*STREAM, f"data.path={root}", "cluster.runner=local", "data.loader_workers=1", "data.shift=1",
            "objective.denoising=0.3"]
    whole_cfg = load_config("ufldl-sae", [*base, "train.steps=14"])
    whole = RunDir.create(tmp_path / "whole", whole_cfg)
    train(whole_cfg, whole)
    half_cfg = load_config("ufldl-sae", [*base, "train.steps=9"])     # 72 samples: 1.5 passes, mid-epoch
    half = RunDir.create(tmp_path / "half", half_cfg)
    train(half_cfg, half)
    train(whole_cfg, half, resume=True)
    a, b = _model(whole), _model(half)
    assert all(torch.equal(a[k], b[k]) for k in a)
    report = half.read_json("data.json")["workers"][0]
    assert report["batches"] == 14 and report["samples"] == 14 * BATCH   # the record goes on from the checkpoint's


@pytest.mark.parametrize("runner, recorded", [
    ("local", "checkpoint"), ("simulated", "checkpoint"),
    ("local", "data.json"), ("simulated", "data.json"),     # data.json: a checkpoint from before 2026-12-03
    ("simulated", "server")])        # the server checkpoint's own count: a Ray run's, which holds no stream positions
def test_a_resume_cuts_the_patches_per_image_the_run_began_with(tmp_path, folder, runner, recorded, monkeypatch, caplog):
    """The count is data.samples over the images (for videos, their frames): when what that gives changes between
    a checkpoint and its resume (a video rule changed twice, a folder's file count can), the stream went on cutting
    the new count, silently another run from the checkpoint on. A Ray run killed before it wrote its data.json
    has only its server checkpoint's count."""
    import json

    root, _ = folder
    base = [*STREAM, f"data.path={root}", f"cluster.runner={runner}", "data.mode=patches", "data.samples=102",
            "data.loader_workers=0"]                                   # 102 samples over 51 files: 2 per image
    whole_cfg, half_cfg = (load_config("ufldl-sae", [*base, f"train.steps={n}"]) for n in (12, 6))
    whole, half = RunDir.create(tmp_path / "whole", whole_cfg), RunDir.create(tmp_path / "half", half_cfg)
    train(whole_cfg, whole)
    train(half_cfg, half)
    checkpoint = half.path / "checkpoints" / ("local.json" if runner == "local" else "server.json")
    if recorded != "checkpoint":
        saved = json.loads(checkpoint.read_text())
        for position in [saved["data"]] if runner == "local" else [s["position"] for s in saved["streams"]]:
            del position["patches"]
        if recorded == "data.json" and runner == "simulated":
            del saved["patches_per_image"]
        rewrite_json(checkpoint, saved)
        if recorded == "server":
            (half.path / "data.json").unlink()
    monkeypatch.setattr("downpour.data.stream._frames_per_item", lambda cfg, items, seed: 2.0)   # the rule in force: 1
    with caplog.at_level("WARNING", logger="downpour.data.pipeline"):
        train(whole_cfg, half, resume=True)
    assert "resumed cutting the 2 patches per image it began with (data.samples over the image files now gives 1)" in caplog.text
    assert half.read_json("data.json")["patches_per_image"] == 2
    if runner == "local":                                             # bit for bit the run that never stopped
        a, b = _model(whole), _model(half)
        assert all(torch.equal(a[k], b[k]) for k in a)
    else:                                                             # the workers' own streams cut 2 (their positions)
        saved = json.loads(checkpoint.read_text())
        assert [s["position"]["patches"] for s in saved["streams"]] == [2, 2]
        assert saved["patches_per_image"] == 2                        # what a second resume on Ray reads: the cut


@pytest.mark.parametrize("damaged", ["x", 0, 2.5, True])
def test_a_damaged_patch_count_in_a_server_checkpoint_is_named(tmp_path, folder, damaged):
    """Not a bare ValueError ("x"), a DataError about fitting (0), or read as 2 (2.5)."""
    import json

    from downpour.train.checkpoint import CheckpointError

    root, _ = folder
    cfg = load_config("ufldl-sae", [*STREAM, f"data.path={root}", "cluster.runner=simulated", "data.mode=patches",
                                    "data.samples=102", "data.loader_workers=0", "train.steps=4"])
    run = RunDir.create(tmp_path / "r", cfg)
    train(cfg, run)
    checkpoint = run.path / "checkpoints" / "server.json"
    saved = json.loads(checkpoint.read_text())
    assert saved["patches_per_image"] == 2
    rewrite_json(checkpoint, saved, patches_per_image=damaged)
    with pytest.raises(CheckpointError, match=rf"patches_per_image = {damaged!r}, not a positive whole number"):
        train(load_config("ufldl-sae", [*STREAM, f"data.path={root}", "cluster.runner=simulated", "data.mode=patches",
                                        "data.samples=102", "data.loader_workers=0", "train.steps=8"]), run, resume=True)


DAMAGED_POSITIONS = [("epoch", "x"), ("index", -1), ("skip", 2.5), ("batch", None), ("samples", True), ("patches", -1),
                     ("patches", 0), ("skipped", 5), ("skipped", [["a.png"]]), ("listing", 7), ("index", "missing"), (None, [1, 2])]


@pytest.mark.parametrize("runner, key, damaged", [*[("local", *d) for d in DAMAGED_POSITIONS],
                                                  *[("simulated", *d) for d in DAMAGED_POSITIONS],
                                                  ("simulated", "seed_step", "x"),   # the simulator's streams only:
                                                  ("simulated", "patches", 3)])      # one worker's count against 2
def test_a_damaged_stream_position_is_named_before_the_resume_writes(tmp_path, folder, runner, key, damaged):
    """A hand-edited or damaged stream position in a local or simulated checkpoint: each of these was a bare
    ValueError, TypeError or KeyError from deep in the loader, a count read as another (2.5 as 2, true as 1),
    or no error at all (a negative index; one worker's count of 3 against the others' 2, one of them taken).
    Now a CheckpointError naming the checkpoint file and the key, raised before the resume writes anything."""
    import json

    from downpour.train.checkpoint import CheckpointError

    root, _ = folder
    base = [*STREAM, f"data.path={root}", f"cluster.runner={runner}", "data.mode=patches", "data.samples=102",
            "data.loader_workers=0"]
    cfg = load_config("ufldl-sae", [*base, "train.steps=4"])
    run = RunDir.create(tmp_path / "r", cfg)
    train(cfg, run)
    checkpoint = run.path / "checkpoints" / ("local.json" if runner == "local" else "server.json")
    saved = json.loads(checkpoint.read_text())
    holder, field = (saved, "data") if runner == "local" else (saved["streams"][0], "position")   # the first worker's
    if key is None:
        holder[field] = damaged
    elif key == "seed_step":
        holder[key] = damaged
    elif damaged == "missing":
        del holder[field][key]
    else:
        holder[field][key] = damaged
    rewrite_json(checkpoint, saved)
    files = lambda: {p.relative_to(run.path): p.read_bytes() for p in run.path.rglob("*") if p.is_file()}  # noqa: E731
    before = files()
    with pytest.raises(CheckpointError) as err:
        train(load_config("ufldl-sae", [*base, "train.steps=8"]), run, resume=True)
    assert str(checkpoint) in str(err.value)                           # (0: a crop stream's count, read as one)
    assert (key or "position") in str(err.value)
    assert files() == before


def test_a_resume_with_no_stream_position_takes_the_count_from_data_json(tmp_path, folder):
    """A Ray resume has no stream positions (its streams start afresh): the count its data.json recorded stands."""
    import json

    from downpour.data.pipeline import keep_cut

    root, _ = folder
    cfg = load_config("ufldl-sae", [*STREAM, f"data.path={root}", "data.mode=patches", "data.samples=51"]).data
    data = open_stream(cfg, 0)
    assert data.cut.patches == 1
    checkpoint = tmp_path / "checkpoints" / "local.json"
    assert keep_cut(data, [], cfg, 0, tmp_path, checkpoint) is data                       # nothing recorded: as computed
    (tmp_path / "data.json").write_text(json.dumps({"patches_per_image": 3}))
    assert keep_cut(data, [], cfg, 0, tmp_path, checkpoint).cut.patches == 3
    assert keep_cut(data, [{"patches": 1}], cfg, 0, tmp_path, checkpoint) is data         # a position's count comes first


def test_ray_workers_read_only_their_own_files(tmp_path, folder, local_ray):
    root, log = folder
    _reads(log)
    cfg = load_config("ufldl-sae", [*STREAM, f"data.path={root}", "cluster.runner=ray", "train.steps=40",
                                    "data.loader_workers=1", "cluster.shards=1"])     # (parameter shards read no file)
    run = RunDir.create(tmp_path / "ray", cfg)
    summary = train(cfg, run)
    assert summary["steps"] == 40 and summary["data"]["n_skipped"] == 3
    _check_reads(run, cfg, _reads(log), root)


def test_a_resumed_cluster_run_goes_on_with_each_worker_on_its_own_files(tmp_path, folder):
    root, log = folder
    cfg = load_config("ufldl-sae", [*STREAM, f"data.path={root}", "cluster.runner=simulated", "train.steps=16",
                                    "data.loader_workers=1"])
    run = RunDir.create(tmp_path / "r", cfg)
    train(cfg, run)
    _reads(log)
    longer = load_config(str(run.path / "config.toml"), ["train.steps=32"])
    summary = train(longer, run, resume=True)
    assert summary["resumed_from"] == 16 and summary["steps"] == 32
    shards = [set(open_stream(cfg.data, cfg.seed).shard(w, 2).items) for w in range(2)]
    reads = _reads(log)
    reads.pop(os.getpid())
    assert len(reads) == 2 and all(any(set(r) <= s for s in shards) for r in reads.values())
    data = run.read_json("data.json")    # the whole run's: each stream went on from where the checkpoint left it
    assert data["samples"] == 32 * BATCH and data["n_skipped"] == 3
    assert [w["batches"] for w in data["workers"]] == [16, 16]


@pytest.mark.parametrize("runner", ["simulated", "ray"])
def test_a_worker_none_of_whose_files_can_be_read_ends_the_run_naming_them(tmp_path, runner, local_ray):
    """On Ray the worker's DataError stops the run, naming the file: counted as a lost worker
    ('RayTaskError(DataError)', exit 0), the run would train on half the data without naming a file, and a restart
    meet the same error again. (A fitting sample that reads every file refuses such a share before the run: this one
    reads 3 of the 4.)"""
    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / f"im{i}.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    (tmp_path / "empty.png").write_bytes(b"")
    sets = [*STREAM, f"data.path={tmp_path}", f"cluster.runner={runner}", "train.steps=20", "data.fit_sample=3",
            "data.loader_workers=0", "cluster.shards=1",      # (parameter shards read no file: on Ray, one actor less)
            "cluster.restarts=2" if runner == "ray" else "cluster.delay=constant:0"]
    bad = {str(tmp_path / "broken.png"), str(tmp_path / "empty.png")}
    seed = next(s for s in range(50) if set(open_stream(load_config("ufldl-sae", [*sets, f"seed={s}"]).data, s)
                                            .shard(1, 2).items) == bad)
    cfg = load_config("ufldl-sae", [*sets, f"seed={seed}"])
    run = RunDir.create(tmp_path / "run", cfg)
    with pytest.raises(DataError, match="none of the 2 items of worker 1's shard"):
        train(cfg, run)
    data = run.read_json("data.json")   # written on the way out: the worker that failed says why
    assert data["stopped"]["by"].startswith("DataError: none of the 2 items of worker 1's shard")
    assert {e["file"] for e in data["skipped"]} == bad and 1 in [w["worker"] for w in data["workers"]]


def test_a_ray_resume_says_its_streams_start_afresh_counts_from_the_resume_and_says_a_changed_file_list(
        tmp_path, local_ray, caplog):
    """Its checkpoint keeps no stream position: the resume line says the streams start afresh (not "each worker" of one
    worker), and data.json's sums, the new streams' alone, say they begin at the resume (5,344 samples recorded of a
    300-step run of batch 32 resumed at step 133, where the uninterrupted run's records 9,600). Its workers start new
    streams, but the shards are cut from the list: a file added gives each worker other files, and that is said, as the
    simulator and the local runner say it. One run resumed twice, the Ray starts of its runs costing most of the
    test."""
    rng = np.random.default_rng(2)
    (tmp_path / "imgs").mkdir()
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"im{i}.png")
    # the driver compares the listing, whatever the workers: one worker and one shard start 2 actors a run, not 4
    cfg = load_config("ufldl-sae", [*STREAM, f"data.path={tmp_path / 'imgs'}", "cluster.runner=ray", "train.steps=10",
                                    "data.loader_workers=0", "cluster.workers=1", "cluster.shards=1"])
    run = RunDir.create(tmp_path / "run", cfg)
    train(cfg, run)
    assert "counted_from_step" not in run.read_json("data.json")
    longer = load_config(str(run.path / "config.toml"), ["train.steps=14"])
    with caplog.at_level("INFO", logger="downpour.data.pipeline"):
        summary = train(longer, run, resume=True)                     # the same list: nothing said of it
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("resuming the stream")]
    assert said == ["resuming the stream at step 10: its checkpoint keeps no stream position, so it starts a fresh "
                    "pass over its image files"]
    data = run.read_json("data.json")
    assert data["counted_from_step"] == 10 and data["samples"] == 4 * BATCH
    assert summary["data"]["counted_from_step"] == 10
    assert "listing_changed_on_resume" not in data
    caplog.clear()
    (tmp_path / "imgs" / "im8.png").write_bytes((tmp_path / "imgs" / "im0.png").read_bytes())
    with caplog.at_level("WARNING", logger="downpour.ps.cluster_on_ray"):
        train(load_config(str(run.path / "config.toml"), ["train.steps=18"]), run, resume=True)
    assert run.read_json("data.json")["listing_changed_on_resume"] is True
    assert any("file list changed since the checkpoint" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("runner", ["local", "simulated"])
def test_a_dry_run_of_a_resume_names_a_damaged_stream_position(tmp_path, folder, runner, capsys):
    """`downpour train --resume RUN --dry-run` checks a damaged checkpoint (docs/training.md), and passed a stream
    position the resume itself then refused."""
    import json

    from downpour.cli import main

    root, _ = folder
    cfg = load_config("ufldl-sae", [*STREAM, f"data.path={root}", f"cluster.runner={runner}", "data.mode=patches",
                                    "data.samples=102", "data.loader_workers=0", "train.steps=4"])
    run = RunDir.create(tmp_path / "r", cfg)
    train(cfg, run)
    checkpoint = run.path / "checkpoints" / ("local.json" if runner == "local" else "server.json")
    saved = json.loads(checkpoint.read_text())
    (saved["data"] if runner == "local" else saved["streams"][0]["position"])["skip"] = 2.5
    rewrite_json(checkpoint, saved)
    assert main(["train", "--resume", str(run.path), "--steps", "8", "--dry-run"]) == 2
    assert f"{str(checkpoint)!r}: its stream position's skip is 2.5" in capsys.readouterr().err
