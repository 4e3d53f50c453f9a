"""Shards, update rules and compensation: plain torch, no runner."""
import pytest
import torch

from downpour.config import ConfigError
from downpour.ps.checkpoint import load_server, next_seqs, save_server
from downpour.ps.compensation import make_compensation
from downpour.ps.rules import make_rule
from downpour.ps.shard import Shard, shard_bounds
from downpour.train.checkpoint import CheckpointError


def _shard(n=6, rule="sgd", lr=0.1, workers=(0, 1), sync=False, compensation="none"):
    torch.manual_seed(0)
    return Shard(0, torch.randn(n), make_rule(rule, lr), make_compensation(compensation, 0.5), workers, sync=sync)


@pytest.mark.parametrize("name,opt", [("sgd", torch.optim.SGD), ("adagrad", torch.optim.Adagrad), ("adam", torch.optim.Adam)])
def test_rules_match_torch_optimisers(name, opt):
    torch.manual_seed(1)
    w0 = torch.randn(10)
    grads = [torch.randn(10) for _ in range(5)]
    shard = Shard(0, w0, make_rule(name, 0.05), workers=[0])
    p = torch.nn.Parameter(w0.clone())
    o = opt([p], lr=0.05)
    for i, g in enumerate(grads):
        assert shard.push(0, g, shard.version, seq=i).accepted
        p.grad = g.clone()
        o.step()
    torch.testing.assert_close(shard.params, p.detach(), rtol=1e-5, atol=1e-6)
    assert shard.version == 5 and shard.applied == shard.accepted == 5


def test_bad_pushes_are_rejected_counted_and_leave_parameters_alone():
    shard = _shard(rule="adagrad")
    before = shard.params.clone()
    state_before = {k: v.clone() for k, v in shard.state.items()}
    bad = [
        (0, torch.tensor([float("nan")] + [0.0] * 5), 0, 0, "non-finite"),
        (0, torch.tensor([float("inf")] + [0.0] * 5), 0, 1, "non-finite"),
        (0, torch.zeros(5), 0, 2, "shape"),
        (0, torch.zeros(2, 3), 0, 3, "shape"),
        (7, torch.zeros(6), 0, 0, "unknown-worker"),
        (1, torch.zeros(6), 3, 0, "version"),      # computed from a version the shard never had
    ]
    for worker, grad, base, seq, reason in bad:
        result = shard.push(worker, grad, base, seq)
        assert not result.accepted and result.reason == reason
    assert torch.equal(shard.params, before)
    assert all(torch.equal(shard.state[k], state_before[k]) for k in state_before)
    assert shard.version == 0 and shard.accepted == 0 and len(shard.log) == 0
    assert dict(shard.rejected) == {"non-finite": 2, "shape": 2, "unknown-worker": 1, "version": 1}


def test_a_repeated_push_is_never_applied_twice():
    shard = _shard()
    assert shard.push(0, torch.ones(6), 0, seq=0).accepted
    after_first = shard.params.clone()
    again = shard.push(0, torch.ones(6), 0, seq=0)
    assert not again.accepted and again.reason == "duplicate"
    assert torch.equal(shard.params, after_first) and shard.applied == 1


def test_staleness_log_records_base_and_applied_versions():
    shard = _shard()
    shard.push(0, torch.ones(6), 0, 0)
    shard.push(0, torch.ones(6), 1, 1)
    shard.push(1, torch.ones(6), 0, 0)   # worker 1 computed from version 0 and missed two updates
    assert shard.log.rows == [(0, 0, 0, 0), (0, 1, 1, 1), (1, 0, 0, 2)]
    assert shard.log.staleness() == [0, 0, 2]


def test_sync_round_is_applied_together_as_the_mean():
    shard = _shard(workers=(0, 1, 2), sync=True)
    w0 = shard.params.clone()
    shard.push(0, torch.full((6,), 1.0), 0, 0)
    shard.push(1, torch.full((6,), 3.0), 0, 0)
    assert torch.equal(shard.params, w0) and shard.version == 0 and shard.accepted == 2 and shard.applied == 0
    shard.push(2, torch.full((6,), 5.0), 0, 0)
    torch.testing.assert_close(shard.params, w0 - 0.1 * 3.0)
    assert shard.version == 1 and shard.applied == 3 and shard.log.staleness() == [0, 0, 0]


def test_a_sync_rounds_mean_is_the_same_whatever_order_its_pushes_arrive_in():
    # float sums depend on order: (1e8 + 1) - 1e8 is 0 in float32, (1e8 - 1e8) + 1 is 1; on Ray a round's pushes
    # arrive in any order, so the mean is taken in worker order (two sync runs of 3+ workers ended bits apart)
    grads = {0: torch.full((6,), 1e8), 1: torch.full((6,), 1.0), 2: torch.full((6,), -1e8)}
    ends = []
    for order in ((0, 1, 2), (0, 2, 1), (2, 1, 0)):
        shard = _shard(workers=(0, 1, 2), sync=True, lr=1.0)
        for w in order:
            shard.push(w, grads[w], 0, 0)
        ends.append(shard.params)
    assert torch.equal(ends[0], ends[1]) and torch.equal(ends[0], ends[2])


