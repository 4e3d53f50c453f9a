"""Dataset: shards, seeded endless batches, augmentation, and bit-for-bit reproducible builds."""
import json

import pytest
import torch

from downpour.config import DataConfig
from downpour.data import Augment, Dataset, build_dataset


def _numbered(n=10):
    """Sample i is a 2x2 image filled with i, so a batch tells which rows it holds."""
    x = torch.arange(n, dtype=torch.float32)[:, None, None, None].expand(n, 1, 2, 2).contiguous()
    return Dataset(x, torch.arange(n), info={"source": "test"})


@pytest.mark.parametrize("n_rows, n_shards", [(10, 3), (7, 7), (100, 8)])
def test_shards_are_disjoint_contiguous_and_cover_everything(n_rows, n_shards):
    data = _numbered(n_rows)
    shards = [data.shard(i, n_shards) for i in range(n_shards)]
    rows = [s.y.tolist() for s in shards]
    assert sum(rows, []) == list(range(n_rows))              # disjoint, in order, complete
    assert all(r == list(range(r[0], r[-1] + 1)) for r in rows)   # contiguous
    assert max(map(len, rows)) - min(map(len, rows)) <= 1
    assert shards[1].info["shard"] == {"index": 1, "of": n_shards, "start": rows[1][0], "stop": rows[1][-1] + 1}


def test_a_pickled_shard_holds_only_its_own_rows():
    """A shard's rows are views: pickled (sent to a Ray worker) they carried the whole set's storage."""
    import pickle
    data = _numbered(1000)
    shard = data.shard(3, 4)
    sent = pickle.loads(pickle.dumps(shard))
    assert sent.x.untyped_storage().nbytes() == 250 * 4 * 4 and sent.y.untyped_storage().nbytes() == 250 * 8
    assert torch.equal(sent.x, shard.x) and torch.equal(sent.y, shard.y) and sent.info == shard.info
    assert shard.x.untyped_storage().data_ptr() == data.x.untyped_storage().data_ptr()   # in process: still views
    whole = pickle.loads(pickle.dumps(data))
    assert torch.equal(whole.x, data.x)


def test_shard_errors():
    data = _numbered(3)
    with pytest.raises(ValueError, match="cannot split 3 samples into 4 shards"):
        data.shard(0, 4)
    with pytest.raises(ValueError, match="0 <= i < n"):
        data.shard(3, 3)


def test_batches_are_endless_full_reshuffled_and_cover_each_epoch():
    data = _numbered(10)
    stream = data.batches(4, torch.Generator().manual_seed(0))
    seen = torch.cat([next(stream).y for _ in range(10)])   # 40 rows = exactly 4 epochs
    epochs = seen.reshape(4, 10)
    for epoch in epochs:
        assert sorted(epoch.tolist()) == list(range(10))
    assert not torch.equal(epochs[0], epochs[1])              # a new order every epoch


def _one_batch_at_a_time(data, batch_size, generator):
    """The reference order: draw a permutation when fewer than a batch of indices are left, gather one batch."""
    pending = torch.empty(0, dtype=torch.int64)
    while True:
        while len(pending) < batch_size:
            pending = torch.cat([pending, torch.randperm(len(data), generator=generator)])
        idx, pending = pending[:batch_size], pending[batch_size:]
        x = data.x.index_select(0, idx)
        yield x if data.augment is None else data.augment(x, generator), data.y.index_select(0, idx)


@pytest.mark.parametrize("n, batch_size, augment", [(10, 4, False), (101, 7, False), (5, 8, False), (64, 1, False),
                                                    (37, 5, True)])
def test_block_gathered_batches_equal_one_batch_at_a_time(n, batch_size, augment):
    """Batches are slices of blocks gathered many batches at once: same rows, same generator draws."""
    data = _numbered(n)
    if augment:
        data = Dataset(torch.rand(n, 1, 6, 6), torch.arange(n), {}, augment=Augment(shift=1, flip=True))
    got = data.batches(batch_size, torch.Generator().manual_seed(3))
    want = _one_batch_at_a_time(data, batch_size, torch.Generator().manual_seed(3))
    for _ in range(3 * n + 70):           # past several blocks of 64 batches and epochs
        batch, (x, y) = next(got), next(want)
        assert torch.equal(batch.x, x) and torch.equal(batch.y, y)


def test_batches_are_deterministic_for_a_seeded_generator():
    data = build_dataset(DataConfig(size=6, samples=50, shift=1, scale=0.1, flip=True), seed=0)
    a = data.batches(8, torch.Generator().manual_seed(5))
    b = data.batches(8, torch.Generator().manual_seed(5))
    c = data.batches(8, torch.Generator().manual_seed(6))
    first_a, first_b, first_c = next(a), next(b), next(c)
    assert torch.equal(first_a.x, first_b.x) and first_a.y is None
    assert not torch.equal(first_a.x, first_c.x)
    for _ in range(10):
        assert torch.equal(next(a).x, next(b).x)


def test_same_seed_same_dataset_bit_for_bit_and_other_seed_differs():
    cfg = DataConfig(source="natural+faces", size=8, samples=300, normalize="patch", whiten="zca")
    one, two, other = build_dataset(cfg, 11), build_dataset(cfg, 11), build_dataset(cfg, 12)
    assert torch.equal(one.x, two.x) and one.info == two.info
    assert json.loads(json.dumps(one.info)) == one.info      # info is plain JSON
    assert torch.equal(one.whitener.matrix_, two.whitener.matrix_)
    assert not torch.equal(one.x, other.x)


def test_augment_shift_moves_pixels_exactly_and_flip_mirrors():
    x = torch.arange(36, dtype=torch.float32).reshape(1, 1, 6, 6).repeat(64, 1, 1, 1)
    out = Augment(shift=1)(x, torch.Generator().manual_seed(0))
    inner = out[:, 0, 1:-1, 1:-1]
    # every inner 4x4 block is the original moved by a whole pixel (dx, dy) in {-1, 0, 1}^2
    for sample in inner:
        assert any(torch.equal(sample, x[0, 0, 1 - dy:5 - dy, 1 - dx:5 - dx]) for dx in (-1, 0, 1) for dy in (-1, 0, 1))
    colour = Augment(shift=1)(x.repeat(1, 3, 1, 1), torch.Generator().manual_seed(0))
    assert torch.equal(colour[:, 0], out[:, 0]) and torch.equal(colour[:, 2], out[:, 0])   # channels move together
    flipped = Augment(flip=True)(x, torch.Generator().manual_seed(0))
    mirrored = torch.tensor([torch.equal(f, x[0].flip(-1)) for f in flipped])
    unchanged = torch.tensor([torch.equal(f, x[0]) for f in flipped])
    assert (mirrored | unchanged).all() and 10 < int(mirrored.sum()) < 54


def test_augment_scale_zooms_and_validates():
    x = torch.rand(4, 1, 8, 8)
    out = Augment(scale=0.3)(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.allclose(out, x)
    with pytest.raises(ValueError, match="scale"):
        Augment(scale=1.5)
    with pytest.raises(ValueError, match="shift"):
        Augment(shift=-1)


def test_dataset_checks_its_tensors():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        Dataset(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="int64"):
        Dataset(torch.zeros(3, 1, 2, 2), torch.zeros(3))
    assert len(Dataset(torch.zeros(3, 1, 2, 2))) == 3
