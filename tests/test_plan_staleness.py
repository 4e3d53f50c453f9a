"""downpour plan's staleness prediction against simulated runs (steady staleness, gated runs, greedy stages),
its calibration, and the simulated check of a run (`plan --check-simulated`)."""
import json

import pytest
from ctrl_c import ctrl_c_after_push

from downpour.cli import main
from downpour.config import ConfigError, load_config, save_config
from downpour.ps.rules import make_rule
from downpour.plan import Cluster, Rates, check_simulated, plan_for, predict_staleness
from downpour.plan.calls import APPLY_S
from downpour.plan.check import compare_run
from downpour.plan.units import seconds

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("delay, expected", [("constant:0", 3.0), ("constant:1", 7.0), ("exponential:2", 11.0)])
def test_steady_staleness_of_four_workers(delay, expected):
    # p = f = 1: d = 0 is the non-pipelined N - 1; d = 1 adds N·d (Little's law, ties split evenly);
    # exponential arrivals never tie: N·(1 + d) - 1
    assert predict_staleness(4, 100_000, delay=delay).steady == pytest.approx(expected)


def test_integer_delays_above_one_land_before_the_fetch():
    # the simulator schedules a landing push at t - d and the step that fetches at t - 1: for d = 4 the
    # whole burst at the fetch instant is already applied: N·d + (N - 1)/2, not N·(1 + d) - 1
    assert predict_staleness(4, 100_000, delay="constant:4").steady == pytest.approx(4 * 4 + 1.5)


@pytest.mark.parametrize("sets, tolerance", [
    ((), 0.001),                                                                  # constant delays: exact
    ((("cluster.delay", "exponential:2"), ("cluster.n_push", 2), ("cluster.n_fetch", 3)), 0.25),
])
def test_the_prediction_matches_a_50_worker_simulated_run(tmp_path, sets, tolerance):
    result = check_simulated(workers=50, shards=4, steps=1000, sets=[("train.log_every", 10_000), *sets],
                             out=tmp_path / "run")
    assert result["measured"]["pushes"] == 4 * 1000 / dict(sets).get("cluster.n_push", 1)
    assert abs(result["relative_error"]) <= tolerance, result


@pytest.mark.parametrize("sets", [
    (("cluster.consistency", "bounded:0"), ("cluster.n_fetch", 16)),         # a gate fetches every cycle anyway
    (("cluster.consistency", "bounded:1"), ("cluster.delay", "constant:2"), ("cluster.warm_start", 200)),
    (("cluster.consistency", "bounded:2"), ("cluster.n_push", 2), ("cluster.n_fetch", 3)),
], ids=["n_fetch", "warm_start", "n_push"])
def test_a_gated_run_is_predicted_as_it_fetches_and_waits(tmp_path, sets):
    """Under bounded:K the prediction read n_fetch (+1,051% on the first) and let the warm start's lone
    worker pipeline (+67% on the second), though a gated worker fetches every cycle and waits for its push."""
    result = check_simulated(workers=4, shards=2, steps=400, sets=[("train.log_every", 10_000), *sets],
                             out=tmp_path / "run")
    assert abs(result["relative_error"]) <= 0.01, result


def test_a_faster_network_and_more_replicas_move_the_prediction_the_right_way():
    slow = plan_for("paper", cluster=Cluster(bandwidth_gbit=1, replicas=10, partitions=16, shards=200))
    fast = plan_for("paper", cluster=Cluster(bandwidth_gbit=10, replicas=10, partitions=16, shards=200))
    many = plan_for("paper", cluster=Cluster(bandwidth_gbit=10, replicas=40, partitions=16, shards=200))
    # the bytes' part of a push: its call's own cost (plan/calls.py) does not shrink with the link
    bytes_s = [plan["times_s"]["push"] - plan["times_s"]["call"] for plan in (fast, slow)]
    assert fast["samples_per_s"] > slow["samples_per_s"] and bytes_s[0] == pytest.approx(bytes_s[1] / 10, rel=1e-12)
    assert fast["times_s"]["call"] == slow["times_s"]["call"] > 0
    assert many["staleness"] > 3 * fast["staleness"]
    assert fast["push_bytes_replica"] == 4 * 2 * 1_216_858_464


