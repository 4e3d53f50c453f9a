"""A fetch and a push are each a remote call whose own cost does not shrink with the bytes (downpour/plan/calls.py).
Without it a plan timed cat-demo's fetch as its 33.79 kB over the link alone, 270.3 µs at 1 Gbit/s, where a cycle's fetch
on a 2-node Ray cluster took 7.5-7.9 ms and a round trip of the same bytes through the object store 5.07 ms quiet
(5.74 ms at load 20; bench/parameter_server.py). A shard's apply has its own cost too, per update rule (APPLY_S):
timed as its bytes alone, cat-demo's 4,224 values a shard were 11.3 µs, where the shard took 480-507 µs inside a Ray
shard actor at load 9-15 and 16.0-16.3 µs with Adagrad in bench/shard_apply.py quiet (40-48 µs at load 7)."""
import json

import pytest

from downpour.cli import main
from downpour.config import ClusterConfig, ConfigError
from downpour.plan import Cluster, calibrate, format_plan, plan_config, plan_for
from downpour.plan.calibrate import DEFAULT_RATES, Rates
from downpour.plan.calls import APPLY_S, CALL_S, CALL_S_ONE_MACHINE
from downpour.plan.partition import RULE_STATE
from downpour.plan.units import seconds
from downpour.settings import choices_of

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


@pytest.mark.parametrize("machines, cores", [(4, 3), (1, 2)])
@pytest.mark.parametrize("rule", ["sgd", "momentum", "adagrad", "adam"])
def test_a_shards_apply_takes_its_rules_own_cost_beside_its_bytes(rule, machines, cores):
    plan = plan_for(None, [f"cluster.rule={rule}"], Cluster(machines=machines, cores=cores, replicas=2, shards=2),
                    config="cat-demo")
    t = plan["times_s"]
    # each of 2 shards applies half the push: on a machine of its own at its cores' rate, on one machine on one thread
    threads = cores if machines > 1 else 1
    assert t["apply_fixed"] == APPLY_S[rule]
    assert t["apply_one"] == pytest.approx(APPLY_S[rule] + BYTES / 2 / (threads * DEFAULT_RATES.apply_bytes_per_core),
                                           rel=1e-9)
    assert plan["cycle_bounds_s"]["shard apply"] == pytest.approx(2 * t["apply_one"], rel=1e-9)   # 2 replicas' pushes


def test_a_tiny_pushs_apply_is_its_rules_own_cost_however_fast_the_bytes(monkeypatch):
    """At an apply rate with no end a push's apply took no time at all: its bytes were all of it."""
    monkeypatch.setattr("downpour.plan.assemble.measure_rates", lambda rule: Rates(17e9, 1e300, "test", rule))
    for rule in ("sgd", "adam"):
        plan = plan_for(None, [f"cluster.rule={rule}"], Cluster(machines=4, cores=1, replicas=2, shards=2),
                        measure=True, config="cat-demo")
        assert plan["times_s"]["apply_one"] == pytest.approx(APPLY_S[rule], rel=1e-9) and APPLY_S[rule] > 1e-6
        # the push's delay carries it, so the staleness does
        t = plan["times_s"]
        assert plan["delay_steps"] == pytest.approx((t["push"] + APPLY_S[rule]) / plan["cycle_s"], rel=1e-9)


def test_the_step_line_says_the_applys_own_cost():
    text = format_plan(plan_for(None, ["cluster.rule=adam"], Cluster(machines=4, cores=1, replicas=2, shards=2),
                                config="cat-demo"))
    step = next(line for line in text.splitlines() if line.startswith("step (batch 32)"))
    apply = APPLY_S["adam"] + BYTES / 2 / DEFAULT_RATES.apply_bytes_per_core
    own = seconds(APPLY_S["adam"])
    assert f"one shard's apply {seconds(apply)} (adam's own {own} an apply beside the bytes" in step


def test_every_rule_the_config_takes_has_an_apply_cost_and_no_other():
    """The plan looks a rule's own apply cost and state up without a refusal of its own: cluster.rule's choices refuse
    any other where the config is loaded, before a plan is made (apply_s refused it a second time, unreachable)."""
    assert list(APPLY_S) == list(RULE_STATE) == list(choices_of(ClusterConfig, "rule"))
    with pytest.raises(ConfigError, match="cluster.rule must be one of sgd, momentum, adagrad, adam, got 'rmsprop'"):
        plan_config("cat-demo", ["cluster.rule=rmsprop"])


def test_more_shards_do_not_shrink_a_cycles_applies_below_their_own_cost():
    """Every replica's push reaches every shard: the bytes a shard applies shrink with S, its R applies' own cost
    does not (docs/plan.md, 'What it caps'). At the bytes alone 200 shards took 100 pushes in 11.3 µs a cycle."""
    for shards in (2, 200):
        plan = plan_for(None, (), Cluster(machines=400, cores=1, replicas=100, shards=shards), config="cat-demo")
        assert plan["cycle_bounds_s"]["shard apply"] >= 100 * APPLY_S["adagrad"]


