"""Sandblaster L-BFGS: the backup experiment, and Downpour vs Sandblaster (Dean et al. 2012, Figure 4).

    .venv/bin/python bench/sandblaster.py backups [--workers 4] [--units 12] [--factor 10]
    .venv/bin/python bench/sandblaster.py figure --out runs/fig4 [--runner simulated|ray] [--downpour-steps 6000] [--sandblaster-steps 60]
    .venv/bin/python bench/sandblaster.py curves RUN_DOWNPOUR RUN_SANDBLASTER [--png fig.png]
    .venv/bin/python bench/sandblaster.py machines --out runs/machines [--workers 1 2 4 8] [--samples 2000] \
        [--target COST ...]

``backups``: simulated runs of one model with every worker normal, then with the last worker
FACTOR times slower, with backups (``sandblaster.backup_after`` swept) and without (1); one JSON
line each: the mean and max virtual time per batch (one distributed evaluation; ``time_unit``: the simulator's
clock, virtual steps) and the ratio to the normal cluster's mean, units, backups, backups that won, duplicates
dropped.

``figure``: trains the same model and data (RICA, 64 codes, on 10,000 whitened 8x8 patches: the
kind of model Le et al. trained with L-BFGS) once with Downpour (Adagrad on the shards) and once
with Sandblaster, on the same number of workers and shards, then ``curves`` on the two runs.

``machines``: ``figure`` on the simulator at each worker count (the same shards, data, steps and
iterations, so each method computes the same examples at every count), then one JSON line per count:
the virtual time and examples each method took to reach each ``--target`` cost (default: 1.05 and
1.25 times the lowest cost any run reached; null where a run never reached it), and its final cost;
``machines.png`` draws the time to each target against the workers (after Dean et al.'s Figure 5, time
to a fixed cost against machines). ``final_cost`` is each run's saved model's cost on the whole training set, for
both methods (Sandblaster's last row is that already; Downpour's, ``final_logged``, is the mean of its last
mini-batches at the parameters each worker had fetched: 3.867 logged against 3.849 at 1 worker, 9.558 against
9.366 at 16, 2026-12-06; until then ``final_cost`` was the logged one for Downpour).

``curves``: one JSON line per metrics row of each run (``method``, ``cost``, ``time`` in wall
seconds, ``vtime`` when simulated, ``examples`` computed so far), then a summary line: for a few
cost levels, the time and examples each method needed to reach it. ``--png`` draws cost against
time and against examples, side by side. Downpour's cost is its logged training cost (the mean
over its last ``train.log_every`` mini-batches), Sandblaster's the cost of the whole batch at the
new parameters; both on the training set. The summary's ``final_cost`` is each saved model's cost on the whole
training set (:func:`full_cost`), the one like-for-like number of the two.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _protocol import at_least_1  # noqa: E402

from downpour.batch import Batch  # noqa: E402
from downpour.config import load_config  # noqa: E402
from downpour.data.pipeline import open_data  # noqa: E402
from downpour.models.registry import build  # noqa: E402
from downpour.preflight import check_run_config  # noqa: E402
from downpour.runners import train  # noqa: E402
from downpour.train.rundir import RunDir  # noqa: E402

MODEL = ["model.name=rica-8x8", "data.samples=10000", "train.tensorboard=false"]


def _train(out: Path, overrides: list[str]) -> dict[str, Any]:
    cfg = check_run_config(load_config("tica-8x8", [*MODEL, *overrides]))
    return train(cfg, RunDir.create(out, cfg))


def backups(args: argparse.Namespace) -> None:
    base = ["cluster.runner=simulated", "cluster.algorithm=sandblaster", f"cluster.workers={args.workers}",
            f"sandblaster.units={args.units}", f"train.steps={args.steps}", "data.samples=2000"]
    slow = f"cluster.delay=straggler:0:{args.factor:g}"
    cases = [("normal", ["cluster.delay=constant:0"], None)]
    cases += [(f"straggler x{args.factor:g}", [slow, f"sandblaster.backup_after={b}"], b) for b in args.backup_after]
    normal = None
    for i, (name, extra, after) in enumerate(cases):
        s = _train(Path(args.out) / f"backups-{i}", [*base, *extra])
        spans = [b["span"] for b in RunDir(s["run"]).read_json("sandblaster.json")["batches"]]
        mean = sum(spans) / len(spans)
        normal = normal or mean
        print(json.dumps({"cluster": name, "backup_after": after, "batches": len(spans), "batch_time_mean": round(mean, 4),
                          "batch_time_max": round(max(spans), 4), "time_unit": "virtual steps",
                          "ratio_to_normal": round(mean / normal, 3),
                          "units": s["units_dispatched"], "backups": s["backups"], "backups_won": s["backups_won"],
                          "duplicates": s["duplicates_dropped"], "final_loss": round(s["final_loss"], 5)}), flush=True)


def _downpour(args: argparse.Namespace) -> list[str]:
    """Downpour's settings in ``figure`` and ``machines``: Adagrad on the shards at ``--lr``. The server's rate is
    cluster.lr where it is set, and tica-8x8 sets it (0.05) for its cluster runs, so ``--lr`` sets cluster.lr: train.lr,
    which the server does not read, would change nothing, Downpour learning at 0.05 (as this bench's runs between
    2026-12-04 and 2026-12-06 did)."""
    return ["cluster.rule=adagrad", f"cluster.lr={args.lr}", f"train.steps={args.downpour_steps}",
            "train.batch_size=100", "train.log_every=25"]


def figure(args: argparse.Namespace) -> None:
    out = Path(args.out)
    cluster = [f"cluster.runner={args.runner}", f"cluster.workers={args.workers}", f"cluster.shards={args.shards}"]
    _train(out / "downpour", [*cluster, *_downpour(args)])
    _train(out / "sandblaster", [*cluster, "cluster.algorithm=sandblaster", f"sandblaster.units={args.units}",
                                 f"train.steps={args.sandblaster_steps}", "train.batch_size=100"])
    curves(argparse.Namespace(runs=[str(out / "downpour"), str(out / "sandblaster")], png=str(out / "figure4.png")))


def machines(args: argparse.Namespace) -> None:
    out = Path(args.out)
    data = [f"data.samples={args.samples}", "cluster.runner=simulated", f"cluster.shards={args.shards}",
            "train.threads=1"]
    runs = {}
    for w in args.workers:
        cluster = [*data, f"cluster.workers={w}"]
        _train(out / f"w{w}-downpour", [*cluster, *_downpour(args)])
        _train(out / f"w{w}-sandblaster", [*cluster, "cluster.algorithm=sandblaster", f"sandblaster.units={args.units}",
                                           f"train.steps={args.sandblaster_steps}", "train.batch_size=100"])
        runs[w] = {m: _curve(str(out / f"w{w}-{m}"))[1] for m in ("downpour", "sandblaster")}
    best = min(r["cost"] for by in runs.values() for rows in by.values() for r in rows)
    targets = args.target or [round(1.05 * best, 4), round(1.25 * best, 4)]   # near the best, and a looser one
    table = []
    for w, by in runs.items():
        line: dict[str, Any] = {"workers": w}
        for m, rows in by.items():   # reached: null where the run never got to that cost
            line[m] = {"reached": {str(t): _reach(rows, t) for t in targets},
                       "final_cost": round(full_cost(str(out / f"w{w}-{m}")), 5),
                       "final_logged": round(rows[-1]["cost"], 5),
                       "final_vtime": rows[-1]["vtime"], "examples": rows[-1]["examples"]}
        table.append(line)
        print(json.dumps(line), flush=True)
    machines_figure(table, targets).savefig(out / "machines.png", dpi=100)
    print(f"wrote {out / 'machines.png'}", file=sys.stderr)


def machines_figure(table: list[dict[str, Any]], targets: list[float]) -> Any:
    """Virtual time to each target cost against workers, a colour per method and a line style per target; a count
    whose run never reached a target a cross at the top of the axes (x, + per target), in the legend "not reached"
    (not left out); the legend prints the targets as the docs do, "cost 4.63", not to 4 decimals."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for m, color in (("downpour", "C0"), ("sandblaster", "C1")):   # a colour per method, a line style per target
        for k, (t, style, cross) in enumerate(zip(targets, ("o-", "s--", "^:", "v-."), "x+12")):
            reached = [x for x in table if x[m]["reached"][str(t)]]
            ax.plot([x["workers"] for x in reached], [x[m]["reached"][str(t)]["vtime"] for x in reached], style,
                    color=color, label=f"{m}, cost {t:.3g}")
            missed = [x["workers"] for x in table if not x[m]["reached"][str(t)]]
            if missed:          # (at the top, one row per target, inside the axes)
                ax.plot(missed, [0.97 - 0.05 * k] * len(missed), cross, color=color, ms=7,
                        transform=ax.get_xaxis_transform(), label=f"{m}, cost {t:.3g}: not reached")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("workers")
    ax.set_ylabel("virtual time to reach the cost (steps)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)   # (below: it hid points on them)
    fig.tight_layout()
    return fig


def full_cost(path: str) -> float:
    """The cost of the run's saved model on its whole training set, in one batch: what Sandblaster's rows log (with
    sandblaster.batch = 0), and not what Downpour's do (a mean over mini-batches, each at a worker's fetched copy)."""
    run = RunDir.open(path)
    data = open_data(run.config.data, run.config.seed)        # the run's own data, seeded as it was
    model = run.load_model()
    objective = build(run.config, tuple(data.x.shape[1:]))[1]
    model.train()                                 # the training forward, as the step computes the cost
    with torch.no_grad():
        return objective(model.forward_train(Batch(data.x, data.y)))[0].item()


def _curve(path: str) -> tuple[str, list[dict[str, Any]]]:
    run = RunDir.open(path)
    cfg = run.config
    method = cfg.cluster.algorithm if cfg.cluster.runner != "local" else "local"
    rows = []
    for r in run.metrics():
        examples = r["examples"] if method == "sandblaster" else r["step"] * cfg.train.batch_size
        rows.append({"method": method, "run": path, "step": r["step"], "cost": r["loss"], "time": r["time"],
                     **({"vtime": r["vtime"]} if "vtime" in r else {}), "examples": examples})
    return method, rows


def _reach(rows: list[dict[str, Any]], level: float) -> dict[str, Any] | None:
    for r in rows:
        if r["cost"] <= level:
            return {k: r[k] for k in ("time", "vtime", "examples") if k in r}
    return None


def curves(args: argparse.Namespace) -> None:
    runs = [_curve(p) for p in args.runs]
    for _, rows in runs:
        for r in rows:
            print(json.dumps(r))
    best = max(min(r["cost"] for r in rows) for _, rows in runs)   # a level every run reaches
    start = min(rows[0]["cost"] for _, rows in runs)
    levels = [best + f * (start - best) for f in (0.5, 0.2, 0.05, 0.0)]
    print(json.dumps({"reach": [{"cost": round(lv, 5), **{m: _reach(rows, lv) for m, rows in runs}} for lv in levels],
                      "final": {m: rows[-1] for m, rows in runs},
                      "final_cost": {m: round(full_cost(path), 5) for (m, _), path in zip(runs, args.runs)}}))
    if args.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        timed = "vtime" if all("vtime" in rows[0] for _, rows in runs) else "time"
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
        for method, rows in runs:
            axes[0].plot([r[timed] for r in rows], [r["cost"] for r in rows], label=method)
            axes[1].plot([r["examples"] for r in rows], [r["cost"] for r in rows], label=method)
        axes[0].set_xlabel("virtual time (steps)" if timed == "vtime" else "wall time (s)")
        axes[1].set_xlabel("examples computed")
        axes[0].set_ylabel("training cost")
        for ax in axes:
            ax.set_yscale("log")
            ax.legend()
        fig.tight_layout()
        fig.savefig(args.png, dpi=100)
        print(f"wrote {args.png}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("backups")
    b.add_argument("--workers", type=at_least_1, default=4)
    b.add_argument("--units", type=at_least_1, default=12)
    b.add_argument("--factor", type=float, default=10.0)
    b.add_argument("--steps", type=at_least_1, default=5)
    b.add_argument("--backup-after", type=float, nargs="+", default=[0.0, 0.5, 0.75, 0.8, 1.0])
    b.add_argument("--out", default=f"runs/bench-sandblaster-{time.strftime('%Y%m%d-%H%M%S')}")   # a new one each time
    b.set_defaults(func=backups)
    f = sub.add_parser("figure")
    f.add_argument("--out", default=f"runs/fig4-{time.strftime('%Y%m%d-%H%M%S')}")
    f.add_argument("--runner", choices=("simulated", "ray"), default="simulated")
    f.add_argument("--workers", type=at_least_1, default=4)
    f.add_argument("--shards", type=at_least_1, default=2)
    f.add_argument("--units", type=at_least_1, default=32)
    f.add_argument("--lr", type=float, default=0.03)   # Adagrad on the shards: best final cost of 0.01, 0.03, 0.1, 0.3
    f.add_argument("--downpour-steps", type=at_least_1, default=6000)
    f.add_argument("--sandblaster-steps", type=at_least_1, default=60)
    f.set_defaults(func=figure)
    m = sub.add_parser("machines")
    m.add_argument("--out", default=f"runs/machines-{time.strftime('%Y%m%d-%H%M%S')}")
    m.add_argument("--workers", type=at_least_1, nargs="+", default=[1, 2, 4, 8])
    m.add_argument("--shards", type=at_least_1, default=2)
    m.add_argument("--samples", type=at_least_1, default=2000)
    m.add_argument("--units", type=at_least_1, default=32)
    m.add_argument("--lr", type=float, default=0.03)
    m.add_argument("--downpour-steps", type=at_least_1, default=1500)
    m.add_argument("--sandblaster-steps", type=at_least_1, default=60)   # about the examples of 1,500 steps of 100
    m.add_argument("--target", type=float, nargs="+", default=[])   # none: 1.05 and 1.25 x the lowest cost of any run
    m.set_defaults(func=machines)
    c = sub.add_parser("curves")
    c.add_argument("runs", nargs=2)
    c.add_argument("--png", default="")
    c.set_defaults(func=curves)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
