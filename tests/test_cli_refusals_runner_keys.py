"""Settings a runner never reads are refused, naming what it reads instead: a --set or a config file's keys of
another runner or algorithm (Downpour's on a Sandblaster run), and the keys a resume may and may not change."""
import pytest

from downpour.cli import main
from downpour.config import load_config

pytestmark = pytest.mark.usefixtures("one_thread")   # (its trainings run in this process)

SANDBLASTER = ["--set", "cluster.algorithm=sandblaster"]


@pytest.mark.parametrize("argv, named", [
    (["--runner", "local", "--set", "cluster.rule=sgd", "--set", "cluster.compensation=dc-asgd"],
     "--set cluster.rule, cluster.compensation: the local runner reads no [cluster] setting"),
    (["--runner", "simulated", "--set", "train.optimizer=sgd"], "only the local runner reads it"),
    # both were accepted and did nothing: adam trained the same bits with momentum 0 and 0.9
    (["--runner", "local", "--set", "train.optimizer=adam", "--set", "train.momentum=0.9"],
     "--set train.momentum: only train.optimizer = 'sgd' reads it"),
    # accepted and read by nothing: the server's rule, compensation and noise were as without them
    (["--runner", "simulated", "--set", "cluster.momentum=0.5"],
     "--set cluster.momentum: only cluster.rule = 'momentum' reads it, and this run's cluster.rule is 'adagrad'"),
    (["--runner", "simulated", "--set", "cluster.dc_lambda=0.1"],
     "--set cluster.dc_lambda: only cluster.compensation = 'dc-asgd' reads it"),
    # [data] keys the data never read with these settings: bit for bit the same samples
    (["--runner", "local", "--set", "data.whiten=none", "--set", "data.zca_eps=0.5"],
     "--set data.zca_eps: only data.whiten = 'zca' reads it, and this run's data.whiten is 'none'"),
    (["--runner", "local", "--set", "data.mode=crops", "--set", "data.samples=50"],
     "--set data.samples: only data.mode = 'patches' (or data.source = 'gaussian') reads it"),
    (["--runner", "local", "--set", "data.tile=4"], "--set data.tile: only data.mode = 'crops' reads it"),
    (["--runner", "local", "--set", "data.mode=crops", "--set", "data.jpeg_draft=false"],   # the built-in photos: arrays
     "--set data.jpeg_draft: only data.mode = 'crops' (with data.source = 'folder') reads it"),
    (["--runner", "local", "--set", "data.faces_fraction=0.5"],
     "--set data.faces_fraction: only data.source = 'natural+faces' reads it"),
    (["--runner", "local", "--set", "data.source=natural+faces", "--set", "data.faces_fraction=0", "--set", "data.train_faces=10"],
     "--set data.train_faces: only data.faces_fraction > 0 (where data.source = 'natural+faces') reads it, and this run's "
     "data.faces_fraction is 0.0 and data.source is 'natural+faces'"),
    (["--runner", "simulated", "--set", "cluster.grad_noise_relative=true"],
     "--set cluster.grad_noise_relative: only cluster.grad_noise > 0 reads it, and this run's cluster.grad_noise is 0.0"),
    (["--runner", "local", "--set", "sandblaster.units=4"], "--set sandblaster.units: only Sandblaster L-BFGS reads"),
    # accepted on the simulator and on Sandblaster, and bit for bit without effect
    (["--runner", "simulated", "--set", "cluster.restarts=5", "--set", "cluster.worker_gpus=0.5"],
     "--set cluster.restarts, cluster.worker_gpus: only the ray runner reads them"),
    (["--runner", "simulated", "--set", "cluster.algorithm=sandblaster", "--compensation", "dc-asgd",
      "--set", "train.lr=0.9", "--set", "cluster.grad_noise=5"],
     "--compensation, --set train.lr, cluster.grad_noise: Downpour's"),
    (["--runner", "ray", *SANDBLASTER, "--set", "train.batch_size=500"], "a batch of Sandblaster is sandblaster.batch"),
    (["--runner", "simulated", "--set", "cluster.algorithm=sandblaster", "--set", "train.log_every=5"],
     "--set train.log_every: Downpour's"),                  # Sandblaster writes a row every iteration
    # a sync round applies the mean gradient at staleness 0: no compensation reads it (DC-ASGD kept its copies anyway)
    (["--runner", "simulated", "--consistency", "sync", "--compensation", "dc-asgd"],
     "--compensation dc-asgd: a sync round applies the workers' mean gradient"),
    (["--runner", "simulated", "--consistency", "sync", "--set", "cluster.compensation=staleness-lr"],
     "--set cluster.compensation: a sync round"),
    # a warm start as long as the run: the other workers never started, worker 0 read only its shard
    (["--runner", "simulated", "--workers", "3", "--steps", "10", "--set", "cluster.warm_start=10"],
     "cluster.warm_start = 10: worker 0 trains alone for that many steps, and the run has 10"),
    # Ray keys another setting turns off: the coordinator's queue is 1 deep under bounded/sync, a CPU worker asks no GPU
    (["--runner", "ray", "--consistency", "bounded:2", "--set", "cluster.queue_depth=2"],
     "--set cluster.queue_depth: only cluster.consistency = 'async' reads it, and this run's cluster.consistency is 'bounded:2'"),
    (["--runner", "ray", "--set", "cluster.worker_gpus=0.5"],
     "--set cluster.worker_gpus: only train.device = 'cuda' or 'auto' reads it"),
    # bit for bit without effect: a gated worker fetches at every push's start; one worker has no one to wait for
    (["--runner", "simulated", "--consistency", "sync", "--n-fetch", "3"],
     "--n-fetch: only cluster.consistency = 'async' (or cluster.n_push > 1) reads it, and this run's cluster.consistency is 'sync'"),
    (["--runner", "simulated", "--workers", "1", "--set", "cluster.warm_start=5"],
     "--set cluster.warm_start: only cluster.workers > 1 reads it"),
    # one worker's bounded:K waits for its own push whatever K is: bounded:0, bounded:3 and sync were one run, bit for bit
    (["--runner", "simulated", "--workers", "1", "--consistency", "bounded:3"],
     "--consistency bounded:3, --workers 1: cluster.consistency = 'bounded:3' bounds how far a worker runs ahead"),
    (["--runner", "ray", "--set", "cluster.workers=1", "--set", "cluster.consistency=bounded:0"],
     "--set cluster.consistency, cluster.workers: cluster.consistency = 'bounded:0'"),
    (["--runner", "simulated", "--workers", "1", "--set", "cluster.algorithm=sandblaster", "--set", "sandblaster.backup_after=1"],
     "--set sandblaster.backup_after: only cluster.workers > 1 reads it"),    # no worker backs up its own unit
    # which worker gets which rows, where one worker has them all
    (["--runner", "local", "--set", "data.source=digits", "--set", "data.split=by-label"],
     "--set data.split: only cluster.runner = 'simulated' or 'ray'"),
    (["--runner", "simulated", "--set", "cluster.algorithm=sandblaster", "--set", "data.source=digits",
      "--set", "data.split=by-label"],
     "--set data.split: only cluster.runner"),
    # nothing is fitted, so nothing is fitted on the sample; a Gaussian vector has no colour and is not cut
    (["--runner", "local", "--set", "data.normalize=none", "--set", "data.whiten=none", "--set", "data.fit_sample=4"],
     "--set data.fit_sample: only data.normalize != 'none' (or data.whiten != 'none')"),
    (["--runner", "local", "--set", "data.source=gaussian", "--set", "data.grey=false"],
     "--set data.grey: only data.source != 'gaussian' reads it, and this run's data.source is 'gaussian'"),
    (["--runner", "local", "--set", "data.source=gaussian", "--set", "data.mode=crops"],
     "--set data.mode: only data.source != 'gaussian' reads it"),
    (["--runner", "local", "--set", "data.source=gaussian", "--set", "data.flip=true"],
     "data.source = 'gaussian' gives N(0, I) vectors, no image to shift, zoom or flip"),
    (["--runner", "local", "--set", "data.source=gaussian", "--set", "data.shift=2"], "data.shift = 2, data.scale = 0"),
    # the stream's own keys on data held in memory: read by nothing
    (["--runner", "local", "--set", "data.prefetch=8"], "--set data.prefetch: only streamed data read it (data.source = folder, video or a .npy"),
    (["--runner", "local", "--set", "data.source=digits", "--set", "data.loader_workers=2"],
     "--set data.loader_workers: only streamed data read it (data.source = folder"),
    # the face test's keys where no face test runs
    (["--runner", "local", "--set", "analysis.dataset=digits", "--set", "analysis.bootstrap=100"],
     "--set analysis.bootstrap: only analysis.dataset = 'lfw' (with analysis.positive = 1) or a folder (with "
     "analysis.concept_controls != []) reads it"),
    (["--runner", "local", "--set", "analysis.positive=0", "--set", "analysis.face_choice=localizer"],
     "--set analysis.face_choice: only analysis.dataset = 'lfw'"),
    # the probes' keys where no probe runs (analysis.probes = [] skips them): accepted and read by nothing
    (["--runner", "local", "--set", "analysis.probes=[]", "--set", "analysis.probe_folds=3"],
     "--set analysis.probe_folds: only analysis.probes != [] reads it, and this run's analysis.probes is []"),
])
def test_a_set_the_runner_never_reads_is_refused(capsys, argv, named):
    assert main(["train", "--config", "ufldl-sae", "--dry-run", *argv]) == 2
    assert named in capsys.readouterr().err


