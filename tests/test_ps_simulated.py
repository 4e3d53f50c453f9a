"""The simulated cluster end to end: reproducibility, staleness vs delay, consistency bounds,
warm start, n_push, resume from a server checkpoint."""
import json

import pytest
import torch
from ctrl_c import ctrl_c_after_push
from safetensors.torch import load_file

from downpour.config import ConfigError, load_config
from downpour.preflight import check_run_config
from downpour.ps.checkpoint import load_server
from downpour.ps.cluster import run_cluster
from downpour.train.json_digest import rewrite_json
from downpour.train.rundir import RunDir

BASE = ["cluster.runner=simulated", "data.samples=256", "train.batch_size=16", "train.log_every=4",
        "train.tensorboard=false", "cluster.workers=4", "cluster.shards=2", "train.steps=48"]


def _run(path, *overrides, resume=False):
    cfg = load_config("ufldl-sae", [*BASE, *overrides])
    run = RunDir.open(path) if resume else RunDir.create(path, cfg)
    return run_cluster(cfg, run, resume=resume), run


class _Killed(Exception):
    pass


def _stopped_and_resumed(tmp_path, monkeypatch, sets, stop):
    """``sets`` run whole into ``a``, then into ``b`` killed after the first checkpoint at which ``stop(recorder)``
    holds (no failure checkpoint: the resume starts from that one), then ``b`` resumed: its summary."""
    import downpour.ps.recorder as recorder

    _run(tmp_path / "a", *sets)
    checkpoint = recorder.Recorder.checkpoint

    def killed(self, states=None):
        checkpoint(self, states)
        if stop(self):
            raise _Killed

    monkeypatch.setattr(recorder.Recorder, "checkpoint", killed)
    monkeypatch.setattr(recorder.Recorder, "save_on_failure", lambda self, err=None: None)
    with pytest.raises(_Killed):
        _run(tmp_path / "b", *sets)
    monkeypatch.undo()
    return _run(tmp_path / "b", *sets, resume=True)[0]


def _without_wall_clock(rows):
    return [{k: v for k, v in r.items() if k not in ("time", "samples_per_s", "updates_per_s")} for r in rows]


def test_same_seed_same_config_is_identical_bit_for_bit(tmp_path):
    delay = 'cluster.delay="exponential:1.5"'
    a, run_a = _run(tmp_path / "a", delay)
    b, run_b = _run(tmp_path / "b", delay)
    assert (tmp_path / "a/model.safetensors").read_bytes() == (tmp_path / "b/model.safetensors").read_bytes()
    assert _without_wall_clock(run_a.metrics()) == _without_wall_clock(run_b.metrics())
    assert run_a.read_json("staleness.json") == run_b.read_json("staleness.json")
    log_a, _ = load_server(tmp_path / "a/checkpoints/server")
    log_b, _ = load_server(tmp_path / "b/checkpoints/server")
    assert all(torch.equal(x[0]["log"], y[0]["log"]) for x, y in zip(log_a, log_b))
    c, _ = _run(tmp_path / "c", delay, "seed=1")
    assert c["final_loss"] != a["final_loss"]


def test_run_directory_holds_model_metrics_and_staleness(tmp_path):
    summary, run = _run(tmp_path / "r", 'cluster.delay="uniform:1:3"')
    rows = run.metrics()
    assert rows[-1]["step"] == 48 and {"worker", "staleness", "clock_gap", "version", "vtime"} <= rows[-1].keys()
    assert {r["worker"] for r in rows} <= {0, 1, 2, 3}
    st = run.read_json("staleness.json")
    assert set(st["per_worker"]) == {"0", "1", "2", "3"} and set(st["per_shard"]) == {"0", "1"}
    assert st["overall"]["pushes"] == 2 * 48 and st["overall"]["mean"] > 0
    assert summary["accepted"] == summary["applied"] == [48, 48] and summary["versions"] == [48, 48]
    model = run.load_model()
    assert json.loads((tmp_path / "r/model.json").read_text())["step"] == 48
    assert set(load_file(str(tmp_path / "r/model.safetensors"))) == set(model.state_dict())


def test_a_larger_injected_delay_gives_larger_mean_staleness(tmp_path):
    small, _ = _run(tmp_path / "s", 'cluster.delay="straggler:1:1"')
    large, _ = _run(tmp_path / "l", 'cluster.delay="straggler:1:8"')
    assert large["mean_staleness"] > small["mean_staleness"] + 0.5


def test_bounded_staleness_keeps_every_worker_within_k_clocks(tmp_path):
    free, _ = _run(tmp_path / "async", 'cluster.delay="straggler:1:8"')
    _, run = _run(tmp_path / "b2", 'cluster.delay="straggler:1:8"', 'cluster.consistency="bounded:2"')
    assert run.read_json("staleness.json")["max_clock_gap"] <= 2
    assert all(r["clock_gap"] <= 2 for r in run.metrics())
    assert free["mean_staleness"] > run.read_json("staleness.json")["overall"]["mean"]
    assert json.loads((tmp_path / "async/staleness.json").read_text())["max_clock_gap"] > 2  # the bound did the work


