"""What the SHA-256 a checkpoint records costs: ``save_state`` of the main job's model (its state_dict, as the local
runner's checkpoint holds it) into a folder that already holds one (as every save after a run's first), with the digest
and with :func:`~downpour.train.checkpoint.sha256_of` made free, interleaved (_protocol), and the digest of the file alone.

    python bench/checkpoint_save.py [--reps 7] [--out DIR] [--mb 256]

``--mb N``: N MiB of float32 weights in place of the main job's model (which is small: the digest's share grows with
the file, a save's fixed costs do not).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

import downpour.train.checkpoint as checkpoint
from _main_job import main_model
from _protocol import emit, interleave, ratio, reps_and_threads, summary


def main() -> None:
    p = reps_and_threads(__doc__.splitlines()[0], reps=7)
    p.add_argument("--out", type=Path, help="where the checkpoints are written (default: a temporary folder)")
    p.add_argument("--mb", type=float, help="MiB of float32 weights to save instead of the main job's model")
    args = p.parse_args()
    _, model = main_model(args.threads)
    tensors = dict(model.state_dict()) if args.mb is None else {"w": torch.randn(int(args.mb * 2**18))}
    mb = sum(t.numel() * t.element_size() for t in tensors.values()) / 2**20
    real = checkpoint.sha256_of
    with tempfile.TemporaryDirectory(dir=args.out) as folder:
        stem = Path(folder) / "local"
        checkpoint.save_state(stem, tensors, {"step": 0})

        def save(digest: bool):
            def run(_: int) -> dict[str, float]:
                checkpoint.sha256_of = real if digest else (lambda path: "")
                try:
                    t0 = time.perf_counter()
                    checkpoint.save_state(stem, tensors, {"step": 1})
                    return {"seconds": time.perf_counter() - t0}
                finally:
                    checkpoint.sha256_of = real
            return run

        def digest_only(_: int) -> dict[str, float]:
            t0 = time.perf_counter()
            checkpoint._sha256(Path(f"{stem}.safetensors"))     # (sha256_of keeps a large file's digest: no read)
            return {"seconds": time.perf_counter() - t0}

        reps = interleave({"digest": save(True), "no_digest": save(False), "sha256_only": digest_only}, args.reps)
    emit({"bench": "checkpoint_save", "model_mb": round(mb, 3), **summary(reps, "seconds"),
          "digest_vs_none": ratio(reps, "seconds", "digest", "no_digest")}, [])


if __name__ == "__main__":
    main()
