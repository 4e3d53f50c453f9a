"""The report's note on where a Ray run ran, from its cluster.json (a Sandblaster run's sandblaster.json): its nodes,
which actor was on which node (by id and address, as the run's log lines name them), and the start (joining Ray, every
actor up) beside the training's seconds, beyond "Ray cluster, 2 workers, 2 shards". A run whose summary has no
``node_ids`` (older, simulated, local) gets no note; where a stopped run ended (its ``stopped``) is every runner's,
said by :mod:`~downpour.analysis.report_stop`.

    placement_note(run)   # '<p class="note">Placement (cluster.json): 2 nodes; node aaaaaaaa at 10.0.0.1: shard 0,
                          #  worker 1; node bbbbbbbb at 10.0.0.2: shard 1, worker 0; start 8.3 s, training 42.1 s.</p>'
"""
from __future__ import annotations

from typing import Any

from downpour._names import node_named, plural
from downpour.analysis.report_parts import esc, run_json, summary_name
from downpour.settings import is_count
from downpour.train.rundir import RunDir

_KINDS = {"shards": "shard", "workers": "worker", "partitions": "partition"}   # placement's keys, as said
_EVENTS = {"shards-restarted": "restart", "shards-lost": "stop"}     # shard_events' events, as said


def placement_note(run: RunDir) -> str:
    """The note (HTML), or "" where the run's summary says nothing of nodes: cluster.json, or a Sandblaster run's
    sandblaster.json (a Sandblaster run has no cluster.json, so read from it alone its report would say nothing of
    its nodes)."""
    name = summary_name(run)
    summary = run_json(run, name)
    if not isinstance(summary, dict):
        return ""
    held, earlier = held_by_node(summary), earlier_shards(summary)
    if not held and not earlier:
        return ""
    said = [plural(len(held), "node")] + [f"{node}: {', '.join(actors)}" for node, actors in held.items()]
    if isinstance(summary.get("start_seconds"), (int, float)) and isinstance(summary.get("seconds"), (int, float)):
        # a resume's seconds are every go's (the checkpoint's and its own), not its go's: a resume of 29 s said 411
        goes = (f", every go's together (the last a resume at step {summary['resumed_from']}; the time between them "
                "left out)" if is_count(summary.get("resumed_from"), 1) else "")
        said.append(f"start {summary['start_seconds']:.1f} s (joining Ray, every actor up), training "
                    f"{summary['seconds']:.1f} s{goes}{_throughput(run, summary)}")
    now = f"Placement ({name}): {'; '.join(said)}." if held else ""
    before = f"Shards before each restart or stop (cluster.json shard_events): {'; '.join(earlier)}." if earlier else ""
    return f'<p class="note">{esc(" ".join(x for x in (now, before) if x))}</p>'


def _throughput(run: RunDir, summary: dict[str, Any]) -> str:
    """Downpour's samples a second over the training's seconds: cluster.json's steps (every replica's together,
    since the run's start) times train.batch_size, over its ``seconds`` (every go's, each counted from every actor
    up: the start left out; the last go's up to its model saved), what a split replica's round trips cost shows
    here; and how many of those seconds came after the last step (:func:`_after_last_step`). Said as the whole
    training's: the progress line's samples/s (metrics.jsonl's ``samples_per_s``) is each logged row's, over its
    own ``train.log_every`` steps. A short run differs most: tica-8x8 on a local Ray, 20 steps, printed 56,661
    samples/s over its 20 steps (0.035 s) where its 1.61 s here gave 1,242: 1.57 s of them came after the last step.
    (``seconds`` is kept as it is: the studies' seconds per step and the runs' comparisons read it.)
    "" for Sandblaster, whose steps are L-BFGS iterations."""
    steps, seconds = summary.get("steps"), summary["seconds"]
    if run.config.cluster.algorithm != "downpour" or not isinstance(steps, int) or steps <= 0 or seconds <= 0:
        return ""
    samples = steps * run.config.train.batch_size
    return (f" ({samples:,} samples, {samples / seconds:,.0f} samples/s over those seconds: the whole training, its "
            f"start left out{_after_last_step(run, steps, samples, seconds)})")


def _after_last_step(run: RunDir, steps: int, samples: int, seconds: float) -> str:
    """"; 1.6 s of them after its last step, ...: 56,657 samples/s up to it": ``seconds`` less the ``time`` of
    metrics.jsonl's row at the last step (the same clock: the telemetry's starts where the training's seconds do,
    and a resume adds the seconds before it to both), and the rate without them; "" without that row, or for under
    0.05 s."""
    rows = [r for r in run.metrics() if r.get("step") == steps and isinstance(r.get("time"), (int, float))]
    after = seconds - rows[-1]["time"] if rows else 0.0
    if after < 0.05:
        return ""
    return (f"; {after:.1f} s of them after its last step, saving the server and the model and closing the actors: "
            f"{samples / (seconds - after):,.0f} samples/s up to it")


