"""The spectral whitening's fit taking each chunk's spectrum once against twice (as before 2026-12-06), same run.

    .venv/bin/python bench/spectral_fit.py [--reps 5] [--threads 2]

``SpectralWhitener._fit`` makes two passes over the set: the mean power spectrum, then the whitened set's std. The
first takes every chunk's reflect-padded float64 ``rfft2``, and the second whitens the spectra the first took (up to
``spectral.KEEP_BYTES`` of them; the rest are taken again), where before 2026-12-06 it took them all anew. The old
way here is the same code with ``_whitened`` handed no spectrum (it takes it again). Rows, interleaved
(bench/_protocol.py), both ways' tensors first checked equal bit for bit:

- ``preprocess``: ``Preprocess.fit`` on the main job's shuffled crops (2,180 of 32x32, as bench/start_up.py);
- ``build``: ``build_dataset`` of the run and of its no-faces twin (their decoding cached by a first build).

``cpu_ratio`` / ``wall_ratio``: once / twice (< 1: the new way is faster). One JSON line per row.
"""
from __future__ import annotations

import json
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

WHITENED = SpectralWhitener._whitened


@contextmanager
def spectra(reused: bool) -> Iterator[None]:
    """The fit as it is (``reused``), or with every chunk's spectrum taken again in its std pass (the old way)."""
    if not reused:
        SpectralWhitener._whitened = staticmethod(lambda x, gain, spectrum=None: WHITENED(x, gain))
    try:
        yield
    finally:
        SpectralWhitener._whitened = staticmethod(WHITENED)


def main(argv: list[str] | None = None) -> None:
    args = reps_and_threads(__doc__.split("\n")[0], threads=2).parse_args(argv)
    d, seed, cfgs, x = main_data(args.threads)

    def fit(reused: bool) -> list[torch.Tensor]:
        with spectra(reused):
            return [Preprocess.fit(x, d.normalize, d.whiten, d.zca_eps, d.spectral_strength)[1]]

    def build(reused: bool) -> list[torch.Tensor]:
        with spectra(reused):
            return [build_dataset(c, seed).x for c in cfgs]

    for name, run in {"preprocess": fit, "build": build}.items():
        assert all(torch.equal(a, b) for a, b in zip(run(True), run(False))), f"{name}: the whitened set changed"
        reps = interleave({"once": lambda r, run=run: run(True) and {},
                           "twice": lambda r, run=run: run(False) and {}}, args.reps)
        print(json.dumps({"row": name, "samples": len(x), **thread_settings(), **summary(reps, "wall_s"),
                          "cpu_ratio": ratio(reps, "driver_cpu_s", "once", "twice"),
                          "wall_ratio": ratio(reps, "wall_s", "once", "twice")}), flush=True)


if __name__ == "__main__":
    main()
