"""The report's "Staleness" paragraph: a cluster run's settings that make staleness, in words, and what staleness.json
measured (mean and max, the per-worker means' range, the pushes counted, the clock gap a bounded run kept), so a mean, a
bound or the delay need not be read from staleness.json and config.toml. staleness.json holds histograms, not staleness
by step, so nothing is said of its trend over the run."""
from __future__ import annotations

import math
from typing import Any

from downpour._names import plural
from downpour.analysis.report_parts import esc, run_json
from downpour.config import is_cluster_runner
from downpour.train.rundir import RunDir

_RUNNERS = {"simulated": "simulated cluster", "ray": "Ray cluster"}


def staleness_paragraph(run: RunDir) -> str:
    """The paragraph (HTML), or "" for a run without staleness: a local or Sandblaster run, or no staleness.json."""
    c = run.config.cluster
    if not is_cluster_runner(c.runner) or c.algorithm != "downpour":
        return ""
    report = run_json(run, "staleness.json")
    if report is None:
        return ""
    overall = report.get("overall") if isinstance(report, dict) else None
    if not isinstance(overall, dict) or not overall.get("pushes"):
        measured = "no push was applied: no staleness measured"
    else:
        measured = "; ".join(filter(None, (_overall(report, overall, c.shards), _per_worker(report.get("per_worker")),
                                           _per_partition(run, report), _clock_gap(report, c.consistency),
                                           _rejected(report.get("rejected")), _by_hand(run, report))))
    return f'<p><b>Staleness</b> ({esc(settings_words(run))}): {esc(measured)}.</p>'


def settings_words(run: RunDir) -> str:
    """The settings that make a cluster run's staleness, as the paragraph says them: "simulated cluster, 4 workers,
    2 shards, async, delay constant:1.5 in virtual time, n_fetch 1, n_push 1, no compensation" (no parenthesis: the
    paragraph says them inside one)."""
    c = run.config.cluster
    words = [_RUNNERS.get(c.runner, f"{c.runner} cluster"), plural(c.workers, "worker"), plural(c.shards, "shard")]
    if c.partitions > 1:
        words.append(f"{c.partitions} partitions per replica")
    words.append(c.consistency)
    if c.runner == "simulated":
        words.append(f"delay {c.delay} in virtual time")
    elif c.consistency == "async":      # (bounded:K and sync hold it at 1)
        depth = c.queue_depth or 2     # 0 is the default, 2 (cluster.json records the depth used)
        said = ("the default " if not c.queue_depth else "") + f"queue_depth {c.queue_depth}"   # (no nested brackets)
        words.append(f"{said}: {plural(depth, 'queued push cycle')} per worker")
    words += [f"n_fetch {c.n_fetch}", f"n_push {c.n_push}"]
    words.append({"none": "no compensation", "dc-asgd": f"compensation dc-asgd at lambda {c.dc_lambda:g}"}.get(
        c.compensation, f"compensation {c.compensation}"))
    if c.warm_start:
        words.append(f"worker 0 alone for the first {c.warm_start} steps")
    return ", ".join(words)


def _overall(report: dict[str, Any], overall: dict[str, Any], shards: int) -> str:
    """Mean and max over every shard update, and how many were counted (a push counts once per shard applying it)."""
    n = overall["pushes"]
    per_shard = {s.get("pushes") for s in (report.get("per_shard") or {}).values() if isinstance(s, dict)}
    if len(per_shard) == 1 and shards > 1:
        each = per_shard.pop()
        by = "both shards" if shards == 2 else f"all {shards} shards"
        counted = f"{n} shard updates ({each} pushes, each applied by {by})"
    else:
        counted = plural(n, "shard update")
    return f"mean {overall.get('mean', 0.0):.2f}, max {overall.get('max')}, over {counted}"


def _per_worker(per_worker: Any) -> str:
    """The lowest and highest of the workers' means, naming the workers (a straggler's own staleness shows here)."""
    if not isinstance(per_worker, dict):
        return ""
    means = sorted(((float(v["mean"]), int(w)) for w, v in per_worker.items()
                    if isinstance(v, dict) and v.get("pushes")), key=lambda m: (m[0], m[1]))
    if len(means) < 2:
        return ""
    (low, w_low), (high, w_high) = means[0], means[-1]
    if f"{low:.2f}" == f"{high:.2f}":
        return f"every worker's mean {low:.2f}"
    return f"per-worker means from {low:.2f} (worker {w_low}) to {high:.2f} (worker {w_high})"