@pytest.mark.parametrize("argv, named", [
    # the message named only the first setting of the condition, which held: "only cluster.runner = 'simulated' or
    # 'ray', with cluster.workers > 1 (Downpour) reads it, and this run's cluster.runner is 'simulated'"
    (["--runner", "simulated", "--workers", "1", "--set", "data.source=digits", "--set", "data.split=by-label"],
     "and this run's cluster.runner is 'simulated', cluster.workers is 1 and cluster.algorithm is 'downpour'"),
    (["--runner", "local", "--set", "analysis.positive=0", "--set", "analysis.face_choice=localizer"],
     "and this run's analysis.dataset is 'lfw' and analysis.positive is 0"),
    (["--runner", "simulated", "--consistency", "sync", "--n-fetch", "3"],
     "and this run's cluster.consistency is 'sync' and cluster.n_push is 1"),
])
def test_a_refused_set_names_every_setting_its_reading_depends_on(capsys, argv, named):
    assert main(["train", "--config", "ufldl-sae", "--dry-run", *argv]) == 2
    assert named in capsys.readouterr().err


def test_a_preset_may_carry_another_runners_settings():
    """main sets cluster.rule (its Ray server's) and cat-demo's train.optimizer: neither is the user's doing."""
    assert main(["train", "--runner", "local", "--dry-run", "--set", "train.steps=3"]) == 0
    assert main(["train", "--dry-run", "--set", "train.steps=3"]) == 0


