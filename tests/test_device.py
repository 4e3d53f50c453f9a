"""The GPU path: kernels chosen by device, CUDA == CPU to float32 tolerance, cuda workers in the simulator.

The CPU tests run everywhere: the untied kernel's batched schedule (the one a GPU gets) against the
threaded one, the dispatch, and the config checks. Tests marked ``cuda`` run only where torch sees a
GPU (the device machine) and are skipped cleanly elsewhere.
"""
import dataclasses

import pytest
import torch

from downpour.batch import Batch
from downpour.config import ConfigError, load_config
from downpour.layers import L2Pool2d, LocalContrastNorm2d, LocallyConnected2d
from downpour.layers import _lc_kernels as K
from downpour.layers.gating import VarianceGate
from downpour.models.registry import build, resolve
from downpour.preflight import check_run_config
from downpour.ps.setup import worker_gpus

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the device machine)")


def _shape(stride=1):
    torch.manual_seed(0)
    x = torch.randn(3, 2, 13, 11, dtype=torch.float64)
    w = K.new_banks(*(((13 - 4) // stride + 1, (11 - 4) // stride + 1)), 5, 2, 4, dtype=torch.float64)
    torch.nn.init.normal_(w)
    return x, w


@pytest.mark.parametrize("stride", [1, 2])
def test_batched_schedule_equals_threaded_schedule_on_cpu(stride):
    """The GPU's schedule (one span, large chunks) computes what the CPU thread pool does: forward,
    input gradient and weight gradient, in float64 so only the summation order may differ."""
    x, w = _shape(stride)
    y = K.lc_apply(x, w, stride, schedule="batched")
    assert torch.allclose(y, K.lc_apply(x, w, stride, schedule="threads", chunk_bytes=4096), rtol=1e-12)
    g = torch.randn_like(y)
    got = K.lc_backward(g, stride, 4, (13, 11), w=w, x=x, schedule="batched")
    want = K.lc_backward(g, stride, 4, (13, 11), w=w, x=x, schedule="threads", chunk_bytes=4096)
    assert all(torch.allclose(a, b, rtol=1e-12) for a, b in zip(got, want))
    # and both against the obvious layer
    from downpour.layers import locally_connected_reference
    assert torch.allclose(y, locally_connected_reference(x, w, stride), rtol=1e-10)


def test_schedule_follows_the_device_and_bad_names_are_refused():
    """CPU tensors get the thread pool's row ranges and cache-sized chunks; any other device (here
    torch's 'meta' device, standing in for a GPU) one range and the large budget."""
    cpu, meta = torch.empty(1), torch.empty(1, device="meta")
    spans, budget, threaded = K._plan(cpu, 40, 4, K.CHUNK_BYTES, None)
    assert budget == K.CHUNK_BYTES and spans == K.split_rows(40, K.streams(40, 4)) and threaded
    assert K._plan(meta, 40, 4, K.CHUNK_BYTES, None) == ([(0, 40)], K.GPU_CHUNK_BYTES, False)
    assert K._plan(cpu, 40, 4, K.CHUNK_BYTES, "batched") == ([(0, 40)], K.GPU_CHUNK_BYTES, False)
    x, w = _shape()
    with pytest.raises(ValueError, match="schedule must be one of"):
        K.lc_apply(x, w, 1, schedule="gpu")


def test_cluster_device_checks_name_the_key():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: 'cuda' is accepted")
    cfg = load_config("cat-demo", [("train.device", "cuda"), ("cluster.runner", "simulated")])
    with pytest.raises(ConfigError, match="train.device='cuda'"):
        check_run_config(cfg)


def test_the_ray_runner_takes_cuda_from_a_driver_without_a_gpu():
    # On a cluster the GPUs are on the workers' nodes: the driver's own torch is not asked.
    cfg = load_config("cat-demo", [("train.device", "cuda"), ("cluster.runner", "ray")])
    assert check_run_config(cfg).train.device == "cuda"


@pytest.mark.parametrize("device, workers, each, available, partitions, want", [
    ("cpu", 2, 1.0, 8.0, 1, 0.0),
    ("cuda", 2, 1.0, 2.0, 1, 1.0),
    ("cuda", 4, 0.5, 2.0, 1, 0.5),        # two workers share a GPU
    ("auto", 2, 1.0, 2.0, 1, 1.0),
    ("auto", 3, 1.0, 2.0, 1, 0.0),        # too few for every worker: all on CPU
    ("auto", 2, 1.0, 4.0, 2, 0.0),        # model-parallel partitions compute on CPU
])
def test_worker_gpus(device, workers, each, available, partitions, want):
    cfg = load_config("cat-demo", [("train.device", device), ("cluster.workers", workers),
                                   ("cluster.worker_gpus", each), ("cluster.partitions", partitions)])
    assert worker_gpus(cfg, available) == want


def test_cuda_on_a_ray_cluster_with_too_few_gpus_names_the_keys():
    cfg = load_config("cat-demo", [("train.device", "cuda"), ("cluster.workers", 3)])
    with pytest.raises(ConfigError, match=r"has 2 GPUs and the run's 3 workers ask for 3 \(cluster.worker_gpus = 1"):
        worker_gpus(cfg, 2.0)


# --- on a GPU ------------------------------------------------------------------------------------
def _same(cpu_module, make_input, atol=1e-4):
    """Forward and gradients of ``cpu_module`` on CPU and on CUDA agree to float32 tolerance."""
    torch.manual_seed(0)
    x = make_input()
    gpu_module = __import__("copy").deepcopy(cpu_module).cuda()
    xc, xg = x.clone().requires_grad_(), x.cuda().requires_grad_()
    yc, yg = cpu_module(xc), gpu_module(xg)
    gy = torch.randn_like(yc)
    yc.backward(gy)
    yg.backward(gy.cuda())
    scale = yc.abs().max().item() + 1
    assert torch.allclose(yg.cpu(), yc.detach(), atol=atol * scale, rtol=1e-4)
    assert torch.allclose(xg.grad.cpu(), xc.grad, atol=atol * scale, rtol=1e-4)
    for pc, pg in zip(cpu_module.parameters(), gpu_module.parameters()):
        assert torch.allclose(pg.grad.cpu(), pc.grad, atol=atol * scale, rtol=1e-4)


@cuda
@pytest.mark.parametrize("tile", [None, 3, 1])        # untied, tiled, convolution
@pytest.mark.parametrize("stride", [1, 2])
def test_locally_connected_on_cuda_equals_cpu(tile, stride):
    _same(LocallyConnected2d(3, 8, 24, 6, stride=stride, tile=tile, bias=True, norm=1.0),
          lambda: torch.randn(4, 3, 24, 24))


@cuda
def test_untied_adjoint_on_cuda_equals_cpu():
    layer = LocallyConnected2d(2, 4, 16, 5)
    y = torch.randn(3, 4, 12, 12)
    assert torch.allclose(layer.cuda().adjoint(y.cuda()).cpu(), layer.cpu().adjoint(y), atol=1e-4)


@cuda
def test_pooling_and_lcn_on_cuda_equal_cpu():
    _same(L2Pool2d(3, stride=2, channels=8), lambda: torch.randn(2, 8, 15, 15))
    for sums in ("banded", "direct"):
        _same(LocalContrastNorm2d(8, kernel_size=5, sums=sums), lambda: torch.randn(2, 8, 15, 15))


@cuda
@pytest.mark.parametrize("mode", ["gated", "dense", "exact"])   # auto: the path (and so the result) may differ by device
def test_variance_gate_on_cuda_equals_cpu(mode):
    x = torch.rand(2, 1, 40, 40)
    x[:, :, :, :20] = 0.5
    for layer in (LocallyConnected2d(1, 4, 40, 8), torch.nn.Conv2d(1, 4, 8)):
        with torch.no_grad():
            want = VarianceGate(layer, 1e-3, 4, mode=mode)(x)
            got = VarianceGate(layer.cuda(), 1e-3, 4, mode=mode)(x.cuda()).cpu()
        layer.cpu()
        assert torch.allclose(got, want, atol=1e-4)


@cuda
def test_one_cat_training_step_on_cuda_equals_cpu():
    cfg = resolve(load_config("cat-demo", []))
    torch.manual_seed(0)
    model, objective = build(cfg, (1, 32, 32))
    gpu = __import__("copy").deepcopy(model).cuda()
    batch = Batch(torch.randn(8, 1, 32, 32), torch.zeros(8, dtype=torch.int64))
    losses = []
    for m, b in ((model, batch), (gpu, batch.to("cuda"))):
        m.zero_grad()
        total, _ = objective(m.forward_train(b))
        total.backward()
        losses.append(total.item())
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    for pc, pg in zip(model.parameters(), gpu.parameters()):
        if pc.grad is not None:
            assert torch.allclose(pg.grad.cpu(), pc.grad, atol=1e-4 * (pc.grad.abs().max().item() + 1e-6), rtol=1e-3)


@cuda
def test_simulated_runner_trains_on_cuda_workers_like_on_cpu():
    from downpour.ps.in_memory import simulate
    sets = [("train.steps", 8), ("cluster.workers", 2), ("cluster.runner", "simulated"), ("train.batch_size", 4),
            ("train.tensorboard", False)]
    cpu = simulate(check_run_config(load_config("cat-demo", sets)))
    gpu = simulate(check_run_config(load_config("cat-demo", [*sets, ("train.device", "cuda")])))
    for (name, a), b in zip(cpu.model.state_dict().items(), gpu.model.state_dict().values()):
        assert torch.allclose(a, b.cpu(), atol=1e-3, rtol=1e-3), name


@cuda
def test_a_resumed_run_draws_the_devices_random_numbers_where_it_stopped(tmp_path):
    """The checkpoint kept only the CPU's RNG; set-up's manual_seed reset the GPU's, so an RBM (its samples drawn
    on the device) resumed onto the stream's start instead of where it stood."""
    from safetensors.torch import load_file

    from downpour.train.loop import run_local
    from downpour.train.rundir import RunDir

    sets = ["train.device=cuda", "train.tensorboard=false", "train.threads=1", "train.log_every=5"]
    whole = load_config("rbm-digits", [*sets, "train.steps=10"])
    run_local(whole, RunDir.create(tmp_path / "whole", whole))
    half = load_config("rbm-digits", [*sets, "train.steps=5"])
    run_local(half, RunDir.create(tmp_path / "half", half))
    run_local(load_config(str(tmp_path / "half/config.toml"), ["train.steps=10"]), RunDir.open(tmp_path / "half"), resume=True)
    a, b = load_file(str(tmp_path / "whole/model.safetensors")), load_file(str(tmp_path / "half/model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_auto_with_partitions_computes_on_cpu_on_every_runner(monkeypatch):
    """On a machine with a GPU, train.device = 'auto' with cluster.partitions > 1 takes the CPU the partitions compute
    on, on the simulator and on Ray alike (not refused on one and run on CPU on the other)."""
    from downpour.preflight import check_run_config

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cfg = load_config("cat-untied", [("cluster.runner", "simulated"), ("cluster.workers", 2), ("cluster.shards", 4),
                                     ("cluster.partitions", 2), ("train.device", "auto")])
    assert check_run_config(cfg).cluster.partitions == 2
    with pytest.raises(ConfigError, match="partitions compute on CPU"):      # asked for by name: still refused
        check_run_config(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, device="cuda")))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=cuda)])