def test_sync_computes_every_push_of_a_round_from_the_same_version(tmp_path):
    summary, run = _run(tmp_path / "sync", 'cluster.delay="straggler:1:8"', "cluster.consistency=sync")
    states, _ = load_server(tmp_path / "sync/checkpoints/server")
    for tensors, _ in states:
        rows = tensors["log"].tolist()
        assert all(applied == base for _, _, base, applied in rows)                  # staleness 0
        rounds = {}
        for w, _, base, applied in rows:
            rounds.setdefault(applied, []).append(w)
        assert all(sorted(ws) == [0, 1, 2, 3] for ws in rounds.values())            # every worker in every round
    assert summary["versions"] == [12, 12] and summary["max_staleness"] == 0


def test_a_checkpoint_in_the_middle_of_a_sync_round_changes_nothing(tmp_path):
    """cluster.checkpoint_every = 3 with 4 workers: checkpoints land inside rounds; the run is the same."""
    sync = ['cluster.delay="constant:1"', "cluster.consistency=sync"]
    plain, a = _run(tmp_path / "plain", *sync)
    checked, b = _run(tmp_path / "checked", *sync, "cluster.checkpoint_every=3")
    ma, mb = load_file(a.path / "model.safetensors"), load_file(b.path / "model.safetensors")
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
    assert plain["versions"] == checked["versions"] and checked["max_staleness"] == 0


def test_n_push_and_warm_start(tmp_path):
    summary, run = _run(tmp_path / "w", "cluster.n_push=4", "cluster.n_fetch=2", "cluster.warm_start=16")
    assert summary["versions"] == [12, 12]                                       # 48 steps / 4 per push
    states, _ = load_server(tmp_path / "w/checkpoints/server")
    rows = states[0][0]["log"].tolist()
    assert [w for w, *_ in rows[:4]] == [0, 0, 0, 0]                           # worker 0 alone for 16 steps
    assert {w for w, *_ in rows[4:]} == {0, 1, 2, 3}
    assert [e["event"] for e in run.read_json("staleness.json")["events"]] == ["joined"]


@pytest.mark.parametrize("compensation", ["staleness-lr", "dc-asgd"])
def test_compensated_runs_train(tmp_path, compensation):
    summary, run = _run(tmp_path / compensation, f'cluster.compensation="{compensation}"', "cluster.rule=sgd",
                        "train.lr=0.002", 'cluster.delay="exponential:1"')
    rows = run.metrics()
    assert summary["applied"] == [48, 48] and rows[-1]["loss"] < rows[0]["loss"]


def test_a_compensation_that_changed_no_push_is_said_by_name(tmp_path, caplog):
    # two workers without delay push at staleness <= 1, where lr / max(1, s) is lr: staleness-lr trained the
    # uncompensated run bit for bit, unsaid; dc-asgd at staleness 0 (bounded:0, one worker) likewise
    two = ("cluster.workers=2", 'cluster.delay="constant:0"', "train.steps=16")
    plain, _ = _run(tmp_path / "none", *two)
    caplog.set_level("WARNING", logger="downpour.ps.cluster")
    idle, _ = _run(tmp_path / "slr", *two, 'cluster.compensation="staleness-lr"')
    assert idle["max_staleness"] == 1
    assert (tmp_path / "slr/model.safetensors").read_bytes() == (tmp_path / "none/model.safetensors").read_bytes()
    assert "max(1, staleness)" in idle["compensation_idle"] and "compensation_idle" not in plain
    assert "cluster.compensation = 'staleness-lr' changed none of this run's 16 pushes" in caplog.text
    assert "compensation_idle" in json.loads((tmp_path / "slr/cluster.json").read_text())
    caplog.clear()
    dc, _ = _run(tmp_path / "dc", "cluster.workers=1", 'cluster.delay="constant:0"', "train.steps=8",
                 'cluster.compensation="dc-asgd"')
    assert "staleness 0" in dc["compensation_idle"] and "'dc-asgd' changed none" in caplog.text
    caplog.clear()
    used, _ = _run(tmp_path / "used", *two[:1], 'cluster.delay="constant:2"', "train.steps=16",
                   'cluster.compensation="staleness-lr"')
    assert used["max_staleness"] >= 2 and "compensation_idle" not in used and "changed none" not in caplog.text


def test_resume_continues_the_version_clock_and_the_curve(tmp_path):
    first, _ = _run(tmp_path / "r", "cluster.checkpoint_every=8", "train.steps=24")
    assert first["versions"] == [24, 24]
    second, run = _run(tmp_path / "r", "train.steps=48", resume=True)
    assert second["resumed_from"] == 24 and second["versions"] == [48, 48]
    steps = [r["step"] for r in run.metrics()]
    assert steps == sorted(steps) and steps[-1] == 48 and 24 in steps and 28 in steps
    vtimes = [r["vtime"] for r in run.metrics()]
    assert vtimes == sorted(vtimes)                                     # the virtual clock went on as well
    assert run.read_json("staleness.json")["overall"]["pushes"] == 2 * 48   # the log went on too
    with pytest.raises(ConfigError, match="already reached"):
        _run(tmp_path / "r", "train.steps=48", resume=True)


