"""Start-up of the main job's local run: the data build's whitening, and what building the Adam optimiser costs.

    .venv/bin/python bench/start_up.py [--reps 5] [--threads 2]

``downpour train`` builds its data twice (the run, then its no-faces twin, ``data.train_faces = 0``). The
photographs and lfw are decoded once per process already (``builtin._skimage_image`` and ``builtin._lfw`` are
cached), so the twin pays only its own crops and its own fit: its spectral whitening is fitted on a set
without the faces, a different spectrum, and shares nothing with the run's bit for bit. ``fit_transform``
keeps the fit's chunks (up to ``spectral.KEEP_BYTES``) and only scales them; the old way (``Preprocess.fit`` before
2026-12-04) whitens the training set twice: once in ``SpectralWhitener.fit`` for the set's std, then again in
``transform``. Rows, each against the old way in the same run, interleaved (bench/_protocol.py):

- ``preprocess``: ``Preprocess.fit`` on the main job's shuffled crops (2,180 of 32x32), ``fit_transform``
  against ``fit(x).transform(x)``;
- ``build``: ``build_dataset`` of the run and of its twin (their decoding cached by a first build), with
  ``fit_transform`` put back to fit-then-transform for the baseline.

Both ways' tensors are first checked equal, bit for bit. ``ratio`` < 1: the new way is faster.
Then, once, each in a fresh interpreter: ``import torch._dynamo`` after ``import torch``, and
``torch.optim.Adam`` built after it and without it: the 3 s ``make_optimizer`` took in the profile is that
import (torch's ``Optimizer`` methods are wrapped by ``torch._disable_dynamo``, which imports it on first call,
and every ``step`` imports it too). ``make_optimizer`` builds ``train/optimisers.py``'s
instead, which skip it (bench/optimiser_start_up.py times the two). One JSON line per row.
"""
from __future__ import annotations

import json
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from _main_job import main_data  # noqa: E402
from _protocol import interleave, ratio, reps_and_threads, summary, thread_settings  # noqa: E402
from downpour.data.build import build_dataset  # noqa: E402
from downpour.data.preprocess import Preprocess  # noqa: E402
from downpour.data.spectral import SpectralWhitener  # noqa: E402

FAST = SpectralWhitener.fit_transform


def twice(self: SpectralWhitener, x: torch.Tensor) -> torch.Tensor:
    """The old way: whiten the set in the fit (for its std), then again in the transform."""
    return self.fit(x).transform(x)


@contextmanager
def whitening(way) -> Iterator[None]:
    """``SpectralWhitener.fit_transform`` is ``way`` inside (the new one, ``FAST``, put back after)."""
    SpectralWhitener.fit_transform = way
    try:
        yield
    finally:
        SpectralWhitener.fit_transform = FAST


def fit_with(way, x, d):
    with whitening(way):
        return Preprocess.fit(x, d.normalize, d.whiten, d.zca_eps, d.spectral_strength)[1]


def build_with(way, cfgs, seed):
    with whitening(way):
        return [build_dataset(d, seed).x for d in cfgs]


def in_fresh_python(code: str) -> float:
    """Seconds ``code`` prints, run in a new interpreter after ``import torch``."""
    out = subprocess.run([sys.executable, "-c", "import time, torch\n" + code], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def main(argv: list[str] | None = None) -> None:
    args = reps_and_threads(__doc__.split("\n")[0], threads=2).parse_args(argv)
    d, seed, cfgs, x = main_data(args.threads)
    assert torch.equal(fit_with(FAST, x, d), fit_with(twice, x, d)), "fit_transform changed the whitened set"
    assert all(torch.equal(a, b) for a, b in zip(build_with(FAST, cfgs, seed), build_with(twice, cfgs, seed))), \
        "the run's or its twin's data changed"
    rows = {"preprocess": lambda way: fit_with(way, x, d), "build": lambda way: build_with(way, cfgs, seed)}
    for name, run in rows.items():
        reps = interleave({"fit_transform": lambda r, run=run: run(FAST) is None or {},
                           "fit_then_transform": lambda r, run=run: run(twice) is None or {}}, args.reps)
        print(json.dumps({"row": name, "samples": len(x), **thread_settings(), **summary(reps, "wall_s"),
                          "cpu_ratio": ratio(reps, "driver_cpu_s", "fit_transform", "fit_then_transform"),
                          "wall_ratio": ratio(reps, "wall_s", "fit_transform", "fit_then_transform")}), flush=True)
    adam = "m = torch.nn.Linear(10, 10)\nt = time.perf_counter()\ntorch.optim.Adam(m.parameters(), lr=1e-3)\n"
    print(json.dumps({"row": "optimizer", "fresh_python": True,
                      "import_dynamo_s": round(in_fresh_python("t = time.perf_counter()\nimport torch._dynamo\n"
                                                               "print(time.perf_counter() - t)"), 3),
                      "adam_first_s": round(in_fresh_python(adam + "print(time.perf_counter() - t)"), 3),
                      "adam_after_dynamo_s": round(in_fresh_python("import torch._dynamo\n" + adam +
                                                                   "print(time.perf_counter() - t)"), 5)}), flush=True)


if __name__ == "__main__":
    main()
