"""How often a greedy cat step runs its frozen stages, once ``CatNet.frozen_cache`` answers from held rows.

In a greedy run stage i > 1 trains on the output of the frozen stages below it. ``downpour/models/frozen.py`` keeps
each input row's frozen output and hands a batch back from it, with no forward pass, when every row of the batch is
held; the cache is emptied at each stage switch (the frozen weights it checks change), so each stage fills it anew.
On in-memory data without augmentation, visited in a fresh order each epoch (``Dataset.batches``), a stage's steps
therefore run the frozen stages like this, per replica (each keeps its own cache over its own shard of the rows):

- the stage's batches miss until every row has been seen in it (:func:`fill_batches`: the rest of the epoch the
  stage starts in, then the next epoch's batches that hold a row not seen yet): the frozen stages run, rows are kept;
- the first batch whose rows are all held is run, compared and run again rolled by a row (the shape check): two
  frozen forwards;
- every later batch is a hit: a read of B held rows (keys and outputs), no frozen forward.

So the frozen forwards per step of stage i are ``(F + 2) / S`` (S the stage's steps per replica, F the fill; 1 where
S <= F; ``(F + 2(S − F)) / S`` where S is less than a step past F), and 1 where rows never recur (augmented or file
data, which the plan does not read), where the shard's distinct rows do not fit the cache (``CACHE_BYTES``: rows past
it are not kept, so a batch of many rows is seldom all held; 1 is an upper bound there: 100 batches of 8 over 150
distinct rows, 140 held, ran 48 forwards, not 100), or where the replica is cut into partitions (their filters live
in remote actors, which drop the cache). An expectation (the rows' order is random), checked against the runner in
:func:`fill_batches`. Running them on every step overstates a greedy stage's cost.
"""
from __future__ import annotations

import functools
import math
from dataclasses import replace
from typing import Sequence

from downpour._names import plural
from downpour.config import DataConfig, RunConfig
from downpour.models.frozen import CACHE_BYTES
from downpour.plan.stage import Network
from downpour.plan.units import size

__all__ = ["frozen_runs", "fill_batches", "stage_steps", "data_rows", "with_frozen_runs", "without_cache", "BUILT_IN"]

BUILT_IN = ("natural", "faces", "natural+faces", "digits", "gaussian")    # always built in memory (data/pipeline.py)


def stage_steps(total: int, n_stages: int) -> list[int]:
    """The steps of each greedy stage of a run of ``total`` steps: stage s starts at ⌈(s − 1)·total/n⌉
    (``ps/cluster.py`` ``stages_of``, ``plan.staleness.greedy_switches``)."""
    starts = [math.ceil(s * total / n_stages) for s in range(n_stages)] + [total]
    return [b - a for a, b in zip(starts, starts[1:])]


def frozen_runs(rows: int, batch: int, total: int, row_bytes: Sequence[float], replicas: int = 1,
                limit: int = CACHE_BYTES, distinct: int | None = None) -> tuple[float, ...]:
    """Per greedy stage, the frozen stages' forward passes per step (1: every step, as without the cache; stage 1,
    which has none below it, 1) for a run of ``total`` steps over ``rows`` in-memory rows, batch ``batch``, on
    ``replicas`` (each its own cache over its ``rows / replicas``); ``row_bytes[i]``: what the cache keeps for a row
    in stage i's steps (its key, the input, and the frozen stages' output); ``distinct``: of the rows, how many
    differ in their bytes (None: all). The expected count: see :func:`fill_batches`."""
    if rows < 1 or batch < 1 or replicas < 1:
        raise ValueError(f"frozen_runs: rows, batch and replicas must be >= 1, got {rows}, {batch}, {replicas}")
    mine = math.ceil(rows / replicas)
    kept = math.ceil((distinct or rows) / replicas)     # the entries a replica's cache needs: a repeat shares its row's
    lengths = stage_steps(total, len(row_bytes))
    out = [1.0]
    for i, size in enumerate(row_bytes[1:], start=1):
        per = lengths[i] / replicas
        # (the distinct rows, not all of them: main's 2,180 rows against the 1,012 entries its cache holds)
        if per <= 0 or kept * size > limit:
            out.append(1.0)
            continue
        fill = fill_batches(mine, batch, round(sum(lengths[:i]) / replicas) * batch % mine,
                            (distinct or rows) / rows)
        # the check's 2 forwards on the batch after the fill, where a replica runs one; a replica's share of the
        # steps is a mean (R replicas of S/R steps), taken between the fill's end and one step past it, not
        # (F + 2)/S past the fill: that would read 2.52 a step for cat-demo's 630 replicas of 1.19 stage-2 steps, where a
        # step runs at most 1.5
        out.append((fill + min(2.0, 2 * (per - fill))) / per if per > fill else 1.0)
    return tuple(out)


def fill_batches(rows: int, batch: int, offset: int, unique: float = 1.0) -> float:
    """The batches a stage runs its frozen stages on before every row is held (expected), the stage starting
    ``offset`` rows into an epoch of ``rows``: the rest of that epoch, ⌈(rows − offset)/batch⌉ batches, and then,
    in the next epoch, each batch holding one of the ``offset`` rows not seen yet, of ``rows/batch``: with the rows
    in a random order, ``rows/batch · (1 − (1 − u/rows)^batch)`` where u = ``offset · unique`` (``unique``: the
    share of the rows whose bytes differ; a repeated row, the built-in faces drawn 2-10 times each, is held once any
    of its copies was seen). cat-demo's stage 2 at 200 of 400 steps starts 170 rows into an epoch of 1,246 (1,012
    distinct): 34 + 38.0 batches, + the check's 2 forwards: 74.0 predicted, where the local runner ran the frozen
    stage 74 times (measured 2026-12-06; one epoch, ⌈rows/batch⌉ + 2, would say 41). The main job's
    bench/frozen_cache.py greedy row (stage 2 starting 20 rows into an epoch of 2,180, 1,012 distinct): 68 + 8.7 + 2
    = 78.7 against 672 of 750 batches from the cache, 79 forwards (docs/benchmarks.md, frozen_cache)."""
    if offset == 0:
        return math.ceil(rows / batch)
    return math.ceil((rows - offset) / batch) + rows / batch * (1 - (1 - offset * unique / rows) ** batch)