def test_bad_cluster_config_fails_before_training(tmp_path):
    with pytest.raises(ConfigError, match="cluster.workers"):
        _run(tmp_path / "x", "cluster.workers=0")
    with pytest.raises(ConfigError, match="cluster.delay"):
        _run(tmp_path / "y", 'cluster.delay="gamma:2"')


def test_a_queue_deeper_than_one_cycle_needs_ray():
    with pytest.raises(ConfigError, match="cluster.queue_depth = 2 needs the ray runner"):
        check_run_config(load_config("ufldl-sae", [*BASE, "cluster.queue_depth=2"]))
    with pytest.raises(ConfigError, match="cluster.queue_depth"):
        load_config("ufldl-sae", [*BASE, "cluster.queue_depth=3"])
    assert check_run_config(load_config("ufldl-sae", [*BASE, "cluster.queue_depth=1"])).cluster.queue_depth == 1


def test_a_push_across_a_greedy_stage_switch_averages_each_part_over_its_own_steps():
    # parts were divided by every step of the push: stage 1's, reported by 2 of its 4 steps, at half its value
    from downpour.batch import Batch
    from downpour.models.registry import create_model
    from downpour.objectives import Objective
    from downpour.ps.worker import Worker

    torch.manual_seed(0)
    model = create_model("cat-demo", (1, 16, 16), maps=[2, 2], kernels=[4, 3], tile=2)
    objective = Objective.from_config({"reconstruction": 1.0})
    x = torch.randn(4, 1, 16, 16)
    numel = sum(p.numel() for p in model.parameters() if p.requires_grad)
    worker = Worker(0, model, objective, iter([Batch(x)] * 4), [(0, numel)], n_fetch=4, n_push=4)
    worker.load([torch.cat([p.detach().flatten() for p in model.parameters() if p.requires_grad])], [0])
    alone = {}
    for stage in (1, 1, 2, 2):
        model.set_stage(stage)
        with torch.no_grad():
            alone.update(objective(model.forward_train(Batch(x)))[1])
        worker.step(stage)
    parts = worker.take_push().parts
    assert parts == pytest.approx({k: v.item() for k, v in alone.items()})


# --- an interrupted run resumes as its continuation ---------------------------------------------------
def _same_run(a, b):
    """Two run folders hold the same training, bit for bit: model, metrics rows (but the wall clock), staleness."""
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert _without_wall_clock(RunDir(a).metrics()) == _without_wall_clock(RunDir(b).metrics())
    # and the events: b's say where it was resumed (as Ray's do), with every worker the checkpoint had running
    sa, sb = RunDir(a).read_json("staleness.json"), RunDir(b).read_json("staleness.json")
    resumed = [e for e in sb["events"] if e["event"] == "resumed"]
    sb["events"] = [e for e in sb["events"] if e["event"] != "resumed"]
    assert sa == sb and len(resumed) == 1
    lost = {e["worker"] for e in sb["events"] if e["event"] == "worker-lost" and e["step"] <= resumed[0]["step"]}
    assert resumed[0]["workers"] == [w for w in range(sa["workers"]) if w not in lost]


def test_ctrl_c_waits_for_its_event_and_the_resume_is_the_uninterrupted_run(tmp_path, monkeypatch):
    """Random delays land pushes out of order and DC-ASGD keeps copies for them: the checkpoint holds the
    pushes in flight, the workers' replicas, half-built pushes and drawn batches, the delay generators."""
    import downpour.ps.recorder as recorder

    sets = ['cluster.delay="exponential:3"', "cluster.compensation=dc-asgd", "train.steps=40"]
    _run(tmp_path / "a", *sets)
    on_push = ctrl_c_after_push(monkeypatch, 7)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b", *sets)
    monkeypatch.setattr(recorder.Recorder, "on_push", on_push)
    assert "sim" in json.loads((tmp_path / "b/checkpoints/server.json").read_text())
    _run(tmp_path / "b", *sets, resume=True)
    _same_run(tmp_path / "a", tmp_path / "b")


def test_a_run_killed_after_a_periodic_checkpoint_resumes_as_the_uninterrupted_run(tmp_path, monkeypatch):
    """A checkpoint written as a push is recorded (cluster.checkpoint_every), the process then gone without
    another word: a sync round half full, two-step pushes, flipped batches drawn from each worker's stream."""
    sets = ["cluster.consistency=sync", "cluster.n_push=2", "cluster.checkpoint_every=5", "data.source=natural",
            "data.mode=patches", "data.size=8", "data.flip=true", "train.steps=40"]
    _stopped_and_resumed(tmp_path, monkeypatch, sets, lambda recorder: recorder.checkpoints == 2)
    _same_run(tmp_path / "a", tmp_path / "b")


