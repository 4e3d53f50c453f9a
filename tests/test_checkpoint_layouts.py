"""Every tensor a run writes says in its safetensors metadata (``layout.<name>``) what its axes are and how it is
used, for a reader without downpour (docs/training.md, "Reading a run without downpour"): every registered model's
(the cat network's untied decoders and recurrent top too), a local checkpoint's optimiser state, a server
checkpoint's shards and the simulator's state, and Sandblaster's checkpoint. A layout's shape words,
``(name N, name N, ...)``, come before any other parenthesis, are read back here and must be the tensor's shape; the
shards' parameter order is read back from the words alone."""
import re

import pytest
import torch
from safetensors import safe_open

from downpour.config import load_config
from downpour.models.registry import create_model, list_models
from downpour.ps.checkpoint import save_server
from downpour.ps.sim_state import sim_layouts
from downpour.runners import train
from downpour.train.flat import ParamLayout
from downpour.train.loop import run_local
from downpour.train.model_file import write_model
from downpour.train.rundir import RunDir

# "(hidden 100, visibles 64: ..." -> [100, 64]: the first parenthesis of "word(s) N" items
_AXES = re.compile(r"\(((?:[a-z][a-z ]*? \d+, )*[a-z][a-z ]*? \d+)[:)]")
# one piece of a shard's parameters: "[0, 6400) weight [100, 64]" and, where the shard cuts it, its elements
_PIECE = re.compile(r"\[(\d+), (\d+)\) (\S+) \[([\d, ]*)\](?: \(its elements \[(\d+), (\d+)\)\))?")


def _shape_words(text: str) -> list[int]:
    found = _AXES.search(text)
    assert found, f"no shape words in {text!r}"
    return [int(n) for n in re.findall(r"(\d+)(?:, |$)", found.group(1))]