def data_rows(cfg: RunConfig) -> tuple[int, int] | None:
    """The rows ``cfg``'s data set holds in memory, and how many of them differ, where they recur unchanged (a
    built-in source, no augmentation), else None (the plan then counts the frozen stages on every step, as on data
    that never recurs). Builds the data set: 1-3 s for the presets' built-in images."""
    if cfg.data.source not in BUILT_IN or _augmented(cfg.data):
        return None
    return _rows(cfg.data, cfg.seed)


def _augmented(d: DataConfig) -> bool:
    """Whether each epoch draws its rows anew (shifted, scaled or flipped): no row recurs for the cache."""
    return bool(d.shift or d.scale or d.flip)


@functools.lru_cache(maxsize=8)
def _rows(data: DataConfig, seed: int) -> tuple[int, int]:
    from downpour.data.build import build_dataset    # (the plan of a config builds its data only here)
    x = build_dataset(data, seed).x
    return len(x), len({row.numpy().tobytes() for row in x})


FROM_CACHE = "a greedy step's frozen stages come from the frozen cache"
# what a split replica's step runs instead (models/frozen.py's cache lives in the replica; its partitions' actors
# compute the frozen stages' blocks afresh)
SPLIT_RUNS = ("a greedy step runs the frozen stages below it on every step: the replica is split into partitions, "
              "whose actors drop the frozen cache")


def without_cache(net: Network) -> Network:
    """``net`` as a replica split into partitions runs it: no frozen forward answered by the cache, and its assumption
    line saying so, in place of the line of one unsplit replica's cache ("1 replica ... 0.0932 forward passes per
    step of stage 2"), which under `--config cat-untied --replicas 2 --partitions 2` would contradict figures that
    run every step)."""
    if not net.frozen_runs:
        return net
    said = tuple(SPLIT_RUNS if line.startswith(FROM_CACHE) else line for line in net.assumptions)
    return replace(net, frozen_runs=(), assumptions=said)


def with_frozen_runs(net: Network, cfg: RunConfig, replicas: int = 1) -> Network:
    """``net`` (a cat network counted on paper, planned from ``cfg``, a preset or file) with the frozen forward passes
    per step of its greedy stages (:func:`frozen_runs`, on the data ``cfg`` trains on, its ``train.batch_size`` and
    ``train.steps``, shared by ``replicas``, each over its shard) and an assumption line saying so; ``net`` itself
    where nothing is frozen, and ``net`` with an assumption line saying why where the cache does not answer."""
    if net.counted or net.schedule != "greedy" or len(net.stages) < 2:
        return net
    key = 4 * math.prod(net.input_shape)
    sizes = [0.0] + [key + 4 * math.prod(s.out_shape) for s in net.stages[:-1]]
    d = cfg.data
    if cfg.train.device == "cuda":    # (the cache keys CPU rows: a GPU batch runs the frozen stages, models/frozen.py)
        return replace(net, assumptions=(*net.assumptions, (
            "a greedy step runs the frozen stages below it on every step: train.device = 'cuda', where the frozen "
            "cache is off (it keys CPU rows)")))
    if (d.mode == "patches" or d.source == "gaussian") and d.samples * min(sizes[1:]) > CACHE_BYTES:
        # data.samples rows, random patches nearly all distinct, past what the cache keeps: not built, the plan reading
        # 1 either way (100,000 patches of 32x32 took 48 s to build on the loaded 2-core VM, 2026-12-06; 10**6, 4 GB)
        return replace(net, assumptions=(*net.assumptions, (
            f"a greedy step runs the frozen stages below it on every step: data.samples = {d.samples:,} rows of "
            f"{size(min(sizes[1:]))} each, {size(d.samples * min(sizes[1:]))}, are past the frozen cache's "
            f"{size(CACHE_BYTES)} (rows past it are not kept; the data were not built to count the distinct ones)")))
    counted = data_rows(cfg)
    if counted is None:
        return replace(net, assumptions=(*net.assumptions, (
            "a greedy step runs the frozen stages below it on every step: the data's rows do not recur unchanged "
            f"(data.source {d.source!r}" + (", augmented" if _augmented(d) else ": files, which the plan does not read")
            + ")")))
    rows, distinct = counted
    batch = cfg.train.batch_size
    runs = frozen_runs(rows, batch, cfg.train.steps, sizes, replicas, distinct=distinct)
    said = (", ".join(str(i) for i in range(2, len(runs) + 1)) + ": " + ", ".join(f"{r:.3g}" for r in runs[1:]))
    return replace(net, frozen_runs=runs, assumptions=(*net.assumptions, (
        f"{FROM_CACHE} once a stage has seen its {rows:,} rows "
        f"({distinct:,} distinct; {cfg.train.steps:,} steps of {batch}, {plural(replicas, 'replica')}, each its own "
        f"cache over its shard): forward passes of them per step of stage {said} "
        "(1: every step; split into partitions, every step: their actors drop the cache)")))