def test_a_lost_workers_steps_are_trained_once_each_by_the_others():
    """Each index is asked once, the lost worker's by another: if a lost worker's cycle went back by lowering
    coord.dispatched, and the next cycle started at dispatched - k, with 3 workers steps in flight elsewhere would be
    trained twice and the lost ones never (a greedy run's stage of each step follows from its index)."""
    from downpour.ps.coordinator import Coordinator
    from downpour.ps.setup import make_shards, set_up_cluster
    from downpour.ps.simulated import SimulatedCluster

    cfg = check_run_config(load_config("ufldl-sae", [
        "cluster.runner=simulated", "data.samples=64", "train.batch_size=8", "train.steps=30", "train.threads=1",
        "cluster.workers=3", "cluster.shards=1", 'cluster.delay="constant:1"']))
    setup = set_up_cluster(cfg)
    coord = Coordinator(setup.gate, 3, cfg.train.steps)
    asked = []
    sim = SimulatedCluster(setup, make_shards(setup, setup.layout.params_to_vector(setup.model), coord.live), coord,
                           lambda step: asked.append(step))

    def on_push(push, record):
        if coord.done >= 10 and 1 in coord.live:
            assert coord._inflight[1]               # worker 1 dies mid-cycle
            sim.lose(1, "killed")

    sim.run(on_push, hold_signals=False)
    assert sorted(asked) == list(range(30)) and coord.done == 30 and coord.lost == [1]
    assert [s.stats()["applied"] for s in sim.shards] == [30] and not any(s.rejected for s in sim.shards)


@pytest.mark.parametrize("sets", [['cluster.delay="uniform:0:3"', "cluster.compensation=dc-asgd"],
                                  ["cluster.consistency=sync"]], ids=["async", "sync"])
def test_a_run_with_a_lost_worker_resumes_as_the_uninterrupted_run(tmp_path, monkeypatch, sets):
    """The checkpoint keeps who was lost, the step ranges it gave back and each cycle's first step (a checkpoint
    keeping only ``dispatched``, from before 2026-12-04, still loads: its cycles' first steps are derived)."""
    import downpour.ps.recorder as recorder

    class Killed(Exception):
        pass

    on_push = recorder.Recorder.on_push

    def losing(self, push, record):                 # worker 1 dies as step 12 lands, on both runs alike
        if self.coord.done >= 12 and 1 in self.coord.live:
            self.driver.lose(1, "killed")
        on_push(self, push, record)

    monkeypatch.setattr(recorder.Recorder, "on_push", losing)
    sets = [*sets, "cluster.n_push=2", "cluster.checkpoint_every=3"]
    _run(tmp_path / "a", *sets)
    checkpoint = recorder.Recorder.checkpoint

    def killed_after_the_fourth(self, states=None):
        checkpoint(self, states)
        if self.checkpoints == 4:
            assert self.coord.lost == [1]           # (after the loss)
            raise Killed

    monkeypatch.setattr(recorder.Recorder, "checkpoint", killed_after_the_fourth)
    monkeypatch.setattr(recorder.Recorder, "save_on_failure", lambda self, err=None: None)
    with pytest.raises(Killed):
        _run(tmp_path / "b", *sets)
    monkeypatch.setattr(recorder.Recorder, "checkpoint", checkpoint)
    summary, _ = _run(tmp_path / "b", *sets, resume=True)
    _same_run(tmp_path / "a", tmp_path / "b")
    assert summary["lost_workers"] == [1] and summary["steps"] == 48
    events = RunDir(tmp_path / "b").read_json("staleness.json")["events"]
    assert [e["worker"] for e in events if e["event"] == "worker-lost"] == [1]


@pytest.mark.parametrize("algorithm", ["downpour", "sandblaster"])
def test_every_replica_computes_with_the_drivers_frozen_first_layer(algorithm):
    """A random first layer is frozen, so no fetch brings it: each replica drew its own from torch's
    global generator, and the workers trained against filters the saved model (the driver's) lacks."""
    from downpour.ps.coordinator import Coordinator
    from downpour.ps.setup import make_shards, set_up_cluster
    from downpour.ps.simulated import SimulatedCluster
    from downpour.sandblaster.run import make_shards as sandblaster_shards
    from downpour.sandblaster.simulated import SimulatedPool

    cfg = check_run_config(load_config("ufldl-sae", [
        "cluster.runner=simulated", f"cluster.algorithm={algorithm}", "data.samples=64", "train.batch_size=8",
        "train.steps=8", "cluster.workers=3", "model.first_layer=random", "train.threads=1"]))
    setup = set_up_cluster(cfg)
    if algorithm == "downpour":
        coord = Coordinator(setup.gate, cfg.cluster.workers, cfg.train.steps)
        init = setup.layout.params_to_vector(setup.model)
        workers = SimulatedCluster(setup, make_shards(setup, init, coord.live), coord, lambda s: None).workers
    else:
        workers = SimulatedPool(setup, sandblaster_shards(setup), 0.0).workers
    driver = dict(setup.model.named_parameters())
    frozen = [name for name, p in driver.items() if not p.requires_grad]
    assert frozen and len(workers) == 3
    for w in workers:
        mine = dict(w.model.named_parameters())
        assert all(torch.allclose(mine[name].double(), driver[name].double()) for name in frozen)