@pytest.mark.parametrize("argv, named", [
    (["--runner", "ray", "--set", "cluster.delay=exponential:2"], "--set cluster.delay: only the simulated runner"),
    (["--runner", "simulated", "--set", "cluster.address=1.2.3.4:6379"], "--set cluster.address: only the ray runner"),
    (["--runner", "ray", *SANDBLASTER, "--delay", "exponential:2"], "(and Sandblaster on Ray, its straggler:T:FACTOR form)"),
    # Ray's straggler sleeps FACTOR - 1 times its compute: a T, or a FACTOR below 1, was taken and did nothing
    (["--runner", "ray", *SANDBLASTER, "--delay", "straggler:5:10"], "T, the simulator's latency, is not read there: "
                                                                     "write straggler:0:10"),
    (["--runner", "ray", *SANDBLASTER, "--set", "cluster.delay=straggler:0:0.5"], "only sleeps FACTOR - 1 times"),
])
def test_the_set_form_of_a_one_runner_flag_is_refused_like_the_flag(capsys, argv, named):
    assert main(["train", "--config", "ufldl-sae", "--dry-run", *argv]) == 2
    assert named in capsys.readouterr().err


def test_a_config_files_downpour_keys_on_a_sandblaster_run_are_refused_naming_the_file(tmp_path, capsys):
    """A file's cluster.lr or train.lr was ignored without a word where --set of them was refused; a preset's keys
    (teacher-student's cluster.rule), one at its default and a resolved config.toml that lists them all are not."""
    (tmp_path / "sb.toml").write_text('base = "teacher-student"\n[cluster]\nalgorithm = "sandblaster"\nn_push = 1\n')
    (tmp_path / "lr.toml").write_text('base = "sb.toml"\n[cluster]\nlr = 0.5\n[train]\nlog_every = 5\n')
    assert main(["train", "--config", str(tmp_path / "lr.toml"), "--dry-run"]) == 2
    assert f"{tmp_path / 'lr.toml'} sets cluster.lr = 0.5, train.log_every = 5: Downpour's" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "sb.toml"), "--dry-run"]) == 0
    (tmp_path / "resolved.toml").write_text(capsys.readouterr().out)
    assert 'rule = "sgd"' in (tmp_path / "resolved.toml").read_text()    # (teacher-student's; not the default)
    assert main(["train", "--config", str(tmp_path / "resolved.toml"), "--dry-run"]) == 0


