"""Reduced JPEG decoding in crops mode (data.jpeg_draft): decode + crop time per camera-sized photo, with
the JPEG decoder's 1/2, 1/4 or 1/8 scaling against the full decode, in the same run; and how far its crops
are from the full decode's.

    .venv/bin/python bench/jpeg_draft.py [--size 32] [--tile 0 [--margin 4]] [--reps 5] [--grey | --rgb]

Writes a few large JPEGs (quality 90) into a temporary folder, removed at the end: 3000x2000 and
4032x3024 (a 4:3 phone's), each a smooth random scene (a 12x18 grid of colours upsampled) plus stripes of
periods 40 to 120 px and fine noise (sigma 12 of 255), so there is structure at every scale. Then, interleaved
(``_protocol``), ``full`` (``read_image`` at native size, as the crops mode decoded before 2026-12-04) and ``draft``
(``read_image`` with ``shrink_to = size``, what a folder's crops mode does) each decode every image and cut its crop
(``crop_images``, centred square resized to size x size; ``--tile T``: the grid of T-px tiles, each resized,
reduced where its tiles stay 4x the crop; ``--margin M`` sets that 4, the measurement that chose
it): ``ms_per_image`` and the draft/full ratio.

Beside it, once: each image's reduction (``decode_reduction``: 8 for 4032x3024, 4 for 3000x2000, whose
centred square starts 500 px in, not a multiple of 8), the max and mean absolute difference of the draft
crop from the full crop (pixels in [0, 1]), and, for scale, the difference between two ways of resizing the
same full decode (our bilinear with antialiasing against Pillow's box filter): what the choice of
resize filter alone changes. One JSON line per repetition, then the summary.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from _protocol import at_least_1, interleave, ratio, reps_and_threads, summary, thread_settings  # noqa: E402

SIZES = [(3000, 2000), (4032, 3024), (3000, 2000), (4032, 3024)]    # (width, height)


def write_photos(folder: Path, sizes: list[tuple[int, int]] = SIZES) -> list[Path]:
    from PIL import Image

    paths = []
    for i, (w, h) in enumerate(sizes):
        rng = np.random.default_rng(i)
        scene = np.asarray(Image.fromarray(rng.integers(0, 256, (12, 18, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        stripes = 30 * np.sin(2 * np.pi * (xx / (40 + 20 * i) + yy / 120))[..., None]
        x = scene + stripes + rng.normal(0, 12, (h, w, 3)).astype(np.float32)
        paths.append(folder / f"photo{i}.jpg")
        Image.fromarray(np.clip(x, 0, 255).astype(np.uint8)).save(paths[-1], quality=90)
    return paths


def crops(paths: list[Path], size: int, grey: bool, draft: bool, tile: int = 0) -> list[np.ndarray]:
    from downpour.data.folder import read_scaled
    from downpour.data.images import ImageSet
    from downpour.data.patches import crop_images

    out = []
    for p in paths:
        image, scale = read_scaled(p, grey, size if draft else 0, tile)
        out.append(crop_images(ImageSet([image], [p.name], scales=[scale]), size, tile)[0])
    return out


def differences(paths: list[Path], size: int, grey: bool, tile: int = 0) -> list[dict]:
    from PIL import Image

    from downpour.data.folder import read_image
    from downpour.data.patches import decode_reduction

    rows = []
    for p, full, draft in zip(paths, crops(paths, size, grey, False, tile), crops(paths, size, grey, True, tile)):
        with Image.open(p) as img:
            w, h = img.size
        native = read_image(p, grey)
        # the same native squares (the centred one, or the centred grid of tiles), resized by Pillow's box filter
        grid = 0 < tile <= min(h, w)
        side = tile if grid else min(h, w)
        n_rows, n_cols = (h // tile, w // tile) if grid else (1, 1)
        top0, left0 = (h - n_rows * side) // 2, (w - n_cols * side) // 2
        squares = [native[:, top0 + i * side:top0 + (i + 1) * side, left0 + j * side:left0 + (j + 1) * side]
                   for i in range(n_rows) for j in range(n_cols)]
        box = np.stack([[np.asarray(Image.fromarray(c).resize((size, size), Image.BOX)) for c in sq] for sq in squares])
        d, r = np.abs(draft - full), np.abs(box - full)
        rows.append({"image": f"{w}x{h}", "tile": tile, "crops": len(full), "reduction": decode_reduction(h, w, tile, size),
                     "draft_vs_full": {"max": round(float(d.max()), 4), "mean": round(float(d.mean()), 5)},
                     "box_vs_bilinear_resize": {"max": round(float(r.max()), 4), "mean": round(float(r.mean()), 5)}})
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = reps_and_threads(__doc__.split("\n")[0], threads=None)    # PIL decodes: no torch threads to set
    ap.add_argument("--size", type=at_least_1, default=32, help="crop side (data.size), default 32")
    ap.add_argument("--tile", type=int, default=0, help="cut each photo into a grid of TILE-px squares (data.tile), "
                                                         "default 0: its centred square")
    ap.add_argument("--margin", type=at_least_1, default=None,
                    help="reduce a tile while it stays MARGIN x the crop (default: downpour's TILE_MARGIN, 4)")
    ap.add_argument("--rgb", dest="grey", action="store_false", help="three channels (default: grey)")
    args = ap.parse_args(argv)
    if args.tile < 0:
        ap.error(f"argument --tile: must be at least 0 (0: no tiles), got {args.tile}")
    from downpour.config import sections
    if args.margin is not None:
        sections.TILE_MARGIN = args.margin      # read by decode_reduction (and decode_rules_differ) at each call
    folder = Path(tempfile.mkdtemp(prefix="jpeg_draft_"))
    try:
        paths = write_photos(folder)
        for row in differences(paths, args.size, args.grey, args.tile):    # (also the warm-up: imports, first decodes)
            print(json.dumps(row), flush=True)

        def timed(draft: bool):
            def run(_r: int) -> dict:
                t0 = time.perf_counter()
                crops(paths, args.size, args.grey, draft, args.tile)
                return {"ms_per_image": round(1000 * (time.perf_counter() - t0) / len(paths), 2)}
            return run

        reps = interleave({"full": timed(False), "draft": timed(True)}, args.reps,
                          lambda r, rep: print(json.dumps({"rep": r, **{k: v["ms_per_image"] for k, v in rep.items()}}), flush=True))
        print(json.dumps({"size": args.size, "tile": args.tile, "margin": sections.TILE_MARGIN, "grey": args.grey, "images": len(paths), **thread_settings(),
                          **summary(reps, "ms_per_image"), "draft_vs_full": ratio(reps, "ms_per_image", "draft", "full")}))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