def test_a_bounded_gate_bounds_what_a_worker_reads_with_a_long_fetch_interval_too(tmp_path):
    """bounded:0 bounds the clocks, and its workers fetch at the start of every push: with n_fetch = 16 a worker would
    compute on a copy that skipped whole cycles, 31 versions stale (SSP's reads lost)."""
    summary, _ = _run(tmp_path / "b", "cluster.workers=2", "cluster.consistency=\"bounded:0\"", "cluster.n_fetch=16",
                      "train.steps=64", 'cluster.delay="constant:1"')
    assert summary["max_staleness"] <= 1


def test_each_step_asks_for_its_own_greedy_stage(tmp_path):
    """The simulator asks stage_of for every index once: asking it for coord.dispatched - left, which counts the
    cycles handed to the other workers meanwhile, with 3 workers steps 0-1 would never be asked, 29 three times, and
    a greedy stage 1 train 13 of its 15 steps."""
    from downpour.ps.coordinator import Coordinator
    from downpour.ps.setup import make_shards, set_up_cluster
    from downpour.ps.simulated import SimulatedCluster

    for workers, n_push in ((3, 1), (4, 2)):
        cfg = check_run_config(load_config("ufldl-sae", [
            "cluster.runner=simulated", "data.samples=64", "train.batch_size=8", "train.steps=30", "train.threads=1",
            f"cluster.workers={workers}", f"cluster.n_push={n_push}", "cluster.shards=1", 'cluster.delay="constant:1"']))
        setup = set_up_cluster(cfg)
        coord = Coordinator(setup.gate, workers, cfg.train.steps, n_push)
        asked = []
        sim = SimulatedCluster(setup, make_shards(setup, setup.layout.params_to_vector(setup.model), coord.live), coord,
                               lambda step: asked.append(step))
        sim.run(lambda push, record: None, hold_signals=False)
        assert sorted(asked) == list(range(30)), (workers, n_push)


def test_the_metrics_mean_staleness_counts_the_applied_pushes_as_staleness_json_does(tmp_path, monkeypatch):
    """A rejected push (here: every step of worker 1's had a NaN cost) counted in metrics.jsonl's
    mean_staleness, not in staleness.json's: the two figures of one run disagreed."""
    from downpour.ps.worker import Worker

    real = Worker.step

    def step(self, stage=None):
        if self.wid != 1:
            return real(self, stage)
        if self._acc_steps == 0:                      # what a step with a non-finite cost leaves
            self._base = list(self._versions)
        self._acc_steps, self._since_fetch, self.steps, self._skipped = (self._acc_steps + 1, self._since_fetch + 1,
                                                                         self.steps + 1, self._skipped + 1)

    monkeypatch.setattr(Worker, "step", step)
    summary, run = _run(tmp_path / "r", 'cluster.delay="exponential:2"')
    assert summary["rejected"].get("non-finite", 0) > 0
    overall = run.read_json("staleness.json")["overall"]
    assert run.metrics()[-1]["mean_staleness"] == pytest.approx(overall["mean"], abs=1e-4)


def test_a_row_across_a_greedy_switch_averages_the_steps_totals_not_both_stages_parts(tmp_path):
    """A push of 3 steps across the switch (two of stage 1, one of stage 2) logged 247 + 541 = 788, the sum
    of two stages' part means, where its steps' mean was about 345."""
    cfg = load_config("cat-demo", ["cluster.runner=simulated", "cluster.workers=1", "cluster.shards=1",
                                   "cluster.n_push=3", "train.steps=14", "train.log_every=1", "train.batch_size=8",
                                   "train.tensorboard=false", "data.samples=64"])
    run = RunDir.create(tmp_path / "r", cfg)
    run_cluster(cfg, run)
    mixed = [r for r in run.metrics() if any(k.startswith("stage1/") for k in r) and any(k.startswith("stage2/") for k in r)]
    assert mixed, "no row holds both stages' parts"
    for r in mixed:
        stage1 = sum(v for k, v in r.items() if k.startswith("stage1/"))
        stage2 = sum(v for k, v in r.items() if k.startswith("stage2/"))
        assert min(stage1, stage2) <= r["loss"] <= max(stage1, stage2)


def test_the_first_row_after_a_resume_rates_only_this_processs_samples(tmp_path, monkeypatch):
    """A row of 10 steps, 7 pushed before a Ctrl-C: the resumed process divided all 10 steps' samples by its
    own time for 3 (samples_per_s up to log_every x too high), where the local runner counts its own only."""
    import downpour.ps.recorder as recorder
    from downpour.train.telemetry import Telemetry

    sets = ["cluster.workers=1", "train.steps=30", "train.log_every=10"]
    logged, log = [], Telemetry.log

    def logging(self, step, parts, samples, *args, **kwargs):
        logged.append((step, samples))
        return log(self, step, parts, samples, *args, **kwargs)

    on_push = ctrl_c_after_push(monkeypatch, 17)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "r", *sets)
    monkeypatch.setattr(recorder.Recorder, "on_push", on_push)
    monkeypatch.setattr(Telemetry, "log", logging)
    _run(tmp_path / "r", *sets, resume=True)
    assert logged == [(20, 3 * 16), (30, 10 * 16)]        # batch 16, one step a push
    assert [r["step"] for r in RunDir(tmp_path / "r").metrics()] == [10, 20, 30]