def _per_partition(run: RunDir, report: dict[str, Any]) -> str:
    """A model-parallel run's staleness per partition, over the shards its own filters are on (cluster.json's
    ``partition_shards``: on Ray each partition pushes its block to them itself, so its staleness is its own: the
    cat-untied network split 2 x 2 on 4 shards, 40 steps, gave 1.44 and 1.40), or that the partitions own none
    (every trained stage tiled: the replica pushes the shared banks), not only "2 partitions per replica"."""
    cluster = run_json(run, "cluster.json")
    owned = cluster.get("partition_shards") if isinstance(cluster, dict) else None
    per_shard = report.get("per_shard")
    if not isinstance(owned, list) or not isinstance(per_shard, dict):
        return ""
    if not any(owned):
        return "the partitions own no shard (their stages' filters are the shared banks, pushed by the replica)"
    said = []
    for p, shards in enumerate(owned):
        counted = [per_shard.get(str(j)) for j in shards]
        n = sum(x.get("pushes", 0) for x in counted if isinstance(x, dict))
        if n:
            mean = sum(x["mean"] * x["pushes"] for x in counted if isinstance(x, dict) and x.get("pushes")) / n
            which = ("shards " if len(shards) > 1 else "shard ") + ", ".join(map(str, shards))
            said.append(f"partition {p} ({which}) {mean:.2f}")
    return f"per partition, on its own shards: {', '.join(said)}" if said else ""


def _clock_gap(report: dict[str, Any], consistency: str) -> str:
    """bounded:K's bound beside the largest clock gap the run kept (it bounds the gap, not the staleness)."""
    if not consistency.startswith("bounded:") or "max_clock_gap" not in report:
        return ""
    return f"max clock gap {report['max_clock_gap']} (bound {consistency.split(':', 1)[1]})"


def _rejected(rejected: Any) -> str:
    """The shard pushes refused (not in the histogram: staleness is of the applied ones), and apart from them the
    late writes of a replaced partition (``fenced``: a slice a killed writer staged into its retired inbox, no push,
    so not counted among "shard pushes refused")."""
    if not isinstance(rejected, dict) or not sum(rejected.values()):
        return ""
    pushes = {k: v for k, v in rejected.items() if k != "fenced" and v}
    why = ", ".join(f"{k}: {v}" for k, v in sorted(pushes.items()))
    said = ([f"{plural(sum(pushes.values()), 'shard push', 'shard pushes')} refused and not counted ({why})"]
            if pushes else [])
    if rejected.get("fenced"):
        said.append(f"late writes of a replaced partition refused: {rejected['fenced']}")
    return "; ".join(said)


def _by_hand(run: RunDir, report: dict[str, Any]) -> str:
    """docs/parameter-server.md's staleness by hand where it is exact once the run is going (after the first rounds):
    simulated, async, n_fetch = n_push = 1, a constant delay, no warm start, every worker there to the end, every push
    applied. Otherwise "" (a random delay's N·(1 + mean) − 1 is an average with a long tail, not a value to check
    against; a refused push makes no version, and the pushes after it land staler or fresher than the rule: a diverging
    teacher-student run, 4 workers, constant:0.25, 65 refused, gave worker 2 a push at 5 and worker 3 one at 6 between
    their first and the rule's 6 and 7)."""
    c = run.config.cluster
    kind, args = c.spec("delay")
    lost = any(isinstance(e, dict) and e.get("event") == "worker-lost" for e in report.get("events") or [])
    if (c.runner != "simulated" or c.consistency != "async" or (c.n_fetch, c.n_push) != (1, 1) or kind != "constant"
            or c.warm_start or c.workers < 2 or lost or _rejected(report.get("rejected"))):
        return ""
    n, t = c.workers, float(args[0])
    if t in (0.0, 1.0):
        value, rule = (n - 1, "N − 1") if t == 0 else (2 * n - 1, "2N − 1")
        return f"by hand (docs/parameter-server.md) {value} for every push after the first rounds ({rule})"
    low = n * math.ceil(t)
    return (f"by hand (docs/parameter-server.md) {low} to {low + n - 1} for workers 0 to {n - 1} after the first rounds "
            f"(N·⌈T⌉ + w)")
