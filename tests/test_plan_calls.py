"""A fetch and a push are each a remote call whose own cost does not shrink with the bytes (downpour/plan/calls.py).
Without it a plan timed cat-demo's fetch as its 33.79 kB over the link alone, 270.3 µs at 1 Gbit/s, where a cycle's fetch
on a 2-node Ray cluster took 7.5-7.9 ms and a round trip of the same bytes through the object store 5.07 ms quiet
(5.74 ms at load 20; bench/parameter_server.py)."""
import pytest

from downpour.plan import Cluster, format_plan, plan_for
from downpour.plan.calls import CALL_S, CALL_S_ONE_MACHINE
from downpour.plan.units import seconds

pytestmark = pytest.mark.usefixtures("one_thread")

BYTES = 4 * 8_448       # cat-demo's parameters (tile 2: 4 banks x 8 maps x (8x8 + 5x5x8)), float32


@pytest.mark.parametrize("machines, call, link", [
    (4, CALL_S, 1e9 / 8),               # across machines: the object store's call, at 1 Gbit/s
    (1, CALL_S_ONE_MACHINE, 2.0e9),     # one machine: the lanes' call, copies through shared memory
])
def test_a_fetch_and_a_push_each_take_a_calls_own_cost_beside_their_bytes(machines, call, link):
    plan = plan_for(None, (), Cluster(machines=machines, cores=1 if machines > 1 else 2, replicas=2, shards=2),
                    config="cat-demo")
    t = plan["times_s"]
    assert t["fetch"] == pytest.approx(BYTES / link + call, rel=1e-9)
    assert t["push"] == pytest.approx(BYTES / link + call, rel=1e-9)
    assert t["step"] == pytest.approx(t["compute"] + t["fetch"], rel=1e-9)      # one partition: no halo, no windows
    # the push's delay, and with it the staleness, carry the call too
    assert plan["delay_steps"] == pytest.approx((t["push"] + t["apply_one"]) / plan["cycle_s"], rel=1e-9)


def test_the_step_line_says_the_calls_cost():
    text = format_plan(plan_for(None, (), Cluster(machines=4, cores=1, replicas=2, shards=2), config="cat-demo"))
    step = next(line for line in text.splitlines() if line.startswith("step (batch 32)"))
    # (the constants' own values, so that a re-measured CALL_S changes calls.py alone)
    assert f"fetch {seconds(BYTES / (1e9 / 8) + CALL_S)}/1" in step
    assert f"a remote call, its own {seconds(CALL_S)} beside the bytes" in step