def test_a_sync_round_whose_mean_overflows_applies_nothing():
    """Two finite pushes of 3e38: their mean is inf in float32, and nothing is applied (else every parameter is
    -inf)."""
    shard = _shard(workers=(0, 1), sync=True)
    w0 = shard.params.clone()
    shard.push(0, torch.full((6,), 3e38), 0, 0)
    shard.push(1, torch.full((6,), 3e38), 0, 0)
    assert torch.equal(shard.params, w0) and shard.version == 0 and shard.applied == 0
    assert shard.accepted == 0 and shard.rejected["non-finite"] == 2


def test_sync_round_completes_when_a_worker_is_lost_and_flush_applies_the_rest():
    shard = _shard(workers=(0, 1, 2), sync=True)
    shard.push(0, torch.ones(6), 0, 0)
    shard.push(1, torch.ones(6), 0, 0)
    shard.set_workers([0, 1])            # worker 2 died before pushing
    assert shard.version == 1 and shard.applied == 2
    shard.push(0, torch.ones(6), 1, 1)
    shard.flush()
    assert shard.version == 2 and shard.applied == shard.accepted == 3


def test_staleness_aware_learning_rate_divides_by_staleness():
    shard = _shard(compensation="staleness-lr", workers=(0, 1))
    shard.push(0, torch.zeros(6), 0, 0)
    shard.push(0, torch.zeros(6), 1, 1)
    before = shard.params.clone()
    shard.push(1, torch.ones(6), 0, 0)   # staleness 2: half the step
    torch.testing.assert_close(shard.params, before - 0.1 * 1.0 / 2)


def test_dc_asgd_corrects_with_the_workers_fetched_copy():
    shard = _shard(compensation="dc-asgd", workers=(0, 1))
    w_stale = shard.pull(worker=1)[0].clone()
    shard.push(0, torch.full((6,), 2.0), 0, 0)       # moves the parameters after worker 1 fetched
    w_now = shard.params.clone()
    g = torch.linspace(-1, 1, 6)
    shard.push(1, g, 0, 0)
    expected = w_now - 0.1 * (g + 0.5 * g * g * (w_now - w_stale))
    torch.testing.assert_close(shard.params, expected)


def test_dc_asgd_uses_the_copy_the_gradient_was_computed_from_after_a_later_fetch():
    """A pipelined worker fetches again before its last push lands: that push is corrected against the
    copy of its own base version, not the newer one."""
    shard = _shard(compensation="dc-asgd", workers=(0, 1))
    w_base = shard.pull(worker=1)[0].clone()          # version 0: worker 1 computes g from this
    shard.push(0, torch.full((6,), 2.0), 0, 0)
    shard.pull(worker=1)                              # version 1: its next fetch, before g arrives
    shard.push(0, torch.full((6,), -1.0), 1, 1)
    w_now = shard.params.clone()
    g = torch.linspace(-1, 1, 6)
    shard.push(1, g, 0, 0)                            # staleness 2
    torch.testing.assert_close(shard.params, w_now - 0.1 * (g + 0.5 * g * g * (w_now - w_base)))


def test_dc_asgd_keeps_every_copy_a_push_in_flight_may_need():
    """Worker 1 fetches six versions (worker 0 pushing between) and its six pushes land in reverse order:
    each is corrected against its own base's copy (4 copies per worker were kept: the oldest pushes went
    in uncorrected, silently), and copies no later push can need are dropped."""
    shard = _shard(compensation="dc-asgd", workers=(0, 1))
    copies, bases = {}, []
    for k in range(6):
        w, version = shard.pull(worker=1)
        copies[version] = w.clone()
        bases.append(version)
        shard.push(0, torch.full((6,), 0.5), shard.version, k)
    for seq in reversed(range(6)):
        w_now, g = shard.params.clone(), torch.linspace(-1, 1, 6) * (seq + 1)
        shard.push(1, g, bases[seq], seq)
        torch.testing.assert_close(shard.params, w_now - 0.1 * (g + 0.5 * g * g * (w_now - copies[bases[seq]])))
    assert shard.uncorrected == 0 and shard.state_dict()[1]["uncorrected"] == 0
    assert list(shard._backup[1]) == [bases[-1]]       # every push arrived: only the newest copy is left


