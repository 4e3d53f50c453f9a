"""Work the analysis does once that it did twice before 2026-12-05, each timed against that way in the same run.

    .venv/bin/python bench/analysis_repeats.py                          # 5 interleaved repetitions
    .venv/bin/python bench/analysis_repeats.py --reps 7 --run runs/main-...   # and the whole analysis of a run
    .venv/bin/python bench/analysis_repeats.py --reps 1 --images 3      # a quick check that it runs

Two repeats, both removed with the same numbers, bit for bit:

``downpour analyze`` sweeps the pictured unit over 83 warps (47 before 2026-12-05) (scale, both shifts, rotation) of
the concept's held-out images and of the others (``invariance``), then every unit tied with it, it first
(``invariance.tied``), over the same warps of the same images. The two sweeps share
:class:`~downpour.analysis.passes.Passes` (168 passes for both, against 344 the old way, over 83 warps: the rows'
``passes``; 96 against 200 over 47; the disc's unturned images are the rotation's 0-degree pass); the old way, each
sweep making every pass itself (1 + 4 + 2 x 47 = 99: the unwarped negatives once per curve), has the tied sweep repeat
the first's. Rows,
each timed against the old way (``Passes(reuse=False)``) in the same run, interleaved (bench/_protocol.py). And the
accuracy table's probe on raw pixels: each of its 50 splits asked ``Pipeline.score`` for the accuracy, which computed
the decision function the AUC then computed again; ``selectivity._probe_figures`` reads both from one decision. Rows:

- ``sweeps``: the two sweeps as ``analyze`` makes them, on lfw's held-out 30 faces and 30 non-faces at the main job's
  32x32, through the main job's network freshly initialised, ``--tied`` units in the tied set (the main job's run:
  1). Both ways' results are checked equal (JSON, bit for bit) first.
- ``probe_figures``: the probe's accuracy and AUC on both parts of the 50 splits of those 60 images (the fits made
  before, as the probe memoises them), against ``score`` and ``decision_function``; checked equal first.
- ``analyze`` (with ``--run RUN``, a finished run of the main job): ``analyze_run`` in this process on a fresh copy of
  the run each time, both old ways put back (``run.Passes``, ``selectivity._probe_figures``); the two analysis.json
  are checked equal but for their ``seconds`` first.

``ratio``: new / old, < 1 faster. Prints one JSON line per row.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _main_job import flags, main_model  # noqa: E402
from _protocol import at_least, at_least_1, emit, interleave, ratio, summary, thread_settings  # noqa: E402
from downpour.analysis import baselines, selectivity  # noqa: E402
from downpour.analysis import run as analysis_run  # noqa: E402
from downpour.analysis.invariance import invariance_curves, sweep  # noqa: E402
from downpour.analysis.labelled import load_labelled, prepare_images  # noqa: E402
from downpour.analysis.passes import Passes  # noqa: E402


def old_passes(units: Any) -> Passes:
    """The old way, with ``Passes``' signature: every read its own forward pass."""
    return Passes(units, reuse=False)


def old_probe_figures(probe: Any, features: Any, y: Any) -> tuple[float, float]:
    """The old way, with ``_probe_figures``' signature: ``score``, then the decision again for the AUC."""
    return float(probe.score(features, y)), selectivity.test_auc(probe.decision_function(features), y)


NEW = (Passes, selectivity._probe_figures)
OLD = (old_passes, old_probe_figures)


@contextmanager
def analysing_with(ways: Any) -> Iterator[None]:
    """``analyze_run`` makes its sweeps' passes and its probe figures with ``ways`` inside (NEW put back after)."""
    analysis_run.Passes, selectivity._probe_figures = ways
    try:
        yield
    finally:
        analysis_run.Passes, selectivity._probe_figures = NEW


def main(argv: list[str] | None = None) -> list[dict]:
    p = flags(__doc__.split("\n")[0])
    p.add_argument("--tied", type=at_least_1, default=1, help="units in the tied set (the pictured one among them)")
    p.add_argument("--images", type=at_least(2), help="the first IMAGES held-out faces and non-faces only (at least 2: "
                                                      "the probe's stratified splits; default: all 30 of each)")
    args = p.parse_args(argv)
    cfg, model = main_model(args.threads)
    shape, layer, fill = model.input_shape, cfg.analysis.layer, cfg.analysis.invariance_fill
    data = load_labelled("lfw", shape)
    keep = torch.from_numpy(np.concatenate([np.flatnonzero(data.y == k)[:args.images] for k in (1, 0)]))
    labels, raw = data.y[keep.numpy()], data.raw[keep]
    faces = data.pixels[keep][torch.from_numpy(labels == 1)]
    others = data.pixels[keep][torch.from_numpy(labels == 0)]
    tied = list(range(args.tied))
    see = lambda t: prepare_images(t, shape, None)      # noqa: E731  (one function: the sweeps share its passes)

    def sweeps(way: Any) -> dict[str, Any]:
        passes = way([0, *tied])
        one = invariance_curves(model, faces, 0, layer=layer, baseline=0.0, prepare=see, negatives=others, fill=fill,
                                passes=passes)
        more = sweep(model, faces, tied, [1] * len(tied), [0.0] * len(tied), layer=layer, prepare=see,
                     negatives=others, fill=fill, passes=passes)
        return {"result": [one, more], "passes": passes.made}

    y = (labels == 1).astype("int64")
    pixels = baselines.pixels(raw)
    splits = [selectivity.split(y, 0.5, seed) for seed in range(50)]
    probes = [baselines.probe(pixels[select], y[select]) for select, _ in splits]     # fitted once, as memoised

    def figures(way: Any) -> dict[str, Any]:
        return {"figures": [way(probe, pixels[rows], y[rows]) for probe, parts in zip(probes, splits) for rows in parts]}

    def analyze(ways: Any) -> dict[str, Any]:
        with analysing_with(ways), tempfile.TemporaryDirectory() as tmp:
            result = analysis_run.analyze_run(shutil.copytree(args.run, Path(tmp) / "run"))
            return {"result": {k: v for k, v in result.items() if k not in ("seconds", "run")}}

    new, old = sweeps(Passes), sweeps(old_passes)
    if json.dumps(new["result"]) != json.dumps(old["result"]):
        raise SystemExit("sweeps: sharing the passes changed the curves")
    if figures(NEW[1]) != figures(OLD[1]):
        raise SystemExit("probe_figures: one decision changed the probe's accuracy or AUC")
    if args.run and json.dumps(analyze(NEW)) != json.dumps(analyze(OLD)):
        raise SystemExit(f"analyze: the new ways changed {args.run}'s analysis.json")
    rows = (("sweeps", lambda new: {"passes": sweeps(NEW[0] if new else OLD[0])["passes"]}),
            ("probe_figures", lambda new: {"values": len(figures(NEW[1] if new else OLD[1])["figures"])})) \
        + ((("analyze", lambda new: {"keys": len(analyze(NEW if new else OLD)["result"])}),) if args.run else ())
    out = []
    for name, run in rows:
        reps = interleave({"new": lambda r: run(True), "old": lambda r: run(False)}, reps=args.reps)
        row = {"bench": "analysis_repeats", "row": name, "faces": int(len(faces)), "others": int(len(others)),
               "tied": args.tied, "passes": {"new": new["passes"], "old": old["passes"]},
               **summary(reps, "wall_s"), "ratio": ratio(reps, "wall_s", "new", "old"),
               "cpu_ratio": ratio(reps, "driver_cpu_s", "new", "old"), "threads": thread_settings()}
        emit(row, out)
    return out


if __name__ == "__main__":
    main()
