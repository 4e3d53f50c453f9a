"""Ray's own start-up lines stay off a ``--runner ray`` run's terminal; Ray's errors and other warnings do not."""
import logging
import os
import subprocess
import sys

import pytest

pytest.importorskip("ray")

NOISE = ("Token authentication is enabled for this Ray cluster", "Started a local Ray instance")


def test_a_local_ray_runs_stderr_holds_the_runs_lines_and_none_of_rays_start_up_chatter(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}   # (as a user's shell)
    done = subprocess.run([sys.executable, "-m", "downpour", "train", "--config", "cat-demo", "--runner", "ray",
                           "--steps", "2", "--workers", "1", "--shards", "1", "--no-report", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "downpour: training the cat-demo preset" in done.stderr and "step      2/2" in done.stderr
    assert not [line for line in done.stderr.splitlines() if any(n in line for n in NOISE)], done.stderr


@pytest.fixture
def heard():
    """The records that Ray's token and worker loggers let through, after :func:`quiet_start`."""
    from downpour.ps.ray_chatter import quiet_start

    quiet_start()
    quiet_start()   # (twice: one filter a logger all the same)
    names = ("ray._private.authentication.authentication_token_setup", "ray._private.worker")
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    keep = Keep()
    for name in names:
        logging.getLogger(name).addHandler(keep)
    yield records
    for name in names:
        logging.getLogger(name).removeHandler(keep)


def test_rays_errors_and_its_other_warnings_still_print(heard):
    from ray._private.authentication import authentication_token_setup as tokens

    tokens._warn_token_auth_enabled()          # chatter: dropped
    tokens._warn_token_auth_disabled()         # a cluster anyone on the network may use: kept
    logging.getLogger(tokens.__name__).error("AuthenticationError: the token was refused")
    logging.getLogger("ray._private.worker").info("Started a local Ray instance.")
    logging.getLogger("ray._private.worker").error("A worker died or was killed while executing a task")
    assert [m.split(".")[0] for m in heard] == ["Token authentication is disabled for this Ray cluster",
                                                "AuthenticationError: the token was refused",
                                                "A worker died or was killed while executing a task"]
    assert len(logging.getLogger("ray._private.worker").filters) == 1


def test_a_record_of_rays_whose_arguments_do_not_fit_its_text_does_not_raise_out_of_rays_call():
    """The filter formatted each record to read it: a Ray log call with one argument too few raised TypeError out of
    Ray's own code (ray.init's, a worker's), where logging says "Logging error" and goes on."""
    from downpour.ps.ray_chatter import quiet_start

    quiet_start()
    worker = logging.getLogger("ray._private.worker")
    unfit = worker.makeRecord(worker.name, logging.WARNING, __file__, 1, "raylet %s died: %s", ("node-1",), None)
    assert worker.filter(unfit)   # kept (its handler then says "Logging error"), not raised out of Ray's call
    started = worker.makeRecord(worker.name, logging.INFO, __file__, 1, "Started a local Ray instance. View the "
                                "dashboard at %s%s%s %s%s", ("http://", "127.0.0.1:8265", "", "", ""), None)
    assert not worker.filter(started)


@pytest.mark.parametrize("given, folds", [(None, False), ("1", True)])
def test_rays_driver_prints_every_workers_line_unless_the_user_asks_it_to_fold_them(given, folds):
    """Ray's driver folds worker lines that differ only in words holding a digit into one "[repeated Nx across
    cluster]": a stream's skipped files f0010.jpg, f0500.jpg and f0900.jpg, truncated alike, would print as one line
    naming one file. Importing the runner's Ray modules turns that off, unless RAY_DEDUP_LOGS is set."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_DEDUP_LOGS"} | ({"RAY_DEDUP_LOGS": given} if given else {})
    code = ("import downpour.ps.connect_on_ray\nfrom ray._private import ray_logging\n"
            "print(ray_logging.RAY_DEDUP_LOGS)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == str(folds)


def test_the_benches_that_start_a_local_ray_keep_its_start_up_chatter_off(monkeypatch):
    """bench/parameter_server.py, and bench/scaling.py's ps_round_trip curve through its start_ray, start Ray with the
    run's filter: else Ray's two start-up lines come before their JSON lines."""
    from pathlib import Path

    import ray

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "bench"))
    import parameter_server

    worker = logging.getLogger("ray._private.worker")
    monkeypatch.setattr(worker, "filters", [])   # (as in a fresh process: another test may have filtered it)
    asked: list[dict] = []
    monkeypatch.setattr(ray, "init", lambda **kwargs: asked.append(kwargs))
    parameter_server.start_ray()
    started = worker.makeRecord(worker.name, logging.INFO, __file__, 1, "Started a local Ray instance.", (), None)
    assert asked and asked[0]["address"] == "local" and not worker.filter(started)


def test_a_raylets_state_dump_is_one_line_and_every_other_line_prints_as_before():
    """Ray's own dispatcher, its printing handler stood in for: the raylet's [state-dump] lines (42 of the driver's 78
    in a 2-node run that lost a node) are one line naming where they are kept; the raylet's other
    lines and a worker's own (the run's) all print, in order."""
    from ray._private.ray_logging import WorkerStandardStreamDispatcher

    from downpour.ps.ray_chatter import quiet_dumps

    printed: list[list[str]] = []
    dispatcher = WorkerStandardStreamDispatcher()
    dispatcher.add_handler("ray_print_logs", lambda batch: printed.append(batch["lines"]))
    quiet_dumps(dispatcher)
    quiet_dumps(dispatcher)    # (twice: wrapped once)
    dump = [f"[2026-12-06 20:00:0{i} I 77 77] node_manager.cc:1 [state-dump] line {i}" for i in range(5)]
    dispatcher.emit({"pid": "raylet", "ip": "10.0.0.2", "is_err": True,
                     "lines": ["The node with node id bbbb has been marked dead", *dump]})
    dispatcher.emit({"pid": 1234, "ip": "10.0.0.1", "is_err": True, "actor_name": "WorkerActor",
                     "lines": ["a worker's line that says [state-dump]", "another"]})
    assert printed[0][0] == "The node with node id bbbb has been marked dead" and len(printed[0]) == 2
    assert printed[0][1].startswith("[downpour] 5 [state-dump] lines of the raylet on 10.0.0.2 left out here")
    assert "raylet.err" in printed[0][1]
    assert printed[1] == ["a worker's line that says [state-dump]", "another"]
