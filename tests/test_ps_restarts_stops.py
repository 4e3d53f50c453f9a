"""The piped loops' end and a stop: the real Ray driver (:class:`~downpour.ps.cluster_on_ray.RayCluster`) on stand-in
actors whose deaths are scripted (tests/scripted_ray.py, tests/restart_scripts.py). One wait for a stuck serve task;
the workers told to stop serving before their data reports are asked; the shards' inboxes a worker staging ahead
waits on freed, on channels and on Ray's tasks, a shard lost too."""
import scripted_ray
from restart_scripts import STEPS
from restart_scripts import runtime  # noqa: F401 (a fixture)
from scripted_ray import ScriptedCluster, coordinator


def test_the_piped_loops_end_and_the_run_end_share_one_wait_for_a_stuck_serve_task(runtime, monkeypatch):
    """Worker 1's serve task never ends at the piped loop's end (a stuck task: its actor answers nothing else). info()
    waits once for both the live serve tasks and the workers' answers (not 60 s for each: two end waits); worker 1 is
    lost there, no restart left for it."""
    from types import SimpleNamespace

    from downpour.ps import asking_on_ray, cluster_on_ray, piped_on_ray

    coord = coordinator(2, STEPS)
    c = ScriptedCluster(runtime, coord, restarts=0)
    c.run_scripted()
    stuck, ended = scripted_ray.Ref(None, when=lambda: False), scripted_ray.Ref(None)
    c._serving = {ended: (0, c.worker_actors[0]), stuck: (1, c.worker_actors[1])}
    c._channels = {w: SimpleNamespace(stop=lambda: None) for w in (0, 1)}
    c.worker_actors[1].data_report = type(c.worker_actors[1].cycle)(lambda: scripted_ray.Ref({}, when=lambda: False))
    waits = []     # (call, timeout) of each Ray wait or get on a future that never answers: an end wait spent

    def noted(name, call):
        def waited(refs, *args, timeout=None, **kw):
            if any(r.held() for r in (refs if isinstance(refs, list) else [refs])):
                waits.append((name, timeout))
            return call(refs, *args, timeout=timeout, **kw)
        return waited

    fake = SimpleNamespace(wait=noted("wait", runtime.wait), get=noted("get", runtime.get), kill=runtime.kill,
                           nodes=runtime.nodes, exceptions=cluster_on_ray.ray.exceptions)
    for module in (cluster_on_ray, asking_on_ray, piped_on_ray):
        monkeypatch.setattr(module, "ray", fake)
    c._run_piped(lambda *a: None)      # (nothing granted: straight to the loop's end)
    c.info()
    assert waits == [("wait", 60)]
    assert coord.lost == [1] and c._serving == {stuck: (1, c.worker_actors[1])}   # worker 0's ended task: read


def test_a_piped_stop_tells_the_workers_to_stop_serving_before_it_asks_their_data_reports(runtime, monkeypatch):
    """On a stop (Ctrl-C, an error) ``data_reports`` asks each live worker its data report, 5 s in all. Piped, a
    worker serves until told to stop, and a serving actor answers nothing else: each is told to stop first, its serve
    task ends and is read in the same wait, and both reports come (untold, the wait runs out and data.json has no
    worker's report; scripted: [] after 5 s of the stand-in clock)."""
    from types import SimpleNamespace

    from downpour.ps import cluster_on_ray, piped_on_ray

    monkeypatch.setattr(piped_on_ray, "ray", cluster_on_ray.ray)     # (the stand-in: the serve tasks are read there)
    coord = coordinator(2, STEPS)
    c = ScriptedCluster(runtime, coord, restarts=0)
    stopped = set()
    c.piped = True
    c._channels = {w: SimpleNamespace(stop=lambda w=w: stopped.add(w)) for w in (0, 1)}
    c._serving = {scripted_ray.Ref(0, when=lambda w=w: w in stopped): (w, c.worker_actors[w]) for w in (0, 1)}
    for w in (0, 1):      # queued behind the serve task: answered once it ends
        c.worker_actors[w].data_report = type(c.worker_actors[w].cycle)(
            lambda w=w: scripted_ray.Ref({"worker": w}, when=lambda: w in stopped))
    before = runtime.now
    assert c.data_reports() == [{"worker": 0}, {"worker": 1}]
    assert stopped == {0, 1} and not c._serving and runtime.now == before


def test_a_piped_stop_frees_the_inboxes_a_worker_staging_ahead_waits_on(runtime, monkeypatch):
    """A piped worker granted cycles ahead (queue depth 2) stages each push in its shards' inboxes, and the next
    ``put`` waits until the shard takes the last one: on a stop no ring takes it, so the shards drop what waits, again
    every 0.05 s, and both reports come; the queued cycle's staging, blocked again by the first drop, costs one short
    round, not a round's whole 1 s wait. (Else the worker waits 60 s mid-cycle, its serve task, and its data report
    behind it, does not end within the 5 s, and data.json has no worker's report: a Ctrl-C of a streamed one-node Ray
    run, 3,003 files, 6 skipped, with data.json naming none.)"""
    from types import SimpleNamespace

    from downpour.ps import asking_on_ray, cluster_on_ray, piped_on_ray

    monkeypatch.setattr(piped_on_ray, "ray", cluster_on_ray.ray)
    monkeypatch.setattr(asking_on_ray, "ray", cluster_on_ray.ray)
    coord = coordinator(2, STEPS)
    c = ScriptedCluster(runtime, coord, restarts=0)
    stopped, shard = set(), c.shard_actors[0]
    c.piped = True
    c._channels = {w: SimpleNamespace(stop=lambda w=w: stopped.add(w)) for w in (0, 1)}

    def served(w: int) -> bool:   # stopped, and its blocked cycle's and its queued cycle's stagings let through
        return w in stopped and sum(d[0] == w for d in shard.dropped) >= 2

    c._serving = {scripted_ray.Ref(0, when=lambda w=w: served(w)): (w, c.worker_actors[w]) for w in (0, 1)}
    for w in (0, 1):
        c.worker_actors[w].data_report = type(c.worker_actors[w].cycle)(
            lambda w=w: scripted_ray.Ref({"worker": w}, when=lambda w=w: served(w)))
    began = runtime.now
    assert c.data_reports() == [{"worker": 0}, {"worker": 1}]
    assert not c._serving and {w for w, _ in shard.dropped} == {0, 1}
    assert runtime.now - began <= 2 * asking_on_ray.DROP_ROUND_SECONDS   # (the scripted Ray's clock)


