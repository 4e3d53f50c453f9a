"""What a run reads is fixed once, in its config.toml (``data.pipeline.resolve_data``): a file source's
path made absolute, and ``data.pipeline = 'auto'`` replaced by its choice. A resume then reads the same
files from any folder, and takes the path it began on whatever the data's size is by then (a stream
resumed as in-memory data crashed: ``Dataset.batches`` got the stream's position)."""
import json
import tomllib

import numpy as np
import pytest
from PIL import Image

from downpour.data.estimate import held_bytes
from downpour.cli import main
from downpour.train.json_digest import rewrite_json

RUN = ["--config", "tica-8x8", "--runner", "local", "--no-report", "--set", "data.source=folder",
       "--set", "data.size=16", "--set", "data.samples=200", "--set", "train.tensorboard=false", "--set", "train.threads=1"]


def _images(folder, n, seed=0):
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray((rng.random((32, 32)) * 255).astype(np.uint8)).save(folder / f"{i}.png")


def _classes(folder, names, n):
    """A folder of class sub-folders (a concept's, a poses set's), ``n`` images in each."""
    folder.mkdir()
    for name in names:
        _images(folder / name, n)


def _data(run):
    return tomllib.loads((run / "config.toml").read_text())["data"]


def test_a_relative_path_is_recorded_absolute_and_a_resume_elsewhere_reads_the_same_files(tmp_path, monkeypatch):
    """Recorded as typed, a resume from another folder would read that folder's own `imgs`, or none."""
    _images(tmp_path / "imgs", 4)
    monkeypatch.chdir(tmp_path)
    assert main(["train", *RUN, "--steps", "4", "--set", "data.path=imgs", "--out", "run"]) == 0
    assert _data(tmp_path / "run")["path"] == str(tmp_path / "imgs")
    (tmp_path / "elsewhere").mkdir()
    _images(tmp_path / "elsewhere" / "imgs", 4, seed=1)          # another `imgs` where the resume is started
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["train", "--resume", str(tmp_path / "run"), "--steps", "6"]) == 0
    assert json.loads((tmp_path / "run" / "data.json").read_text())["path"] == str(tmp_path / "imgs")
    assert "refit_on_resume" not in json.loads((tmp_path / "run" / "preprocess.json").read_text())   # the same images


def test_a_resume_whose_data_path_is_gone_names_its_config_not_a_default(tmp_path, capsys):
    """The run's folder moved (or unmounted): the resume said data.path "does not exist ... (the value is a default:
    RUN/config.toml has no base = "PRESET" ... add e.g. base = "cat-demo")", though config.toml sets it."""
    _images(tmp_path / "imgs", 4)
    run = tmp_path / "run"
    assert main(["train", *RUN, "--steps", "4", "--set", f"data.path={str(tmp_path / 'imgs')!r}", "--out", str(run)]) == 0
    (tmp_path / "imgs").rename(tmp_path / "moved")
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "6"]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'config.toml'}: data.path {str(tmp_path / 'imgs')!r} does not exist" in err
    assert "is a default" not in err and "base = " not in err


def test_the_analysis_folders_are_recorded_absolute_as_data_path_is(tmp_path, monkeypatch):
    """`downpour train --set analysis.dataset=concept` kept 'concept' in config.toml (data.path beside it absolute), so
    `downpour analyze RUN` from another folder was refused ("neither a built-in labelled set ... nor a folder")."""
    _images(tmp_path / "imgs", 4)
    _classes(tmp_path / "concept", ("cat", "other"), 3)
    monkeypatch.chdir(tmp_path)
    assert main(["train", *RUN, "--steps", "2", "--set", "data.path=imgs", "--set", "analysis.dataset=concept",
                 "--set", "analysis.positive=cat", "--set", 'analysis.probes=["digits", "concept"]', "--out", "run"]) == 0
    recorded = tomllib.loads((tmp_path / "run" / "config.toml").read_text())["analysis"]
    assert recorded["dataset"] == str(tmp_path / "concept")
    assert recorded["probes"] == ["digits", str(tmp_path / "concept")] and recorded["poses"] == ""


def test_a_poses_folder_called_digits_is_recorded_absolute_too(tmp_path, monkeypatch):
    """analysis.poses names a folder whatever its name (poses.py reads "digits" as ./digits): config.toml records it
    absolute, else 'digits' is taken for the built-in set's name, and an analysis from another folder reads that
    folder's own."""
    _images(tmp_path / "imgs", 4)
    _classes(tmp_path / "digits", ("0", "30"), 2)
    monkeypatch.chdir(tmp_path)
    assert main(["train", *RUN, "--steps", "2", "--set", "data.path=imgs", "--set", "analysis.poses=digits",
                 "--out", "run"]) == 0
    assert tomllib.loads((tmp_path / "run" / "config.toml").read_text())["analysis"]["poses"] == str(tmp_path / "digits")


