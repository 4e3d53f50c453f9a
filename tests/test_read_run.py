"""docs/read_run.py reads a cat network's run without downpour (json, numpy, torch, safetensors) and gets downpour's
parameters and every stage's features of new images from the files alone; model.safetensors and
preprocess.safetensors say in their metadata what each tensor's axes mean, a server checkpoint's shards which
parameter each element is (docs/training.md, "Reading a run without downpour")."""
import json
import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from downpour.config import load_config
from downpour.runners import train
from downpour.train.loop import run_local
from downpour.train.rundir import RunDir

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["train.steps=3", "train.tensorboard=false", "train.threads=1", "train.checkpoint_every=3"]
# the main job's recipe (tiled, stage 1 at 0.9 of its norm, patch + spectral), and the other branches of the reader:
# untied free filters, ZCA, UFLDL's normalisation, a stride
RECIPES = {"tiled-spectral": ["model.filter_norm=[0.9,1.0]"],
           "untied-zca": ["model.tile=0", "model.filter_norm=[0.0]", "data.whiten=zca", "data.normalize=ufldl",
                          "model.strides=[2,1]", "model.kernels=[6,3]", "model.pool_strides=[1,1]"]}


# the main job's recipe on its cluster (2 workers, 2 shards, Adam on the server), simulated instead of on Ray
CLUSTER = ["train.steps=3", "train.tensorboard=false", "train.threads=1", "cluster.runner=simulated",
           "cluster.workers=2", "cluster.shards=2", "cluster.rule=adam", "model.filter_norm=[0.9,1.0]"]
READER = runpy.run_path(str(ROOT / "docs" / "read_run.py"))     # its functions, its __main__ not run


