"""A training step's FLOPs as torch counts them, for the models the plan does not count on paper.

``footprint_table`` measures a model's inference path (``forward``) layer by layer; a training step runs
``forward_train`` and its objective instead: an autoencoder's decoder, a TICA cost's pooling product, an
RBM's Gibbs chain, a GRU autoencoder's decoding pass. Planned from the inference path, tica-8x8's step would read
16.4 kFLOP per example where torch counts 57.3 k (ufldl-sae 6.4 k against 16.0 k, rnn-rows 676 k against
1.55 M), so the plan counts the step itself, on the built model. (The cat network is counted on paper,
:mod:`downpour.plan.cat_formulas`: at the paper's size it cannot be built.)

Torch's counter counts matrix products and convolutions (a multiply-add is 2 FLOPs), not element-wise work.

:func:`step_held_bytes` is the memory side: the bytes a training step's graph keeps for its backward, read off the
graph itself, what :mod:`downpour.plan.held` counts on paper for the cat network.
"""
from __future__ import annotations

import copy

import torch
from torch.utils.flop_counter import FlopCounterMode

from downpour.batch import Batch
from downpour.config import RunConfig
from downpour.models.base import FeatureModel
from downpour.models.registry import build
from downpour.objectives import Objective
from downpour.train.step import train_step

__all__ = ["step_flops", "step_held_bytes", "held_by_layer", "buffer_bytes", "COST"]

# held_by_layer's name for what the objective saved, apart from the model's arithmetic outside its layers (""): in
# cnn-digits' step at batch 32 the cost keeps 1.5 kB of the 108.0 kB saved outside its layers, its max-pooling most
COST = "(the cost)"


def random_batch(input_shape: tuple[int, ...], batch: int) -> Batch:
    """``batch`` examples uniform in [0, 1] (a Bernoulli RBM's range; seed 0, the same each call), labels 0."""
    generator = torch.Generator().manual_seed(0)
    return Batch(torch.rand((batch, *input_shape), generator=generator), torch.zeros(batch, dtype=torch.long))


def _saved(node) -> list[torch.Tensor]:
    """The tensors one autograd node keeps for its backward: a custom Function's ``saved_tensors``, a built-in
    node's ``_saved_*`` attributes."""
    out = list(node.saved_tensors) if hasattr(node, "saved_tensors") else []
    for name in dir(node):
        if name.startswith("_saved_"):
            value = getattr(node, name)
            out += value if isinstance(value, (tuple, list)) else [value]
    return [t for t in out if isinstance(t, torch.Tensor)]


def _order(node) -> int | None:
    """Autograd's creation number of ``node`` (torch's private ``Node._sequence_nr``, there from 2.1 to 2.13 at
    least), or None where a torch lacks it: a cost term's weight then goes to the model's own ops ("", 8
    bytes a term, "held whatever the batch"), and ``downpour plan`` still plans."""
    seq = getattr(node, "_sequence_nr", None)
    return seq() if callable(seq) else None