def earlier_shards(summary: dict[str, Any]) -> list[str]:
    """Where each shard event of cluster.json's ``shard_events`` (a shard restart, the stop) found the shards of the go
    it ended, one entry an event: "restart at step 20: shard 0 on node aaaaaaaa at 10.0.0.1, shard 1 (lost) on node
    bbbbbbbb" (the lost shards marked, from its ``lost_shards``); events without a placement (off Ray, older files)
    left out. The last go's placement alone would leave a restarted shard's previous node, and a stopped run's
    nodes (its cluster.json has no top-level placement), unsaid."""
    events = summary.get("shard_events")
    said = []
    for e in [e for e in events if isinstance(e, dict)] if isinstance(events, list) else []:
        placement, names = e.get("placement"), _node_names(e)
        shards = placement.get("shards") if isinstance(placement, dict) else None
        if not isinstance(shards, list) or names is None or not all(_fits(at, names) for at in shards):
            continue
        lost = e.get("lost_shards") if isinstance(e.get("lost_shards"), list) else []
        where = [(j, names[at]) for j, at in enumerate(shards)]
        if where:
            shards_at = ", ".join(f"shard {j}{' (lost)' if j in lost else ''} on {node}" for j, node in where)
            said.append(f"{_EVENTS.get(e.get('event'), 'event')} at step {e.get('step')}: {shards_at}")
    return said


def held_by_node(summary: dict[str, Any]) -> dict[str, list[str]]:
    """Each node as the log names it ("node aaaaaaaa at 10.0.0.1") -> the actors cluster.json's ``placement`` put
    there ("shard 0", "worker 1", "partition 0 of replica 1", a Sandblaster worker lost "worker 1 (lost:
    ActorDiedError)"), in node order; {} where ``placement`` or ``node_ids`` is missing or does not fit (an index past
    ``node_ids``)."""
    names, placement = _node_names(summary), summary.get("placement")
    if names is None or not isinstance(placement, dict):
        return {}
    held: dict[str, list[str]] = {name: [] for name in names}
    lost = _lost_workers(summary)
    for kind, nodes in placement.items():
        for i, at in enumerate(nodes if isinstance(nodes, list) else []):
            if not _fits(at, names):
                return {}
            gone = f" (lost: {lost[i]})" if kind == "workers" and i in lost else ""
            held[names[at]].append(_actor(kind, i, placement) + gone)
    return {node: actors for node, actors in held.items() if actors}


def _lost_workers(summary: dict[str, Any]) -> dict[int, str]:
    """The workers lost for good and why (Sandblaster's ``lost_workers``: {"1": "ActorDiedError"}); {} for another
    form (Downpour's, a list of numbers: its log and staleness.json's events say why) or none."""
    lost = summary.get("lost_workers")
    if not isinstance(lost, dict):
        return {}
    return {int(w): str(why) for w, why in lost.items() if str(w).isdigit()}


def _actor(kind: str, i: int, placement: dict[str, Any]) -> str:
    """Actor ``i`` of ``kind`` as said: "shard 1", "worker 0"; a partition by its replica, as the fault events say it
    ("partition 1 of replica 0": cluster.json lists worker w's partition p at w·K + p, K the partitions per replica).
    Said by that flat index, 2 replicas x 2 partitions would read "partition 0, partition 1, partition 2,
    partition 3", which replica's each left to the reader."""
    workers, partitions = placement.get("workers"), placement.get("partitions")
    if kind == "partitions" and isinstance(workers, list) and isinstance(partitions, list) and workers \
            and len(partitions) % len(workers) == 0:
        k = len(partitions) // len(workers)
        return f"partition {i % k} of replica {i // k}"
    return f"{_KINDS.get(kind, kind)} {i}"


def _node_names(summary: dict[str, Any]) -> list[str] | None:
    """Each of ``node_ids`` as the log names it ("node aaaaaaaa at 10.0.0.1", by ``node_addresses``); None without."""
    ids, addresses = summary.get("node_ids"), summary.get("node_addresses")
    if not isinstance(ids, list):
        return None
    known = dict(zip(ids, addresses)) if isinstance(addresses, list) else {}
    return [node_named(str(x), known) for x in ids]


def _fits(at: Any, names: list[str]) -> bool:
    """Whether a placement's entry ``at`` is an index into ``names``."""
    return isinstance(at, int) and 0 <= at < len(names)