def test_a_piped_stop_with_a_shard_lost_still_asks_the_workers_their_data_reports(runtime, monkeypatch):
    """The inboxes' drop on a stop (above) is asked of every shard: one lost (a lost shard stops the run) answers
    ActorDiedError, and the reports are asked all the same, not the whole data.json lost to that error."""
    from types import SimpleNamespace

    from downpour.ps import asking_on_ray, cluster_on_ray, piped_on_ray

    monkeypatch.setattr(piped_on_ray, "ray", cluster_on_ray.ray)
    monkeypatch.setattr(asking_on_ray, "ray", cluster_on_ray.ray)
    c = ScriptedCluster(runtime, coordinator(2, STEPS), restarts=0)
    stopped = set()
    c.piped = True
    c._channels = {w: SimpleNamespace(stop=lambda w=w: stopped.add(w)) for w in (0, 1)}
    c.shard_actors[0].drop_inbox = type(c.shard_actors[0].flush)(
        lambda w, seq: scripted_ray.Ref(error=cluster_on_ray.ray.exceptions.ActorDiedError()))
    c._serving = {scripted_ray.Ref(0, when=lambda w=w: w in stopped): (w, c.worker_actors[w]) for w in (0, 1)}
    for w in (0, 1):
        c.worker_actors[w].data_report = type(c.worker_actors[w].cycle)(
            lambda w=w: scripted_ray.Ref({"worker": w}, when=lambda w=w: w in stopped))
    assert c.data_reports() == [{"worker": 0}, {"worker": 1}]


def test_a_stop_on_ray_tasks_frees_the_inboxes_a_worker_staging_ahead_waits_on(runtime, monkeypatch):
    """The same stop on Ray's task path (a run over more than one node, or cluster.partitions > 1: no channels): a
    worker on a shard's node stages in its inbox, its next queued cycle (queue depth 2) waits for the shard to take
    the last push, which no ring will then: the shards drop it here too, as on the piped path, else its data report,
    queued behind that cycle on the actor, does not come within the 5 s."""
    from downpour.ps import asking_on_ray, cluster_on_ray

    monkeypatch.setattr(asking_on_ray, "ray", cluster_on_ray.ray)
    c = ScriptedCluster(runtime, coordinator(2, STEPS), restarts=0)
    shard = c.shard_actors[0]

    def staged(w: int) -> bool:   # its blocked cycle's staging let through
        return any(d[0] == w for d in shard.dropped)

    c._pending = {scripted_ray.Ref({}, when=lambda w=w: staged(w)): ("cycle", w) for w in (0, 1)}
    for w in (0, 1):
        c.worker_actors[w].data_report = type(c.worker_actors[w].cycle)(
            lambda w=w: scripted_ray.Ref({"worker": w}, when=lambda w=w: staged(w)))
    assert c.data_reports() == [{"worker": 0}, {"worker": 1}]
    assert {w for w, _ in shard.dropped} == {0, 1}


def test_a_stop_with_a_shard_lost_goes_on_freeing_the_live_shards_inboxes_for_every_queued_cycle(runtime, monkeypatch):
    """Shard 0 is lost (its drop answers ActorDiedError; a worker waiting on its inbox sees it gone itself:
    tests/test_ps_shm.py), shard 1 lives, and each worker has a second cycle queued (queue depth 2) that waits on
    shard 1's inbox once the first is let through. The lost shard is asked no more and the rounds go on (if its
    error ended the drops after the first round, the second cycle would stay blocked, and its worker's data report,
    queued behind it, be lost to the stop's 5 s wait: data.json with no worker's report)."""
    from downpour.ps import asking_on_ray, cluster_on_ray

    monkeypatch.setattr(asking_on_ray, "ray", cluster_on_ray.ray)
    c = ScriptedCluster(runtime, coordinator(2, STEPS), restarts=0, shards=2)
    lost, live = c.shard_actors
    died = cluster_on_ray.ray.exceptions.ActorDiedError
    lost.drop_inbox = type(lost.flush)(lambda w, seq: scripted_ray.Ref(error=died()))

    def staged(w: int) -> bool:   # both its cycles' stagings on shard 1 let through
        return sum(d[0] == w for d in live.dropped) >= 2

    c._pending = {scripted_ray.Ref({}, when=lambda w=w: staged(w)): ("cycle", w) for w in (0, 1)}
    for w in (0, 1):
        c.worker_actors[w].data_report = type(c.worker_actors[w].cycle)(
            lambda w=w: scripted_ray.Ref({"worker": w}, when=lambda w=w: staged(w)))
    assert c.data_reports() == [{"worker": 0}, {"worker": 1}]
