"""`downpour train` reads a new run's file data once, before its folder is made: a run refused for its data makes no
folder (not one made, then removed: `downpour: removed RUN`), and one that trains is handed what was
read, its runner reading nothing again (an in-memory run's whole load, up to 1 GiB decoded)."""
import pytest
from PIL import Image

import downpour.data.pipeline as pipeline
from downpour.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

SETS = ["--config", "ufldl-sae", "--steps", "2", "--no-report", "--set", "data.source=folder", "--set",
        "data.mode=patches", "--set", "data.size=8", "--set", "data.whiten=none", "--set", "train.tensorboard=false",
        "--set", "data.samples=60"]
STREAM = ["--set", "data.pipeline=stream", "--set", "data.loader_workers=0"]


def _counted(monkeypatch, name):
    """Calls of pipeline.``name`` (what reads the files: build_dataset in memory, open_stream streamed)."""
    calls = []
    real = getattr(pipeline, name)

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, name, counting)
    return calls


@pytest.mark.parametrize("runner, pipe, reads", [("local", [], "build_dataset"),
                                                 ("simulated", STREAM, "open_stream")], ids=["local", "simulated"])
def test_a_new_run_refused_for_its_data_makes_no_folder_and_one_that_trains_reads_its_files_once(
        tmp_path, capsys, monkeypatch, runner, pipe, reads):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"not a png")
    out = tmp_path / "a" / "b" / "run"
    argv = ["train", *SETS, "--runner", runner, *pipe]
    assert main([*argv, "--set", f"data.path={bad}", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "removed" not in err and not (tmp_path / "a").exists(), err     # refused before anything was made
    good = tmp_path / "good"
    good.mkdir()
    for i in range(4):
        Image.new("L", (40, 40), 50 * i).save(good / f"{i}.png")
    calls = _counted(monkeypatch, reads)
    assert main([*argv, "--set", f"data.path={good}", "--out", str(out)]) == 0
    assert len(calls) == 1 and (out / "model.safetensors").is_file()