def _held(model: FeatureModel, objective: Objective, input_shape: tuple[int, ...], batch: int) -> dict[int, tuple[int, str]]:
    """One training step's saved storages (the cost's graph walked from its total): {storage: (bytes, the innermost
    module whose forward saved it, "" outside every module in the model's own arithmetic, :data:`COST` in the
    objective's)}; the parameters' and buffers' own left out (they are held anyway: model state, :func:`buffer_bytes`).

    A Python number an op saves (a cost term's weight: ``0.1 * term`` keeps 0.1 as an 8-byte float64) never passes
    the pack hook; it goes to the cost when the node saving it was made by the cost (autograd numbers its nodes in
    order), else to the model's own ops. Were every one put under "", tica-8x8's memory line would read
    "held whatever the batch 16.40kB": its 16.38 kB pooling matrix (a buffer) and its two terms' weights."""
    data = random_batch(input_shape, batch)
    params = {p.untyped_storage().data_ptr() for p in (*model.parameters(), *model.buffers())}
    names = {m: n for n, m in model.named_modules()}
    inside: list[str] = []              # the modules whose forward is running, innermost last
    saver: dict[int, str] = {}          # storage -> the module running when a node first saved it

    def pack(t: torch.Tensor) -> torch.Tensor:
        # a storage two nodes save goes to the first module that saved it, over "" (cnn-digits' ReLU, outside its
        # layers, saves its output, and the next convolution the same tensor as its input) and over the cost
        ptr, here = t.untyped_storage().data_ptr(), inside[-1] if inside else ""
        if ptr not in saver or saver[ptr] == "" and here != COST:
            saver[ptr] = here
        return t

    def enter(module: torch.nn.Module, args: tuple) -> None:
        inside.append(names[module])

    def leave(module: torch.nn.Module, args: tuple, out: object) -> None:
        inside.pop()

    handles = [h for m in model.modules() for h in (m.register_forward_pre_hook(enter), m.register_forward_hook(leave))]
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            outputs = model.forward_train(data)
            inside.append(COST)     # (the cost's own; a module it calls is that module's)
            first_of_cost = _order((torch.zeros((), requires_grad=True) * 1).grad_fn)
            total, _ = objective(outputs)
    finally:
        for h in handles:
            h.remove()
    storages, seen, todo = {}, set(), [total.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        for t in _saved(node):
            storage = t.untyped_storage()
            if storage.data_ptr() not in params:
                made = _order(node) if first_of_cost is not None else None
                unpacked = COST if made is not None and made > first_of_cost else ""
                storages[storage.data_ptr()] = (storage.nbytes(), saver.get(storage.data_ptr(), unpacked))
        todo += [f for f, _ in node.next_functions]
    return storages


def step_held_bytes(cfg: RunConfig, input_shape: tuple[int, ...], batch: int) -> tuple[int, ...]:
    """Bytes a training step of ``cfg``'s model and cost on ``batch`` examples holds for its backward: every distinct
    storage a node of the cost's graph saved, the parameters' own left out (they are held anyway). One value for a
    joint schedule, one per stage for a greedy one, as :func:`step_flops`."""
    model, objective = build(cfg, input_shape)
    greedy = cfg.train.schedule == "greedy" and model.n_stages > 1
    out = []
    for stage in range(1, model.n_stages + 1) if greedy else (None,):
        model.set_stage(stage)
        model.train()
        out.append(sum(b for b, _ in _held(model, objective, input_shape, batch).values()))
    return tuple(out)


def buffer_bytes(model: FeatureModel) -> dict[str, int]:
    """The built model's buffers, {name: bytes}: model state, held whatever a step's graph saves (tica-8x8's
    pooling matrix, 16.4 kB, is in memory with its pooled_l2 term off too; teacher-student's teacher, which no graph
    saves, is in memory all the same): counted whether or not a step's graph saves it, and not as "held" by the
    step."""
    return {name: b.nbytes for name, b in model.named_buffers()}


def held_by_layer(model: FeatureModel, objective: Objective, input_shape: tuple[int, ...],
                  batch: int) -> dict[str, tuple[float, float]]:
    """What one training step (on ``batch`` examples, the run's ``train.batch_size``) of a built one-stage model
    holds for its backward, by the module that saved it ("" outside every module, :data:`COST` the objective):
    {name: (bytes per example, bytes per step)}, :func:`step_held_bytes`'s total.

    Measured on 1, 2 and 3 examples and read at the batch, as :func:`step_flops`: a PCD RBM's persistent chains
    are held whatever the batch (any step whose three counts are no line is measured at the batch, all per example).
    The inference path (each layer's output) understates it: ufldl-sae at batch 100 holds 10.0 kB there where its
    step keeps 87.4 kB, rnn-rows at 32 69.6 kB for 1.04 MB."""
    model.train()

    def by_name(batch: int) -> dict[str, int]:
        out: dict[str, int] = {}
        for nbytes, name in _held(model, objective, input_shape, batch).values():
            out[name] = out.get(name, 0) + nbytes
        return out

    one, two, three = (by_name(b) for b in (1, 2, 3))
    names = sorted(set(one) | set(two) | set(three))
    line = {n: (two.get(n, 0) - one.get(n, 0), 2 * one.get(n, 0) - two.get(n, 0)) for n in names}
    if all(three.get(n, 0) == fixed + 3 * each for n, (each, fixed) in line.items()):
        return {n: (float(each), float(fixed)) for n, (each, fixed) in line.items()}
    return {n: (nbytes / batch, 0.0) for n, nbytes in by_name(batch).items()}


def _count(model: FeatureModel, objective: Objective, input_shape: tuple[int, ...], batch: int) -> float:
    """torch's FLOPs of one training step on ``batch`` examples (all of them, not per example)."""
    data = random_batch(input_shape, batch)
    with FlopCounterMode(display=False) as counter:
        train_step(model, objective, data)
    return float(counter.get_total_flops())


def _count_on_meta(model: FeatureModel, objective: Objective, input_shape: tuple[int, ...], batch: int) -> float:
    """:func:`_count` on a copy of ``model`` on torch's meta device (shapes, no arithmetic): the same forward, cost
    and backward as :func:`train_step`, without its checks of the values (a meta tensor has none). The paper's
    network on a 64x64 crop: 1.4 s of CPU for its three greedy stages where the built step took 14.6 (2026-12-06)."""
    data = Batch(torch.empty((batch, *input_shape), device="meta"), torch.zeros(batch, dtype=torch.long, device="meta"))
    model.train()
    model.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as counter:
        total, _ = objective(model.forward_train(data))
        total.backward()
    return float(counter.get_total_flops())


def _counts(model: FeatureModel, objective: Objective, input_shape: tuple[int, ...],
            batches: tuple[int, ...]) -> list[float]:
    """:func:`_count` at each of ``batches``, on a copy of ``model`` (its stage set) on the meta device where its step
    runs there (the counts are the built step's: tests/test_plan_meta.py); a step that reads a value (an ``.item()``,
    a data-dependent branch) or uses an op meta lacks raises there, and is counted on the built model."""
    try:
        meta = copy.deepcopy(model).to("meta")
        return [_count_on_meta(meta, objective, input_shape, b) for b in batches]
    except (RuntimeError, NotImplementedError, TypeError):
        return [_count(model, objective, input_shape, b) for b in batches]


def step_flops(cfg: RunConfig, input_shape: tuple[int, ...],
               built: tuple[FeatureModel, Objective] | None = None) -> tuple[float, ...]:
    """Per-example FLOPs of one training step of ``cfg``'s model and objective on ``input_shape`` at its
    ``train.batch_size``: one value for a joint schedule, one per stage for ``train.schedule = "greedy"`` (stage i's
    steps: the stages below it forward only, the ones above it not run). Data uniform in [0, 1] (a Bernoulli RBM's
    range); labels 0.

    A step's count is a part per example and a part per step (a PCD RBM's persistent chains: rbm-digits' 32 chains
    cost 1.64 MFLOP a step, whatever the batch), so it is counted on 1, 2 and 3 examples and read at the batch:
    fixed / B + per example, exact where the three counts lie on a line (any other step is counted at B itself).
    Counted on 2 examples alone, rbm-digits would read 896 kFLOP per example where its steps of 64 take 102.4 k,
    and the plan's step 8.7x too long (compute 210.8 µs for 24.1). ``built``: ``cfg``'s model and objective
    already built (a step leaves the parameters as they were: it sets only their ``.grad``)."""
    model, objective = built or build(cfg, input_shape)
    batch = cfg.train.batch_size
    greedy = cfg.train.schedule == "greedy" and model.n_stages > 1
    out = []
    for stage in range(1, model.n_stages + 1) if greedy else (None,):
        model.set_stage(stage)
        one, two, three = _counts(model, objective, input_shape, (1, 2, 3))
        fixed, each = 2 * one - two, two - one
        if three != fixed + 3 * each:      # (a cost that pairs the batch's examples: no line to read)
            out.append(_counts(model, objective, input_shape, (batch,))[0] / batch)
        else:
            out.append(fixed / batch + each)
    return tuple(out)
