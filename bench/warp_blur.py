"""What the scale warp's blur costs as a matrix product per axis against the padded conv2d it replaced.

    .venv/bin/python bench/warp_blur.py                # 5 interleaved repetitions, 1 thread

A shrink by s blurs first (sigma = (1/s - 1)/2, downpour/analysis/warp.py ``_blur``); under the mean fill on a frame
grown by the kernel's reach, so at 1/32x a 16-pixel image is blurred onto 110x110 by a 95-tap kernel. ``old``
(:func:`conv_blur`, the code at main's 0cb34bef) zero-pads to that frame, pads each axis again by the reach and runs a
conv2d per axis; ``new`` is ``_blur``, one product per axis, a square image's matrix built once for both axes;
``before`` (:func:`two_matrix_blur`, the code at main's 056ec73e) builds the matrix per axis. Per image shape (60 images of uniform noise, seed 0: the
held-out 30 faces and 30 non-faces of a sweep; the cost does not depend on the content) two rows: ``sweep``, the
scale curve's 22 warps of :data:`~downpour.analysis.invariance.DEFAULT_SCALES` under the default fill, and
``smallest``, the 1/32x warp alone. ``ratio``: new / old, ``vs_before``: new / before; ``max_abs_diff``: the largest
difference of new's and old's warped images (float32 rounding; new and before agree bit for bit). Prints one JSON line
a row.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor  # noqa: E402

from _protocol import emit, interleave, ratio, reps_and_threads, summary, thread_settings  # noqa: E402
from downpour.analysis import warp  # noqa: E402
from downpour.analysis.invariance import DEFAULT_SCALES  # noqa: E402

SHAPES = {"16x16": (60, 1, 16, 16), "32x32": (60, 1, 32, 32), "32x32x3": (60, 3, 32, 32)}   # the digits', lfw's
ROWS = {"sweep": DEFAULT_SCALES, "smallest": (min(DEFAULT_SCALES),)}


def conv_blur(x: Tensor, sigma: float, pad: str = "replicate", grow: int = 0) -> Tensor:
    """The blur as a padded conv2d per axis, ``_blur``'s signature: zeros ``grow`` pixels a side, then each axis padded
    by the kernel's reach in ``pad`` mode (F.pad's) and convolved. Also the tests' reference
    (tests/test_analysis_warp_blur.py)."""
    x = F.pad(x, (grow,) * 4)
    if sigma < warp.MIN_SIGMA:
        return x
    radius = warp._radius(sigma)
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=x.dtype) / sigma) ** 2)
    k = k / k.sum()
    n, c, h, w = x.shape
    flat = x.reshape(n * c, 1, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode=pad), k.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode=pad), k.view(1, 1, -1, 1))
    return flat.reshape(n, c, h, w)


def two_matrix_blur(x: Tensor, sigma: float, pad: str = "replicate", grow: int = 0) -> Tensor:
    """``_blur`` as it was before a square image's matrix was built once: one matrix per axis, whatever the shape."""
    if sigma < warp.MIN_SIGMA:
        return F.pad(x, (grow,) * 4) if grow else x
    _, _, h, w = x.shape
    rows = warp._blur_matrix(h, sigma, pad, grow, x.dtype)
    cols = warp._blur_matrix(w, sigma, pad, grow, x.dtype)
    return rows @ x @ cols.T


def warped(x: Tensor, scales: tuple[float, ...], blur) -> list[Tensor]:
    """x under each of ``scales`` (the default fill), the warp's blur being ``blur``."""
    kept = warp._blur
    warp._blur = blur
    try:
        return [warp.transform(x, scale=s) for s in scales]
    finally:
        warp._blur = kept


def main(argv: list[str] | None = None) -> list[dict]:
    p = reps_and_threads(__doc__.split("\n")[0])
    p.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES), help="image shapes to time")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out: list[dict] = []
    new = warp._blur
    for name in args.shapes:
        x = torch.rand(SHAPES[name], generator=torch.Generator().manual_seed(0))
        for row, scales in ROWS.items():
            diff = max((a - b).abs().max().item() for a, b in zip(warped(x, scales, new), warped(x, scales, conv_blur)))

            def run(blur) -> dict:
                warped(x, scales, blur)
                return {}

            reps = interleave({"new": lambda r: run(new), "old": lambda r: run(conv_blur),
                               "before": lambda r: run(two_matrix_blur)}, reps=args.reps)
            emit({"bench": "warp_blur", "row": row, "shape": list(SHAPES[name]), "warps": len(scales),
                  **summary(reps, "wall_s"), "ratio": ratio(reps, "wall_s", "new", "old"),
                  "vs_before": ratio(reps, "wall_s", "new", "before"), "max_abs_diff": diff,
                  "threads": thread_settings()}, out)
    return out


if __name__ == "__main__":
    main()