def test_a_finished_run_from_before_keeps_its_analysis_of_a_relative_folder_on_a_resume(tmp_path, monkeypatch):
    """A run from before 2026-12-05 records analysis.dataset = "concept"; a resume's config (checked) names that folder
    absolute, and a finished run kept (`downpour train --resume RUN` of a run and twin both finished, a cross-fit's
    fold) keeps its analysis (else dropped as "made with the analysis settings this command changes", though it
    changes none)."""
    from downpour.preflight import check_run_config
    from downpour.train.rundir import RunDir
    from downpour.twins import train_kept

    _images(tmp_path / "imgs", 4)
    _classes(tmp_path / "concept", ("cat", "other"), 3)
    monkeypatch.chdir(tmp_path)
    assert main(["train", *RUN, "--steps", "2", "--set", "data.path=imgs", "--set", "analysis.dataset=concept",
                 "--out", "run"]) == 0
    config = tmp_path / "run" / "config.toml"
    config.write_text(config.read_text().replace(repr(str(tmp_path / "concept")).replace("'", '"'), '"concept"'))
    assert tomllib.loads(config.read_text())["analysis"]["dataset"] == "concept"     # as the run was recorded
    (tmp_path / "run" / "analysis.json").write_text("{}")
    assert train_kept(check_run_config(RunDir.open("run").config), tmp_path / "run")["kept"]
    assert (tmp_path / "run" / "analysis.json").is_file()


def test_autos_choice_is_recorded_and_kept_by_a_resume_whatever_the_data_size(tmp_path, monkeypatch):
    _images(tmp_path / "imgs", 4)
    argv = ["train", *RUN, "--set", f"data.path={tmp_path / 'imgs'}"]
    monkeypatch.setattr("downpour.data.pipeline.STREAM_ABOVE", 0)          # these images stream
    estimates = []      # the folder listed and its headers read once: data.json takes the estimate the log line said
    monkeypatch.setattr("downpour.data.pipeline.held_bytes", lambda *a: estimates.append(a) or held_bytes(*a))
    assert main([*argv, "--steps", "4", "--out", str(tmp_path / "run")]) == 0
    assert _data(tmp_path / "run")["pipeline"] == "stream" and len(estimates) == 1, estimates
    # data.json says why, as the log line does (not {"pipeline": "stream"} alone)
    chosen = json.loads((tmp_path / "run" / "data.json").read_text())["chosen"]
    assert chosen["pipeline"] == "auto" and chosen["stream_above_mb"] == 0 and chosen["estimate_mb"] >= 0, chosen
    assert {"samples_mb", "decoding_mb"} <= set(chosen), chosen
    monkeypatch.setattr("downpour.data.pipeline.STREAM_ABOVE", 1 << 30)    # now they would be held in memory
    assert main(["train", "--resume", str(tmp_path / "run"), "--steps", "6"]) == 0
    assert json.loads((tmp_path / "run" / "model.json").read_text())["data"]["pipeline"] == "stream"
    assert main([*argv, "--steps", "4", "--out", str(tmp_path / "small")]) == 0
    assert _data(tmp_path / "small")["pipeline"] == "memory"
    chosen = json.loads((tmp_path / "small" / "data.json").read_text())["chosen"]
    assert chosen["pipeline"] == "auto" and chosen["stream_above_mb"] == 1024 and "samples_mb" in chosen, chosen


@pytest.mark.parametrize("workers, refused", [(4, True), (3, False)])
def test_more_streaming_workers_than_files_is_refused_on_a_dry_run_naming_the_files(tmp_path, capsys, workers, refused):
    """It passed the dry run, and the run made its folder before saying 'only 3 samples' (of 200 asked for)."""
    _images(tmp_path / "imgs", 3)
    argv = ["train", *RUN, "--runner", "simulated", "--workers", str(workers), "--set", "data.pipeline=stream",
            "--set", f"data.path={tmp_path / 'imgs'}", "--dry-run"]
    assert main(argv) == (2 if refused else 0)
    if refused:
        err = capsys.readouterr().err
        assert "cluster.workers = 4, but data.path" in err and "holds only 3 image files" in err, err
        # (not "at most 3 (a resumed")
        assert "use at most 3 (--workers 3); a resumed run keeps its workers" in err, err


@pytest.mark.parametrize("mode, workers, said", [("crops", 4, "holds only 3 image files, one crop each"),
                                                 ("patches", 201, "data.samples = 200 gives only 200 patches")])