def test_a_second_push_of_one_worker_into_an_open_sync_round_is_refused():
    shard = _shard(sync=True, workers=(0, 1))
    assert shard.push(0, torch.ones(6), 0, 0).accepted
    second = shard.push(0, torch.ones(6), 0, 1)
    assert not second.accepted and second.reason == "round" and shard.rejected["round"] == 1
    shard.push(1, torch.ones(6), 0, 0)
    assert shard.version == 1 and shard.push(0, torch.ones(6), 1, 2).accepted


def test_a_rejected_gradient_takes_its_workers_turn_in_a_sync_round():
    """Worker 1's NaN push is rejected and counted; the round closes on the others' mean, and worker 1's
    next push starts the next round instead of filling this one."""
    shard = _shard(workers=(0, 1, 2), sync=True)
    w0 = shard.params.clone()
    shard.push(0, torch.full((6,), 1.0), 0, 0)
    assert not shard.push(1, torch.full((6,), float("nan")), 0, 0).accepted
    shard.push(2, torch.full((6,), 3.0), 0, 0)
    torch.testing.assert_close(shard.params, w0 - 0.1 * 2.0)
    assert shard.version == 1 and shard.rejected["non-finite"] == 1 and shard.applied == shard.accepted == 2
    assert not shard.push(1, torch.full((6,), float("nan")), 0, 0).accepted   # a retry: no second turn
    shard.push(0, torch.ones(6), 1, 1)
    shard.push(2, torch.ones(6), 1, 1)
    assert shard.version == 1                          # the next round waits for worker 1
    shard.push(1, torch.ones(6), 1, 1)
    assert shard.version == 2 and shard.log.staleness() == [0] * 5


def test_a_checkpoint_of_an_open_sync_round_changes_nothing_and_keeps_the_round(tmp_path):
    a = _shard(workers=(0, 1, 2), sync=True)
    a.push(0, torch.full((6,), 1.0), 0, 0)
    a.push(1, torch.full((6,), float("inf")), 0, 0)
    params = a.params.clone()
    save_server(tmp_path / "server", [a.state_dict()], {"step": 2})
    assert torch.equal(a.params, params) and a.version == 0          # nothing applied early
    b = _shard(workers=(0, 1, 2), sync=True)
    b.load_state_dict(*load_server(tmp_path / "server")[0][0])
    for shard in (a, b):
        shard.push(2, torch.full((6,), 3.0), 0, 0)
    assert torch.equal(a.params, b.params) and b.version == 1 and b.log.rows == a.log.rows


def test_state_dict_round_trip_through_a_server_checkpoint(tmp_path):
    a = _shard(rule="adam")
    for i in range(3):
        a.push(i % 2, torch.randn(6), a.version, i)
    save_server(tmp_path / "server", [a.state_dict()], {"step": 3})
    states, meta = load_server(tmp_path / "server")
    b = _shard(rule="adam")
    b.load_state_dict(*states[0])
    assert meta["step"] == 3 and b.version == 3 and b.log.rows == a.log.rows
    assert torch.equal(b.params, a.params) and all(torch.equal(b.state[k], a.state[k]) for k in a.state)
    assert next_seqs(states) == {0: 3, 1: 2}
    g = torch.randn(6)
    a.push(0, g, 3, 3)
    b.push(0, g, 3, 3)
    assert torch.equal(a.params, b.params)


def test_restoring_into_a_different_rule_or_size_is_a_clear_error():
    a = _shard(rule="adam")
    with pytest.raises(CheckpointError, match="rule 'adam'"):
        _shard(rule="adagrad").load_state_dict(*a.state_dict())
    with pytest.raises(CheckpointError, match="parameters"):
        _shard(n=7, rule="adam").load_state_dict(*a.state_dict())


def test_shard_bounds_cover_the_vector_contiguously():
    bounds = shard_bounds(10, 3)
    assert bounds[0][0] == 0 and bounds[-1][1] == 10
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    with pytest.raises(ValueError):
        shard_bounds(2, 3)


def test_unknown_rule_and_compensation_name_the_nearest():
    with pytest.raises(ConfigError, match="adagrad"):
        make_rule("adagard", 0.1)
    with pytest.raises(ConfigError, match="dc-asgd"):
        make_compensation("dc-asdg")