@pytest.mark.parametrize("consistency", ["async", "sync"])
def test_a_greedy_run_with_random_delays_logs_each_stage_in_its_own_rows(tmp_path, consistency):
    """Stage 2's first cycle waits for stage 1's pushes, so each row is one stage's, as on the local runner, and the
    analysis finds both stages' costs. Else pushes of stage 1 still travelling when stage 2 begins land in stage 2's
    rows (and stage 2's early ones in stage 1's): with 3 workers and exponential delays the rows at steps 20 and 30
    of 40 average both stages, and the analysis finds neither (every row holds both). Sync: the wait does not hold
    up a round."""
    from downpour.analysis.training import stage_losses

    cfg = load_config("cat-demo", ["cluster.runner=simulated", "cluster.workers=3", "cluster.shards=1",
                                   'cluster.delay="exponential:2"', f'cluster.consistency="{consistency}"',
                                   "train.steps=40", "train.log_every=10", "train.batch_size=8",
                                   "train.tensorboard=false", "train.threads=1", "data.samples=64"])
    run = RunDir.create(tmp_path / "r", cfg)
    run_cluster(cfg, run)
    rows = run.metrics()
    stages = [sorted({k.split("/")[0] for k in r if k.startswith("stage")}) for r in rows]
    assert [r["step"] for r in rows] == [10, 20, 30, 40]
    assert stages == [["stage1"], ["stage1"], ["stage2"], ["stage2"]]
    assert [s["stage"] for s in stage_losses(rows)] == ["stage1", "stage2"]


@pytest.mark.parametrize("legacy", [False, True], ids=["now", "checkpoint-before-2026-12-04"])
def test_a_greedy_momentum_run_resumes_its_held_stage_as_the_uninterrupted_run(tmp_path, monkeypatch, legacy):
    """The checkpoint keeps the stages each travelling push and each half-built push trained, so a resumed push
    holds the same tensors still (resumed as trained by every stage, a held stage 1 coasted on its velocity).
    A checkpoint from before 2026-12-04 keeps none: its pushes' stages are read off their gradients, as its
    shards did then."""
    import downpour.ps.recorder as recorder
    from safetensors.torch import load_file as load_tensors

    class Killed(Exception):
        pass

    sets = ["data.size=20", "model.kernels=[5,3]", "model.maps=[4,4]", "data.samples=64", "train.batch_size=8",
            "train.threads=1", "train.tensorboard=false", "train.log_every=4", "train.steps=24",
            "cluster.runner=simulated", "cluster.workers=2", "cluster.shards=2", "cluster.rule=momentum",
            "cluster.lr=0.02", 'cluster.delay="exponential:2"', "cluster.n_push=3", "cluster.checkpoint_every=3"]

    def run(path, resume=False):
        cfg = load_config("cat-demo", sets)
        return run_cluster(cfg, RunDir.open(path) if resume else RunDir.create(path, cfg), resume=resume)

    run(tmp_path / "a")
    checkpoint = recorder.Recorder.checkpoint

    def killed_in_stage_two(self, states=None):
        checkpoint(self, states)
        if self.coord.done >= 14:
            raise Killed

    monkeypatch.setattr(recorder.Recorder, "checkpoint", killed_in_stage_two)
    monkeypatch.setattr(recorder.Recorder, "save_on_failure", lambda self, err=None: None)
    with pytest.raises(Killed):
        run(tmp_path / "b")
    monkeypatch.undo()
    meta = json.loads((tmp_path / "b/checkpoints/server.json").read_text())
    sim = meta["sim"]
    assert [w["trained"] for w in sim["workers"]] == [[2], [2]]            # stopped with stage-2 pushes half built
    if legacy:
        for w in sim["workers"]:
            del w["trained"]
        for h in sim["heap"]:
            if h[4]:
                del h[4]["stages"]
        rewrite_json(tmp_path / "b/checkpoints/server.json", meta)
    run(tmp_path / "b", resume=True)
    _same_run(tmp_path / "a", tmp_path / "b")


@pytest.mark.parametrize("stages,why", [({}, "names no parameter's stage"),
                                        ({"stages.0.filter.weight": 1, "stage.1.filter.weight": 2},
                                         "names 'stage.1.filter.weight', which is not one of its parameters"),
                                        ({"stages.0.filter.weight": 1, "stages.1.filter.weight": 3},
                                         "puts 'stages.1.filter.weight' in stage 3, not one of 1..2")])
def test_a_greedy_momentum_run_of_a_model_that_does_not_name_its_stages_is_refused(tmp_path, monkeypatch, stages, why):
    """The shards hold by the model's param_stages(); a stacked model naming none (the base class's default) had
    every tensor trained at every stage: stage 1 coasted on its velocity through stage 2, with no word (tiny
    cat-demo, one worker at staleness 0: 0.73 off the local loop's stage-1 filters). Refused before the run
    folder, and by set_up_cluster for a caller that skips the checks; Adagrad and a joint schedule hold nothing."""
    from downpour.models.cat import CatNet
    from downpour.runners import train

    monkeypatch.setattr(CatNet, "param_stages", lambda self: stages)
    sets = ["data.size=20", "model.kernels=[5,3]", "model.maps=[4,4]", "data.samples=64", "train.batch_size=8",
            "train.steps=4", "train.tensorboard=false", "cluster.runner=simulated", "cluster.workers=1",
            "cluster.rule=momentum", "train.schedule=greedy"]
    cfg = load_config("cat-demo", sets)
    with pytest.raises(ConfigError, match=f"model 'cat-demo' has 2 greedy stages but its param_stages\\(\\) {why}"):
        check_run_config(cfg)
    with pytest.raises(ConfigError, match="cluster.rule = 'momentum' holds"):
        train(cfg, RunDir.create(tmp_path / "run", cfg))
    for other in ("cluster.rule=adagrad", "train.schedule=joint", "cluster.runner=local"):
        check_run_config(load_config("cat-demo", [*sets, other]))