def test_measured_rates_reach_the_prediction(monkeypatch):
    slow = Rates(1e9, 1e8, "test")
    monkeypatch.setattr("downpour.plan.assemble.measure_rates", lambda rule: slow)
    measured = plan_for("paper", cluster=Cluster(replicas=10, partitions=16, shards=200), measure=True)
    default = plan_for("paper", cluster=Cluster(replicas=10, partitions=16, shards=200))
    assert measured["rates"]["source"] == "test"
    assert measured["times_s"]["compute"] == pytest.approx(default["times_s"]["compute"] * 17)


def test_the_calibration_measures_something():
    from downpour.plan.calibrate import apply_rate, layer_rate

    assert layer_rate(repeats=1, batch=2, channels=2, size=12, kernel=4) > 0
    assert apply_rate(repeats=1, numel=1000) > 0


def test_the_apply_rate_is_measured_with_the_runs_rule_and_a_default_of_another_rule_says_so(monkeypatch):
    """--calibrate measured Adagrad's apply for an Adam run, and the line said "Adagrad" with no word of it."""
    from downpour.plan import format_plan
    from downpour.plan.calibrate import apply_rate
    seen = []
    monkeypatch.setattr("downpour.plan.calibrate.make_rule", lambda rule, lr: seen.append(rule) or make_rule(rule, lr))
    assert apply_rate(repeats=1, numel=1000, rule="adam") > 0 and seen == ["adam"]
    monkeypatch.setattr("downpour.plan.assemble.measure_rates", lambda rule: Rates(1e9, 1e8, "test", rule))
    measured = format_plan(plan_for("paper", ["cluster.rule=adam"], measure=True))
    own = {rule: f"{rule}'s own {seconds(APPLY_S[rule])} an apply, APPLY_S"
           for rule in ("adam", "adagrad")}                    # (a Rates without a measured one: the constant)
    assert f"(shard apply, adam; {own['adam']}): test" in measured
    default = format_plan(plan_for("paper", ["cluster.rule=adam"]))
    assert f"(shard apply, adagrad's rate, not the run's adam: --calibrate measures adam's; {own['adam']})" in default
    assert f"(shard apply, adagrad; {own['adagrad']}): defaults" in format_plan(plan_for("paper"))


def test_a_run_resumed_past_its_end_is_not_checked_against_one_schedule(tmp_path, capsys):
    run = str(tmp_path / "run")
    base = ["train", "--config", "ufldl-sae", "--runner", "simulated", "--workers", "8", "--shards", "2",
            "--set", "train.tensorboard=false", "--no-report", "--out", run]
    assert main([*base, "--steps", "16"]) == 0 and main(["plan", "--check-run", run]) == 0
    assert main(["train", "--resume", run, "--steps", "32"]) == 0
    capsys.readouterr()
    assert main(["plan", "--check-run", run]) == 2        # was: a 50% error against one 32-step schedule
    assert "was resumed past its end" in capsys.readouterr().err


