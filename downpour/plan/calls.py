"""The fixed cost of one remote call on the Ray runner, beside its bytes: a fetch and a push each take it.

A plan times a fetch or a push as its bytes over the link (or, on one machine, through shared memory at
:data:`~downpour.plan.one_machine.COPY_BYTES_PER_S`); each is also a remote call whose own cost does not shrink
with the bytes. For a small model that cost is most of the transfer: cat-demo's 33.79 kB fetch is 270.3 µs at
1 Gbit/s, where a round trip of it through Ray's object store takes 5.07 ms. So each fetch and each push takes
:data:`CALL_S` more (the shards answer in parallel: one call's cost, not S), :data:`CALL_S_ONE_MACHINE` where every
process is on one machine (the runner's shared-memory lanes, ps/shm.py: no object store). A shard's apply is timed
as its bytes at the apply rate alone: its call is the push's.

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
"""
from __future__ import annotations

__all__ = ["CALL_S", "CALL_S_ONE_MACHINE", "call_s"]

# half the round trips above (2026-12-07 06:55 UTC, load 1.74 on 2 cores)
CALL_S = 5.072e-3 / 2              # a fetch's or push's own cost across machines (the object store), seconds
CALL_S_ONE_MACHINE = 0.273e-3 / 2  # the same on one machine (shared-memory lanes)


def call_s(one_machine: bool) -> float:
    """Seconds of one remote call's own cost, for a layout on one machine or across machines."""
    return CALL_S_ONE_MACHINE if one_machine else CALL_S
