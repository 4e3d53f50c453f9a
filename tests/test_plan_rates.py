"""downpour plan's rates: L2 pooling and LCN timed at their own FLOP rate, not the locally connected layer's (until
2026-12-06 the plan assumed they ran at the filters' rate; bench/pool_lcn.py measures the two side by side)."""
import dataclasses
import json
import math

import pytest

from downpour.models.footprint import footprint_table
from downpour.plan import DEFAULT_RATES, Cluster, Rates, format_plan, network_of, plan_config, plan_for
from downpour.plan.partition import partition
from downpour.plan.predict import predict

pytestmark = pytest.mark.usefixtures("one_thread")

MAIN = Cluster(machines=8, partitions=2)                          # the main job split the runner's way (docs/plan.md)
PAPER = Cluster(replicas=10, partitions=16, shards=200)          # the paper's pipeline: pooling and LCN in a partition


def _net(config: str | None):
    cfg, shape = plan_config("paper" if config is None else None, (), config)
    return network_of(cfg, shape, paper=config is None), cfg.train.batch_size


def _plan(config: str | None, cluster: Cluster, pool_lcn: float):
    net, batch = _net(config)
    return predict(net, cluster, dataclasses.replace(DEFAULT_RATES, pool_lcn_flops_per_core=pool_lcn), batch), batch


@pytest.mark.parametrize("config, cluster, moved", [("main", MAIN, "replica_compute"), (None, PAPER, "compute")])
def test_a_plan_whose_pooling_rate_is_halved_takes_its_pooling_and_lcn_flops_once_more(config, cluster, moved):
    """The main job split in 2 runs pooling and LCN in the replica's process, the paper's pipeline in its partitions:
    the step moves by exactly those FLOPs at the rate's change, and nothing else moves."""
    fast, batch = _plan(config, cluster, 2e9)
    slow, _ = _plan(config, cluster, 1e9)
    key = {"replica_compute": "pool_lcn_replica_flops", "compute": "pool_lcn_flops_train"}[moved]
    pool_lcn = fast["partition"][key]
    assert pool_lcn > 0
    extra = batch * pool_lcn * (1 / 1e9 - 1 / 2e9) / cluster.cores
    assert slow["times_s"][moved] - fast["times_s"][moved] == pytest.approx(extra, rel=1e-9)
    assert slow["times_s"]["step"] - fast["times_s"]["step"] == pytest.approx(extra, rel=1e-9)
    other = ({"replica_compute", "compute"} - {moved}).pop()
    assert slow["times_s"][other] == fast["times_s"][other]


def test_the_main_jobs_greedy_steps_each_move_by_their_own_pooling_and_lcn():
    fast, batch = _plan("main", MAIN, 2e9)
    slow, _ = _plan("main", MAIN, 1e9)
    by_stage = fast["partition"]["pool_lcn_replica_flops_by_stage"]
    assert len(by_stage) == 2 and by_stage[1] > by_stage[0] > 0          # stage 2's step runs stage 1 forward too
    for f, s, fl in zip(fast["times_s"]["step_by_stage"], slow["times_s"]["step_by_stage"], by_stage):
        assert s - f == pytest.approx(batch * fl * (1 / 1e9 - 1 / 2e9) / MAIN.cores, rel=1e-9)


def test_the_pooling_and_lcn_flops_are_the_built_networks_pool_and_lcn_layers():
    """On one machine the partition holds the whole network: its pooling and LCN FLOPs per training example are the
    built cat-demo's pool (forward and backward: every stage trains) and LCN (forward only) layers, as footprint_table
    counts them, each stage trained on its own cost every step: every LCN but the top stage's, whose output feeds
    nothing (a step skips it since 2026-12-06; the plan counted it until that day)."""
    cfg, shape = plan_config("cat-demo", ["train.schedule=joint"])
    rows = footprint_table("cat-demo", None)
    lcn = [r["flops_fwd"] for r in rows if r["type"] == "LocalContrastNorm2d"]
    expected = sum(r["flops_fwd"] + r["flops_bwd"] for r in rows if r["type"] == "L2Pool2d") + sum(lcn[:-1])
    part = partition(network_of(cfg, shape), 1, cfg.train.batch_size, "adagrad")
    assert part["pool_lcn_flops_train"] == expected
    assert 0 < part["pool_lcn_flops_train"] < part["flops_train"]


@pytest.mark.parametrize("bad", [0.0, -1e9, math.nan, math.inf])
@pytest.mark.parametrize("name", ["flops_per_core", "apply_bytes_per_core", "pool_lcn_flops_per_core",
                                  "apply_fixed_s"])
