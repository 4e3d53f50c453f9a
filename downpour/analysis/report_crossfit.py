"""``crossfit.html``: the page ``downpour crossfit`` writes beside ``crossfit.json``, the pooled face test over every
fold's held-out faces and each fold's learned unit (the run's own page is :mod:`downpour.analysis.report`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from downpour._names import plural
from downpour.analysis.crossfit import crossfit_record
from downpour.analysis.report_controls import controls as _controls
from downpour.analysis.report_parts import esc, num, page, table
from downpour.train.model_file import replace_text


def _headroom_cells(h: dict[str, Any] | None) -> list[str]:
    """The per-fold table's peeking columns (crossfit.json files written before them have none)."""
    if not h:
        return ["-", "-", "-"]
    return [f"{h['chosen_worst']:.3f}", f"{h['best_worst']:.3f} (unit {h['best_unit']})", str(h["best_rank"])]


def _folds_seconds(c: dict[str, Any]) -> float:
    """The fold runs' own training time, whichever command trained them (``training_seconds`` is the last
    command's: 0 s on a cross-fit run again over finished folds)."""
    return sum(r.get("seconds") or 0.0 for r in [*c["runs"], *c.get("no_faces_runs", [])])


def _as_set(override: str | list[Any]) -> str:
    """One of crossfit.json's overrides as ``--set`` writes it: ``train.steps=10``, not ``['train.steps', 10]``."""
    return override if isinstance(override, str) else "=".join(v if isinstance(v, str) else json.dumps(v) for v in override)


# what the cross-fit page's opening line says in words from the resolved config, not among the overrides: the seed,
# the layer, the threads of a fold and its no-faces twin (a crossfit.json written before 2026-12-07 lists the last
# two among its overrides, as the cross-fit set them, though nobody typed them)
SAID_IN_WORDS = {"seed", "analysis.layer", "train.threads", "analysis.no_faces_twin"}


def _typed_overrides(overrides: list[str | list[Any]]) -> str:
    """crossfit.json's ``overrides`` as ``--set`` writes them, each key once (its last value: what the folds ran
    with), less those the page says in words (:data:`SAID_IN_WORDS`); "" where none is left."""
    last: dict[str, str] = {}
    for override in overrides:
        key = (override.split("=", 1)[0] if isinstance(override, str) else override[0]).strip()
        last.pop(key, None)     # (moved to the end: the order the command line set them in)
        last[key] = _as_set(override)
    return ", ".join(said for key, said in last.items() if key not in SAID_IN_WORDS)


def write_crossfit_report(folder: str | Path) -> Path:
    """``crossfit.html`` beside ``crossfit.json`` (``downpour crossfit``): the pooled face test and each fold's unit."""
    folder = Path(folder)
    c = json.loads(crossfit_record(folder).read_text())
    setup = {k: c.get(k) for k in ("negatives", "faces", "representation", "bootstrap", "select", "selection", "choice")}
    test = _controls({"face_neuron": {"controls": c["rows"], "controls_verdict": c["verdict"],
                                      "controls_by_layer": c["by_layer"], "controls_setup": setup}})
    labels = [setup["negatives"][name]["label"] for name in c["per_fold"][0]["learned_auc"]]
    folds = [[f["fold"], f["test_faces"], f["learned_unit"], *(f"{v:.3f}" for v in f["learned_auc"].values()),
              *_headroom_cells(f.get("headroom"))] for f in c["per_fold"]]
    typed, threads = _typed_overrides(c["overrides"]), c["resolved"].get("train", {}).get("threads")
    a_fold = f", {plural(threads, 'thread')} a fold" if threads else ""   # (1 when --jobs takes every core)
    body = (f"<h1>downpour cross-fitted face test: {esc(folder.name)}</h1>"
            f"<p>Config <b>{esc(c['config'])}</b>{f' with {esc(typed)}' if typed else ''}, seed "
            f"{esc(c['resolved'].get('seed'))}, layer <code>{esc(c['layer'])}</code>"
            f"{a_fold}: {c['folds']} runs "
            f"(<code>fold-I/</code>), run I trained without fold I of lfw_subset"
            + (f", and beside each the same run without lfw's training faces (<code>fold-I/no-faces/</code>, "
               f"<code>data.train_faces = 0</code>), scored as &ldquo;the no-faces network&rdquo;"
               if c.get("control") == "no-faces" else "")
            + f" ({num(_folds_seconds(c))} s of training in all, {num(c['training_seconds'])} s by the command that "
              "wrote this page: a fold finished before is kept).</p>"
            + (f"<p>The command that repeats it: <code>{esc(c['command'])}</code></p>" if c.get("command") else "")
            + f'<h2 id="face-test">The face test on all {c["faces"]} faces</h2>{test}'
            f'<h2 id="folds">Each fold\'s learned unit</h2><p>Its AUC on its own fold\'s faces against each negative '
            f"set: how much one training differs from the next. The last three columns peek at the test, as a "
            f"diagnostic and never in the verdict: the chosen unit's worst low-level control, the best worst control "
            f"any unit of that network reaches, and where the choice on training images ranked that unit. A network "
            f"whose best unit is no better has no face unit to find; one whose best unit ranked far down had one "
            f"that the choice passed over.</p>"
            + table(folds, ["fold", "test faces", "unit", *labels, "chosen: worst control",
                             "best unit: worst control (peeking)", "its rank in the choice"], "crossfit-folds"))
    out = folder / "crossfit.html"
    replace_text(out, page(f"downpour crossfit: {folder.name}", body))
    return out
