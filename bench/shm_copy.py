"""A push's copy through shared memory: ``np.copyto`` of a gradient into a :class:`~downpour.ps.shm.Segment` (what
``Segment.put`` does), one thread: the rate ``downpour plan --machines 1`` reads
(``plan.one_machine.COPY_BYTES_PER_S``).

    .venv/bin/python bench/shm_copy.py                   # cat-demo's and cat-untied's gradients, 9 reps
    .venv/bin/python bench/shm_copy.py --configs main --reps 5

Each repetition times ``--copies`` copies of a ``--config``'s whole gradient (float32, its parameter count) into a
segment in /dev/shm (``shm``) and, interleaved, into private memory (``private``, the baseline): ``private_over_shm``
> 1, the shared segment is slower. Figures: ``gb_per_s`` (decimal GB a second of wall time) and ``gb_per_cpu_s`` (a
second of this process's CPU: the rate of a core of its own, what the plan counts; on a loaded machine the wall rate is
lower by the share of the core the process got). One JSON line a config.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _protocol import at_least_1, emit, interleave, ratio, reps_and_threads, summary  # noqa: E402


def main(argv: list[str] | None = None) -> list[dict]:
    import numpy as np
    import torch

    from downpour.config import load_config
    from downpour.models.registry import build, model_entry
    from downpour.ps.shm import SHM_DIR, Segment, available

    parser = reps_and_threads(__doc__.split("\n")[0], reps=9)
    parser.add_argument("--configs", nargs="+", default=["cat-demo", "cat-untied"], help="presets or files")
    parser.add_argument("--copies", type=at_least_1, default=200, help="copies timed per repetition (default 200)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows: list[dict] = []
    for name in args.configs:
        cfg = load_config(name, [])
        model, _ = build(cfg, model_entry(cfg.model.name).input_shape)
        n = sum(p.numel() for p in model.parameters())
        grad, private = np.random.default_rng(0).random(n, dtype=np.float32), np.empty(n, np.float32)
        folder = SHM_DIR if available() else Path(tempfile.gettempdir())
        segment = Segment(folder / f"bench-shm-copy-{os.getpid()}", n, create=True)

        def timed(into: np.ndarray):
            np.copyto(into, grad)     # (the first copy into fresh memory pays its page faults)

            def run(_: int) -> dict:
                t0, cpu0 = time.perf_counter(), time.process_time()
                for _ in range(args.copies):
                    np.copyto(into, grad)
                gb = args.copies * grad.nbytes / 1e9
                return {"gb_per_s": gb / (time.perf_counter() - t0), "gb_per_cpu_s": gb / (time.process_time() - cpu0)}
            return run

        try:
            reps = interleave({"shm": timed(segment.data), "private": timed(private)}, args.reps)
        finally:
            segment.close()     # (the owner: it unlinks the file)
        emit({"bench": "shm_copy", "config": name, "values": n, "bytes": grad.nbytes, "copies": args.copies,
              **summary(reps, "gb_per_s"), "gb_per_cpu_s": summary(reps, "gb_per_cpu_s")["gb_per_cpu_s"],
              "private_over_shm": ratio(reps, "gb_per_cpu_s", "private", "shm")}, rows)
    return rows


if __name__ == "__main__":
    main()
