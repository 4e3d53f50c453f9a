"""The linear probes' reading of units: every probed layer from one pass of the network against a pass per layer.

    .venv/bin/python bench/probe_layers.py                   # 5 interleaved repetitions, 1 thread
    .venv/bin/python bench/probe_layers.py --reps 9 --threads 2

``downpour analyze`` probes the analysed network's layers on each labelled set of ``analysis.probes`` (the main job:
lfw and digits; its probed layers stage1, stage2 and stage2/codes, ``probe.default_probe_layers``), one pass
reading them all (``units.layer_responses``, as the face test does); the old way (``probe.probe_table`` before
2026-12-06) reads each layer with its own pass (``unit_responses``): stage 1 three times and stage 2 twice per set. Two
rows
per labelled set, each timed against the old way in the same run, interleaved (bench/_protocol.py):

- ``read``: the reads alone: ``one_pass`` against ``per_layer``.
- ``probe_table``: the whole probe table as ``analyze`` makes it (its logistic-regression fits included), the old way
  put back for the baseline by replacing ``probe.layer_responses`` with a loop of ``unit_responses``. Its output is
  checked equal to the baseline's (JSON, bit for bit) before anything is timed.

The network is the main job's, freshly initialised (the time does not depend on what it learned); the images are
prepared without the run's whitening (the same work). ``ratio`` < 1: the one pass is cheaper. One JSON line per row.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from _main_job import flags, main_model  # noqa: E402
from _reads import per_layer, reading  # noqa: E402
from _protocol import emit, interleave, ratio, summary, thread_settings  # noqa: E402
from downpour.analysis import probe as pr  # noqa: E402
from downpour.analysis.blas import one_blas_thread  # noqa: E402
from downpour.analysis.labelled import load_labelled  # noqa: E402
from downpour.analysis.probe import default_probe_layers  # noqa: E402
from downpour.analysis.units import layer_responses  # noqa: E402


def main(argv: list[str] | None = None) -> list[dict]:
    args = flags(__doc__.split("\n")[0]).parse_args(argv)
    cfg, model = main_model(args.threads)
    a = cfg.analysis
    layers = default_probe_layers(model, a.layer)
    out = []
    for name in a.probes:
        data = load_labelled(name, model.input_shape)
        x = data.x[:a.probe_samples]        # (as many images as the table reads)

        def table(way: Any) -> dict[str, Any]:
            with reading(pr, way):
                return pr.probe_table(model, data, layers=layers, folds=a.probe_folds, seed=cfg.seed,
                                      max_samples=a.probe_samples)

        fast, slow = layer_responses(model, x, layers), per_layer(model, x, layers)
        if any(not np.array_equal(fast[k], slow[k]) for k in layers):
            raise SystemExit(f"{name}: layer_responses differs from unit_responses")
        with one_blas_thread():         # (as analyze_run fits its probes)
            if json.dumps(table(layer_responses), sort_keys=True) != json.dumps(table(per_layer), sort_keys=True):
                raise SystemExit(f"{name}: the one-pass read changed the probe table")
            rows = (("read", lambda way: {"values": sum(r.size for r in way(model, x, layers).values())}),
                    ("probe_table", lambda way: {"rows": len(table(way)["rows"])}))
            for row_name, run in rows:
                reps = interleave({"one_pass": lambda r: run(layer_responses), "per_layer": lambda r: run(per_layer)},
                                  reps=args.reps)
                emit({"bench": "probe_layers", "set": name, "row": row_name, "images": int(len(data.y)),
                      "layers": layers, **summary(reps, "wall_s"),       # (with driver_cpu_s: this process's CPU)
                      "ratio": ratio(reps, "wall_s", "one_pass", "per_layer"),
                      "cpu_ratio": ratio(reps, "driver_cpu_s", "one_pass", "per_layer"),
                      "threads": thread_settings()}, out)
    return out


if __name__ == "__main__":
    main()