def _read(path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    with safe_open(str(path), "pt") as f:
        return f.metadata() or {}, {k: f.get_tensor(k) for k in f.keys()}


# every registered model as registered, then options that add tensors or change their words
_VARIANTS = [(entry.name, {}) for entry in list_models()] + [
    ("cnn-digits", {"tile": 2, "pools": (2, 1)}), ("rnn-rows", {"layers": 2}), ("rnn-rows", {"input_shape": (5, 7)}),
    ("cat-demo", {"top": "gru"}), ("cat-demo", {"decoder": "untied", "filter_norm": 1.0}),
    ("rica-local", {"bias": True, "decoder": "untied"}), ("rica-8x8", {"bias": True, "decoder": "untied"}),
    ("ufldl-sae", {"encoder": "local", "kernel_size": 4, "decoder": "untied"}),
    ("pyramid-rica", {"pyramid": "gaussian", "tile": 2}), ("glimpse-rica", {"glimpse_scales": 3}),
    ("teacher-student", {"width": 5, "teacher_width": 3})]


@pytest.mark.parametrize("name,options", _VARIANTS, ids=[f"{n}{o or ''}" for n, o in _VARIANTS])
def test_each_tensor_of_the_model_says_its_layout_and_its_shape_words_are_its_shape(tmp_path, name, options):
    options = dict(options)
    model = create_model(name, options.pop("input_shape", None), **options)
    write_model(tmp_path, model, name)
    meta, tensors = _read(tmp_path / "model.safetensors")
    assert tensors, name
    for key, t in tensors.items():
        assert f"layout.{key}" in meta, (key, sorted(meta))
        text = meta[f"layout.{key}"]
        assert _shape_words(text) == list(t.shape), (key, text)
        assert text.index("(") == _AXES.search(text).start(), f"{key}: words before its shape words: {text!r}"


def test_the_rbms_codes_come_from_its_file_and_the_words_alone(tmp_path):
    model = create_model("grbm-patches")
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    write_model(tmp_path, model, "grbm-patches")
    meta, t = _read(tmp_path / "model.safetensors")
    sigma = float(re.search(r"sigmoid\(v / ([\d.]+) @ weight.T \+ hidden_bias\)", meta["layout.weight"]).group(1))
    x = torch.rand(3, *model.input_shape)
    codes = torch.sigmoid(x.reshape(3, -1) / sigma @ t["weight"].T + t["hidden_bias"])
    torch.testing.assert_close(codes, model(x))


def _rebuild(layouts: list[str], shards: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's parameters from the shards' words alone: each piece put back at its elements, row-major."""
    out: dict[str, torch.Tensor] = {}
    for text, vec in zip(layouts, shards):
        for a, b, name, shape, lo, hi in _PIECE.findall(text):
            shape = [int(n) for n in shape.split(", ")] if shape else []
            flat = out.setdefault(name, torch.full((torch.Size(shape).numel(),), float("nan"))).view(-1)
            lo, hi = (int(lo), int(hi)) if lo else (0, flat.numel())
            flat[lo:hi] = vec[int(a):int(b)]
            out[name] = flat.reshape(shape)
    return out


@pytest.mark.parametrize("name,cuts", [("rbm-digits", (0, 1000, 6500)), ("rnn-rows", (0, 7, 20000)),
                                       ("cnn-digits", (0, 100, 101, 900))])
def test_a_server_checkpoint_says_which_parameter_each_shard_element_is(tmp_path, name, cuts):
    model = create_model(name)
    layout = ParamLayout(model)
    vec = layout.params_to_vector(model)
    bounds = [*cuts[1:], layout.numel]
    states = [({"params": vec[a:b].clone()}, {"start": a}) for a, b in zip(cuts, bounds)]
    save_server(tmp_path / "server", states, {"step": 0}, params=layout)
    meta, tensors = _read(tmp_path / "server.safetensors")
    said = [meta[f"layout.shard{j}.params"] for j in range(len(states))]
    assert [_shape_words(text) for text in said] == [[b - a] for a, b in zip(cuts, bounds)]
    rebuilt = _rebuild(said, [tensors[f"shard{j}.params"] for j in range(len(states))])
    assert list(rebuilt) == layout.names
    for key, p in model.named_parameters():
        assert torch.equal(rebuilt[key], p.detach()), key


SMALL = ["train.steps=2", "train.tensorboard=false", "train.threads=1", "train.log_every=1"]


def test_a_local_checkpoints_optimiser_state_names_its_parameter(tmp_path):
    cfg = load_config("rnn-rows", [*SMALL, "train.optimizer=adam"])
    run_local(cfg, RunDir.create(tmp_path / "run", cfg))
    meta, tensors = _read(tmp_path / "run" / "checkpoints" / "local.safetensors")
    opt = [k for k in tensors if k.startswith("opt.")]
    assert {k.rsplit(".", 1)[1] for k in opt} == {"step", "exp_avg", "exp_avg_sq"}
    for key in opt:
        text = meta[f"layout.{key}"]
        assert text.startswith(f"(shape {list(tensors[key].shape)}): "), (key, text)
        named = re.search(r" of (model\.\S+?)(,|$)", text).group(1)
        if tensors[key].dim():
            assert tensors[named].shape == tensors[key].shape, (key, named)
    # parameter i of param_groups is the i-th of named_parameters: opt.0 is the encoder's first tensor
    assert meta["layout.opt.0.exp_avg"].endswith("of model.encoder.weight_ih_l0, element for element")
    assert all(f"layout.{k}" in meta for k in tensors), sorted(set(tensors) - {k[7:] for k in meta})
    assert _shape_words(meta["layout.rng.torch"]) == list(tensors["rng.torch"].shape)


@pytest.mark.parametrize("algorithm", ["downpour", "sandblaster"])
def test_a_simulated_cluster_checkpoint_says_every_tensors_layout(tmp_path, algorithm):
    # (Sandblaster's batches of 64 in 4 units, not its whole 10,000 samples in 32: the same tensors, 1/5 the CPU)
    small = ["sandblaster.batch=64", "sandblaster.units=4"] if algorithm == "sandblaster" else []
    cfg = load_config("cat-demo", [*SMALL, "cluster.runner=simulated", "cluster.workers=2", "cluster.shards=2",
                                   f"cluster.algorithm={algorithm}", *small])
    train(cfg, RunDir.create(tmp_path / "run", cfg))
    stem = "server" if algorithm == "downpour" else "sandblaster"
    meta, tensors = _read(tmp_path / "run" / "checkpoints" / f"{stem}.safetensors")
    assert tensors and all(f"layout.{k}" in meta for k in tensors), sorted(set(tensors) - {k[7:] for k in meta})
    for key, t in tensors.items():
        if t.dim() == 1:
            assert _shape_words(meta[f"layout.{key}"]) == [t.numel()], key
    model = RunDir(tmp_path / "run").load_model()
    params = "params" if algorithm == "downpour" else "w"
    rebuilt = _rebuild([meta[f"layout.shard{j}.{params}"] for j in range(2)],
                       [tensors[f"shard{j}.{params}"].float() for j in range(2)])
    for key, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(rebuilt[key], p.detach(), rtol=0, atol=0, msg=key)
    if algorithm == "downpour":     # each replica by the parameter list in the first worker's words, named by the rest
        assert not _PIECE.search(meta["layout.sim.w1.params"])
        assert meta["layout.sim.w1.params"].endswith("as sim.w0.params's words list them")
        trainable = {key: p for key, p in model.named_parameters() if p.requires_grad}
        for w in range(2):
            replica = _rebuild([meta["layout.sim.w0.params"]], [tensors[f"sim.w{w}.params"]])
            assert list(replica) == list(trainable), w
            assert all(replica[k].shape == p.shape and not replica[k].isnan().any() for k, p in trainable.items())


def test_a_checkpoint_whose_workers_each_list_the_parameters_resumes(tmp_path, monkeypatch):
    """A simulator's checkpoint written with the parameter list in every sim.w<w>.params's words (as before
    2026-12-07) resumes, and the checkpoint the resumed run writes lists it once."""
    import downpour.ps.checkpoint as checkpoint

    def every_worker_lists(tensors, params=None, words=None):
        out = sim_layouts(tensors, params, words)
        return out | {k: out["sim.w0.params"].replace("worker 0's", f"worker {k[5:-7]}'s") for k in out
                      if re.fullmatch(r"sim\.w\d+\.params", k)}

    sets = [*SMALL, "cluster.runner=simulated", "cluster.workers=2", "cluster.shards=2"]
    monkeypatch.setattr(checkpoint, "sim_layouts", every_worker_lists)
    cfg = load_config("rbm-digits", sets)
    train(cfg, RunDir.create(tmp_path / "run", cfg))
    stem = tmp_path / "run" / "checkpoints" / "server.safetensors"
    assert _PIECE.search(_read(stem)[0]["layout.sim.w1.params"])         # written the old way
    monkeypatch.undo()
    summary = train(load_config("rbm-digits", [*sets, "train.steps=4"]), RunDir.open(tmp_path / "run"), resume=True)
    assert summary["resumed_from"] == 2 and summary["steps"] == 4
    assert not _PIECE.search(_read(stem)[0]["layout.sim.w1.params"])


def test_a_model_parallel_servers_shards_say_where_each_block_goes_in_the_merged_model(tmp_path):
    from downpour.parallel import merge_model, partition_model
    from downpour.parallel.partition import partition_layouts

    model = partition_model(create_model("cat-demo", tile=0), 2)
    layout = ParamLayout(model)
    vec = layout.params_to_vector(model)
    half = layout.numel // 2
    states = [({"params": vec[:half].clone()}, {"start": 0}), ({"params": vec[half:].clone()}, {"start": half})]
    save_server(tmp_path / "server", states, {"step": 0}, params=layout, words=partition_layouts(model))
    meta, tensors = _read(tmp_path / "server.safetensors")
    said = [meta[f"layout.shard{j}.params"] for j in range(2)]
    rebuilt = _rebuild(said, [tensors[f"shard{j}.params"] for j in range(2)])
    merged = dict(merge_model(model).named_parameters())
    blocks = re.findall(r"(partitions\.\d+\.weights\.\d+) \[[\d, ]*\][^=]* = .*?output rows \[(\d+), (\d+)\) and "
                        r"columns \[(\d+), (\d+)\) of the merged model's (\S+?)(?:;|$)", " ".join(said))
    assert len(blocks) == 2 * 2         # 2 partitions of 2 untied stages
    for name, r0, r1, c0, c1, target in blocks:
        assert torch.equal(merged[target][int(r0):int(r1), int(c0):int(c1)], rebuilt[name]), name
