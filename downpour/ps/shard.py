"""One parameter-server shard: a contiguous slice of the model's flat parameter vector.

A shard owns its slice (n,), its update rule's state, a version clock (updates applied so far)
and a staleness log. Workers :meth:`Shard.pull` the slice and :meth:`Shard.push` gradients
computed from the version they pulled. A push with NaN/Inf, the wrong shape, an unknown worker,
a version from the future, a sequence number already seen or (sync) a second push of one worker into
an open round is rejected and counted, and the parameters are left untouched; so a retried push is
never applied twice. Under ``sync`` a push rejected for its gradient (non-finite, wrong shape) still
takes its worker's turn in the round, which then closes on the others' mean: a bad gradient neither
stalls a round nor lets the worker's next push into it. (A worker whose every step of a push had a
non-finite cost pushes NaN, so it takes its turn the same way.)

The shard is plain torch: the simulator holds it directly, the Ray runner wraps it in an actor.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable

import torch
from torch import Tensor

from downpour.ps.compensation import Compensation
from downpour.ps.rules import UpdateRule, apply_live
from downpour.ps.staleness import StalenessLog
from downpour.train.checkpoint import CheckpointError
from downpour.train.finite import applicable


TURN_TAKEN = ("non-finite", "shape")   # sync: a push rejected for its gradient still takes the worker's turn


@dataclass
class PushResult:
    accepted: bool
    reason: str = ""      # why it was rejected: unknown-worker | shape | non-finite | version | duplicate | round
    version: int = 0      # the shard's version after the push
    staleness: int = 0    # the shard's version before it, minus the version the gradient was computed from

    def as_dict(self) -> dict[str, Any]:
        """The form a push's answer travels in (Ray actor calls, doorbell replies)."""
        return {"accepted": self.accepted, "reason": self.reason, "version": self.version, "staleness": self.staleness}


