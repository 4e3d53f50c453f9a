"""The report's cluster notes: a cluster run's faults in one line (staleness.json's events: lost workers and what
came of each, resumes, shard restarts, partitions restarted alone) and why a run has no staleness histogram. A module
of its own, as report.py is at its 400 lines."""
from __future__ import annotations

from typing import Any

from downpour.analysis.report_parts import esc
from downpour.config import is_cluster_runner
from downpour.errors import first_line
from downpour.settings import is_count
from downpour.train.rundir import NotARunError, RunDir


_FAULT_WORDS = {"worker-lost": "worker {worker} lost at step {step}{where}{reason}",
                "worker-restarted": "worker {worker} restarted at step {step}",
                "restart-failed": "worker {worker}'s restart failed at step {step}{where}{reason}",
                "restart-given-up": "worker {worker}'s restart given up at step {step}{reason}",
                "restart-placed-again": "worker {worker}'s replacement placed again at step {step}{reason}",
                "not-restarted": "worker {worker} not restarted at step {step}{reason}",
                "fault-missed": "worker {worker} not lost again at step {step}{reason}",
                "resumed": "the run resumed at step {step} with {workers} started{back}",
                "shards-restarted": "{lost}the shards restarted from the checkpoint of step {step}{reason}",
                "shards-lost": "the run stopped at step {step}, a shard lost with cluster.shard_restarts spent{reason}",
                "partition-restarted": "partition {partition} of replica {worker} restarted at step {step}{reason}",
                "partition-restart-failed": "partition {partition} of replica {worker} not restarted alone at step "
                                            "{step}{reason}"}
_FROM_START = "{lost}the shards restarted from the start, step 0{reason}"
# what came of a loss, said in its own entry ("worker 1 lost at step 21 (ActorDiedError), not restarted (...)")
_OUTCOME_WORDS = {"worker-restarted": "restarted at step {step}",
                  "restart-failed": "its restart failed at step {step}{where}{reason}",
                  "restart-given-up": "its restart given up at step {step}{reason}",
                  "not-restarted": "not restarted{reason}",
                  "restart-placed-again": "its replacement placed again at step {step}{reason}"}
_NOT_AN_END = ("restart-failed", "restart-placed-again")   # outcomes another follows: a replacement starts again
MAX_FAULTS = 10     # a run that lost hundreds of workers: the first ten faults and a count


def cluster_faults(run: RunDir) -> str:
    """One line on a cluster run's faults (staleness.json's events): each lost worker with what came of it, resumes
    and shard restarts; or nothing: the histogram alone does not say that a worker was lost, or when. A
    loss and its outcome are one entry, so the cap counts faults (an entry an event, 6 losses with their outcomes
    would show 5). A shard restart resumes the run from its checkpoint: its ``resumed`` is said in the restart's entry,
    not as "the shards restarted from the checkpoint of step 16 (...); the run resumed at step 16 with its 2 workers
    started", one fault twice."""
    try:
        events = run.read_json("staleness.json").get("events") or []
    except (NotARunError, AttributeError):
        return ""
    entries: list[str] = []
    open_loss: dict[Any, int] = {}   # worker -> its loss's entry, until what came of it is said
    restarted: tuple[int, Any] | None = None   # the last fault a shard restart: (its entry, the checkpoint's step)
    gone: set[Any] = set()           # workers lost and not restarted since (a resume starts them again)
    for e in events if isinstance(events, list) else []:
        kind = e.get("event") if isinstance(e, dict) else None
        if kind not in _FAULT_WORDS:
            continue
        reason = first_line(e.get("reason") or "")[:160]
        if kind == "restart-given-up" and reason == "cluster.restarts = 0":   # (none was tried)
            kind = "not-restarted"
        w, fill = e.get("worker", "?"), {"step": e.get("step", "?"), "reason": f" ({reason})" if reason else "",
                                         "partition": e.get("partition", "?"),
                                         "where": f" on {e['where']}" if e.get("where") else "",   # (Ray's)
                                         "lost": _lost_at(e)}
        if kind == "resumed":
            started = e.get("workers") if isinstance(e.get("workers"), list) else []
            back = sorted(gone & set(started), key=str)
            gone -= set(started)
            fill.update(workers=_workers(e.get("workers")),
                        back=f" (worker {', '.join(map(str, back))} back after its loss)" if back else "")
            open_loss.clear()
        if kind == "resumed" and restarted is not None and restarted[1] == e.get("step"):   # the restart's own resume
            entries[restarted[0]] += ", {workers} started again{back}".format(**fill)
        elif kind in _OUTCOME_WORDS and w in open_loss:
            entries[open_loss[w]] += ", " + _OUTCOME_WORDS[kind].format(**fill)
            if kind not in _NOT_AN_END:
                del open_loss[w]
        else:
            # a restart at step 0 is from the start, as its log line says ("... from the start (no checkpoint yet)"),
            # not "from the checkpoint of step 0", where there is none (a shard's node lost at step 1622 of a run
            # under cluster.checkpoint_seconds)
            words = _FROM_START if kind == "shards-restarted" and e.get("step") == 0 else _FAULT_WORDS[kind]
            entries.append(words.format(**{"worker": w, "workers": "?", "back": "", **fill}))
            if kind == "worker-lost":
                open_loss[w] = len(entries) - 1
        restarted = (len(entries) - 1, e.get("step")) if kind == "shards-restarted" else None
        if kind == "worker-lost":
            gone.add(w)
        elif kind == "worker-restarted":
            gone.discard(w)
    if len(entries) > MAX_FAULTS:
        entries = [*entries[:MAX_FAULTS], f"and {len(entries) - MAX_FAULTS} more (staleness.json's events)"]
    return f'<p class="note">Faults: {esc("; ".join(entries))}.</p>' if entries else ""


def _lost_at(event: dict[str, Any]) -> str:
    """The loss a ``shards-restarted`` event restarted after, where it has its ``lost_at`` (lost_shards.py): said
    before the checkpoint's step, which is not the loss's ("the shards restarted from the checkpoint of step 16"
    left the loss at step 30 to the reason's text, and a simulated dead shard's says no step: "shard 0 is lost")."""
    lost = event.get("lost_at")
    return f"a shard lost at step {lost}, " if is_count(lost) else ""


def _workers(started: Any) -> str:
    """The workers a ``resumed`` event started (a simulated resume starts only those not lost: 1, or none, when every
    one was lost: it said "its 0 workers"), as its entry says them."""
    if not isinstance(started, list):
        return "its workers"          # (an event without the list)
    n = len(started)
    return "1 worker" if n == 1 else "none of its workers" if n == 0 else f"its {n} workers"


def no_staleness(run: RunDir) -> str:
    """Why a run's report has no staleness histogram."""
    cluster = run.config.cluster
    if not is_cluster_runner(cluster.runner):
        return "Not a cluster run: no staleness histogram."
    if cluster.algorithm == "sandblaster":
        return ("Sandblaster L-BFGS: every work unit is computed on the parameters of its iteration, so there is no "
                "staleness to show.")
    return "No staleness.json in this run: no staleness histogram."
