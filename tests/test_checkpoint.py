import hashlib

import pytest
import torch
from safetensors import safe_open

from downpour.errors import DownpourError
from downpour.train.checkpoint import CheckpointError, load_state, read_tensors, save_state, write_tensors
from downpour.train.optimizer_state import load_optimizer_state, optimizer_state


def test_optimizer_state_round_trips_through_safetensors(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, meta = optimizer_state(opt)
    save_state(tmp_path / "ck", tensors, meta)
    assert not list(tmp_path.glob("*.tmp"))
    t2, m2 = load_state(tmp_path / "ck")
    twin = torch.nn.Linear(3, 2)
    twin.load_state_dict(model.state_dict())
    opt2 = torch.optim.Adam(twin.parameters(), lr=0.1)
    assert not opt2.state                    # a fresh optimiser: every entry below comes from the file
    load_optimizer_state(opt2, t2, m2)
    assert len(opt2.state) == len(opt.state) == 2
    for p, q in zip(model.parameters(), twin.parameters()):
        a, b = opt.state[p], opt2.state[q]
        assert set(a) == set(b) == {"step", "exp_avg", "exp_avg_sq"}
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])
        assert float(a["step"]) == float(b["step"]) == 1.0
    # and it goes on as the original does: one more step on the same batch, the same parameters
    x = torch.randn(4, 3)
    for net, o in ((model, opt), (twin, opt2)):
        o.zero_grad()
        net(x).sum().backward()
        o.step()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), twin.parameters()))


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="ck.safetensors' is missing"):
        load_state(tmp_path / "ck")


