"""Killing a run's actor at the right moment, for the fault tests on real local Ray."""
import threading
import time

import ray


def kill_when(run, step, suffix, earlier, timeout=120.0, checkpointed=False, dead=False):
    """Once ``run`` has logged ``step`` (and, with ``checkpointed``, written a server checkpoint),
    kill this run's actor whose name ends with ``suffix`` (not one of ``earlier``, the names of actors
    earlier runs left); its name, or None if that moment did not come within ``timeout`` seconds
    (on a loaded machine the actors alone can take 30 s to start) or the run had ended by then (on a
    fast one a short run can finish between two looks). With ``dead`` it returns once the actor is gone (a call to
    it fails: :func:`kill_and_wait`), not as soon as ``ray.kill`` has returned."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        rows = run.metrics()
        if rows and rows[-1]["step"] >= step and (not checkpointed or (run.checkpoints / "server.json").is_file()):
            victim = next((a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                           if a["name"].endswith(suffix) and a["name"] not in earlier), None)
            if victim is not None:
                (kill_and_wait if dead else ray.kill)(ray.get_actor(victim))
            return victim
        time.sleep(0.05)
    return None


def run_killing(cfg, run, step, suffix, timeout, monkeypatch=None, dead=False):
    """Run ``cfg`` into ``run`` in a thread, kill its actor named ``...suffix`` once ``step`` is logged
    (:func:`kill_when`), and return the run's summary once it ended within ``timeout`` seconds. With ``monkeypatch``
    the driver holds still once it logged ``step`` until the kill (:func:`held_until`): the kill lands mid-run however
    fast the machine, so a run need not be long to outlast the moments the kill takes. With ``dead`` too it holds
    until the actor is gone (a call to it fails): Ray knows it dead before the driver goes on, so the driver's next
    turns see the loss (not Ray's time to end its tasks after ``ray.kill``, over 80 steps of one worker under load),
    and few steps need follow the kill."""
    from downpour.ps.cluster import run_cluster

    out, killed = {}, threading.Event()
    if monkeypatch is not None:
        held_until(monkeypatch, killed, lambda rec: rec._last_step >= step)
    earlier = {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)}  # earlier runs' actors
    thread = threading.Thread(target=lambda: out.update(run_cluster(cfg, run)), daemon=True)
    thread.start()
    try:
        victim = kill_when(run, step, suffix, earlier, dead=dead)
    finally:
        killed.set()
    thread.join(timeout=timeout)
    assert victim is not None and not thread.is_alive(), "the run hung"
    return out


def held_until(monkeypatch, event, when, holding=None):
    """The driver (its ``Recorder.on_push``) holds still after a push that leaves ``when(recorder)`` true, until
    ``event`` is set (at most 120 s); ``holding`` (an Event), if given, is set as the hold begins."""
    from downpour.ps.recorder import Recorder

    real = Recorder.on_push

    def on_push(self, push, record):
        real(self, push, record)
        if not event.is_set() and when(self):
            if holding is not None:
                holding.set()
            event.wait(120)

    monkeypatch.setattr(Recorder, "on_push", on_push)


def kill_and_wait(actor, tries=600):
    """Kill ``actor`` (no restart) and return once a call to it fails; AssertionError if it still answers. ``ray.kill``
    returns before the actor is gone: a call made just after it can still be answered (a shard killed in an
    iteration's commit answered that iteration's checkpoint, at times, and the run stopped an iteration late; a
    killed kept worker answered its rebuild)."""
    ray.kill(actor, no_restart=True)
    for _ in range(tries):
        try:
            ray.get(actor.__ray_call__.remote(lambda self: None), timeout=60)
        except ray.exceptions.RayActorError:
            return
        time.sleep(0.05)
    raise AssertionError(f"{actor} still answers after ray.kill")