@pytest.fixture(scope="module", params=sorted(RECIPES))
def trained(request, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("read") / "run"
    cfg = load_config("cat-demo", [*SMALL, *RECIPES[request.param]])
    run_local(cfg, RunDir.create(path, cfg))
    return path


@pytest.fixture(scope="module")
def clustered(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("read") / "run"
    cfg = load_config("cat-demo", CLUSTER)
    train(cfg, RunDir.create(path, cfg))
    return path


def _read_without_downpour(run: Path, images: Path, out: Path) -> str:
    """docs/read_run.py as a script, in a process where importing downpour fails."""
    code = ("import runpy, sys; sys.modules['downpour'] = None; "
            f"sys.argv = ['read_run.py', {str(run)!r}, {str(images)!r}, {str(out)!r}]; "
            f"runpy.run_path({str(ROOT / 'docs' / 'read_run.py')!r}, run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_reader_gets_downpours_features_of_every_stage_from_the_files_alone(trained, tmp_path):
    images = np.random.default_rng(1).uniform(0, 1, (4, 1, 32, 32)).astype(np.float32)
    images[0] = np.linspace(0, 1, 32)[None, :, None] * np.linspace(0.5, 1, 32)[None, None, :]   # a smooth one
    np.save(tmp_path / "images.npy", images)
    said = _read_without_downpour(trained, tmp_path / "images.npy", tmp_path / "features.safetensors")
    ours = load_file(str(tmp_path / "features.safetensors"))
    run = RunDir(trained)
    model, prepare = run.load_model().eval(), run.load_preprocess()
    with torch.no_grad():
        theirs = model.features_at(prepare(torch.from_numpy(images)), model.feature_layers())
    assert sorted(ours) == sorted(theirs) and len(theirs) == 6          # 2 stages' codes, pooled, normalised
    for layer in theirs:
        assert ours[layer].shape == theirs[layer].shape, layer
        torch.testing.assert_close(ours[layer], theirs[layer], atol=1e-5, rtol=1e-5, msg=layer)
    assert "stage2: shape [4, 8," in said


def test_the_reader_rebuilds_every_tensor_of_the_model_and_a_cluster_runs_shards_by_their_words(clustered):
    model = RunDir(clustered).load_model()
    ours, theirs = READER["parameters"](clustered), model.state_dict()
    assert sorted(ours) == sorted(theirs)
    for name, t in theirs.items():
        assert torch.equal(ours[name], t), name
    held = READER["from_shards"](clustered / "checkpoints" / "server.safetensors")
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    assert sorted(held) == sorted(trainable) == ["stages.0.filter.weight", "stages.1.filter.weight"]
    for name, p in trainable.items():             # the run ends on a checkpoint: the model is the shards' values
        assert torch.equal(held[name], p.detach()), name


def test_the_reader_refuses_a_tensor_whose_shape_is_not_its_words(clustered, tmp_path):
    with safe_open(str(clustered / "model.safetensors"), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    meta["layout.stages.1.filter.weight"] = meta["layout.stages.1.filter.weight"].replace("maps 8", "maps 9", 1)
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match=r"weight is \[2, 2, 8, 8, 5, 5\], its layout says \[2, 2, 9, 8, 5, 5\]"):
        READER["parameters"](tmp_path)


def test_every_tensor_of_the_model_and_its_input_processing_says_its_layout(trained):
    for name in ("model", "preprocess", "checkpoints/local"):
        with safe_open(str(trained / f"{name}.safetensors"), "pt") as f:
            meta, keys = f.metadata(), list(f.keys())
        described = [k for k in keys if not k.startswith(("opt.", "rng."))]
        assert described and all(f"layout.{k}" in meta for k in described), (name, sorted(meta))
        assert meta["json_sha256"] == "recorded"
    with safe_open(str(trained / "model.safetensors"), "pt") as f:
        assert "stage 1's filters: (tile rows " in f.metadata()["layout.stages.0.filter.weight"]


@pytest.mark.parametrize("options", [{}, {"tile": 0, "decoder": "untied"}])
def test_a_partitioned_cat_network_says_what_its_blocks_and_shared_banks_are(options):
    """A model split for model parallelism (its filters block by block, the server shards' tensors) says each block's
    place in the merged model's tensor; merged, it says the stages' own layouts."""
    from downpour.models.registry import create_model
    from downpour.parallel import merge_model, partition_model
    from downpour.parallel.partition import partition_layouts

    model = partition_model(create_model("cat-demo", **options), 2)
    assert model.tensor_layouts() == {}
    said = partition_layouts(model)
    trainable = [name for name, p in model.named_parameters()]
    assert trainable and all(name in said for name in trainable), (trainable, sorted(said))
    merged = merge_model(model)
    full = dict(merged.named_parameters())
    for name, p in model.named_parameters():
        assert str(list(p.shape))[1:-1] == ", ".join(re.findall(r" (\d+)(?=[,)])", said[name].split(":")[0])), name
        if name.startswith("partitions."):        # the block is where its words put it in the merged tensor
            rows, cols = [tuple(map(int, r)) for r in re.findall(r"\[(\d+), (\d+)\)", said[name])]
            target = re.search(r"merged model's (\S+)$", said[name]).group(1)
            assert torch.equal(full[target][rows[0]:rows[1], cols[0]:cols[1]], p), name
    assert "stage 1's filters: (tile rows " in merged.tensor_layouts()["stages.0.filter.weight"]


@pytest.mark.parametrize("name, images, said", [
    (None, None, "'{run}' does not exist"),
    ("config.toml", None, None),                # a run stopped before its model.json: its files still list
    ("config.toml", (2, 1, 32, 32), "'{run}' holds no model.json yet"),
    ("notes.txt", None, "'{run}' holds no config.toml: not a downpour run directory"),
    ("rbm", (2, 1, 8, 8), "'{run}/model.json' is of model 'rbm-digits', and this script rebuilds the features of "
                          "the cat network only"),
    ("cat", (2, 1, 8, 8), "the images are [2, 1, 8, 8], and the run's model.json takes (N, C, H, W) images of "
                          "input_shape [1, 32, 32]: (N, 1, 32, 32)"),
    ("cat", (2, 1, 32, 32), None)])
def test_the_reader_refuses_what_it_cannot_read_in_one_line(tmp_path, name, images, said):
    """A folder that is no run listed nothing and exited 0; an RBM's run with images ended in KeyError: 'maps', images
    of another shape in a tensor-size error inside the spectral whitening: each is said in one line instead."""
    run = tmp_path / "run"
    if name is not None:
        run.mkdir()
        model = {"rbm": {"model": "rbm-digits", "input_shape": [1, 8, 8], "options": {"hidden": 100}},
                 "cat": {"model": "cat-demo", "input_shape": [1, 32, 32], "options": {"maps": [8, 8]}}}.get(name)
        (run / ("model.json" if model else name)).write_text(json.dumps(model) if model else "")
    x = None if images is None else np.zeros(images, np.float32)
    got = READER["refusal"](run, x)                 # (the script prints it after "read_run.py: error: ", exit 2)
    assert got is None if said is None else got.startswith(said.format(run=run)), got