class Shard:
    """Parameters ``params`` (n,) float32 of slice ``[start, stop)`` of the flat vector.

    ``workers``: the worker ids allowed to push. ``sync``: hold pushes until every live worker
    has pushed once, then apply their mean as one update (synchronous SGD). ``stage_pieces``: per greedy
    stage, the [a, b) ranges of the slice that hold its parameter tensors (:func:`tensor_pieces`; default
    None: no tensor of the slice is ever held), so a rule that ``holds`` skips the tensors of the stages a
    push says it did not train (:meth:`live_ranges`).
    """

    def __init__(self, index: int, params: Tensor, rule: UpdateRule, compensation: Compensation | None = None,
                 workers: Iterable[int] = (), sync: bool = False, start: int = 0, noise: float = 0.0, seed: int = 0,
                 noise_relative: bool = False, stage_pieces: dict[int, Iterable[tuple[int, int]]] | None = None):
        if params.dim() != 1:
            raise ValueError(f"shard {index}: parameters must be a flat (n,) vector, got shape {tuple(params.shape)}")
        self.index, self.start = index, start
        self.params = params.detach().to(torch.float32).clone().contiguous()
        self.rule = rule
        self.state = rule.init_state(self.params.numel())
        self.stage_pieces = {int(k): [(int(a), int(b)) for a, b in v] for k, v in (stage_pieces or {}).items()}
        self._live: dict[frozenset[int], list[tuple[int, int]] | None] = {}   # live_ranges, per set of stages
        self.compensation = compensation or Compensation()
        self.workers: set[int] = set(workers)
        self.sync = sync
        # cluster.grad_noise: N(0, σ²) added to each applied gradient, σ = noise (× the gradient's RMS when relative)
        self.noise, self.seed, self.noise_relative = float(noise), seed, noise_relative
        self.version = 0
        self.accepted = 0          # pushes that passed every check
        self.applied = 0           # pushes whose gradient reached the parameters (== accepted once a round is flushed)
        self.rejected: Counter[str] = Counter()
        self.log = StalenessLog()
        self._seen: dict[int, set[int]] = {}                          # push numbers applied, per worker
        self._floor: dict[int, int] = {}                              # after a resume: every seq <= this was seen
        self._backup: dict[int, dict[int, Tensor]] = {}               # DC-ASGD: worker -> version -> fetched copy
        self._arrived: dict[int, dict[int, int]] = {}                 # DC-ASGD: worker -> seq -> base, out of order
        self._next: dict[int, int] = {}                               # DC-ASGD: worker -> first seq not yet arrived
        self.uncorrected = 0       # DC-ASGD: stale pushes applied without their copy (none unless a resume lost it)
        # sync: (worker, seq, base, grad or None: rejected, the stages the push trained or None: every one)
        self._round: list[tuple[int, int, int, Tensor | None, tuple[int, ...] | None]] = []

    def adopt(self, buffer: Tensor) -> None:
        """Keep the parameters in ``buffer`` (n,) float32 from now on (e.g. shared memory), values copied in."""
        if buffer.shape != self.params.shape or buffer.dtype != torch.float32:
            raise ValueError(f"shard {self.index}: buffer must be ({self.params.numel()},) float32")
        buffer.copy_(self.params)
        self.params = buffer

    @property
    def stop(self) -> int:
        return self.start + self.params.numel()

    def pull(self, worker: int | None = None) -> tuple[Tensor, int]:
        """The live parameter slice (n,) (callers copy it) and the current version."""
        if worker is not None and self.compensation.needs_backup:
            kept = self._backup.setdefault(worker, {})
            if self.version not in kept:
                kept[self.version] = self.params.clone()   # until no push of the worker can be based on it
        return self.params, self.version

    def _release(self, worker: int, seq: int, base: int) -> None:
        """DC-ASGD: push ``seq`` of ``worker`` arrived (applied or not). A worker's pushes are based on
        versions that never go down, so once every push up to some seq has arrived, no later one is based
        on anything older than that push's base: those copies go (not a fixed number of them: with long
        delays a worker has many pushes in flight, and its oldest copy is the next one needed)."""
        kept = self._backup.get(worker)
        if kept is None:
            return
        arrived = self._arrived.setdefault(worker, {})
        arrived[seq] = base
        nxt = self._next.get(worker, self._floor.get(worker, -1) + 1)
        low = None
        while nxt in arrived:
            low = arrived.pop(nxt)
            nxt += 1
        self._next[worker] = nxt
        if low is not None:
            for v in [v for v in kept if v < low]:
                del kept[v]

    def push(self, worker: int, grad: Tensor, base_version: int, seq: int,
             stages: Iterable[int] | None = None) -> PushResult:
        """Apply (or, under ``sync``, hold) ``grad`` (n,), computed by ``worker`` from ``base_version``.

        ``seq`` is the worker's push number (0, 1, 2, ...); one already seen is a duplicate. ``stages``: the
        greedy stages the push trained (its worker's steps'); None: every one (a joint schedule).
        """
        stages = None if stages is None else tuple(sorted(int(k) for k in stages))
        staleness = self.version - base_version
        if isinstance(grad, Tensor) and grad.is_floating_point():
            grad = grad.to(torch.float32)      # checked as applied: a float64 1e300 is inf here
        reason = self._check(worker, grad, base_version, seq)
        if reason:
            self.rejected[reason] += 1
            if reason in TURN_TAKEN:
                self._release(worker, seq, base_version)
            if self.sync and reason in TURN_TAKEN and worker in self.workers and not self._stale_or_seen(base_version, worker, seq):
                self._seen.setdefault(worker, set()).add(seq)       # its turn: a retry is a duplicate
                self._round.append((worker, seq, base_version, None, None))
                self._maybe_close_round()
            return PushResult(False, reason, self.version, staleness)
        if self.sync:
            self.accepted += 1
            self._seen.setdefault(worker, set()).add(seq)
            self._round.append((worker, seq, base_version, grad.clone(), stages))  # outlives the caller's buffer
            self._maybe_close_round()
        elif self._apply_one(worker, seq, base_version, grad, stages):
            self.accepted += 1
            self._seen.setdefault(worker, set()).add(seq)
        else:                                  # finite as pushed, not once compensated or noised
            self.rejected["non-finite"] += 1
            self._release(worker, seq, base_version)
            return PushResult(False, "non-finite", self.version, staleness)
        self._release(worker, seq, base_version)
        return PushResult(True, "", self.version, staleness)

    def _check(self, worker: int, grad: Tensor, base_version: int, seq: int) -> str:
        if worker not in self.workers:
            return "unknown-worker"
        if not isinstance(grad, Tensor) or grad.shape != self.params.shape or not grad.is_floating_point():
            return "shape"
        if not applicable(grad, self.params.dtype):
            return "non-finite"
        return self._stale_or_seen(base_version, worker, seq)

    def _stale_or_seen(self, base_version: int, worker: int, seq: int) -> str:
        if not 0 <= base_version <= self.version:
            return "version"
        # pushes of one worker may arrive out of order (network delay): remember each, not just the last
        if seq in self._seen.get(worker, ()) or seq <= self._floor.get(worker, -1):
            return "duplicate"
        if self.sync and any(w == worker for w, *_ in self._round):
            return "round"       # a second push of one worker into an open round would count it twice
        return ""

    def _apply_one(self, worker: int, seq: int, base: int, grad: Tensor, stages: tuple[int, ...] | None) -> bool:
        staleness = self.version - base
        # the copy this gradient was computed from (a pipelined worker has fetched again since)
        copy = self._backup.get(worker, {}).get(base)
        if copy is None and staleness > 0 and self.compensation.needs_backup:
            self.uncorrected += 1
        g, lr_scale = self.compensation.adjust(grad, staleness, self.params, copy)
        if not self._update(g, lr_scale, stages, checked=g is grad):
            return False
        self.log.append(worker, seq, base, self.version)
        self.version += 1
        self.applied += 1
        return True

    def _update(self, g: Tensor, lr_scale: float, stages: tuple[int, ...] | None, checked: bool = True) -> bool:
        """One step of the rule; with ``noise``, on ``g`` plus Gaussian noise drawn from a generator seeded by
        (run seed, shard, version), so a run, and a resumed run, draw the same noise. False, and nothing
        applied, when what the rule would get is not finite (``checked``: ``g`` is known to be; a
        compensated or noised one is looked at again: DC-ASGD's g*g, or the noise's scale, can overflow)."""
        trained = self.live_ranges(stages) if self.rule.holds or self.noise else None
        if self.noise:
            g = self._noised(g, trained)
            checked = False
        if not checked and not applicable(g, self.params.dtype):
            return False
        live = trained if self.rule.holds else None    # SGD, Adagrad: a zero moves nothing anyway
        apply_live(self.rule, self.params, g, self.state, lr_scale, live)
        return True

    def _noised(self, g: Tensor, trained: list[tuple[int, int]] | None) -> Tensor:
        """``g`` plus N(0, σ²) on its ``trained`` ranges (None: the whole slice), where it is not exactly 0;
        σ = noise, × the RMS of ``g`` over those ranges when relative. Only where there is a gradient: a held
        stage (pushed as zeros) stays still, as it would under staleness, whose error the noise stands in for
        (Adagrad and Adam make even tiny noise an lr-sized step), and so does an exact 0 inside a trained tensor
        (a ReLU unit dead for the batch: stale or not, its gradient is 0). The RMS is the trained ranges', so a
        greedy stage's noise does not shrink with how much of a held stage shares its shard: the whole slice's,
        held zeros counted, would shrink it (tiny cat-demo, 2 shards: stage 2's 88 elements in shard 0 beside
        stage 1's 400 would get sqrt(88/488) = 0.42x their RMS as noise)."""
        gen = torch.Generator().manual_seed(((self.seed * 1_000_003 + self.index) * 1_000_033 + self.version) % 2**63)
        keep = g != 0
        if trained is None:    # a joint push: the whole slice's RMS
            rms = float(g.pow(2).mean().sqrt()) if self.noise_relative else 1.0
        else:
            live = torch.zeros_like(keep)
            for a, b in trained:
                live[a:b] = True
            keep &= live
            rms = 1.0
            if self.noise_relative:
                n = sum(b - a for a, b in trained)
                rms = (sum(float(g[a:b].pow(2).sum()) for a, b in trained) / n) ** 0.5 if n else 0.0
        return g + torch.randn(g.shape, generator=gen) * (self.noise * rms) * keep

    def live_ranges(self, stages: tuple[int, ...] | None) -> list[tuple[int, int]] | None:
        """The [a, b) ranges of the slice a push that trained greedy ``stages`` gives a gradient: all but the other
        stages' tensors (grad None, pushed as zeros), which Momentum and Adam leave alone as torch's optimisers
        skip them; None: the whole slice (``stages`` None, a joint schedule's push, or no tensor of the slice held).

        Told by the push, never read off the gradient's values: a shard that took any tensor piece whose pushed
        gradient was all exactly 0 as held would let a piece of a trained stage that was all zeros for a batch (a
        tensor cut by a shard boundary, rows of units dead for it) keep its momentum and moments where torch's
        would decay and coast them."""
        if stages is None or not self.stage_pieces:
            return None
        key = frozenset(stages)
        if key not in self._live:
            held = sorted(p for k, pieces in self.stage_pieces.items() if k not in key for p in pieces)
            live, at = [], 0
            for a, b in held:
                if a > at:
                    live.append((at, a))
                at = max(at, b)
            if at < self.params.numel():
                live.append((at, self.params.numel()))
            self._live[key] = live if held else None
        return self._live[key]

    def _maybe_close_round(self, force: bool = False) -> None:
        pushed = {w for w, *_ in self._round}
        if not self._round or not (force or pushed >= self.workers):
            return
        # every push of the round was computed from the same version: apply their mean once, summed in worker order
        # (a float sum depends on its order, and on Ray a round's pushes arrive in any)
        grads = sorted(((w, seq, base, g, k) for w, seq, base, g, k in self._round if g is not None), key=lambda r: r[0])
        self._round = []
        if not grads:                     # every push of the round was rejected: nothing to apply
            return
        # a tensor any push of the round trained has a gradient in their mean (torch's: a grad, not None)
        stages = None if any(k is None for *_, k in grads) else tuple(sorted({s for *_, k in grads for s in k}))
        # checked again: the mean of finite pushes can overflow (two of 3e38 made every parameter -inf)
        if not self._update(torch.stack([g for *_, g, _ in grads]).mean(dim=0), 1.0, stages, checked=False):
            self.accepted -= len(grads)         # its mean or its noise overflowed: the round applies nothing
            self.rejected["non-finite"] += len(grads)
            return
        for w, seq, base, *_ in grads:
            self.log.append(w, seq, base, self.version)
        self.applied += len(grads)
        self.version += 1

    def set_workers(self, workers: Iterable[int]) -> None:
        """Change who may push (a worker died or joined). A sync round now complete is applied."""
        self.workers = set(workers)
        for w in list(self._backup):
            if w not in self.workers:
                del self._backup[w]
        if self.sync:
            self._maybe_close_round()

    def flush(self) -> None:
        """End of run: apply a partly filled sync round, so every accepted push is applied."""
        if self.sync:
            self._maybe_close_round(force=True)

    def stats(self) -> dict[str, Any]:
        return {"shard": self.index, "version": self.version, "accepted": self.accepted, "applied": self.applied,
                "rejected": dict(self.rejected), "numel": self.params.numel(),
                **({"uncorrected": self.uncorrected} if self.compensation.needs_backup else {})}

    def state_dict(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Tensors (params, rule state, log, a sync round still open) and JSON metadata, for a safetensors +
        JSON checkpoint. Taking it changes nothing: an open round is saved as it is, not applied early."""
        tensors = {"params": self.params, "log": self.log.to_tensor(), **{f"rule.{k}": v for k, v in self.state.items()}}
        held = [g for *_, g, _ in self._round if g is not None]
        if held:
            tensors["round"] = torch.stack(held)
        meta = {**self.stats(), "start": self.start, "rule": self.rule.name,
                "last_seq": {str(w): max(max(seen, default=-1), self._floor.get(w, -1)) for w, seen in self._seen.items()},
                "seen": {str(w): self._seen_record(w) for w in self._seen},
                "round": [[w, seq, base, g is not None, None if k is None else list(k)]
                          for w, seq, base, g, k in self._round]}
        return tensors, meta

    def _seen_record(self, worker: int) -> list[int]:
        """[c, s...]: every push number of ``worker`` up to c was seen, and s... above it. Pushes landing out of
        order (random delays) leave holes under the last one: a push still in flight fills one after a resume."""
        seen, c = self._seen[worker], self._floor.get(worker, -1)
        while c + 1 in seen:
            c += 1
        return [c, *sorted(s for s in seen if s > c)]

    def load_state_dict(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        if tensors["params"].shape != self.params.shape:
            raise CheckpointError(f"shard {self.index}: checkpoint has {tensors['params'].numel()} parameters, "
                             f"this shard {self.params.numel()}; the model or cluster.shards changed")
        if meta.get("rule") != self.rule.name:
            raise CheckpointError(f"shard {self.index}: checkpoint was trained with rule {meta.get('rule')!r}, "
                             f"this run uses {self.rule.name!r}")
        self.params.copy_(tensors["params"])
        for k in self.state:
            self.state[k].copy_(tensors[f"rule.{k}"])
        self.log = StalenessLog.from_tensor(tensors["log"])
        self.version, self.accepted, self.applied = meta["version"], meta["accepted"], meta["applied"]
        self.rejected = Counter(meta.get("rejected", {}))
        self.uncorrected = meta.get("uncorrected", 0)
        if "seen" in meta:
            self._floor = {int(w): rec[0] for w, rec in meta["seen"].items()}
            self._seen = {int(w): set(rec[1:]) for w, rec in meta["seen"].items()}
        else:                      # (older checkpoints: everything up to the last push counts as seen)
            self._floor = {int(w): s for w, s in meta.get("last_seq", {}).items()}
            self._seen = {w: set() for w in self._floor}
        # DC-ASGD: no copy survives a restore, and a push in flight when the checkpoint was taken is
        # lost; waiting for it (the first seq not yet arrived) kept every later copy for the rest of the run
        self._arrived = {}
        self._next = {w: max(self._seen[w] | {self._floor.get(w, -1)}) + 1 for w in self._seen}
        held = iter(tensors["round"]) if "round" in tensors else iter(())
        self._round = []
        for w, seq, base, has, *trained in meta.get("round", []):
            g = next(held).clone() if has else None
            if trained:
                stages = None if trained[0] is None else tuple(int(k) for k in trained[0])
            else:   # (a checkpoint written before 2026-12-04 kept no stages: held were the tensors pushed all zeros)
                stages = None if g is None else stages_with_gradient(g, self.stage_pieces)
            self._round.append((int(w), int(seq), int(base), g, stages))


def tensor_pieces(ranges: Iterable[tuple[int, int]], start: int, stop: int) -> list[tuple[int, int]]:
    """The parts of the flat parameter tensors ``ranges`` ([a, b) each) inside the shard [start, stop),
    relative to ``start``: the ``tensors`` of its :class:`Shard`."""
    return [(max(a, start) - start, min(b, stop) - start) for a, b in ranges if a < stop and b > start]


def stages_with_gradient(g: Tensor, stage_pieces: dict[int, list[tuple[int, int]]]) -> tuple[int, ...] | None:
    """The stages of ``stage_pieces`` (ranges of ``g``) with a nonzero element in ``g``; None where there are no
    stages. Only for a push recorded before 2026-12-04, which did not say what it trained: the shard that ran it took a
    stage whose pushed gradient was all exactly 0 as held, and a resume of it does the same."""
    if not stage_pieces:
        return None
    return tuple(sorted(k for k, pieces in stage_pieces.items() if any(bool(g[a:b].any()) for a, b in pieces)))


def shard_bounds(numel: int, shards: int) -> list[tuple[int, int]]:
    """Split ``numel`` values into ``shards`` (>= 1, checked with the config) contiguous, near-equal
    [start, stop) ranges."""
    if shards > numel:
        raise ValueError(f"cluster.shards={shards} is more than the model's {numel} parameters")
    edges = [round(i * numel / shards) for i in range(shards + 1)]
    return list(zip(edges[:-1], edges[1:]))
