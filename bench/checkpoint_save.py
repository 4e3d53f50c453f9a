"""What the SHA-256 a checkpoint records costs: ``save_state`` of the main job's model (its state_dict, as the local
runner's checkpoint holds it) into a folder that already holds one (as every save after a run's first), with the digest
and with :func:`~downpour.train.checkpoint.sha256_of` made free, interleaved (_protocol), and the digest of the file alone;
and the JSON's own digest (``json_sha256``, :func:`~downpour.train.json_digest.json_digest`) alone, of a JSON like the
local runner's checkpoint's (the main job's Adam state after one step and its resolved config: every save takes it).

    python bench/checkpoint_save.py [--reps 7] [--out DIR] [--mb 256]

``--mb N``: N MiB of float32 weights in place of the main job's model (which is small: the digest's share grows with
the file, a save's fixed costs do not).
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import downpour.train.checkpoint as checkpoint  # noqa: E402
from downpour.train.config_record import config_record  # noqa: E402
from downpour.train.json_digest import json_digest  # noqa: E402
from downpour.train.optimizer_state import optimizer_state  # noqa: E402
from _main_job import main_model  # noqa: E402
from _protocol import emit, interleave, ratio, reps_and_threads, summary  # noqa: E402


def main() -> None:
    p = reps_and_threads(__doc__.splitlines()[0], reps=7)
    p.add_argument("--out", type=Path, help="where the checkpoints are written (default: a temporary folder)")
    p.add_argument("--mb", type=float, help="MiB of float32 weights to save instead of the main job's model")
    args = p.parse_args()
    cfg, model = main_model(args.threads)
    meta = _checkpoint_meta(cfg, model)
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

        def json_only(_: int) -> dict[str, float]:
            t0 = time.perf_counter()
            json_digest(meta)
            return {"seconds": time.perf_counter() - t0}

        reps = interleave({"digest": save(True), "no_digest": save(False), "sha256_only": digest_only,
                           "json_digest_only": json_only}, args.reps)
    emit({"bench": "checkpoint_save", "model_mb": round(mb, 3), "checkpoint_json_bytes": len(json.dumps(meta, indent=1)), **summary(reps, "seconds"),
          "digest_vs_none": ratio(reps, "seconds", "digest", "no_digest")}, [])


def _checkpoint_meta(cfg, model) -> dict:
    """What the local runner's checkpoint JSON holds of the main job, in size: its Adam state after one step (param
    groups, scalars) and its resolved config."""
    opt = torch.optim.Adam(model.parameters())
    model.train()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    model.eval()
    return {"step": 1, **optimizer_state(opt)[1], "config": config_record(cfg)}


if __name__ == "__main__":
    main()
