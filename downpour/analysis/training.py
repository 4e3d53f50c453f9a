"""What a run's metrics.jsonl says of its training, for analysis.json's ``training`` and the report's loss headline.

    summary = training_summary(run.metrics(), frozen=frozen_stages(model))
    summary["first_loss"], summary["last_loss"]     # the logged ``loss``: every stage's cost summed
    summary["stages"]                               # a greedy run's stages, each its own cost, trained in turn
    summary["joint_stages"]                         # a joint run's stages, each its own share of ``loss``
    summary.get("diverged")                         # the loss ran away (downpour.train.divergence.runaway)

A stacked model logs each stage's cost parts as ``stageN/<part>`` (``stage1/reconstruction``), so a stage's cost in
a row is the sum of its parts (diagnostics, ``stageN/metric/...``, left out).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

from torch import nn

from downpour.errors import DataError, DeadLayer
from downpour.objectives import is_metric
from downpour.train.divergence import diverged_words, recorded, runaway


def training_summary(metrics: list[dict[str, Any]], frozen: Iterable[str] = (), steps: int | None = None,
                     skipped: int = 0, first_trained: dict[str, Any] | None = None,
                     refused: dict[str, int] | None = None) -> dict[str, Any]:
    """First and last logged loss, each stage's cost (``stages`` for a greedy run, ``joint_stages`` for a joint
    one; a stage named in ``frozen`` has ``"frozen": True``), the diagnostics' first and last values, the
    cluster's workers and ``diverged`` where the loss ran away (:func:`~downpour.train.divergence.runaway`);
    ``steps``, ``skipped``, ``first_trained``, ``refused``: the run's last step where it skipped steps, None where it
    skipped none, how many a local run skipped, its first trained step and a cluster run's pushes mostly refused
    (:func:`~downpour.train.divergence.recorded`)."""
    if not metrics:
        return {"logged_rows": 0}
    first, last = metrics[0], metrics[-1]
    rows = _stage_rows(metrics)
    joint = all(len(v) == len(metrics) for v in rows.values())
    stages = [{**s, **({"frozen": True} if s["stage"] in set(frozen) else {})} for s in _ends(rows)]
    return {"logged_rows": len(metrics), "first_step": first.get("step"), "last_step": last.get("step"),
            "first_loss": first.get("loss"), "last_loss": last.get("loss"), "stages": [] if joint else stages,
            # (one stage is the loss itself: nothing to split)
            **({"joint_stages": stages} if joint and len(stages) > 1 else {}),
            "diagnostics": {k: [first[k], last[k]] for k in last if is_metric(k) and k in first},   # (RBM: metric/...)
            "free_energy_gap": any(k.rsplit("/", 1)[-1] == "contrastive_divergence" for k in last),
            "workers": sorted({r["worker"] for r in metrics if "worker" in r}) or None,
            **({"diverged": gone} if (gone := runaway(metrics, steps, skipped, first_trained, refused)) else {})}


def where_training_is(path: Path, metrics: list[dict[str, Any]]) -> str:
    """Where a run the analysis cannot measure (no image input: teacher-student) keeps its training, and whether it
    diverged, so a run that ran away 2.047 -> 3.3e+31 is not pointed to its metrics without a word."""
    gone = runaway(metrics, *recorded(path))
    return ("Its training is in metrics.jsonl" + (" and staleness.json" if (path / "staleness.json").is_file() else "")
            + (f"; {diverged_words(gone)}" if gone else ""))


def with_its_training(err: BaseException, path: Path, metrics: Callable[[], list[dict[str, Any]]]) -> BaseException:
    """A :class:`~downpour.errors.DeadLayer` with where the run keeps its training and whether it diverged (``metrics``:
    its metrics.jsonl's rows); any other error as it is. cnn-digits on 3 simulated workers at cluster.lr = 5 runs away
    to 5e19 and skips its last 220 steps: without this its analysis would say only that no unit of 'fc' could be chosen
    and to set analysis.layer to another layer."""
    return DataError(f"{err}. {where_training_is(path, metrics())}") if isinstance(err, DeadLayer) else err


def stage_losses(metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each stage's own cost, first and last logged, when a greedy run trained its stages in turn.

    A greedy run's ``loss`` is stage 1's cost at first and stage 2's at the end, different sums
    (245.8 -> 283.3 read as divergence where each stage's cost fell), taken over the rows that logged it.
    Empty when no row names a stage, or when every stage is in every row (joint training: ``loss`` compares
    like with like, and :func:`training_summary` gives each stage's share as ``joint_stages``)."""
    return training_summary(metrics).get("stages", [])


def frozen_stages(model: nn.Module) -> list[str]:
    """The stages (``stageN``, as the metrics name them) of a stacked model with no parameter to train: cat-demo's
    stage 1 under ``model.first_layer = "gabor"`` or ``"random"``, whose cost in a joint run only moves with the
    batches (300 joint steps: stage1 5453 -> 5276 against stage2 319 -> 117, the logged loss 5773 -> 5392)."""
    return [f"stage{i}" for i, stage in enumerate(getattr(model, "stages", ()), start=1)
            if not any(p.requires_grad for p in stage.parameters())]


def _stage_rows(metrics: list[dict[str, Any]]) -> dict[str, list[tuple[Any, float]]]:
    """stage -> [(step, the stage's cost)] over the rows that logged it."""
    rows: dict[str, list[tuple[Any, float]]] = {}
    for r in metrics:
        sums: dict[str, float] = {}
        for k, v in r.items():
            stage, sep, _ = k.partition("/")
            if sep and stage.startswith("stage") and not is_metric(k) and isinstance(v, (int, float)):
                sums[stage] = sums.get(stage, 0.0) + v
        for stage, v in sums.items():
            rows.setdefault(stage, []).append((r.get("step"), v))
    return rows


def _ends(rows: dict[str, list[tuple[Any, float]]]) -> list[dict[str, Any]]:
    return [{"stage": stage, "first_step": v[0][0], "last_step": v[-1][0], "first_loss": v[0][1],
             "last_loss": v[-1][1], "logged_rows": len(v)} for stage, v in sorted(rows.items(), key=_stage_order)]


def _stage_order(item: tuple[str, Any]) -> tuple[int, str]:
    digits = item[0].removeprefix("stage")
    return (int(digits), "") if digits.isdigit() else (1 << 30, item[0])
