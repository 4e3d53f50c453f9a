"""A resume refused before it starts for its data (a streamed worker's share of only images smaller than the patch,
more workers than the data give) offers only what a resume can do: it keeps data.size and its workers. It does not
offer "lower data.size or use data.mode = 'crops'" and "use at most N workers (--workers N)" first, which the resume
would then refuse ("cannot resume with data.size = 4")."""
import re
import shutil

import pytest
from PIL import Image

from downpour.cli import main

SETS = ["--config", "ufldl-sae", "--runner", "simulated", "--workers", "2", "--steps", "2", "--no-report",
        "--set", "data.pipeline=stream", "--set", "data.mode=patches", "--set", "data.size=8",
        "--set", "data.whiten=none", "--set", "train.tensorboard=false"]


def _trained(tmp_path, pipeline="stream", sets=()):
    images, out = tmp_path / "images", tmp_path / "run"
    images.mkdir()
    for i in range(4):
        Image.new("L", (40, 40), 50 * i).save(images / f"{i}.png")
    mode = (["--set", "data.loader_workers=0"] if pipeline == "stream" else
            ["--set", "data.pipeline=memory", "--set", "data.mode=crops"])
    args = [*SETS, *mode, *sets, "--set", "data.source=folder", "--set", f"data.path={images}", "--out", str(out)]
    assert main(["train", *args]) == 0
    return images, out


def test_a_resume_refused_for_a_share_of_images_too_small_offers_only_what_a_resume_can_do(tmp_path, capsys):
    images, out = _trained(tmp_path)
    for i in range(1, 4):                     # three of the four now 4x4: one worker's share holds only such images
        Image.new("L", (4, 4), 90).save(images / f"{i}.png")
    capsys.readouterr()
    for dry in ([], ["--dry-run"]):
        assert main(["train", "--resume", str(out), "--steps", "4", *dry]) == 2
        err = capsys.readouterr().err
        todo = err.split("do one of these: ")[-1] if "do one of these" in err else err.split("of its own; ")[-1]
        # (removing the 3 alone leaves 1 file for 2 workers: readable ones are to be added, or the old put back)
        assert todo.startswith("restore the files it began with; or remove the 3 images smaller than the patch from "
                               "data.path (the log names them) and add readable files until at least 2 are there (a "
                               "resumed run keeps its workers and data.size; a new run can also lower data.size or use "
                               "data.mode = 'crops'"), err
        assert not re.search(r"--workers \d+;", err), err


@pytest.mark.parametrize("pipeline", ["stream", "memory"])
def test_a_resume_refused_for_unreadable_files_offers_fewer_workers_to_a_new_run_only(tmp_path, capsys, pipeline):
    """Streamed: a share of only corrupt files; in memory (one crop an image): one sample left for two workers."""
    images, out = _trained(tmp_path, pipeline)
    for i in range(1, 4):
        (images / f"{i}.png").write_bytes(b"not a png")
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--steps", "4"]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    end = {"stream": "of its own; data.path lists 4 files, 1 of them readable, where the workers need 2 (one "
                     "each); do one of these: restore the files it began with; or remove the 3 unreadable files from "
                     "data.path (the log names them) and add readable files until at least 2 are there (a resumed run "
                     "keeps its workers; a new run can also use at most 1 worker (--workers 1))",
           "memory": "a resumed run keeps its workers: restore the files it began with (a new run can use at most 1: "
                     "--workers 1)"}[pipeline]
    assert err.endswith(end), err