def test_a_bad_rate_is_refused_naming_it(name, bad):
    """A rate of 0 planned an infinite step (or divided by zero); one below 0, a negative one."""
    with pytest.raises(ValueError, match=rf"Rates: {name} must be a positive finite rate, got .* \(test\)"):
        Rates(**{"flops_per_core": 17e9, "apply_bytes_per_core": 1.5e9, "source": "test", name: bad})


def test_the_output_says_where_each_rate_comes_from():
    out = format_plan(plan_for(None, config="main", cluster=MAIN))
    assert "FLOP/s per core (locally connected layer: the filters), " in out
    assert "FLOP/s per core (L2 pooling + LCN), " in out
    assert "pooling + LCN: the layer's times their ratio" in out


def test_the_calibration_measures_pooling_and_lcn():
    from downpour.plan.calibrate import pool_lcn_rate
    assert pool_lcn_rate(repeats=1, batch=2, maps=2, side=9, pool=3, stride=2, window=3) > 0


def test_the_calibration_times_the_layer_and_pooling_taking_turns(monkeypatch):
    """Their ratio splits a step: timed one after the other (5 single layer calls, then 5 of pooling + LCN), a load
    that came and went reached them unalike, and a loaded run read 0.58-0.85 where bench/pool_lcn.py's interleaved
    rounds read 0.29-0.37 in the same minutes."""
    from downpour.plan import calibrate as cal
    calls: list[str] = []

    def fake(name):
        return lambda **_: ((lambda: calls.append(name)), 1e6)

    monkeypatch.setattr(cal, "layer_step", fake("layer"))
    monkeypatch.setattr(cal, "pool_lcn_step", fake("pool"))
    monkeypatch.setattr(cal, "apply_rate", lambda **_: 1e9)
    rates = cal.measure_rates()
    first_pool, last_layer = calls.index("pool"), len(calls) - 1 - calls[::-1].index("layer")
    assert first_pool < last_layer, calls                   # turns: a pooling call before the layer's last
    assert rates.pool_lcn_flops_per_core > 0 and rates.flops_per_core > 0


def test_a_calibration_says_how_loaded_the_machine_was_and_what_it_did_not_measure(monkeypatch, capsys):
    """--calibrate printed "measured on this machine" alike at load 0.3 (the layer 10.4 GFLOP/s) and at load 12 on 2
    cores (4.8): nothing said that the second was the load's share. Its one thread's share of a core (CPU over wall
    time), the load average and the layer's rounds are said now; here the stand-in's rounds are timed asleep, on no
    CPU at all."""
    import time

    from downpour.cli import main
    from downpour.plan import calibrate as cal

    def asleep():
        time.sleep(0.05)                       # wall time, no CPU: a share of a core far below SHARE_QUIET
        return {"layer": [9e9, 17e9, 12e9], "pool_lcn": [5e9, 4e9, 3e9]}

    monkeypatch.setattr(cal, "filter_rounds", asleep)
    monkeypatch.setattr(cal, "apply_rate", lambda rule: 1.5e9)
    monkeypatch.setattr(cal, "apply_fixed_seconds", lambda rule: 14e-6)
    monkeypatch.setattr(cal.os, "getloadavg", lambda: (12.4, 11.6, 7.9))
    argv = ["plan", "--config", "cat-demo", "--machines", "4", "--cores", "1", "--replicas", "2", "--shards", "2"]
    assert main([*argv, "--calibrate"]) == 0
    rates = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("rates: "))
    assert f"while it measured: load 12.4 on {cal.os.cpu_count()} core" in rates
    assert ("of a core (CPU over wall time), the layer's 3 rounds 9.00 GFLOP/s to 17.00 GFLOP/s (the best taken): "
            "the rates are the load's share of this machine") in rates
    assert rates.startswith("rates: 17.00 GFLOP/s per core (locally connected layer: the filters), 5.00 GFLOP/s")
    assert "a call's own cost, the links (--bandwidth) and one machine's copies are the plan's constants" in rates
    assert main([*argv, "--calibrate", "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)["rates"]
    assert measured["load_1min"] == 12.4 and 0 <= measured["core_share"] < cal.SHARE_QUIET
    assert measured["layer_rounds"] == [9e9, 17e9, 12e9]
    quiet = Rates(17e9, 1.5e9, "test", core_share=0.98, load_1min=0.3, cores=2)
    monkeypatch.setattr("downpour.plan.assemble.measure_rates", lambda rule: quiet)
    assert main([*argv, "--calibrate"]) == 0
    assert "load 0.3 on 2 cores, its one thread got 0.98 of a core (CPU over wall time): the rates are the hardware's" \
        in capsys.readouterr().out
    assert main([*argv, "--json"]) == 0                                 # the defaults: nothing measured, nothing said
    assert json.loads(capsys.readouterr().out)["rates"]["core_share"] is None