def test_a_greedy_adam_run_of_a_model_that_leaves_a_trainable_parameter_out_of_its_stages_is_refused(monkeypatch):
    """A parameter param_stages() leaves out "trains at every stage": a forgotten stage-2 filter tensor was never
    held, so Adam counted its steps through stage 1 (cat-demo, 40 greedy steps: step count 40 after the 20 pushes
    that trained it, its bias correction spent). Refused, naming it and the key; every shipped stacked variant
    (tied, untied decoder, tiled, GRU top, partitioned) maps every trainable tensor and passes."""
    from downpour.models.cat import CatNet

    sets = ["data.size=20", "model.kernels=[5,3]", "model.maps=[4,4]", "data.samples=64", "train.batch_size=8",
            "train.steps=4", "train.tensorboard=false", "cluster.runner=simulated", "cluster.workers=1",
            "cluster.rule=adam", "train.schedule=greedy"]
    for variant in ([], ["model.decoder=untied", "model.filter_norm=[0.0,0.0]"], ["model.tile=2"],
                    ["model.top=gru", "model.tile=2"], ["cluster.partitions=2", "model.tile=0"]):
        check_run_config(load_config("cat-demo", [*sets, *variant]))
    for preset in ("cat-demo", "cat-untied", "main"):
        check_run_config(load_config(preset, ["cluster.runner=simulated", "cluster.rule=momentum", "train.schedule=greedy"]))
    full = CatNet.param_stages
    monkeypatch.setattr(CatNet, "param_stages", lambda self: {k: s for k, s in full(self).items() if s == 1})
    with pytest.raises(ConfigError, match=r"param_stages\(\) leaves out 1 trainable parameter \('stages.1.filter.weight'\): "
                                          r"cluster.rule = 'adam' holds") as err:
        check_run_config(load_config("cat-demo", sets))
    assert err.value.key == "cluster.rule"
    check_run_config(load_config("cat-demo", [*sets, "cluster.rule=adagrad"]))     # Adagrad holds nothing


def test_more_workers_than_samples_names_the_data_and_the_most_workers_it_takes(tmp_path):
    """A folder of 3 images (one unreadable) under 4 workers names the data, the file skipped and what to do, not only
    "cluster.workers=4 but the data has only 2 samples"."""
    from PIL import Image

    from downpour.ps.setup import set_up_cluster

    for i in range(2):
        Image.new("L", (16, 16), 40 * i).save(tmp_path / f"{i}.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    cfg = load_config("cat-demo", ["cluster.runner=simulated", "cluster.workers=4", "data.source=folder",
                                   f"data.path={str(tmp_path)!r}", "data.pipeline=memory", "data.whiten=none"])
    with pytest.raises(ConfigError) as err:
        set_up_cluster(cfg)
    assert str(err.value) == (f"cluster.workers = 4, but data.path {str(tmp_path)!r} gives only 2 samples (1 of its "
                              "files could not be read: the log names them), and each worker trains on a share of its "
                              "own; use at most 2 (--workers 2); a resumed run keeps its workers: restore the files it "
                              "began with")


def test_a_streamed_workers_share_of_only_unreadable_files_is_refused_before_the_run_naming_what_to_do(tmp_path):
    """4 files, one corrupt, 4 streaming workers: the corrupt file's worker had nothing to read and the run failed at
    step 0 ("none of the 1 items of worker 1's shard (4 workers) can be read"), leaving a checkpoint whose resume failed
    alike; the driver's fitting sample had read every file, so it is refused before the run, with the way out."""
    import re

    from PIL import Image

    from downpour.ps.setup import set_up_cluster

    for i in range(3):
        Image.new("L", (40, 40), 60 * i).save(tmp_path / f"{i}.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    sets = ["cluster.runner=simulated", "data.source=folder", f"data.path={str(tmp_path)!r}", "data.pipeline=stream",
            "data.whiten=none", "data.loader_workers=0"]
    with pytest.raises(ConfigError) as err:
        set_up_cluster(load_config("cat-demo", [*sets, "cluster.workers=4"]))
    assert err.value.key == "cluster.workers"
    bad = str(tmp_path / "bad.png")
    assert re.fullmatch(rf"cluster.workers = 4, but worker \d's share of data.path {re.escape(repr(str(tmp_path)))} "
                        rf"\(1 file\) holds only files that cannot be read \(first: {re.escape(bad)}: "
                        r"UnidentifiedImageError: .*\), and each worker streams a share of its own; data.path lists 4 "
                        r"files, 3 of them readable, where the workers need 4 \(one each\); do one of these: remove "
                        r"the 1 unreadable file from data.path \(the log names it\) and add readable files until at "
                        r"least 4 are there; or use at most (\d) "
                        r"workers? \(--workers \1; a resumed run keeps its workers: restore the files it began with\)",
                        str(err.value))
    most = int(re.search(r"--workers (\d)", str(err.value)).group(1))
    assert 1 <= most < 4
    set_up_cluster(load_config("cat-demo", [*sets, f"cluster.workers={most}"]))     # that many start