@pytest.mark.parametrize("pipeline", ["stream", "memory"])
def test_a_resume_whose_folder_lost_files_below_its_workers_offers_fewer_workers_to_a_new_run_only(tmp_path, capsys,
                                                                                                    pipeline):
    """Found from the listing, before the data are read (data.pipeline's resolution): it began "use at most 1
    (--workers 1)", which the resume refuses. A stream's says the count its data.json had at the run's start, as the
    refusal of a share does: 1 of the 4 files it began with is left."""
    images, out = _trained(tmp_path, pipeline)
    for i in range(1, 4):
        (images / f"{i}.png").unlink()
    capsys.readouterr()
    for dry in ([], ["--dry-run"]):
        assert main(["train", "--resume", str(out), "--steps", "4", *dry]) == 2
        err = capsys.readouterr().err.splitlines()[-1]
        assert err.endswith("holds only 1 image file" + (
            ", down from 4 at the run's last start (its data.json), and each streaming worker reads items of its own; "
            if pipeline == "stream" else ", one crop each, and each worker trains on a share of its own; ")
            + "a resumed run keeps its workers: restore the files it began with (a new run can use at most 1: "
            "--workers 1)"), err


@pytest.mark.parametrize("pipeline, sets", [("stream", []), ("memory", []), (
    "memory", ["--set", "cluster.algorithm=sandblaster", "--set", "sandblaster.units=2"])])   # (its own set-up call)
def test_a_resume_of_a_run_stopped_before_its_first_checkpoint_refused_for_its_data_keeps_its_rows(
        tmp_path, capsys, pipeline, sets):
    """Trained again from step 0, its data are checked before its rows are discarded, and refused in a resume's words
    (it keeps its workers); the same --resume trains it once the files are back. (The rows discarded first, the folder
    would hold nothing to resume, and `--resume` refuse it: "never started training".)"""
    images, out = _trained(tmp_path, pipeline, sets)
    for name in ("model.json", "model.safetensors", "checkpoints", "sandblaster.json"):   # as a kill before the first
        path = out / name                                                                 # checkpoint leaves it
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    rows = (out / "metrics.jsonl").read_text()
    saved = {i: (images / f"{i}.png").read_bytes() for i in range(1, 4)}
    for i in range(1, 4):
        (images / f"{i}.png").write_bytes(b"not a png")
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 2
    err = capsys.readouterr().err
    last = err.splitlines()[-1]
    assert "a resumed run keeps its workers" in last and "a new run can" in last, err
    assert not re.search(r"--workers 1\)?;", last) and "training it again from step 0" not in err, err
    assert (out / "metrics.jsonl").read_text() == rows
    for i, data in saved.items():
        (images / f"{i}.png").write_bytes(data)
    assert main(["train", "--resume", str(out)]) == 0
    assert "training it again from step 0" in capsys.readouterr().err
    assert (out / "model.safetensors").is_file()


def test_a_resume_whose_folder_shrank_to_fewer_readable_files_than_workers_says_the_counts_and_what_would_do(
        tmp_path, capsys):
    """17 files at the start, 14 since deleted, of the 3 left one too small for the patch and one corrupt: removing
    those two alone (all it was told) leaves 1 file for 2 workers, and it was not told that its list shrank."""
    images, out = tmp_path / "images", tmp_path / "run"
    images.mkdir()
    for i in range(17):
        Image.new("L", (40, 40), 10 * i).save(images / f"{i:02d}.png")
    args = [*SETS, "--set", "data.loader_workers=0", "--set", "data.source=folder", "--set", f"data.path={images}"]
    assert main(["train", *args, "--steps", "1", "--out", str(out)]) == 0
    for i in range(3, 17):
        (images / f"{i:02d}.png").unlink()
    Image.new("L", (4, 4), 90).save(images / "01.png")
    (images / "02.png").write_bytes(b"not a png")
    capsys.readouterr()
    for dry in ([], ["--dry-run"]):
        assert main(["train", "--resume", str(out), "--steps", "4", *dry]) == 2
        err = capsys.readouterr().err.splitlines()[-1]
        assert ("data.path lists 3 files, down from 17 at the run's last start (its data.json), 1 of them readable, "
                "where the workers need 2 (one each); do one of these: restore the files it began with; or remove the "
                "1 image smaller than the patch and 1 unreadable file from data.path (the log names them) and add "
                "readable files until at least 2 are there (a resumed run keeps its workers and data.size") in err, err
