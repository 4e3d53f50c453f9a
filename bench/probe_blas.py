"""An analysis's linear probes with scipy's own OpenBLAS on one thread (downpour/analysis/blas.py) against it on its
default count, as it ran before 2026-12-06, in the same run.

    .venv/bin/python bench/probe_blas.py                 # 5 repetitions, torch on 1 thread

``analyze_run`` limits BLAS to one thread (threadpoolctl), but scipy's OpenBLAS, under every logistic-regression
probe's L-BFGS-B, was loaded after the limit (scikit-learn is imported on the first probe) and so kept its default
count (the cores). Here both are loaded first; ``before`` limits every BLAS to 1 and gives scipy's its default count
back (what the analysis ran), ``after`` is :func:`~downpour.analysis.blas.one_blas_thread`; interleaved
(bench/_protocol.py). Each times the main job's probe rows as ``probe_table`` fits them: 5-fold cross-validated
logistic regression on lfw's input pixels and on the analysis layer's codes of a freshly initialised main-job
network. ``speedup``: before / after of the wall seconds (and ``cpu_speedup`` of this process's CPU seconds);
``same_scores``: the fold accuracies equal bit for bit. One JSON line.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from threadpoolctl import ThreadpoolController, threadpool_limits  # noqa: E402

from _main_job import main_model  # noqa: E402
from _protocol import emit, interleave, ratio, reps_and_threads, summary  # noqa: E402
from downpour.analysis.blas import one_blas_thread  # noqa: E402
from downpour.analysis.labelled import load_labelled  # noqa: E402
from downpour.analysis.probe import cv_probe  # noqa: E402
from downpour.analysis.units import unit_responses  # noqa: E402


def main(argv: list[str] | None = None) -> list[dict]:
    args = reps_and_threads(__doc__.split("\n")[0]).parse_args(argv)
    cfg, model = main_model(args.threads)
    data = load_labelled("lfw", model.input_shape)
    x, y = data.x, data.y
    layer = cfg.analysis.layer
    features = {"input": x.reshape(len(y), -1).numpy(), layer: unit_responses(model, x, layer)}
    import scipy.linalg  # noqa: F401  (its OpenBLAS loaded, at its default count)
    blas = ThreadpoolController().select(user_api="blas")
    scipy_blas = blas.select(filepath=[lib.filepath for lib in blas.lib_controllers if "scipy.libs" in lib.filepath])
    if not scipy_blas.lib_controllers:
        raise SystemExit(f"bench/probe_blas.py: scipy here has no BLAS of its own (none under scipy.libs: "
                         f"{[lib.filepath for lib in blas.lib_controllers]}), so there is no 'before' to time")
    default = max(lib.num_threads for lib in scipy_blas.lib_controllers)
    scores: dict[str, list] = {}

    def probes(name: str) -> dict[str, Any]:
        scores[name] = [cv_probe(f, y)["folds"] for f in features.values()]
        return {}

    def before(_r: int) -> dict[str, Any]:
        with threadpool_limits(limits=1, user_api="blas"), scipy_blas.limit(limits=default):
            return probes("before")

    def after(_r: int) -> dict[str, Any]:
        with one_blas_thread():
            return probes("after")

    before(0), after(0)         # untimed: a process's first fits pay one-off costs
    reps = interleave({"before": before, "after": after}, reps=args.reps)
    row = {"bench": "probe_blas", "samples": len(y), "dims": {k: int(f.shape[1]) for k, f in features.items()},
           "scipy_blas_default_threads": default, **summary(reps, "wall_s"),
           "speedup": ratio(reps, "wall_s", "before", "after"),
           "cpu_speedup": ratio(reps, "driver_cpu_s", "before", "after"),
           "same_scores": scores["before"] == scores["after"]}
    return [emit(row, [])]


if __name__ == "__main__":
    main()