@pytest.mark.parametrize("kind", ["small", "link"])
def test_a_streamed_workers_share_of_images_too_small_or_links_to_nothing_is_refused_for_what_they_are(tmp_path, kind):
    """A share of only 4x4 images under data.size = 8 (patches) is refused naming data.size, not as "files that cannot
    be read", told to "remove the 1 unreadable file"; a share of only a link to nothing is told that putting back
    what it points to would do, not only to remove it."""
    import os
    import re

    from PIL import Image

    from downpour.ps.setup import set_up_cluster

    for i in range(3):
        Image.new("L", (40, 40), 60 * i).save(tmp_path / f"{i}.png")
    odd = tmp_path / "odd.png"
    if kind == "small":
        Image.new("L", (4, 4), 200).save(odd)
    else:
        os.symlink(tmp_path / "unplugged.png", odd)
    sets = ["cluster.runner=simulated", "data.source=folder", f"data.path={str(tmp_path)!r}", "data.pipeline=stream",
            "data.whiten=none", "data.loader_workers=0", "data.mode=patches", "data.size=8", "cluster.workers=4"]
    with pytest.raises(ConfigError) as err:
        set_up_cluster(load_config("ufldl-sae", sets))
    holds, why, todo = {
        "small": ("images smaller than the 8x8 patch (data.size = 8)", "4x4 image is smaller than the 8x8 patch",
                  "lower data.size or use data.mode = 'crops'; remove the 1 image smaller than the patch from data.path"),
        "link": ("symbolic links to files that are not there",
                 f"FileNotFoundError: a symbolic link to {str(tmp_path / 'unplugged.png')!r}, which is not there",
                 "put back what the links point to; remove the 1 link to a file that is not there from data.path"),
    }[kind]
    assert re.fullmatch(rf"cluster.workers = 4, but worker \d's share of data.path {re.escape(repr(str(tmp_path)))} "
                        rf"\(1 file\) holds only {re.escape(holds)} \(first: {re.escape(f'{odd}: {why}')}\), and each "
                        rf"worker streams a share of its own; data.path lists 4 files, 3 of them readable, where the workers "
                        rf"need 4 \(one each\); do one of these: {re.escape(todo)} \(the log names it\) and add "
                        r"readable files until at least 4 are there; "
                        r"or use at most (\d) workers? \(--workers \1; a resumed run keeps its workers: restore the files "
                        r"it began with\)", str(err.value)), str(err.value)


def test_a_refused_cluster_names_every_unreadable_file_in_the_log_as_it_writes_no_data_json(tmp_path, caplog):
    """22 unreadable files, all one streaming worker's share: the log names every one, since the refused run writes no
    data.json (else the refusal says "the log names them", the log names 20 and says data.json names every one, and
    2 files the user has to remove are named nowhere)."""
    import logging

    from PIL import Image

    from downpour.ps.setup import set_up_cluster

    Image.new("L", (40, 40), 60).save(tmp_path / "0.png")
    for i in range(22):
        (tmp_path / f"bad{i:02d}.png").write_bytes(b"not a png")
    bad = {str(tmp_path / f"bad{i:02d}.png") for i in range(22)}
    cfg = load_config("cat-demo", ["cluster.runner=simulated", "cluster.workers=2", "data.source=folder",
                                   f"data.path={str(tmp_path)!r}", "data.pipeline=stream", "data.whiten=none",
                                   "data.loader_workers=0"])
    with caplog.at_level(logging.WARNING, logger="downpour.data"), pytest.raises(ConfigError, match="the log names them"):
        set_up_cluster(cfg)
    named = {m.split(": ")[0].removeprefix("skipped ") for m in caplog.messages if m.startswith("skipped ")}
    assert named == bad


def test_the_summary_gives_the_drivers_start_apart_from_the_runs_seconds(tmp_path, monkeypatch):
    """cluster.json's start_seconds is the driver's start (on Ray: joining the cluster, every actor up), which its
    seconds, counted from the first step, leave out (unrecorded, a run joined to a 2-node Ray would say 8.7 s of a
    63 s command and nothing of the rest)."""
    import time

    import downpour.ps.cluster as cluster

    make = cluster._driver("simulated")

    def slow(*args):
        time.sleep(0.5)
        return make(*args)

    monkeypatch.setattr(cluster, "_driver", lambda runner: slow)
    summary, run = _run(tmp_path / "r", "train.steps=8")
    assert 0.5 <= run.read_json("cluster.json")["start_seconds"] == summary["start_seconds"]