def test_a_damaged_or_incomplete_checkpoint_is_named(tmp_path):
    save_state(tmp_path / "ck", {"w": torch.ones(3)}, {"step": 4})
    with pytest.raises(CheckpointError, match=r"ck.json' lacks key 'skipped'"):
        load_state(tmp_path / "ck", meta_keys=("step", "skipped"))
    with pytest.raises(CheckpointError, match=r"ck.safetensors' lacks key 'rng.torch'"):
        load_state(tmp_path / "ck", tensor_keys=("rng.torch",))
    (tmp_path / "ck.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="does not hold a JSON object"):
        load_state(tmp_path / "ck")
    (tmp_path / "ck.json").write_text("{}")
    data = (tmp_path / "ck.safetensors").read_bytes()
    (tmp_path / "ck.safetensors").write_bytes(data[:5])
    with pytest.raises(CheckpointError, match=r"ck.safetensors' is not a readable safetensors file"):
        load_state(tmp_path / "ck")
    assert issubclass(CheckpointError, DownpourError)   # the CLI prints these without a traceback


def test_tensor_files_get_the_mode_any_file_written_here_gets(tmp_path):
    """safetensors writes owner-only (0600): another account on a shared file system could not read a run's model
    or checkpoint, while its .json files beside them were readable."""
    import os
    import stat

    from downpour.train.checkpoint import FILE_MODE

    save_state(tmp_path / "ck", {"w": torch.ones(3)}, {"step": 1})
    json_mode = stat.S_IMODE(os.stat(tmp_path / "ck.json").st_mode)
    assert stat.S_IMODE(os.stat(tmp_path / "ck.safetensors").st_mode) == FILE_MODE == json_mode


def test_the_same_optimisers_checkpoint_loads_with_a_setting_another_torch_added_or_lacks():
    """The settings check refused Adam's own checkpoint when the group held a key this torch's Adam lacks
    (one a newer torch added); another optimiser's checkpoint is still refused, by name or by its own settings."""
    param = torch.nn.Parameter(torch.ones(3))
    adam = torch.optim.Adam([param], lr=0.1)
    param.grad = torch.ones(3)
    adam.step()
    tensors, meta = optimizer_state(adam)
    newer = {**meta, "param_groups": [{**meta["param_groups"][0], "a_newer_setting": 1}]}
    load_optimizer_state(torch.optim.Adam([torch.nn.Parameter(torch.ones(3))], lr=0.1), tensors, newer)
    older = {k: v for k, v in newer.items() if k != "optimizer"}                    # (no name recorded)
    load_optimizer_state(torch.optim.Adam([torch.nn.Parameter(torch.ones(3))], lr=0.1), tensors, older)
    with pytest.raises(ValueError, match="saved by Adam, and this run uses SGD"):
        load_optimizer_state(torch.optim.SGD([torch.nn.Parameter(torch.ones(3))], lr=0.1), tensors, meta)
    with pytest.raises(ValueError, match="settings amsgrad, betas are not SGD's"):
        load_optimizer_state(torch.optim.SGD([torch.nn.Parameter(torch.ones(3))], lr=0.1), tensors, older)


def _flip_inside_data(path):
    """One byte of ``path``'s tensor data inverted: its size and header stay, so it reads as a whole file."""
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_checkpoint_damaged_inside_its_data_is_named_not_loaded(tmp_path):
    """Bytes changed inside the tensors (size and header intact) read as a whole file: the error said only that a
    write was cut between the two files, not that the bytes on disk changed."""
    save_state(tmp_path / "ck", {"w": torch.arange(64, dtype=torch.float32)}, {"step": 4})
    _flip_inside_data(tmp_path / "ck.safetensors")
    with pytest.raises(CheckpointError, match=r"ck.safetensors' and .*ck.json' do not belong together: the tensors' "
                                              r"SHA-256 .*bytes changed on disk"):
        load_state(tmp_path / "ck")


def test_a_damaged_checkpoint_falls_back_to_the_previous_one_that_verifies(tmp_path, caplog):
    """The previous pair (kept while a save is under way) verifies and the new one does not: the resume goes on from
    the previous one and says why, naming the damage as a possible cause, not only a cut write."""
    save_state(tmp_path / "ck", {"w": torch.ones(64)}, {"step": 8})
    save_state(tmp_path / "ck.prev", {"w": torch.zeros(64)}, {"step": 4})     # (as a save under way keeps it)
    _flip_inside_data(tmp_path / "ck.safetensors")
    with caplog.at_level("WARNING"):
        tensors, meta = load_state(tmp_path / "ck")
    assert meta["step"] == 4 and torch.equal(tensors["w"], torch.zeros(64))
    assert "does not verify" in caplog.text and "bytes changed on disk" in caplog.text


def test_a_save_over_a_whole_checkpoint_hashes_only_the_file_it_writes(tmp_path, monkeypatch):
    """Deciding to keep the pair it replaced hashed that pair too, doubling the digest's cost of every save after the
    first; only a save cut short (some of ``*.prev.*`` left) calls for that check."""
    import downpour.train.checkpoint as checkpoint

    save_state(tmp_path / "ck", {"w": torch.zeros(64)}, {"step": 4})
    hashed, real = [], checkpoint.sha256_of
    monkeypatch.setattr(checkpoint, "sha256_of", lambda path: hashed.append(path.name) or real(path))
    save_state(tmp_path / "ck", {"w": torch.ones(64)}, {"step": 8})
    assert hashed == ["ck.safetensors.tmp"]
    assert load_state(tmp_path / "ck")[1]["step"] == 8


def test_a_large_file_is_hashed_once_while_it_stays_the_same_file(tmp_path, monkeypatch):
    """One `downpour analyze` hashed model.safetensors three times (model_step twice, load_model) and a resume its
    checkpoint twice, each a full read of a model of gigabytes; a file replaced since (a save renames a new one in)
    is hashed again, and so is one written into since: a damage of either is still found."""
    import types

    import downpour.train.checkpoint as checkpoint

    hashed = []
    counting = types.SimpleNamespace(sha256=lambda: hashed.append(1) or hashlib.sha256())
    monkeypatch.setattr(checkpoint, "hashlib", counting)
    big = {"w": torch.zeros(4 << 20)}                               # 16 MiB
    save_state(tmp_path / "ck", big, {"step": 4})
    hashed.clear()
    for _ in range(3):
        assert load_state(tmp_path / "ck")[1]["step"] == 4
    assert len(hashed) == 1
    _flip_inside_data(tmp_path / "ck.safetensors")                 # damaged in place: its inode, size and header kept
    with pytest.raises(CheckpointError, match="do not belong together"):
        load_state(tmp_path / "ck")
    save_state(tmp_path / "ck", {"w": torch.ones_like(big["w"])}, {"step": 8})
    save_state(tmp_path / "other", {"w": torch.full_like(big["w"], 2.0)}, {"step": 8})
    (tmp_path / "other.safetensors").rename(tmp_path / "ck.safetensors")     # a whole file, not the one recorded
    with pytest.raises(CheckpointError, match="do not belong together"):
        load_state(tmp_path / "ck")


def test_a_tensors_file_with_layouts_is_the_same_bytes_each_time_it_is_written(tmp_path):
    """safetensors writes its metadata from a hash map, in an order that changed from one write to the next: two runs
    of one seed wrote models whose headers differed once the layouts made more than one key."""
    tensors = {f"t{i}": torch.full((2, 3), float(i)) for i in range(6)}
    layouts = {name: f"what {name} is" for name in tensors}
    written = []
    for i in range(8):
        write_tensors(tensors, tmp_path / f"{i}.safetensors", layouts)
        written.append((tmp_path / f"{i}.safetensors").read_bytes())
    assert all(b == written[0] for b in written)
    with safe_open(str(tmp_path / "0.safetensors"), "pt") as f:
        assert f.metadata()["layout.t3"] == "what t3 is"
    assert all(torch.equal(read_tensors(tmp_path / "0.safetensors")[k], v) for k, v in tensors.items())