def test_adam_counts_steps_per_element_so_a_late_stage_starts_like_fresh_adam():
    # Elements 5..9 (a tensor of their own) get no gradient (pushed as zeros, a frozen stage) for 20
    # pushes, then train: they must follow torch's Adam started at that point, and never move before it.
    torch.manual_seed(2)
    w0 = torch.randn(10)
    shard = Shard(0, w0.clone(), make_rule("adam", 0.05), workers=[0], stage_pieces={1: [(0, 5)], 2: [(5, 10)]})
    early, late = torch.nn.Parameter(w0[:5].clone()), torch.nn.Parameter(w0[5:].clone())
    opt_early, opt_late = torch.optim.Adam([early], lr=0.05), torch.optim.Adam([late], lr=0.05)
    for i in range(30):
        g = torch.randn(10)
        if i < 20:
            g[5:] = 0.0
        assert shard.push(0, g, shard.version, seq=i, stages=(1,) if i < 20 else (1, 2)).accepted
        early.grad = g[:5].clone()
        opt_early.step()
        if i >= 20:
            late.grad = g[5:].clone()
            opt_late.step()
        if i == 19:
            assert torch.equal(shard.params[5:], w0[5:])          # untouched while frozen
    torch.testing.assert_close(shard.params[:5], early.detach(), rtol=1e-5, atol=1e-5)   # float32 rounding, 30 steps
    torch.testing.assert_close(shard.params[5:], late.detach(), rtol=1e-5, atol=1e-5)
    assert shard.state["step"].tolist() == [30.0] * 5 + [10.0] * 5


def test_adam_on_dense_gradients_is_torchs_adam_bit_for_bit():
    """A push with no zero element takes torch.optim.Adam's arithmetic, operation for operation."""
    torch.manual_seed(3)
    w0 = torch.randn(50)
    shard = Shard(0, w0.clone(), make_rule("adam", 0.01), workers=[0])
    p = torch.nn.Parameter(w0.clone())
    opt = torch.optim.Adam([p], lr=0.01)
    for i in range(40):
        g = torch.randn(50)
        assert shard.push(0, g, shard.version, seq=i).accepted
        p.grad = g.clone()
        opt.step()
    assert torch.equal(shard.params, p.detach())


def test_adams_scalar_corrections_only_where_the_trained_elements_share_a_step_count():
    from downpour.ps.rules import _common_step, apply_live

    assert _common_step(torch.tensor([3.0, 3.0])) == 3.0
    assert _common_step(torch.tensor([3.0, 7.0])) is None and _common_step(torch.zeros(0)) is None
    rule = make_rule("adam", 0.1)
    state, w = rule.init_state(4), torch.zeros(4)
    state["step"] += torch.tensor([0.0, 9.0, 0.0, 2.0])      # trained elements at 1, 10 and 3 steps after this push
    apply_live(rule, w, torch.tensor([1.0, 1.0, 0.0, -1.0]), state, live=[(0, 2), (3, 4)])
    assert w[2] == 0 and state["step"].tolist() == [1.0, 10.0, 0.0, 3.0]
    want = [0.1 * (0.1 / (1 - 0.9 ** k)) / ((0.001 / (1 - 0.999 ** k)) ** 0.5 + 1e-8) for k in (1, 10, 3)]
    torch.testing.assert_close(w[[0, 1, 3]], torch.tensor([-want[0], -want[1], want[2]]))


def test_an_adam_checkpoint_with_one_step_count_per_shard_still_loads():
    a = _shard(rule="adam")
    for i in range(3):
        a.push(0, torch.randn(6), a.version, i)
    tensors, meta = a.state_dict()
    tensors = {**tensors, "rule.step": torch.tensor([3.0], dtype=torch.float64)}   # the format before per-element steps
    b = _shard(rule="adam")
    b.load_state_dict(tensors, meta)
    assert b.state["step"].tolist() == [3.0] * 6


def test_a_push_whose_every_step_was_skipped_takes_its_turn_without_a_gradient():
    """A worker whose only step had a NaN cost pushes no gradient (NaN: rejected, its turn taken): pushing zeros, the
    sync round would average them in, its step half the other worker's."""
    from downpour.batch import Batch
    from downpour.models.registry import create_model, model_entry
    from downpour.objectives import Objective
    from downpour.ps.rules import make_rule
    from downpour.ps.worker import Worker

    torch.manual_seed(0)
    objective = Objective.from_config(model_entry("ufldl-sae").objective)
    init = torch.cat([p.detach().flatten() for p in create_model("ufldl-sae", (1, 8, 8)).parameters() if p.requires_grad])
    good, bad = Batch(torch.rand(4, 1, 8, 8)), Batch(torch.full((4, 1, 8, 8), float("nan")))

    def round_with(second):
        shard = Shard(0, init, make_rule("sgd", 1.0), workers=[0, 1], sync=True)
        workers = [Worker(w, create_model("ufldl-sae", (1, 8, 8)), objective, iter([b]), [(0, init.numel())], gated=True)
                   for w, b in enumerate([good, second])]
        for w in workers:
            params, version = shard.pull(w.wid)
            w.load([params.clone()], [version])
            w.step()
        pushes = [w.take_push() for w in workers]
        results = [shard.push(p.worker, p.grads[0], p.base[0], p.seq) for p in pushes]
        assert shard.version == 1                      # the round closed
        return shard.params - init, [r.reason for r in results]

    alone, _ = round_with(good)
    skipped, reasons = round_with(bad)
    assert reasons == ["", "non-finite"]
    torch.testing.assert_close(skipped, alone)         # worker 0's gradient (the same as worker 1's), not half of it


