"""The fixed costs beside the bytes: a remote call's on the Ray runner (a fetch and a push each take it), and a
shard's apply of a push (:data:`APPLY_S`, per update rule).

A plan times a fetch or a push as its bytes over the link (or, on one machine, through shared memory at
:data:`~downpour.plan.one_machine.COPY_BYTES_PER_S`); each is also a remote call whose own cost does not shrink
with the bytes. For a small model that cost is most of the transfer: cat-demo's 33.79 kB fetch is 270.3 µs at
1 Gbit/s, where a round trip of it through Ray's object store takes 5.07 ms. So each fetch and each push takes
:data:`CALL_S` more (the shards answer in parallel: one call's cost, not S), :data:`CALL_S_ONE_MACHINE` where every
process is on one machine (the runner's shared-memory lanes, ps/shm.py: no object store). A shard's apply of a push is
its rule's :data:`APPLY_S` beside its bytes at the apply rate (its call is the push's, above).

Each is half the median round trip (a push applied by the shards, then a fetch) of ``bench/parameter_server.py``
at cat-demo's size, 2 shards (2026-12-07 06:55 UTC, main at b9f6a62a, the project's 2-core VM quiet: load 1.74,
7 interleaved repetitions of 30 round trips each):

    .venv/bin/python bench/parameter_server.py --sizes 0.0322 1 --shards 2 --repeats 30 --reps 7

(``--sizes 0.0322``: 8,441 float32, cat-demo's 8,448 within 0.1%.) ``ours_store`` (workers and shards on other nodes:
the object store) 5.07 ms (4.92-5.24 over the repetitions); ``ours`` (one machine: the lanes) 0.273 ms (0.165-0.319);
a memcpy of the same bytes 0.002 ms. At 1 MB the same round trips take 11.7 and 0.74 ms: by the slope between the two
sizes, cat-demo's bytes are about 4% of the object store's round trip and 6% of the lanes'. The bench's
``load_1min`` was 1.74 on 2 cores (1.54-1.74): the constants are this machine's, as the rates' defaults are. At load
20 (04:06 UTC, ``--reps 3``) the same command read 5.74 ms (5.59-6.37) and 0.172 ms (0.161-0.263): the load inflated
the object store's round trip by 13%, while the lanes' quiet median is the higher one, 0.273 ms against 0.172, just
above the loaded run's range and with the loaded median inside its own (0.165-0.319): the lanes' round trip, a few
hundred µs, moves from one repetition to the next by more than the load moved it. To re-measure, run the command on
a quiet machine and set each constant to half its row's ``ms.ours_store.median`` / ``ms.ours.median`` at size 0.0322,
with the load and date here; the tests read the constants, and the docs' figures derived from them are listed in
docs/plan.md, 'A call's own cost'. The calls between a split replica's own process and its partitions (windows, lent
banks) are timed as their bytes alone.

A shard's apply (:meth:`~downpour.ps.shard.Shard.push`: the checks, the finite test, the rule, the push's record) has
a cost of its own too, torch's per-op cost and the shard's Python, which the bytes do not shrink: timed as its bytes at
the apply rate alone, cat-demo's 4,224 values a shard were 11.3 µs, where the shard took 16.0-16.3 µs applying them
with Adagrad in the bench below and 480-507 µs inside a Ray shard actor at load 9-15 (docs/plan.md, "Against a Ray
cluster of nodes"). So each apply takes :data:`APPLY_S` of its rule beside its bytes: the median of
``bench/shard_apply.py``'s rounds for a push of 1 value (all of it the fixed cost), the mean of two runs' (2026-12-07
10:51-10:52 UTC, main at 86e36549, the 2-core VM quiet: the bench's ``load_1min`` 1.1-1.5, not niced, 21 rounds each):

    .venv/bin/python bench/shard_apply.py --reps 21

SGD 7.07 and 6.79 µs, momentum 10.69 and 10.73, Adagrad 14.28 and 12.99, Adam 28.26 and 28.19: the rules differ by
their state's passes (Adam's two moments and step count against SGD's none). Torch's own optimiser step of 1 value,
the bench's baseline in the same rounds, took 11.9-37.4 µs (SGD 11.87 and 11.93, Adam 37.20 and 37.41): the shard's
apply of a tiny push costs 0.51-0.76 of torch's. The model's check in the same runs, the fixed cost plus 4,224 values
at the slope between 1 and 1 M values, read 1.17-1.27 times the time measured at 4,224 (the slope at 1 M values falls
out of the cache; the plan's rate is ``--calibrate``'s at 4 M). The same command at load 6.9-7.6 under ``nice -n 10``
(09:53-09:54 UTC) read 2.9-3.7 times these (Adagrad 43.5 and 40.0 µs, Adam 101.9 and 107.3), as loaded as the Ray
runs the plan is checked against were: the constants are the quiet machine's. To re-measure, run the command on a
quiet machine and set each rule's constant to the mean of its ``fixed_us``, with the load and date here.
"""
from __future__ import annotations

__all__ = ["APPLY_S", "CALL_S", "CALL_S_ONE_MACHINE", "call_s"]

# half the round trips above (2026-12-07 06:55 UTC, load 1.74 on 2 cores)
CALL_S = 5.072e-3 / 2              # a fetch's or push's own cost across machines (the object store), seconds
CALL_S_ONE_MACHINE = 0.273e-3 / 2  # the same on one machine (shared-memory lanes)


def call_s(one_machine: bool) -> float:
    """Seconds of one remote call's own cost, for a layout on one machine or across machines."""
    return CALL_S_ONE_MACHINE if one_machine else CALL_S


# a shard's apply of a push of 1 value per update rule (cluster.rule, whose choices refuse any other rule where the
# config is loaded: one key each, tests/test_plan_calls.py), seconds: the mean of two runs' medians above (2026-12-07
# 10:51-10:52 UTC, load 1.1-1.5 on 2 cores, not niced)
APPLY_S = {"sgd": 6.93e-6, "momentum": 10.71e-6, "adagrad": 13.64e-6, "adam": 28.22e-6}
