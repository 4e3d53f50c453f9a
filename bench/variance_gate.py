"""Variance gate vs the ungated layer: wall time and FLOPs on flat and busy images, and a linear probe.

    .venv/bin/python bench/variance_gate.py [--threshold 1e-3] [--repeats 15] [--reps 5] [--quick]

Images (scikit-image built-ins, grey, in [0, 1]): ``text``, ``page``, ``moon`` (large flat areas),
``padded`` (the camera man's 96x96 face crop in a flat 192x192 canvas with faint noise), and
``grass`` (busy: almost nothing flat). Each runs through two first layers, one image at a time
(inference): ``untied`` (the cat network's layer: 8 maps of 8x8 filters at every position, on the
image's central 192x192 crop), ``conv`` (32 maps of 8x8 shared filters, full resolution) and
``tiled`` (the main job's first layer: 8 maps of 8x8 filters in 2x2 banks, ``tile = 2``, on the
192x192 crop); ``--layers`` picks some.

The protocol of ``bench/_protocol.py``: every (image, layer) row is measured once per repetition
(``--reps``, best of ``--repeats`` interleaved calls of the layer, the gate and the exact gate), the
rows interleaved, so a busy stretch of a shared machine hits them alike. One JSON line per (image,
layer): the medians over the repetitions of ms_ungated, ms_gated and speedup (the per-repetition
ratio) of the gate as a user gets it (``mode="auto"``: it may run the plain layer where gating would
not pay), ``speedup_range`` (min, max), ``reps``, ``load_1min`` (range of the 1-minute load average
while the row ran), flops_ratio ((filter FLOPs done + gate test) / ungated), ``layer``; what auto
chose: ``path`` ('gated', 'bands', 'ungated'; 'dense' never, auto runs it plain) and
``estimated_open`` (path 'ungated': the open-tile fraction it decided on); and the same for
``mode="exact"`` (zeros in every closed tile, whichever path): ``speedup_exact``, ``path_exact``,
``flat_fraction`` (positions it skipped), ``break_even_flat`` (the flat fraction above which the cost
model measured on the warm-up call prefers the gated path to the dense one; None when no model was
needed: no tile open, or every tile open) and ``band_rows`` (the fraction of output rows in tile-rows
with an open tile: what the band path computes). Then one ``probe`` line: a linear probe (logistic
regression) on pooled features of scikit-learn's digits, each 8x8 digit scaled to 16x16 and pasted
near the centre (jitter +-2 px) of a 48x48 canvas with faint noise, with exactly gated vs ungated
features of the same fixed random untied layer; accuracy_gated - accuracy_ungated is the figure.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from skimage import color, data, transform  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from _protocol import at_least_1, interleave, reps_and_threads, spread  # noqa: E402

from downpour.layers.gating import VarianceGate  # noqa: E402
from downpour.layers.locally_connected import LocallyConnected2d  # noqa: E402


def _grey(img: np.ndarray) -> np.ndarray:
    if img.ndim == 3:
        img = color.rgb2gray(img[..., :3])
    img = img.astype(np.float64)
    return img / 255.0 if img.max() > 1 else img


def images(rng: np.random.Generator) -> dict[str, np.ndarray]:
    camera = _grey(data.camera())
    canvas = np.full((192, 192), 0.5) + rng.normal(0, 0.005, (192, 192))
    canvas[48:144, 48:144] = transform.resize(camera[60:280, 150:370], (96, 96), anti_aliasing=True)
    return {"text": _grey(data.text()), "page": _grey(data.page()), "moon": _grey(data.moon()),
            "padded": canvas, "grass": _grey(data.grass())}


def fit(img: np.ndarray, side: int) -> np.ndarray:
    """The central side x side crop (whole rows/columns where the image is smaller): resizing would
    shrink the flat areas' share of the fields, which is what the gate is about."""
    top, left = max(0, (img.shape[0] - side) // 2), max(0, (img.shape[1] - side) // 2)
    return img[top:top + side, left:left + side]


def timed(fns: tuple, x: torch.Tensor, repeats: int) -> list[float]:
    """Best of ``repeats`` calls of each fn, in ms, calls interleaved so that load from other
    processes hits every fn alike; the minimum is what the code costs, the rest is that load."""
    for fn in fns:
        fn(x)  # warm-up: allocator, kernels, the gate's filter cache
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn(x)
            best[i] = min(best[i], time.perf_counter() - t0)
    return [1e3 * t for t in best]


class Case:
    """One (image, layer) row: the layer, the gate around it and the image as a (1, 1, H, W) batch."""

    def __init__(self, name: str, layer_name: str, layer: torch.nn.Module, img: np.ndarray, threshold: float,
                 block: int):
        self.name, self.layer_name, self.layer, self.threshold, self.block = name, layer_name, layer, threshold, block
        self.size = list(img.shape)
        self.x = torch.tensor(img, dtype=torch.float32)[None, None]
        self.gate = VarianceGate(layer, threshold, block)                   # the default, mode 'auto'
        self.exact = VarianceGate(layer, threshold, block, mode="exact")    # zeros in every closed tile

    def run(self, repeats: int) -> dict[str, float]:
        """One repetition of the protocol: best of ``repeats`` interleaved calls of each."""
        with torch.no_grad():
            ms_full, ms_gate, ms_exact = timed((self.layer, self.gate, self.exact), self.x, repeats)
        return {"ms_ungated": ms_full, "ms_gated": ms_gate, "speedup": ms_full / ms_gate,
                "ms_exact": ms_exact, "speedup_exact": ms_full / ms_exact}

    def row(self, reps: list[dict[str, dict]], key: str) -> dict:
        """The row over the repetitions: medians, the speedup's range, the load while this case ran."""
        runs = [rep[key] for rep in reps]
        s, e = self.gate.last, self.exact.last
        loads = [r[k] for r in runs for k in ("load_before", "load_after")]
        return {"bench": "variance_gate", "image": self.name, "layer": self.layer_name, "size": self.size,
                "threshold": self.threshold, "block": self.block, "flat_fraction": round(e.skipped_fraction, 4),
                "ms_ungated": spread([r["ms_ungated"] for r in runs])["median"],
                "ms_gated": spread([r["ms_gated"] for r in runs])["median"],
                "speedup": spread([r["speedup"] for r in runs])["median"],
                "speedup_range": spread([r["speedup"] for r in runs])["range"], "reps": len(runs),
                "speedup_exact": spread([r["speedup_exact"] for r in runs])["median"], "path_exact": e.path,
                "load_1min": [min(loads), max(loads)], "flops_ratio": round(s.flops_ratio, 4),
                "path": s.path, "break_even_flat": None if e.break_even is None else round(e.break_even, 3),
                "band_rows": None if e.band_fraction is None else round(e.band_fraction, 3),
                "estimated_open": None if s.estimated_open is None else round(s.estimated_open, 3)}


def digit_canvases(rng: np.random.Generator) -> tuple[torch.Tensor, np.ndarray]:
    """(N, 1, 48, 48) digits near the centre (jittered by up to 2 pixels) of a flat canvas with faint noise."""
    digits = load_digits()
    n = len(digits.target)
    x = np.zeros((n, 1, 48, 48)) + rng.normal(0, 0.005, (n, 1, 48, 48))
    big = np.kron(digits.images / 16.0, np.ones((2, 2)))  # (N, 16, 16)
    for t, (r, c) in enumerate(rng.integers(14, 19, (n, 2))):
        x[t, 0, r:r + 16, c:c + 16] += big[t]
    return torch.tensor(x, dtype=torch.float32), digits.target


def probe(threshold: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    x, y = digit_canvases(rng)
    torch.manual_seed(seed)
    layer = LocallyConnected2d(1, 8, 48, 6, stride=1)  # fixed random untied filters (Saxe et al. 2011)
    gate = VarianceGate(layer, threshold, mode="exact")   # zeros in every flat tile: what gating costs in accuracy

    def feats(fn) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        with torch.no_grad():
            h = torch.cat([F.relu(fn(x[i:i + 1])) for i in range(len(x))])   # (N, 8, 43, 43), one image at a time
        ms = 1e3 * (time.perf_counter() - t0) / len(x)
        return F.avg_pool2d(h, 4).flatten(1).numpy(), ms                        # (N, 8*10*10)

    f_full, ms_full = feats(layer)
    f_gate, ms_gate = feats(gate)
    with torch.no_grad():
        gate(x)  # the whole set as one batch, for its statistics
    skipped, flops_ratio = gate.last.skipped_fraction, gate.last.flops_ratio
    idx_tr, idx_te = train_test_split(np.arange(len(y)), test_size=0.3, random_state=seed, stratify=y)
    acc = {}
    for key, f in (("ungated", f_full), ("gated", f_gate)):
        clf = LogisticRegression(max_iter=3000, C=10.0).fit(f[idx_tr], y[idx_tr])
        acc[key] = float(clf.score(f[idx_te], y[idx_te]))
    return {"bench": "variance_gate", "image": "probe:digits-on-canvas", "layer": "untied", "threshold": threshold,
            "flat_fraction": round(skipped, 4), "flops_ratio": round(flops_ratio, 4), "accuracy_ungated": round(acc["ungated"], 4),
            "accuracy_gated": round(acc["gated"], 4),
            "accuracy_change_points": round(100 * (acc["gated"] - acc["ungated"]), 2),
            "ms_per_image_ungated": round(ms_full, 3), "ms_per_image_gated": round(ms_gate, 3),
            "speedup": round(ms_full / ms_gate, 3)}


LAYERS = ("untied", "conv", "tiled")


def main(argv: list[str] | None = None) -> None:
    ap = reps_and_threads(__doc__.split("\n")[0])   # 1 thread: steadier timings on a shared machine
    ap.add_argument("--threshold", type=float, default=1e-3, help="variance below which a field is flat")
    ap.add_argument("--repeats", type=at_least_1, default=15, help="calls per row and repetition (the best is kept)")
    ap.add_argument("--block", type=at_least_1, default=8, help="side of the output tiles the gate decides together")
    ap.add_argument("--layers", nargs="+", choices=LAYERS, default=list(LAYERS), help="which first layers")
    ap.add_argument("--quick", action="store_true", help="two images, no probe (a smoke test)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    imgs = images(rng)
    if args.quick:
        imgs = {k: imgs[k] for k in ("padded", "grass")}
    cases = {}
    for name, img in imgs.items():
        torch.manual_seed(args.seed)
        small = fit(img, 192)
        layers = {"untied": (lambda: LocallyConnected2d(1, 8, small.shape, 8), small),
                  "conv": (lambda: torch.nn.Conv2d(1, 32, 8, bias=False), img),
                  "tiled": (lambda: LocallyConnected2d(1, 8, small.shape, 8, tile=2), small)}
        for layer in args.layers:
            make, x = layers[layer]
            cases[f"{name}/{layer}"] = Case(name, layer, make(), x, args.threshold, args.block)
    # the protocol (bench/_protocol.py): every row once per repetition, the rows interleaved, so a busy
    # stretch of the machine hits them alike; a row is the median over the repetitions, with its range
    reps = interleave({k: (lambda r, c=c: c.run(args.repeats)) for k, c in cases.items()}, args.reps)
    for key, case in cases.items():
        print(json.dumps(case.row(reps, key)), flush=True)
    if not args.quick:
        print(json.dumps(probe(args.threshold, args.seed)), flush=True)


if __name__ == "__main__":
    main()