def test_a_sandblaster_runs_train_keys_are_refused_naming_their_value_and_what_it_reads_instead(tmp_path, capsys):
    """`--set train.lr=0.1` on a Sandblaster run was refused as "Downpour's" with a generic "(and finds its own step by
    line search, not train.lr or train.optimizer, ...)": neither the value nor the key to set instead was named."""
    sandblaster = ["train", "--config", "ufldl-sae", "--dry-run", "--runner", "simulated",
                   "--set", "cluster.algorithm=sandblaster"]
    assert main([*sandblaster, "--set", "train.lr=0.1"]) == 2
    err = capsys.readouterr().err
    assert ("train.lr = 0.1 is a fixed step size, and Sandblaster finds each iteration's step by a line search: its key "
            "is sandblaster.line_search = 10, the most evaluations one search may take") in err
    assert "delay, partitions (= 1);" in err   # what it reads of partitions: 1 alone (it said "partitions", bare)
    assert main([*sandblaster, "--set", "sandblaster.line_search=4", "--set", "train.log_every=5"]) == 2
    err = capsys.readouterr().err
    assert "train.log_every = 5 spaces Downpour's metrics rows, and Sandblaster writes one every L-BFGS iteration" in err
    assert "line_search" not in err                    # (only the keys refused are said)
    (tmp_path / "adam.toml").write_text('base = "ufldl-sae"\n[cluster]\nrunner = "simulated"\nalgorithm = "sandblaster"\n'
                                        '[train]\noptimizer = "adam"\n')
    assert main(["train", "--config", str(tmp_path / "adam.toml"), "--dry-run"]) == 2
    assert ("train.optimizer = 'adam' is a replica's update rule, and Sandblaster's is L-BFGS itself: its key is "
            "sandblaster.history = 10") in capsys.readouterr().err


def test_a_config_toml_from_before_a_newer_cluster_key_is_still_a_resolved_one(tmp_path, capsys):
    """A Sandblaster run's config.toml lacks the [cluster] keys added after it (cluster.silent_seconds, 2026-12-05):
    read as a file the user wrote, its preset's Downpour keys (teacher-student's rule, train.lr) were refused."""
    (tmp_path / "sb.toml").write_text('base = "teacher-student"\n[cluster]\nalgorithm = "sandblaster"\n')
    assert main(["train", "--config", str(tmp_path / "sb.toml"), "--dry-run"]) == 0
    old = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("silent_seconds")]
    (tmp_path / "old.toml").write_text("\n".join(old) + "\n")
    assert main(["train", "--config", str(tmp_path / "old.toml"), "--dry-run"]) == 0


def test_a_file_on_a_run_config_toml_setting_one_of_its_cluster_keys_leaves_it_resolved(tmp_path, capsys):
    """`base = "RUN/config.toml"` and `cluster.workers = 4`: the run's file no longer set every [cluster] key last, so
    its preset's Downpour keys (teacher-student's rule, train.lr) were refused, naming the run's config.toml."""
    (tmp_path / "sb.toml").write_text('base = "teacher-student"\n[cluster]\nalgorithm = "sandblaster"\n')
    assert main(["train", "--config", str(tmp_path / "sb.toml"), "--dry-run"]) == 0
    (tmp_path / "config.toml").write_text(capsys.readouterr().out)
    (tmp_path / "more.toml").write_text(f'base = "{tmp_path / "config.toml"}"\n[cluster]\nworkers = 4\n')
    assert main(["train", "--config", str(tmp_path / "more.toml"), "--dry-run"]) == 0


