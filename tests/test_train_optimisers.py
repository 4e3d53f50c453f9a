"""train/optimisers.py against torch.optim itself: the same updates bit for bit, the same state_dict, and
checkpoints that cross between the two and go on as if never interrupted."""
import copy

import pytest
import torch

from downpour.train import optimisers
from downpour.train.checkpoint import load_state, save_state
from downpour.train.optimizer_state import load_optimizer_state, optimizer_state

# what configs reach (train.optimizer, train.lr, train.momentum), and the torch settings a checkpoint could carry
CASES = [("SGD", {"lr": 0.1}), ("SGD", {"lr": 0.1, "momentum": 0.9}),
         ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
         ("Adagrad", {"lr": 0.05}), ("Adagrad", {"lr": 0.05, "initial_accumulator_value": 0.1, "lr_decay": 0.01}),
         ("Adam", {"lr": 0.01}), ("Adam", {"lr": 0.01, "betas": (0.8, 0.99), "amsgrad": True, "weight_decay": 0.01})]
# settings an older torch's group may lack: torch's __setstate__ fills them in when it loads one
NEWER = ("maximize", "foreach", "capturable", "differentiable", "fused", "decoupled_weight_decay", "nesterov",
         "amsgrad")
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


def _params(device):
    """A (4, 3) weight and a (5,) bias, the same numbers each call."""
    g = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(4, 3, generator=g).to(device)),
            torch.nn.Parameter(torch.randn(5, generator=g).to(device))]


def _steps(opt, params, steps, seed):
    """``steps`` updates on seeded gradients; the bias has none at the second (a greedy schedule's held stage)."""
    g = torch.Generator().manual_seed(seed)
    for i in range(steps):
        for j, p in enumerate(params):
            grad = torch.randn(p.shape, generator=g).to(p.device)
            p.grad = None if (i == 1 and j == 1) else grad
        opt.step()


def _same_state(a, b):
    """Two state_dicts equal: groups setting for setting (betas read back from JSON are a list), state tensor
    for tensor (torch.equal: every bit)."""
    def settings(groups):
        return [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()} for g in groups]
    assert settings(a["param_groups"]) == settings(b["param_groups"])
    assert a["state"].keys() == b["state"].keys()
    for idx in a["state"]:
        assert a["state"][idx].keys() == b["state"][idx].keys()
        for key, value in a["state"][idx].items():
            other = b["state"][idx][key]
            assert (torch.equal(value, other) and value.dtype == other.dtype and value.device == other.device
                    if isinstance(value, torch.Tensor) else value == other), (idx, key)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name, settings", CASES, ids=lambda c: str(c))
def test_each_optimiser_updates_and_records_its_state_as_torchs_does_bit_for_bit(name, settings, device):
    ours, theirs = _params(device), _params(device)
    ours_opt = getattr(optimisers, name)(ours, **settings)
    theirs_opt = getattr(torch.optim, name)(theirs, **settings)
    _same_state(ours_opt.state_dict(), theirs_opt.state_dict())            # (Adagrad's state is there at once)
    _steps(ours_opt, ours, 6, seed=1)
    _steps(theirs_opt, theirs, 6, seed=1)
    assert all(torch.equal(p, q) for p, q in zip(ours, theirs))
    _same_state(ours_opt.state_dict(), theirs_opt.state_dict())
    a, b = optimizer_state(ours_opt), optimizer_state(theirs_opt)         # the checkpoint's split: the same files
    assert a[1] == b[1] and a[0].keys() == b[0].keys() and all(torch.equal(a[0][k], b[0][k]) for k in a[0])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name, settings", CASES, ids=lambda c: str(c))
@pytest.mark.parametrize("saver, loader", [("torch", "ours"), ("ours", "torch")])
def test_a_checkpoint_crosses_between_torchs_optimiser_and_ours_and_goes_on_unchanged(tmp_path, name, settings, device,
                                                                                   saver, loader):
    """Saved after 3 steps through the checkpoint files (safetensors + JSON) by one, loaded by the other into
    fresh parameters holding the saved ones, 3 more steps: the uninterrupted run of torch's own, bit for bit."""
    make = {"torch": getattr(torch.optim, name), "ours": getattr(optimisers, name)}
    straight = _params(device)
    straight_opt = torch.optim.__dict__[name](straight, **settings)
    _steps(straight_opt, straight, 3, seed=1)
    _steps(straight_opt, straight, 3, seed=2)

    first = _params(device)
    first_opt = make[saver](first, **settings)
    _steps(first_opt, first, 3, seed=1)
    save_state(tmp_path / "ck", *optimizer_state(first_opt))
    tensors, meta = load_state(tmp_path / "ck")
    second = _params(device)
    with torch.no_grad():
        for p, q in zip(second, first):
            p.copy_(q)
    second_opt = make[loader](second, **{**settings, "lr": 123.0})      # (the file's rate is the one that counts)
    # the tensors as read, on the CPU, as the loop's resume passes them: the load puts the moments on the
    # parameters' device and keeps ``step`` where it is (torch's policy), on the CPU as in the straight run
    load_optimizer_state(second_opt, tensors, meta)
    _steps(second_opt, second, 3, seed=2)
    assert all(torch.equal(p, q) for p, q in zip(second, straight))
    _same_state(second_opt.state_dict(), straight_opt.state_dict())


@pytest.mark.parametrize("name", ["SGD", "Adagrad", "Adam"])
def test_an_older_torchs_state_loads_as_torchs_does(name):
    """An older torch kept ``step`` as a plain number (in the checkpoint's JSON scalars) and recorded fewer
    settings (no ``decoupled_weight_decay``, ``fused``, ...): torch makes the step a float32 tensor and fills the
    settings in on load, and so must these, or the kernel refuses the step or the group lacks a key."""
    ours, theirs = _params("cpu"), _params("cpu")
    saved = getattr(torch.optim, name)(_params("cpu"), lr=0.01, **({"momentum": 0.9} if name == "SGD" else {}))
    _steps(saved, saved.param_groups[0]["params"], 2, seed=1)
    state = saved.state_dict()
    old = {"param_groups": [{k: v for k, v in g.items() if k not in NEWER} for g in state["param_groups"]],
           "state": {i: {k: float(v) if k == "step" else v for k, v in s.items()} for i, s in state["state"].items()}}
    ours_opt, theirs_opt = getattr(optimisers, name)(ours, lr=0.5), getattr(torch.optim, name)(theirs, lr=0.5)
    ours_opt.load_state_dict(copy.deepcopy(old))       # (each its own moments: a loaded tensor is used, not copied)
    theirs_opt.load_state_dict(copy.deepcopy(old))
    _same_state(ours_opt.state_dict(), theirs_opt.state_dict())
    _steps(ours_opt, ours, 2, seed=2)
    _steps(theirs_opt, theirs, 2, seed=2)
    assert all(torch.equal(p, q) for p, q in zip(ours, theirs))


@pytest.mark.parametrize("key", ["fused", "capturable", "differentiable"])
def test_a_mode_these_do_not_run_is_refused_by_name_not_ignored(key):
    """A checkpoint asking for torch's fused or capturable step (a CUDA graph's state on the device) or a
    differentiable one: stepping it the default way would train otherwise than torch, with no word."""
    opt = optimisers.Adam(_params("cpu"), lr=0.01)
    state = opt.state_dict()
    state["param_groups"][0][key] = True
    with pytest.raises(ValueError, match=f"{key} = True is not offered"):
        opt.load_state_dict(state)