def test_a_resumed_simulated_run_draws_the_devices_random_numbers_where_it_stopped(tmp_path, monkeypatch, device):
    """The simulator's checkpoint kept only the CPU's RNG: on a GPU an RBM's samples (drawn on the device) resumed
    onto the stream's start. The CPU case holds the harness: a run stopped by a Ctrl-C and resumed is the whole run."""
    from ctrl_c import ctrl_c_after_push
    from safetensors.torch import load_file

    import downpour.ps.recorder as recorder_module
    from downpour.ps.cluster import run_cluster
    from downpour.train.rundir import RunDir

    cfg = load_config("rbm-digits", ["cluster.runner=simulated", "cluster.workers=2", "cluster.checkpoint_every=1",
                                     f"train.device={device}", "train.threads=1", "train.steps=10",
                                     "train.log_every=5", "train.tensorboard=false"])
    run_cluster(cfg, RunDir.create(tmp_path / "whole", cfg))
    on_push = ctrl_c_after_push(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        run_cluster(cfg, RunDir.create(tmp_path / "half", cfg))
    monkeypatch.setattr(recorder_module.Recorder, "on_push", on_push)
    run_cluster(load_config(str(tmp_path / "half/config.toml")), RunDir.open(tmp_path / "half"), resume=True)
    a, b = load_file(str(tmp_path / "whole/model.safetensors")), load_file(str(tmp_path / "half/model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