def test_a_downpour_file_switched_to_sandblaster_on_the_command_line_keeps_its_downpour_keys(tmp_path, capsys):
    """A file written for Downpour (its chain trains with Downpour) reused with --set cluster.algorithm=sandblaster is
    a Downpour run's config.toml reused so (which passes): its Downpour keys are for Downpour, not a slip; a file
    that says sandblaster itself is still refused, saying to drop the key from the file."""
    (tmp_path / "dp.toml").write_text('base = "teacher-student"\n[cluster]\nlr = 0.5\n')
    assert main(["train", "--config", str(tmp_path / "dp.toml"), "--set", "cluster.algorithm=sandblaster",
                 "--dry-run"]) == 0
    capsys.readouterr()
    (tmp_path / "sb.toml").write_text('base = "dp.toml"\n[cluster]\nalgorithm = "sandblaster"\n')
    assert main(["train", "--config", str(tmp_path / "sb.toml"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'dp.toml'} sets cluster.lr = 0.5: Downpour's" in err
    assert f"drop it from {tmp_path / 'dp.toml'}" in err


@pytest.mark.parametrize("delay", [["--delay", "straggler:0:10"], ["--set", "cluster.delay=straggler:0:10"]])
def test_sandblaster_on_ray_takes_the_straggler_it_reads(delay):
    """Its last worker actor sleeps to show the backups (docs/sandblaster.md): the command line refused it."""
    assert main(["train", "--config", "ufldl-sae", "--dry-run", "--runner", "ray", "--workers", "2", *SANDBLASTER, *delay]) == 0


@pytest.mark.parametrize("item", ["cluster.checkpoint_seconds=5", "cluster.shard_restarts=1"])
def test_a_ray_runs_fault_tolerance_settings_may_change_on_resume(tmp_path, capsys, item):
    """They change when and how often it saves or restarts, not what it trains; the resume refused them
    (while cluster.restarts and cluster.checkpoint_every were allowed)."""
    from downpour.train.rundir import RunDir

    cfg = load_config("ufldl-sae", ["cluster.runner=ray", "train.steps=10"])
    run = RunDir.create(tmp_path / "run", cfg)
    (run.path / "metrics.jsonl").write_text('{"step": 5, "loss": 1.0}\n')     # it trained: a resume is allowed
    assert main(["train", "--resume", str(run.path), "--dry-run", "--set", item]) == 0, capsys.readouterr().err


def test_n_fetch_under_a_gate_is_read_when_a_push_holds_several_steps():
    """With n_push 4, n_fetch 1 fetches every step and n_fetch >= 4 once per push (local steps between):
    bit for bit another run, so it is not refused."""
    argv = ["train", "--config", "ufldl-sae", "--runner", "simulated", "--consistency", "bounded:2", "--n-push", "4"]
    assert main([*argv, "--n-fetch", "4", "--dry-run"]) == 0


def test_a_delay_out_of_order_names_its_set(capsys):
    """uniform:A:B with B < A is refused by the delay model, which named cluster.delay but not the --set that gave
    it, as every other refused value's message does."""
    assert main(["train", "--dry-run", "--runner", "simulated", "--set", "cluster.delay=uniform:3:1"]) == 2
    assert "--set cluster.delay=uniform:3:1: " in capsys.readouterr().err


def test_a_sandblaster_runs_resume_refuses_downpours_keys_as_such_not_as_a_change(tmp_path, capsys):
    """`--resume RUN --set train.lr=0.5` of a Sandblaster run said "the run was trained with 0.03; start a new run
    (--config RUN/config.toml --set ...)", a run that refuses the key too: it never reads it."""
    run = tmp_path / "sb"
    assert main(["train", "--config", "teacher-student", "--steps", "2", *SANDBLASTER, "--out", str(run)]) == 0
    capsys.readouterr()
    for argv, named in ((["--set", "train.lr=0.5"], "--set train.lr: Downpour's"),
                        (["--compensation", "dc-asgd"], "--compensation: Downpour's")):
        assert main(["train", "--resume", str(run), *argv]) == 2
        err = capsys.readouterr().err
        assert named in err and "the run was trained with" not in err
    assert main(["train", "--resume", str(run), "--set", "sandblaster.history=3"]) == 2   # read: a change, as before
    assert "cannot resume with sandblaster.history = 3" in capsys.readouterr().err


@pytest.mark.parametrize("delay, named", [("straggler:5:10", "is not read there: write straggler:0:10, or use --runner "
                                                             "simulated; it runs as straggler:0:10"),
                                          ("straggler:0:0.5", "only sleeps FACTOR - 1 times")])
def test_a_dry_run_says_the_ray_straggler_a_config_file_sets_as_the_run_warns_of_it(tmp_path, capsys, delay, named):
    """The flags are refused; a file's straggler is taken, and the run WARNs at its start that T (or FACTOR < 1) is
    not read on Ray: its --dry-run said nothing of it."""
    (tmp_path / "sb.toml").write_text(f'base = "ufldl-sae"\n[cluster]\nrunner = "ray"\nalgorithm = "sandblaster"\n'
                                      f'workers = 2\ndelay = "{delay}"\n')
    assert main(["train", "--config", str(tmp_path / "sb.toml"), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert f"downpour: the run would warn as it starts: cluster.delay = '{delay}': on Ray" in err and named in err
    (tmp_path / "ok.toml").write_text((tmp_path / "sb.toml").read_text().replace(delay, "straggler:0:10"))
    assert main(["train", "--config", str(tmp_path / "ok.toml"), "--dry-run"]) == 0
    assert "would warn" not in capsys.readouterr().err