def test_more_in_memory_workers_than_samples_is_refused_before_the_run_folder_is_made(tmp_path, capsys, mode, workers,
                                                                                       said):
    """The in-memory case is refused before the run folder is made, as the streamed case is on the dry run, not after
    loading the images with config.toml written into --out ("cluster.workers=30 but the data has only 23
    samples")."""
    _images(tmp_path / "imgs", 3)
    argv = ["train", *RUN, "--runner", "simulated", "--workers", str(workers), "--set", "data.pipeline=memory",
            "--set", f"data.mode={mode}", "--set", f"data.path={tmp_path / 'imgs'}", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"cluster.workers = {workers}, but " in err and said in err, err
    assert not (tmp_path / "run").exists()


def test_an_in_memory_resume_whose_folder_lost_files_below_its_workers_is_told_to_restore_them(tmp_path, capsys):
    """Not told to use --workers 2, which a resume refuses ("cannot resume with cluster.workers = 2"): as in the
    streamed case, a resumed run keeps its workers."""
    _images(tmp_path / "imgs", 4)
    run = tmp_path / "run"
    argv = ["train", "--config", "tica-8x8", "--no-report", "--runner", "simulated", "--workers", "3", "--steps", "2",
            *(a for key in ("data.source=folder", "data.size=16", "data.pipeline=memory", "data.mode=crops",
                            f"data.path={tmp_path / 'imgs'}", "train.tensorboard=false") for a in ("--set", key)),
            "--out", str(run)]
    assert main(argv) == 0
    for name in ("2.png", "3.png"):
        (tmp_path / "imgs" / name).unlink()
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "4", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert "holds only 2 image files" in err and "a resumed run keeps its workers: restore the files it began with" in err


@pytest.mark.parametrize("runner", [["--runner", "local"], ["--runner", "simulated", "--workers", "2"]])
def test_a_run_recorded_with_auto_that_now_chooses_otherwise_says_how_to_go_on(tmp_path, monkeypatch, capsys, runner):
    """A run from before the choice was recorded (config.toml: pipeline = "auto") whose data changed size:
    its stream's position reached Dataset.batches, a TypeError."""
    _images(tmp_path / "imgs", 4)
    monkeypatch.setattr("downpour.data.pipeline.STREAM_ABOVE", 0)
    run = tmp_path / "run"
    assert main(["train", *RUN, *runner, "--steps", "4", "--set", f"data.path={tmp_path / 'imgs'}", "--out", str(run)]) == 0
    config = run / "config.toml"
    config.write_text(config.read_text().replace('pipeline = "stream"', 'pipeline = "auto"'))   # as an older run,
    for meta in (run / "checkpoints").glob("*.json"):                                            # which records no config
        rewrite_json(meta, lambda record: record.pop("config"))
    monkeypatch.setattr("downpour.data.pipeline.STREAM_ABOVE", 1 << 30)
    assert main(["train", "--resume", str(run), "--steps", "6"]) == 2
    err = capsys.readouterr().err
    assert "chose 'stream' when this run began and chooses 'memory'" in err and 'set pipeline = "stream"' in err, err
    config.write_text(config.read_text().replace('pipeline = "auto"', 'pipeline = "stream"'))   # as it says
    assert main(["train", "--resume", str(run), "--steps", "6"]) == 0


def test_a_resume_over_fewer_files_than_its_workers_is_told_what_it_can_do(tmp_path, capsys):
    """Files deleted between a 2-worker streamed run and its --resume: 'use at most 1 workers', which the resume
    then refused ('cannot resume with cluster.workers = 1')."""
    _images(tmp_path / "imgs", 3)
    argv = ["train", *RUN, "--runner", "simulated", "--workers", "2", "--set", "data.pipeline=stream",
            "--set", f"data.path={tmp_path / 'imgs'}", "--steps", "4", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    for name in ("1.png", "2.png"):
        (tmp_path / "imgs" / name).unlink()
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "run"), "--steps", "8"]) == 2
    err = capsys.readouterr().err
    assert "holds only 1 image file" in err and "restore the files it began with" in err, err


@pytest.mark.parametrize("pipeline", ["memory", "stream"])
def test_the_local_runners_summary_counts_the_files_skipped_as_the_cluster_runners_do(tmp_path, capsys, pipeline):
    """The cluster runners' summary line carried data {reads, samples, n_skipped}; the local runner's nothing."""
    _images(tmp_path / "imgs", 4)
    (tmp_path / "imgs" / "bad.png").write_bytes(b"not a png")
    assert main(["train", *RUN, "--set", f"data.path={tmp_path / 'imgs'}", "--set", f"data.pipeline={pipeline}",
                 "--steps", "2", "--out", str(tmp_path / "run")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["data"]["n_skipped"] == 1
