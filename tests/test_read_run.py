"""docs/read_run.py reads a cat network's run without downpour (json, numpy, torch, safetensors) and gets downpour's
stage-1 features of new images from the files alone; model.safetensors and preprocess.safetensors say in their
metadata what each tensor's axes mean (docs/training.md, "Reading a run without downpour")."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from downpour.config import load_config
from downpour.train.loop import run_local
from downpour.train.rundir import RunDir

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["train.steps=3", "train.tensorboard=false", "train.threads=1", "train.checkpoint_every=3"]
# the main job's recipe (tiled, stage 1 at 0.9 of its norm, patch + spectral), and the other branches of the reader:
# untied free filters, ZCA, UFLDL's normalisation, a stride
RECIPES = {"tiled-spectral": ["model.filter_norm=[0.9,1.0]"],
           "untied-zca": ["model.tile=0", "model.filter_norm=[0.0]", "data.whiten=zca", "data.normalize=ufldl",
                          "model.strides=[2,1]", "model.kernels=[6,3]", "model.pool_strides=[1,1]"]}


@pytest.fixture(scope="module", params=sorted(RECIPES))
def trained(request, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("read") / "run"
    cfg = load_config("cat-demo", [*SMALL, *RECIPES[request.param]])
    run_local(cfg, RunDir.create(path, cfg))
    return path


def _read_without_downpour(run: Path, images: Path, out: Path) -> str:
    """docs/read_run.py as a script, in a process where importing downpour fails."""
    code = ("import runpy, sys; sys.modules['downpour'] = None; "
            f"sys.argv = ['read_run.py', {str(run)!r}, {str(images)!r}, {str(out)!r}]; "
            f"runpy.run_path({str(ROOT / 'docs' / 'read_run.py')!r}, run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_reader_gets_downpours_stage_1_features_from_the_files_alone(trained, tmp_path):
    images = np.random.default_rng(1).uniform(0, 1, (4, 1, 32, 32)).astype(np.float32)
    images[0] = np.linspace(0, 1, 32)[None, :, None] * np.linspace(0.5, 1, 32)[None, None, :]   # a smooth one
    np.save(tmp_path / "images.npy", images)
    said = _read_without_downpour(trained, tmp_path / "images.npy", tmp_path / "features.safetensors")
    ours = load_file(str(tmp_path / "features.safetensors"))
    run = RunDir(trained)
    model, prepare = run.load_model().eval(), run.load_preprocess()
    with torch.no_grad():
        theirs = model.features_at(prepare(torch.from_numpy(images)), ["stage1/codes", "stage1/pooled", "stage1"])
    for mine, layer in (("codes", "stage1/codes"), ("pooled", "stage1/pooled"), ("normalised", "stage1")):
        assert ours[mine].shape == theirs[layer].shape, mine
        torch.testing.assert_close(ours[mine], theirs[layer], atol=1e-5, rtol=1e-5, msg=mine)
    assert "stage1 normalised: shape [4, 8," in said


def test_every_tensor_of_the_model_and_its_input_processing_says_its_layout(trained):
    for name in ("model", "preprocess", "checkpoints/local"):
        with safe_open(str(trained / f"{name}.safetensors"), "pt") as f:
            meta, keys = f.metadata(), list(f.keys())
        described = [k for k in keys if not k.startswith(("opt.", "rng."))]
        assert described and all(f"layout.{k}" in meta for k in described), (name, sorted(meta))
        assert meta["json_sha256"] == "recorded"
    with safe_open(str(trained / "model.safetensors"), "pt") as f:
        assert "stage 1's filters: (tile rows " in f.metadata()["layout.stages.0.filter.weight"]


@pytest.mark.parametrize("name,options", [("tica-8x8", {}), ("ufldl-sae", {}),
                                          ("ufldl-sae", {"encoder": "local", "kernel_size": 4, "decoder": "untied"})])
def test_the_autoencoders_tensors_say_their_layout_too(tmp_path, name, options):
    from downpour.models.registry import create_model
    from downpour.train.model_file import write_model

    model = create_model(name, **options)
    write_model(tmp_path, model, name)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        meta, keys = f.metadata(), list(f.keys())
    assert keys and all(f"layout.{k}" in meta for k in keys), (keys, sorted(meta))


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