def test_the_cli_checks_a_simulated_run(tmp_path, capsys):
    assert main(["plan", "--check-simulated", "--replicas", "20", "--shards", "4", "--steps", "200",
                 "--out", str(tmp_path / "run")]) == 0
    assert "predicted mean staleness" in capsys.readouterr().out
    assert main(["plan", "--check-run", str(tmp_path / "run"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["workers"] == 20
    # the same --out again: plan has no --resume, which it was told to use ("already holds a run; resume it with
    # --resume or pick another --out")
    assert main(["plan", "--check-simulated", "--replicas", "20", "--shards", "4", "--steps", "200",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"`downpour plan --check-run {tmp_path / 'run'}`" in err and "--resume" not in err


def test_a_run_whose_pushes_were_mostly_refused_does_not_pass_the_check(tmp_path, capsys):
    """A diverged run's staleness is that of its few applied pushes: the check passed it silently
    (teacher-student at lr 50: 369 of 400 pushes refused as non-finite, "relative error +6%", rc 0)."""
    run = str(tmp_path / "run")
    assert main(["train", "--config", "teacher-student", "--runner", "simulated", "--workers", "4", "--steps", "400",
                 "--set", "train.lr=50", "--set", "train.tensorboard=false", "--no-report", "--out", run]) == 0
    capsys.readouterr()
    assert main(["plan", "--check-run", run]) == 1
    out = capsys.readouterr().out
    assert "the shards refused 9" in out and "non-finite): the prediction assumes every push is applied" in out
    result = compare_run(run)
    assert result["rejected_share"] > 0.5 and result["measured"]["rejected"]["non-finite"] > 200
    assert abs(result["relative_error"]) <= 0.25          # the staleness alone would have passed


def test_checking_a_sandblaster_run_says_it_has_no_staleness(tmp_path):
    run = tmp_path / "lbfgs"
    run.mkdir()
    save_config(load_config("cat-demo", ["cluster.algorithm=sandblaster", "cluster.runner=simulated"]), run / "config.toml")
    with pytest.raises(ConfigError, match="is a sandblaster run: it has no stale pushes"):   # was: staleness.json does not exist
        compare_run(run)


@pytest.mark.parametrize("runner, why", [
    ("ray", "on Ray staleness comes from the machines' real timing"),
    ("local", "the local runner has one worker and no parameter server: no push is ever stale")])   # was Ray's reason
def test_checking_a_run_not_on_the_simulator_says_why_it_cannot_be_predicted(tmp_path, runner, why):
    run = tmp_path / runner
    run.mkdir()
    save_config(load_config("cat-demo", [f"cluster.runner={runner}"]), run / "config.toml")
    with pytest.raises(ConfigError, match=f"ran on the '{runner}' runner; the prediction is for the simulated one "
                                          f"\\({why}\\)$"):
        compare_run(run)


@pytest.mark.parametrize("key, named", [
    ("cluster.restarts=3", "only the ray runner reads it"),
    ("train.optimizer=sgd", "only the local runner reads it"),
    ("analysis.layer=nosuch", "analysis.layer = 'nosuch' is not a feature layer"),
])
def test_the_simulated_check_refuses_what_train_refuses(tmp_path, capsys, key, named):
    """plan --check-simulated's --set keys went unchecked: saved in its run's config.toml and read by nothing."""
    argv = ["plan", "--check-simulated", "--steps", "20", "--replicas", "2", "--shards", "2", "--set", key,
            "--out", str(tmp_path / "run")]
    assert main(argv) == 2 and named in capsys.readouterr().err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("key, value", [("cluster.runner", "ray"), ("cluster.algorithm", "sandblaster")])
def test_the_staleness_check_names_the_key_that_takes_it_off_downpour_on_the_simulator(key, value):
    from downpour.plan.check import check_simulated

    with pytest.raises(ConfigError, match=rf"{key} = '{value}': the staleness check runs Downpour on the simulated"):
        check_simulated(workers=4, shards=2, steps=20, sets=[(key, value)])


@pytest.mark.parametrize("argv, named", [
    # the --set came after the flags and won: 5 workers and 100 steps ran, --replicas 50 and --steps 200 unread
    (["--replicas", "50", "--set", "cluster.workers=5"],
     "--set cluster.workers: the check sets it from --replicas; give --replicas 5 instead"),   # it read "(N)"
    (["--steps", "200", "--set", "train.steps=100"], "--set train.steps: the check sets it from --steps"),
    (["--set", "cluster.shards=3"], "--set cluster.shards: the check sets it from --shards"),
    # TOML's floats: the flag takes the whole number ("give --replicas 1000.0 instead" until 2026-12-06, refused)
    (["--set", "cluster.workers=1e3"], "give --replicas 1000 instead"),
    (["--set", "cluster.shards=2.5"], "give --shards N (a whole number; 2.5 is not one) instead"),
    (["--steps", "-3"], "--steps -3: train.steps must be >= 1"),            # was "the command line: train.steps ..."
])
def test_the_simulated_check_takes_its_workers_shards_and_steps_from_its_flags(tmp_path, capsys, argv, named):
    assert main(["plan", "--check-simulated", *argv, "--out", str(tmp_path / "run")]) == 2
    assert named in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_a_run_stopped_and_not_resumed_is_predicted_for_the_steps_it_did(tmp_path, monkeypatch, capsys):
    """A run stopped at step 878 of 100,000 was predicted for 100,000 steps ("+351% off", exit 1). Stopped at push
    123 of 8 workers (15 whole rounds and 3 pushes of the 16th), then resumed to its end: exact both times."""
    from downpour.ps.cluster import run_cluster
    from downpour.train.rundir import RunDir

    cfg = load_config("ufldl-sae", ["cluster.runner=simulated", "cluster.workers=8", "cluster.shards=2", "train.steps=400",
                                    "train.batch_size=10", "train.tensorboard=false", "train.log_every=1000"])
    path = tmp_path / "run"
    ctrl_c_after_push(monkeypatch, 123)
    with pytest.raises(KeyboardInterrupt):
        run_cluster(cfg, RunDir.create(path, cfg))
    monkeypatch.undo()
    stopped = compare_run(path)
    assert stopped["steps_done"] == 123 and stopped["steps"] == 400 and stopped["measured"]["pushes"] == 2 * 123
    assert stopped["predicted"]["mean"] == pytest.approx(stopped["measured"]["mean"], abs=1e-3)   # was 14.7 vs 14.02
    assert main(["plan", "--check-run", str(path)]) == 0
    assert "stopped at step 123 of 400" in capsys.readouterr().out
    run_cluster(load_config(str(path / "config.toml")), RunDir.open(path), resume=True)
    resumed = compare_run(path)
    assert resumed["steps_done"] == 400 and resumed["predicted"]["mean"] == pytest.approx(resumed["measured"]["mean"], abs=1e-3)


def test_a_last_round_only_some_workers_pushed_is_predicted_exactly(tmp_path):
    """403 steps on 8 workers: the last round holds workers 0-2, who each see all but the first w + 1 pushes of the
    burst landing at their fetch, not half of it (the prediction was 0.1% under; 1,025 steps on 50: 0.3%)."""
    result = check_simulated(workers=8, shards=2, steps=403, sets=[("train.log_every", 10_000)], out=tmp_path / "run")
    assert result["predicted"]["mean"] == pytest.approx(result["measured"]["mean"], abs=1e-3)


@pytest.mark.parametrize("sets", [(), (("cluster.n_push", 3), ("cluster.delay", "constant:3")), (("cluster.n_fetch", 3),)],
                         ids=["default", "n_push", "n_fetch"])
def test_a_greedy_runs_stages_are_each_predicted_as_a_fresh_start(tmp_path, sets):
    """A greedy run starts stage 2 only once every push of stage 1 has landed, so its staleness starts up twice:
    cat-untied on 20 workers, 400 steps, logged 35.10 where one schedule of 400 steps predicted 37.05 (+5.6%; on 2
    workers, 20 steps: +12.5%). 8 workers, 130 steps: each stage ends in a partial round. With n_fetch = 3 a
    worker's first stage-2 steps read a copy of stage 1 fetched before it finished (20 workers, 400 steps: 53.58
    measured against 48.15): a worker now fetches at its first step of a new stage."""
    result = check_simulated("cat-untied", workers=8, shards=2, steps=130, sets=[("train.log_every", 10_000), *sets],
                             out=tmp_path / "run")
    p = dict(sets).get("cluster.n_push", 1)
    assert result["stage_switches"] == [-(-65 // p) * p]        # the first cycle that starts in stage 2
    assert result["predicted"]["mean"] == pytest.approx(result["measured"]["mean"], abs=1e-3), result


def test_the_greedy_switches_are_the_cycles_the_coordinator_holds():
    from downpour.plan.staleness import greedy_switches
    from downpour.train.setup import stage_for_step
    for total, stages, p in ((130, 2, 1), (130, 2, 3), (1000, 3, 7), (10, 3, 4), (5, 3, 1)):
        held = [j for j in range(p, total, p)
                if stage_for_step(j, total, stages, "greedy") > stage_for_step(j - p, total, stages, "greedy")]
        assert greedy_switches(total, stages, p) == held, (total, stages, p)


def test_the_simulated_check_holds_its_run_folders_lock_while_it_trains(tmp_path, monkeypatch):
    """`plan --check-simulated --out RUN` trained RUN unlocked: a `downpour train --resume RUN` from another terminal
    found no checkpoint yet and trained it again beside the check's run."""
    import downpour.plan.check as check
    from downpour.train.lock import check_not_training
    from downpour.train.rundir import NotARunError

    real, refused = check.run_cluster, []

    def run_cluster(cfg, run):
        with pytest.raises(NotARunError, match="being trained now") as err:
            check_not_training(run.path)
        refused.append(err.value)
        return real(cfg, run)

    monkeypatch.setattr(check, "run_cluster", run_cluster)
    check_simulated(workers=4, shards=2, steps=20, sets=[("train.log_every", 10_000)], out=tmp_path / "run")
    assert len(refused) == 1