def test_a_gradient_that_is_finite_only_as_pushed_is_rejected_and_applies_nothing():
    """The check looked at the pushed gradient only: DC-ASGD's g*g, relative noise's scale and a float64
    gradient cast to float32 turned accepted pushes into NaN parameters."""
    huge = torch.tensor([1e20, 0.0, 1.0])
    dc = Shard(0, torch.zeros(3), make_rule("adagrad", 0.05), make_compensation("dc-asgd", 0.04), workers=[0, 1])
    dc.pull(0)
    dc.push(1, torch.ones(3), 0, 0)                      # worker 0's copy is now stale
    before = dc.params.clone()
    result = dc.push(0, huge, 0, 0)
    assert (result.accepted, result.reason) == (False, "non-finite") and torch.equal(dc.params, before)
    assert dc.version == 1 and dc.accepted == dc.applied == 1 and dc.rejected["non-finite"] == 1
    assert dc.push(0, torch.ones(3), 0, 1).accepted     # the worker goes on
    cast = Shard(0, torch.zeros(2), make_rule("adagrad", 0.05), workers=[0])
    assert cast.push(0, torch.tensor([1e300, 1.0], dtype=torch.float64), 0, 0).reason == "non-finite"
    for sync in (False, True):
        noisy = Shard(0, torch.zeros(3), make_rule("adam", 0.05), workers=[0], noise=0.1, noise_relative=True, sync=sync)
        noisy.push(0, huge, 0, 0)
        assert torch.equal(noisy.params, torch.zeros(3)) and noisy.version == 0 and noisy.accepted == 0
        assert noisy.rejected["non-finite"] == 1 and torch.equal(noisy.state["exp_avg_sq"], torch.zeros(3))


def test_dc_asgd_frees_its_copies_after_a_restore_that_lost_a_push_in_flight():
    """A checkpoint taken while push 1 was in flight (push 2 landed first) is restored without it: the shard does not
    wait for push 1 for ever, keeping one parameter copy per fetch (200 after 200 cycles)."""
    def dc_shard():
        return Shard(0, torch.zeros(100), make_rule("sgd", 0.01), make_compensation("dc-asgd", 0.04), workers=[0])

    shard = dc_shard()
    _, v = shard.pull(0)
    shard.push(0, torch.ones(100), v, 0)
    _, v = shard.pull(0)
    shard.push(0, torch.ones(100), v, 2)                 # push 1 still travelling
    restored = dc_shard()
    restored.load_state_dict(*shard.state_dict())
    for seq in range(3, 203):
        _, v = restored.pull(0)
        assert restored.push(0, torch.ones(100), v, seq).accepted
    assert len(restored._backup[0]) == 1


