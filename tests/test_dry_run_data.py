"""`downpour train --dry-run` reads a file source's data as the run reads them before its first step: it refuses
what the run refuses (every file unreadable, a worker's share that gives nothing), in the run's words, and says how
many files the run would skip. Reading no image, it would pass a folder of only corrupt files, and the run then
refuse it, its folder made."""
import logging

import pytest
from PIL import Image

from downpour.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

SETS = ["--set", "data.source=folder", "--set", "data.mode=patches", "--set", "data.size=8", "--set", "data.whiten=none",
        "--set", "train.tensorboard=false"]
STREAM = ["--set", "data.pipeline=stream", "--set", "data.loader_workers=0"]
MEMORY = ["--set", "data.pipeline=memory"]


def _folder(root, good=0, corrupt=(), small=()):
    root.mkdir()
    for i in range(good):
        Image.new("L", (40, 40), 50 * i).save(root / f"{i}.png")
    for name in corrupt:
        (root / name).write_bytes(b"not a png")
    for name in small:
        Image.new("L", (4, 4), 90).save(root / name)
    return root


def _error(capsys):
    return next(line for line in capsys.readouterr().err.splitlines() if line.startswith("downpour: error: "))


def _refused_alike(tmp_path, capsys, argv):
    """The dry run's refusal, which is the run's, word for word."""
    assert main(["train", *argv, "--out", str(tmp_path / "dry"), "--dry-run"]) == 2
    said = _error(capsys)
    assert not (tmp_path / "dry").exists()
    assert main(["train", *argv, "--out", str(tmp_path / "run")]) == 2
    assert _error(capsys) == said
    return said


@pytest.mark.parametrize("pipeline", [MEMORY, STREAM], ids=["memory", "stream"])
def test_a_dry_run_over_a_folder_of_only_corrupt_files_refuses_as_the_run_does(tmp_path, capsys, pipeline):
    root = _folder(tmp_path / "imgs", corrupt=["a.png", "b.png", "c.jpg"])
    argv = ["--config", "ufldl-sae", "--runner", "local", "--steps", "2", "--no-report", *SETS,
            "--set", f"data.path={root}", *pipeline]
    said = _refused_alike(tmp_path, capsys, argv)
    assert str(root / "a.png") in said


def test_a_dry_run_of_a_cluster_refuses_a_share_of_images_too_small_for_the_patch_as_the_run_does(tmp_path, capsys):
    root = _folder(tmp_path / "imgs", good=3, small=["tiny.png"])
    argv = ["--config", "ufldl-sae", "--runner", "simulated", "--workers", "4", "--steps", "2", "--no-report", *SETS,
            "--set", f"data.path={root}", *STREAM]
    said = _refused_alike(tmp_path, capsys, argv)
    assert "holds only images smaller than the 8x8 patch (data.size = 8)" in said


@pytest.mark.parametrize("pipeline, read", [
    (MEMORY, "every file, into memory): 2 files"),
    (STREAM, "before it trains: its fitting sample (data.fit_sample), every one of its 6 image files): 2 image files"),
], ids=["memory", "stream"])
def test_a_dry_run_says_how_many_files_the_run_would_skip_and_names_them(tmp_path, capsys, caplog, pipeline, read):
    root = _folder(tmp_path / "imgs", good=4, corrupt=["bad1.png", "bad2.jpg"])
    argv = ["train", "--config", "ufldl-sae", "--runner", "local", *SETS, "--set", f"data.path={root}",
            *pipeline, "--dry-run"]
    with caplog.at_level(logging.WARNING, logger="downpour.data"):
        assert main(argv) == 0
    assert f"downpour: data.path {str(root)!r} read as the run reads it ({read} would be skipped, named " \
           "above\n" in capsys.readouterr().err
    named = {m.split(": ")[0].removeprefix("skipped ") for m in caplog.messages if m.startswith("skipped ")}
    assert named == {str(root / "bad1.png"), str(root / "bad2.jpg")}


def test_a_dry_run_over_a_sample_of_a_streamed_folder_says_the_rest_is_read_once_it_trains(tmp_path, capsys):
    root = _folder(tmp_path / "imgs", good=5)
    argv = ["train", "--config", "ufldl-sae", "--runner", "local", *SETS, "--set", f"data.path={root}",
            *STREAM, "--set", "data.fit_sample=2", "--dry-run"]
    assert main(argv) == 0
    assert (f"read as the run reads it (before it trains: its fitting sample (data.fit_sample), 2 of its 5 image files): "
            "none would be skipped; the others are read once it trains\n") in capsys.readouterr().err


def test_a_dry_run_of_a_stream_with_nothing_to_fit_says_it_read_no_file(tmp_path, capsys):
    """With data.normalize and data.whiten 'none' a streamed run reads its files only as it trains: its dry run, which
    trains nothing, says it read none rather than that none would be skipped."""
    root = _folder(tmp_path / "imgs", corrupt=["a.png"])
    argv = ["train", "--config", "ufldl-sae", "--runner", "local", *SETS, "--set", f"data.path={root}", *STREAM,
            "--set", "data.normalize=none", "--dry-run"]
    assert main(argv) == 0
    assert (f"downpour: data.path {str(root)!r}: the run reads its files only once it trains, none before "
            "(data.normalize and data.whiten are 'none': nothing is fitted), so none was read here\n") in capsys.readouterr().err
