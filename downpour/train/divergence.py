"""Did a finished run's loss run away? The training summary's and the report's word for a run that diverged.

    d = runaway(run.metrics())      # None, or {"first_step", "first_loss", "last_step", "last_loss"}
    d and diverged_words(d)         # "the run diverged: its loss grew from 2.047 at step 50 to 3.303e+31 at step 300"
    runaway(rows, steps=300)        # also a run whose rows stop before its step 300: every step after them skipped
    runaway(rows, steps=6, skipped=5)   # and one most of whose steps were skipped, wherever they fell
    runaway(rows, *recorded(run.path))  # those, its first trained step and refused pushes: runners.train's reading

Every runner skips a step (or rejects a push) whose cost or gradient is not finite, and a run where every one was
fails with :class:`~downpour.errors.Diverged`. A run can also diverge with finite numbers: teacher-student with 3
simulated workers at the preset's rate (0.25 × staleness 2) went 2.047 -> 3.3e+31 in 300 steps, every push finite:
without this check it finishes without a word, its summary a ``final_loss`` of 3.3e+31 beside ``"rejected": {}``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

# the last logged loss this many times the first's (and past this many in size) is a run that diverged: the
# staleness study's own line for a teacher-student cell is a loss past 1e3 from a start near 2. A falling or
# wandering cost never grows so far: an RBM's free-energy gap -2.05 -> 0.25, cat-demo's greedy stages 245.8 -> 283.3.
GROWTH = 1e3
# rows that stop this many steps or more before the run's end are a run that went past finite numbers: a skipped step
# leaves the parameters as they were, so 10 skipped in a row are 10 batches each non-finite on the same parameters (an
# update that blew them up), not a bad batch. Fewer are not said to diverge (the summary's skipped_steps counts them):
# train.log_every = 1 logs a row every step, and one bad batch at the last step is not a run that diverged.
# A run too short for TAIL is said to diverge when its last half (at least 2 steps) was skipped (tail_limit).
TAIL = 10


def tail_limit(steps: int) -> int:
    """How many steps skipped at a run of ``steps``' end say it diverged: :data:`TAIL`, or in a run shorter than
    2 x TAIL its last half (at least 2: one bad last batch is not). A 6-step cell whose steps 2-6 were skipped,
    its summary the first step's loss, is said to diverge (5 skipped, under TAIL, so TAIL alone misses it)."""
    return min(TAIL, max(2, steps // 2))


def _stages(row: dict[str, Any]) -> frozenset[str]:
    """The stages a row logged (``stage1/reconstruction`` -> stage1): a greedy run's rows compare within a stage."""
    return frozenset(k.partition("/")[0] for k in row if k.startswith("stage") and "/" in k)


def runaway(rows: Iterable[dict[str, Any]], steps: int | None = None, skipped: int = 0,
            first: dict[str, Any] | None = None, refused: dict[str, int] | None = None) -> dict[str, Any] | None:
    """The first and last logged loss when the last is not finite, or is over :data:`GROWTH` times the first's size
    (and over GROWTH itself); None otherwise. Rows of a greedy run are compared within each stage's rows (those that
    logged the same stages), the first stage that ran away said: its ``loss`` is a different sum in each stage, and a
    stage 1 that ran away (0.05 -> 1e+9, finite) hands stage 2 an input whose cost is huge from its first row (comparing
    only the last row's stage misses such a run).

    ``steps``: the run's last step, given where the run skipped steps (a non-finite cost or gradient). A run logs a
    row at its last step unless every step since its last row was skipped: rows that stop before ``steps`` are a
    run that blew past finite numbers and skipped the rest (then also ``"steps"``). teacher-student at train.lr = 20,
    300 steps: one row, 1.6e+33 at step 50, 290 steps skipped: its first and last row are that one row, so only
    ``steps`` says it. A shorter tail of skipped steps (:func:`tail_limit`) is not, unless its loss ran away as above.

    ``skipped``: how many of its ``steps`` a local run skipped (model.json's ``skipped_steps``): more than half is a
    run that diverged wherever they fell (then also ``"skipped"``). Skipped steps that share a row with finite ones
    leave no trace in the rows: ufldl-sae, 6 steps, steps 2-6 non-finite, logged one row at step 1 with
    train.log_every = 1 (said, its rows stop) but a row at step 6 with 50 (the studies' rate), which the rows alone
    measure as trained. (A cluster run most of whose pushes were refused is said by ``refused``: a
    push is not a step.)

    ``first``: the run's first trained step alone (model.json's ``first_trained``: step, loss and cost parts), read
    as its first row where it comes before them: a row is the mean of its ``log_every`` steps, and a run shorter than
    that logs one. ufldl-sae at train.lr = 1000 with Adam, 6 steps, logged 2.1e+05 at step 6 alone (its step 1:
    49.65): without ``first`` a study cell (log_every 50, 16-30 steps) that runs away so is measured as trained.

    ``refused``: a cluster run's ``{"refused": N, "of": M}``, where most of its M pushes carried no finite gradient a
    shard accepted (cluster.json's ``refused_pushes``): a run that diverged (then also ``"refused"`` and ``"pushes"``).
    Its rows are the means of the pushes whose cost was finite: ufldl-sae on 2 simulated workers at train.lr = 1e30,
    30 steps, logged 49.78 at step 30 alone, its model's weights past 1e30 (26 of 30 pushes refused): without
    ``refused`` its summary has no ``diverged`` (a study measures it as trained) and its report no word of it."""
    rows = [r for r in rows if isinstance(r.get("loss"), (int, float))]
    if rows and first and isinstance(first.get("loss"), (int, float)) and _before(first, rows[0]):
        rows.insert(0, first)
    if not rows:
        return None
    found = _ran_away(rows, steps, skipped)
    if refused:
        found = found or _span(rows[0], rows[-1])
        found.update(refused=refused["refused"], pushes=refused["of"])
    return found


def _ran_away(rows: list[dict[str, Any]], steps: int | None, skipped: int) -> dict[str, Any] | None:
    last = rows[-1]
    stopped = steps is not None and isinstance(last.get("step"), int) and steps - last["step"] >= tail_limit(steps)
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(_stages(r), []).append(r)
    for group in groups.values():
        start, end = group[0], group[-1]
        a, b = float(start["loss"]), float(end["loss"])
        if (stopped and end is last) or _grew(a, b):
            return {**_span(start, end), **({"steps": steps} if stopped and end is last else {})}
    if steps and 2 * skipped > steps:
        return {**_span(rows[0], last), "steps": steps, "skipped": skipped}
    return None


def _span(start: dict[str, Any], end: dict[str, Any]) -> dict[str, Any]:
    """The first and last row's step and loss, as :func:`runaway` returns them."""
    return {"first_step": start.get("step"), "first_loss": float(start["loss"]), "last_step": end.get("step"),
            "last_loss": float(end["loss"])}


def _grew(a: float, b: float) -> bool:
    """A last loss ``b`` that ran away from a first ``a``: not finite, or over GROWTH times its size and over GROWTH."""
    return not math.isfinite(b) or abs(b) > GROWTH * max(abs(a), 1.0)


def _before(first: dict[str, Any], row: dict[str, Any]) -> bool:
    return isinstance(first.get("step"), int) and isinstance(row.get("step"), int) and first["step"] < row["step"]


def first_trained(step: int, loss: float, parts: dict[str, float]) -> dict[str, Any]:
    """A run's first trained step as a row of its own (:func:`runaway`'s ``first``): its ``step``, ``loss`` and the
    cost parts that name a stage (a greedy run's rows compare within a stage: ``stage1/reconstruction``)."""
    return {"step": step, "loss": float(loss), **{k: float(v) for k, v in parts.items() if k.startswith("stage")}}


def first_entry(first: dict[str, Any] | None) -> dict[str, Any]:
    """model.json's (and a checkpoint's) ``first_trained`` entry for :func:`first_trained`'s ``first``: none where no
    step trained (every runner's, so that :func:`recorded` reads them alike)."""
    return {} if first is None else {"first_trained": first}


def recorded(path: Path) -> tuple[int | None, int, dict[str, Any] | None, dict[str, int] | None]:
    """:func:`runaway`'s ``steps``, ``skipped``, ``first`` and ``refused`` from a finished run's files: its last step
    where it skipped steps (model.json's ``skipped_steps``, a local run's; staleness.json's
    ``rejected["non-finite"]``, a cluster run's), None where it skipped none (or says nothing of it); how many steps
    a local run skipped (0 for a cluster run's); its first trained step (model.json's ``first_trained``; None in one
    saved before 2026-12-06); and a cluster run's pushes most of which were refused (cluster.json's
    ``refused_pushes``, else None).
    ``runners.train`` and the analysis both read them here."""
    def read(name: str) -> dict[str, Any]:
        try:
            got = json.loads((path / name).read_text())
        except (OSError, ValueError):
            return {}
        return got if isinstance(got, dict) else {}
    meta = read("model.json")
    skipped = meta.get("skipped_steps") or (read("staleness.json").get("rejected") or {}).get("non-finite")
    local = meta.get("skipped_steps") if isinstance(meta.get("skipped_steps"), int) else 0
    first = meta.get("first_trained") if isinstance(meta.get("first_trained"), dict) else None
    refused = read("cluster.json").get("refused_pushes")
    refused = refused if isinstance(refused, dict) and {"refused", "of"} <= refused.keys() else None
    return (meta.get("step") if skipped and isinstance(meta.get("step"), int) else None), local, first, refused


def diverged_words(d: dict[str, Any]) -> str:
    """``the run diverged: its loss grew from A at step S to B at step T``; where its rows stopped (``steps``),
    ``the run diverged: every step after step T, to step N, had a non-finite cost or gradient and was skipped ...``.
    A loss that fell far below zero (-2 -> -5000) ``fell``; a NaN one ``went``. A cluster run most of whose pushes
    were refused (``refused``): ``the run diverged: N of its M pushes carried no finite gradient a shard accepted ...``,
    or those words in brackets after the others where its loss ran away too."""
    if "refused" not in d:
        return _words(d)
    pushes = f"{d['refused']} of its {d['pushes']} pushes carried no finite gradient a shard accepted"
    if "steps" in d or _grew(d["first_loss"], d["last_loss"]):
        return f"{_words(d)} ({pushes})"
    # (its rows average the pushes whose cost was finite: not the loss of its model, which the refused ones were of)
    return (f"the run diverged: {pushes} (its logged loss, {d['last_loss']:.4g} at step {d['last_step']}, averages "
            f"only the pushes whose cost was finite)")


def _words(d: dict[str, Any]) -> str:
    if "steps" in d:
        was = (f"from {d['first_loss']:.4g} at step {d['first_step']} to {d['last_loss']:.4g}"
               if d["first_step"] != d["last_step"] else f"{d['last_loss']:.4g}")
        if "skipped" in d:
            return (f"the run diverged: {d['skipped']} of its {d['steps']} steps had a non-finite cost or gradient "
                    f"and were skipped (its logged loss {was} at step {d['last_step']})")
        return (f"the run diverged: every step after step {d['last_step']}, to step {d['steps']}, had a non-finite "
                f"cost or gradient and was skipped (its logged loss {was} at step {d['last_step']})")
    return (f"the run diverged: its loss {_moved(d['first_loss'], d['last_loss'])} from {d['first_loss']:.4g} at step "
            f"{d['first_step']} to {d['last_loss']:.4g} at step {d['last_step']}")


def _moved(a: float, b: float) -> str:
    """Which way the loss ran away: a cost that falls without bound (-2 -> -5000) did not grow."""
    if math.isnan(b):
        return "went"
    return "fell" if b < a else "grew"