def test_momentum_leaves_a_frozen_stage_still_and_resumes_it_like_torch():
    """Elements pushed zeros (a greedy schedule's held stage) stay still and keep their velocity, as torch's SGD with
    momentum skips a parameter whose grad is None (coasting on it, stage 1 of cat-demo moves by up to 0.53 after the
    switch)."""
    torch.manual_seed(4)
    w0 = torch.randn(10)
    shard = Shard(0, w0.clone(), make_rule("momentum", 0.05, momentum=0.9), workers=[0],
                  stage_pieces={1: [(0, 5)], 2: [(5, 10)]})
    first, second = torch.nn.Parameter(w0[:5].clone()), torch.nn.Parameter(w0[5:].clone())
    opt = torch.optim.SGD([first, second], lr=0.05, momentum=0.9)
    for i in range(30):
        g = torch.randn(10)
        held = slice(5, 10) if i < 10 else slice(0, 5)           # stage 2 held, then stage 1
        g[held] = 0.0
        assert shard.push(0, g, shard.version, seq=i, stages=(1,) if i < 10 else (2,)).accepted
        first.grad, second.grad = (g[:5].clone(), None) if i < 10 else (None, g[5:].clone())
        opt.step()
        if i == 9:
            frozen_first = shard.params[:5].clone()
    assert torch.equal(shard.params[:5], frozen_first)               # held from push 10 on: not one step
    torch.testing.assert_close(shard.params[:5], first.detach(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(shard.params[5:], second.detach(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("rule, grad", [("adagrad", 1e20), ("adam", 1e20), ("momentum", 3e38),
                                        ("adagrad", torch.tensor(1e20, dtype=torch.float64))])
def test_a_finite_push_that_would_overflow_as_applied_is_rejected_and_changes_nothing(rule, grad):
    """Adagrad's h += g² turned a finite push of 1e20 into h = inf: that element never moved again. Momentum
    with 3e38 made the parameter -inf. The docs promise rejection for what is not finite as applied."""
    shard = Shard(0, torch.zeros(2), make_rule(rule, 0.01), workers=[0])
    g = torch.stack([torch.as_tensor(grad, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)])
    g = g if isinstance(grad, torch.Tensor) else g.float()
    result = shard.push(0, g, 0, 0)
    assert not result.accepted and result.reason == "non-finite"
    assert torch.equal(shard.params, torch.zeros(2)) and all(torch.isfinite(v).all() for v in shard.state.values()
                                                             if isinstance(v, torch.Tensor))
    assert shard.push(0, torch.ones(2), 0, 1).accepted and bool(torch.isfinite(shard.params).all())


@pytest.mark.parametrize("rule", ["adam", "momentum"])
def test_a_relu_models_exact_zero_gradients_get_torchs_update_on_the_server(rule):
    """cnn-digits' ReLU units dead for a batch give exact-zero gradient elements while their tensors have
    a gradient: torch's Adam and momentum still decay the moments and coast them, and so do the server's
    rules, torch's arithmetic bit for bit here (rules lazy about every exact 0 have one worker at staleness 0 learn
    otherwise than the local loop: loss 0.047 against 0.021 after 400 steps)."""
    from downpour.batch import Batch
    from downpour.models.registry import create_model, model_entry
    from downpour.objectives import Objective
    from downpour.ps.worker import Worker
    from downpour.train.flat import ParamLayout
    from downpour.train.step import train_step

    torch.manual_seed(0)
    shape = (1, 8, 8)
    objective = Objective.from_config(model_entry("cnn-digits").objective)
    batches = [Batch(torch.rand(16, *shape), torch.randint(0, 10, (16,))) for _ in range(12)]
    server_model, local = create_model("cnn-digits", shape), create_model("cnn-digits", shape)
    local.load_state_dict(server_model.state_dict())
    layout = ParamLayout(server_model)
    init = layout.params_to_vector(server_model)
    bounds = shard_bounds(layout.numel, 2)                      # a tensor split across the two shards too
    shards = [Shard(j, init[a:b], make_rule(rule, 0.01), workers=[0], start=a) for j, (a, b) in enumerate(bounds)]
    worker = Worker(0, server_model, objective, iter(batches), bounds)
    params = [p for p in local.parameters() if p.requires_grad]
    opt = (torch.optim.Adam(params, lr=0.01, foreach=False) if rule == "adam"
           else torch.optim.SGD(params, lr=0.01, momentum=0.9, foreach=False))
    zeros = 0
    for i, batch in enumerate(batches):
        worker.load([s.pull(0)[0].clone() for s in shards], [s.version for s in shards])
        worker.step()
        push = worker.take_push()
        zeros += sum(int((g == 0).sum()) for g in push.grads)
        assert push.stages is None                             # a model without stages: every tensor trained
        for s, g, b in zip(shards, push.grads, push.base):
            assert s.push(0, g, b, i, push.stages).accepted
        train_step(local, objective, batch)
        opt.step()
    assert zeros > 0                                            # the ReLUs did leave exact zeros
    assert torch.equal(torch.cat([s.params for s in shards]), layout.params_to_vector(local))


def test_a_shard_holds_the_tensors_of_the_stages_a_push_did_not_train():
    from downpour.ps.shard import tensor_pieces

    assert tensor_pieces([(0, 4), (4, 10), (10, 12)], 3, 11) == [(0, 1), (1, 7), (7, 8)]
    shard = Shard(0, torch.zeros(8), make_rule("adam", 0.1), workers=[0], stage_pieces={1: [(0, 1), (7, 8)], 2: [(1, 7)]})
    assert shard.live_ranges((1,)) == [(0, 1), (7, 8)] and shard.live_ranges((2,)) == [(1, 7)]
    assert shard.live_ranges((1, 2)) is None and shard.live_ranges(None) is None and shard.live_ranges((3,)) == []
    alone = Shard(0, torch.zeros(3), make_rule("adam", 0.1), workers=[0])             # default: nothing ever held
    assert alone.live_ranges((1,)) is None


@pytest.mark.parametrize("rule", ["sgd", "adagrad", "adam", "momentum"])
def test_only_a_rule_that_holds_a_tensor_has_the_shard_look_for_held_ones(rule, monkeypatch):
    """SGD and Adagrad move nothing on a zero gradient: their shards apply to the whole slice at once."""
    looked = []
    monkeypatch.setattr(Shard, "live_ranges", lambda self, stages: looked.append(stages))
    shard = Shard(0, torch.zeros(4), make_rule(rule, 0.1), workers=[0], stage_pieces={1: [(0, 2)], 2: [(2, 4)]})
    shard.push(0, torch.tensor([1.0, 2.0, 0.0, 0.0]), base_version=0, seq=0, stages=[1])
    assert looked == ([(1,)] if rule in ("adam", "momentum") else [])


@pytest.mark.parametrize("rule", ["adam", "momentum"])
def test_a_greedy_runs_held_stage_stays_still_on_the_shards_the_cluster_builds(rule):
    """A push names the stages it trained (``train.schedule = greedy``); the shards hold the others' tensors
    (pushed as zeros, their grad None): stage 1 of a tiny cat network, sharing shard 0 with part of stage 2,
    keeps its parameters and its rule state bit for bit while stage 2 trains."""
    from downpour.models.registry import resolve
    from downpour.config import load_config
    from downpour.ps.setup import make_shards, make_worker, set_up_cluster

    cfg = resolve(load_config("cat-demo", ["data.size=20", "model.kernels=[5,3]", "model.maps=[4,4]", "data.samples=200",
                                           "train.batch_size=8", "train.threads=1", "train.tensorboard=false",
                                           "cluster.runner=simulated", f"cluster.rule={rule}", "cluster.shards=2"]))
    setup = set_up_cluster(cfg)
    stage1 = setup.layout.offsets[1]                             # stage 1's filters are [0, stage1)
    assert setup.bounds[0][1] > stage1                           # shard 0 holds some of stage 2 as well
    shards = make_shards(setup, setup.layout.params_to_vector(setup.model), {0})
    worker = make_worker(cfg, 0, setup.data, setup.bounds, gated=False)
    for seq, stage in enumerate([1, 1, 1, 2, 2, 2]):
        worker.load([s.pull(0)[0].clone() for s in shards], [s.version for s in shards])
        worker.step(stage)
        push = worker.take_push()
        assert push.stages == (stage,)
        for s, g, b in zip(shards, push.grads, push.base):
            assert s.push(0, g, b, seq, push.stages).accepted
        if seq == 2:
            held = shards[0].params[:stage1].clone(), {k: v[:stage1].clone() for k, v in shards[0].state.items()}
            started = shards[0].params[stage1:].clone()
    assert torch.equal(shards[0].params[:stage1], held[0])
    assert all(torch.equal(shards[0].state[k][:stage1], v) for k, v in held[1].items())
    assert not torch.equal(shards[0].params[stage1:], started)   # stage 2 trained, in the same shard


def test_a_joint_runs_tensor_split_across_shards_gets_torchs_update_where_its_piece_is_all_zero():
    """A piece of a tensor cut by a shard boundary can be all exact zeros while its tensor has a gradient
    (cnn-digits, 8 shards: shard 2 holds only fc.weight's first 340 elements, rows of fc units dead for the
    batch, all 0 in 178 of 200 pushes): taken as held by Adam, the shard count would change the weights
    (fc.weight by up to 0.48 after 200 steps against one shard). No tensor of a run that trains every stage
    at every step is ever held: every element gets torch's Adam, bit for bit."""
    from downpour.config import load_config
    from downpour.models.registry import resolve
    from downpour.ps.setup import make_shards, set_up_cluster

    cfg = resolve(load_config("cnn-digits", ["cluster.runner=simulated", "cluster.rule=adam", "cluster.lr=0.01",
                                             "cluster.shards=8", "train.threads=1", "train.tensorboard=false"]))
    setup = set_up_cluster(cfg)
    init = setup.layout.params_to_vector(setup.model)
    shards = make_shards(setup, init, {0})
    fc = setup.layout.offsets[4]                                  # fc.weight (64, 128): [4800, 12992)
    assert any(a < fc < b < fc + 3 * 128 for a, b in setup.bounds)  # a shard holds less than its first 3 rows
    w = torch.nn.Parameter(init.clone())
    opt = torch.optim.Adam([w], lr=0.01, foreach=False)
    torch.manual_seed(5)
    for seq in range(3):
        g = torch.randn(init.numel())
        if seq:
            g[fc:fc + 3 * 128] = 0                                # fc units 0-2 dead for the batch
        w.grad = g.clone()
        opt.step()
        for s, (a, b) in zip(shards, setup.bounds):
            assert s.push(0, g[a:b].clone(), s.version, seq).accepted
    assert torch.equal(torch.cat([s.params for s in shards]), w.detach())


@pytest.mark.parametrize("rule", ["momentum", "adam"])
def test_a_greedy_runs_trained_piece_that_is_all_zero_for_a_batch_gets_torchs_update(rule):
    """The push says which stages it trained, so the shards do not take a tensor piece pushed all exact zeros as held:
    the server run is the local loop's, bit for bit. A letterboxed batch (its top 7 rows 0) gives the untied stage-1
    filters of the top position rows an exact-zero gradient, and shard 0 holds only those: held, its momentum and
    Adam state would be left as they were where torch.optim's decay and coast them (velocity 0.077 off, the weights
    0.035, and stage 2, trained on those outputs, 0.02 (momentum) to 0.29 (Adam))."""
    from downpour.batch import Batch
    from downpour.config import load_config
    from downpour.models.registry import resolve
    from downpour.ps.setup import build_replica, make_shards, set_up_cluster
    from downpour.ps.worker import Worker
    from downpour.train.flat import ParamLayout
    from downpour.train.step import train_step

    cfg = resolve(load_config("cat-demo", ["data.size=20", "model.kernels=[5,3]", "model.maps=[4,4]", "data.samples=200",
                                           "model.tile=0", "train.schedule=greedy", "train.threads=1",
                                           "cluster.runner=simulated", f"cluster.rule={rule}", "cluster.lr=0.05",
                                           "cluster.shards=10"]))
    setup = set_up_cluster(cfg)
    init = setup.layout.params_to_vector(setup.model)
    shards = make_shards(setup, init, {0})
    a, b = setup.bounds[0]
    assert b < 3 * 16 * 100 < setup.layout.offsets[1]          # shard 0: filters of stage 1's top 3 position rows only
    torch.manual_seed(1)
    xs = [torch.randn(8, *setup.data.input_shape) for _ in range(6)]
    xs[2][:, :, :7] = 0                                         # those filters' 5x5 fields see only zeros
    model, objective = build_replica(cfg, setup.data.input_shape)
    local, _ = build_replica(cfg, setup.data.input_shape)
    for m in (model, local):
        ParamLayout(m).vector_to_params(init, m)
    worker = Worker(0, model, objective, iter([Batch(x) for x in xs]), setup.bounds)
    params = ParamLayout(local).params(local)
    opt = (torch.optim.Adam(params, lr=0.05, foreach=False) if rule == "adam"
           else torch.optim.SGD(params, lr=0.05, momentum=0.9, foreach=False))
    for seq, (stage, x) in enumerate(zip([1, 1, 1, 2, 2, 2], xs)):
        worker.load([s.pull(0)[0].clone() for s in shards], [s.version for s in shards])
        worker.step(stage)
        push = worker.take_push()
        assert bool(push.grads[0].any()) == (seq not in (2, 3, 4, 5))   # push 2: a trained piece, all zeros
        for s, g, base in zip(shards, push.grads, push.base):
            assert s.push(0, g, base, seq, push.stages).accepted
        opt.zero_grad(set_to_none=True)
        local.set_stage(stage)
        train_step(local, objective, Batch(x))
        opt.step()
    assert torch.equal(torch.cat([s.params for s in shards]), ParamLayout(local).params_to_vector(local))
    state = opt.state[params[0]]["momentum_buffer" if rule == "momentum" else "exp_avg"].reshape(-1)
    assert torch.equal(shards[0].state["velocity" if rule == "momentum" else "exp_avg"], state[a:b])


def test_a_sync_round_holds_only_the_tensors_no_push_of_it_trained_and_a_checkpoint_keeps_that(tmp_path):
    """A round's mean gives a tensor a gradient where any of its pushes trained it. The open round's stages
    go into the checkpoint; one saved before 2026-12-04 (no stages) holds the tensors it pushed all zeros."""
    pieces = {1: [(0, 2)], 2: [(2, 4)]}

    def run(stages, save=None):
        shard = Shard(0, torch.ones(4), make_rule("momentum", 0.1), workers=[0, 1], sync=True, stage_pieces=pieces)
        shard.state["velocity"] += 1.0
        assert shard.push(0, torch.tensor([0.0, 0.0, 0.0, 0.0]), 0, 0, stages[0]).accepted
        if save is not None:
            shard = save(shard)
        assert shard.push(1, torch.tensor([2.0, 2.0, 0.0, 0.0]), 0, 0, stages[1]).accepted
        return shard.params.tolist() + shard.state["velocity"].tolist()     # parameters, then velocity

    v = 0.9 + 1.0                                             # the mean gradient 1, the velocity 1 decayed
    assert run([(2,), (1,)]) == pytest.approx([1 - 0.1 * v] * 2 + [1 - 0.1 * 0.9] * 2 + [v] * 2 + [0.9] * 2)
    assert run([(1,), (1,)]) == pytest.approx([1 - 0.1 * v] * 2 + [1.0] * 2 + [v] * 2 + [1.0] * 2)

    def reload(shard, legacy=False):
        tensors, meta = shard.state_dict()
        if legacy:
            meta = {**meta, "round": [r[:4] for r in meta["round"]]}
        fresh = Shard(0, torch.ones(4), make_rule("momentum", 0.1), workers=[0, 1], sync=True, stage_pieces=pieces)
        fresh.load_state_dict(tensors, meta)
        return fresh

    assert run([(2,), (1,)], reload) == run([(2,), (1,)])     # stage 2 trained by push 0's zeros: kept
    assert run([(2,), (1,)], lambda s: reload(s, legacy=True)) == run([(1,), (1,)])   # as the old shards read it
