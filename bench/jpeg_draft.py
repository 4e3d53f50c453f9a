"""Reduced JPEG decoding in crops mode (data.jpeg_draft): decode + crop time per camera-sized photo, with
the JPEG decoder's 1/2, 1/4 or 1/8 scaling against the full decode, in the same run; and how far its crops
are from the full decode's.

    .venv/bin/python bench/jpeg_draft.py [--size 32] [--reps 5] [--grey | --rgb]

Writes a few large JPEGs (quality 90) into a temporary folder, removed at the end: 3000x2000 and
4032x3024 (a 4:3 phone's), each a smooth random scene (a 12x18 grid of colours upsampled) plus stripes of
periods 40 to 120 px and fine noise (sigma 12 of 255), so there is structure at every scale. Then, interleaved
(``_protocol``), ``full`` (``read_image`` at native size, as before 2026-12-04) and ``draft`` (``read_image``
with ``shrink_to = size``, what a folder's crops mode does now) each decode every image and cut its crop
(``crop_images``, centred square resized to size x size): ``ms_per_image`` and the draft/full ratio.

Beside it, once: each image's reduction (``decode_reduction``: 8 for 4032x3024, 4 for 3000x2000, whose
centred square starts 500 px in, not a multiple of 8), the max and mean absolute difference of the draft
crop from the full crop (pixels in [0, 1]), and, for scale, the difference between two ways of resizing the
same full decode (our bilinear with antialiasing against Pillow's box filter): what the choice of
resize filter alone changes. One JSON line per repetition, then the summary.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from _protocol import at_least_1, interleave, ratio, summary, thread_settings

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


def crops(paths: list[Path], size: int, grey: bool, draft: bool) -> list[np.ndarray]:
    from downpour.data.folder import read_image
    from downpour.data.images import ImageSet
    from downpour.data.patches import crop_images

    return [crop_images(ImageSet([read_image(p, grey, size if draft else 0)], [p.name]), size)[0] for p in paths]


def differences(paths: list[Path], size: int, grey: bool) -> list[dict]:
    from PIL import Image

    from downpour.data.folder import read_image
    from downpour.data.patches import decode_reduction

    rows = []
    for p, full, draft in zip(paths, crops(paths, size, grey, False), crops(paths, size, grey, True)):
        with Image.open(p) as img:
            w, h = img.size
        native = read_image(p, grey)
        side = min(h, w)
        square = native[:, (h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
        box = np.stack([np.asarray(Image.fromarray(c).resize((size, size), Image.BOX)) for c in square])[None]
        d, r = np.abs(draft - full), np.abs(box - full)
        rows.append({"image": f"{w}x{h}", "reduction": decode_reduction(h, w, 0, size),
                     "draft_vs_full": {"max": round(float(d.max()), 4), "mean": round(float(d.mean()), 5)},
                     "box_vs_bilinear_resize": {"max": round(float(r.max()), 4), "mean": round(float(r.mean()), 5)}})
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=at_least_1, default=32, help="crop side (data.size), default 32")
    ap.add_argument("--reps", type=at_least_1, default=5, help="interleaved repetitions, default 5")
    ap.add_argument("--rgb", dest="grey", action="store_false", help="three channels (default: grey)")
    args = ap.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="jpeg_draft_"))
    try:
        paths = write_photos(folder)
        for row in differences(paths, args.size, args.grey):    # (also the warm-up: imports, first decodes)
            print(json.dumps(row), flush=True)

        def timed(draft: bool):
            def run(_r: int) -> dict:
                t0 = time.perf_counter()
                crops(paths, args.size, args.grey, draft)
                return {"ms_per_image": round(1000 * (time.perf_counter() - t0) / len(paths), 2)}
            return run

        reps = interleave({"full": timed(False), "draft": timed(True)}, args.reps,
                          lambda r, rep: print(json.dumps({"rep": r, **{k: v["ms_per_image"] for k, v in rep.items()}}), flush=True))
        print(json.dumps({"size": args.size, "grey": args.grey, "images": len(paths), **thread_settings(),
                          **summary(reps, "ms_per_image"), "draft_vs_full": ratio(reps, "ms_per_image", "draft", "full")}))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