@pytest.mark.parametrize("rule", ["adagrad", "adam"])
def test_a_calibrated_plans_apply_takes_the_measured_own_cost(monkeypatch, capsys, rule):
    """--calibrate measures the apply's own cost with the run's rule (calibrate.apply_fixed_seconds, bench/shard_apply's
    core), and the step, its line, the rates line and --json's rates take it, where the constant APPLY_S took its
    place beside the measured rates."""
    planted = 0.5e-3                          # 500 µs: none of the rules' constants
    monkeypatch.setattr(calibrate, "filter_rounds", lambda: {"layer": [17e9], "pool_lcn": [5e9]})
    monkeypatch.setattr(calibrate, "apply_rate", lambda rule: 1.5e9)
    monkeypatch.setattr(calibrate, "apply_fixed_seconds", lambda rule: planted)
    argv = ["plan", "--config", "cat-demo", "--machines", "4", "--cores", "1", "--replicas", "2", "--shards", "2",
            "--set", f"cluster.rule={rule}", "--calibrate"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    step = next(line for line in lines if line.startswith("step (batch 32)"))
    rates = next(line for line in lines if line.startswith("rates: "))
    assert f"one shard's apply {seconds(planted + BYTES / 2 / 1.5e9)} ({rule}'s own {seconds(planted)} an apply" in step
    assert f"(shard apply, {rule}; {rule}'s own {seconds(planted)} an apply, measured)" in rates
    assert main([*argv, "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["times_s"]["apply_fixed"] == planted
    assert plan["times_s"]["apply_one"] == pytest.approx(planted + BYTES / 2 / 1.5e9, rel=1e-9)
    assert plan["rates"]["apply_fixed_s"] == planted and plan["rates"]["apply_fixed_from"] == "measured"
    assert plan["rates"]["apply_fixed_rule"] == plan["defaults"]["apply_fixed_rule"] == rule
    assert plan["defaults"]["apply_fixed_s"] == APPLY_S[rule]
    assert plan["defaults"]["apply_fixed_from"].startswith("APPLY_S")


def test_a_plans_rates_say_the_apply_cost_is_the_constant_where_the_rule_is_not_the_measured_one(monkeypatch):
    """Rates measured with Adagrad (own cost planted) in an Adam plan: the step takes Adam's APPLY_S, and --json's
    rates said "measured" beside the measured Adagrad figure, which no part of the plan used."""
    planted = 0.5e-3
    monkeypatch.setattr("downpour.plan.assemble.measure_rates",
                        lambda rule: Rates(17e9, 1.5e9, "test", "adagrad", apply_fixed_s=planted))
    layout = Cluster(machines=4, cores=1, replicas=2, shards=2)
    adam = plan_for(None, ["cluster.rule=adam"], layout, measure=True, config="cat-demo")
    assert adam["times_s"]["apply_fixed"] == APPLY_S["adam"]
    assert (adam["rates"]["apply_fixed_rule"], adam["rates"]["apply_fixed_s"]) == ("adam", APPLY_S["adam"])
    assert adam["rates"]["apply_fixed_from"].startswith("APPLY_S") and adam["rates"]["apply_rule"] == "adagrad"
    assert f"adam's own {seconds(APPLY_S['adam'])} an apply, APPLY_S)" in format_plan(adam)
    adagrad = plan_for(None, ["cluster.rule=adagrad"], layout, measure=True, config="cat-demo")
    assert adagrad["times_s"]["apply_fixed"] == adagrad["rates"]["apply_fixed_s"] == planted
    assert adagrad["rates"]["apply_fixed_from"] == "measured"
    assert f"adagrad's own {seconds(planted)} an apply, measured)" in format_plan(adagrad)


def test_an_uncalibrated_plans_rates_line_says_the_apply_cost_is_the_constant():
    text = format_plan(plan_for(None, ["cluster.rule=adam"], Cluster(machines=4, cores=1, replicas=2, shards=2),
                                config="cat-demo"))
    rates = next(line for line in text.splitlines() if line.startswith("rates: "))
    assert f"adam's own {seconds(APPLY_S['adam'])} an apply, APPLY_S)" in rates


def test_the_measured_own_cost_is_a_push_of_one_value_with_the_rule(monkeypatch):
    """What apply_fixed_seconds times: a shard's push of 1 value with the run's rule (bench/shard_apply.py's
    ``shard`` at its smallest size), the median of its rounds."""
    pushed = []

    def push_step(rule, grad, lr=0.01):
        pushed.append((rule, grad.numel()))
        return lambda: None

    monkeypatch.setattr(calibrate, "push_step", push_step)
    monkeypatch.setattr(calibrate, "round_seconds", lambda steps, repeats, round_s: {
        name: [3e-6, 1e-6, 2e-6][:repeats] for name in steps})
    assert calibrate.apply_fixed_seconds("adam", repeats=3) == 2e-6
    assert pushed == [("adam", 1)]
