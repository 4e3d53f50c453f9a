"""A push's copy through shared memory: ``np.copyto`` of a gradient into a :class:`~downpour.ps.shm.Segment` (what
``Segment.put`` does), one thread: the rate ``downpour plan --machines 1`` reads
(``plan.one_machine.COPY_BYTES_PER_S``).

    .venv/bin/python bench/shm_copy.py                   # cat-demo's and cat-untied's gradients, 9 reps
    .venv/bin/python bench/shm_copy.py --configs main --reps 5 --out-of-cache-mb 0

Each repetition times ``--copies`` copies of a ``--config``'s whole gradient (float32, its parameter count) into a
segment in /dev/shm (``shm``) and, interleaved, into private memory (``private``, the baseline): ``private_over_shm``
> 1, the shared segment is slower. Two cases a config (``cache``): ``in``, the same gradient copied to the same place
each time (both stay in the caches, as a gradient just computed might); ``out``, ``--out-of-cache-mb`` of distinct
gradients copied in turn to distinct places, each once a repetition (at least ``--copies`` copies): sources and
destinations together well past the last-level cache, so every copy reads and writes main memory, the honest
per-core rate for a plan. Figures: ``gb_per_s`` (decimal GB a second of wall time) and ``gb_per_cpu_s`` (a second of
this process's CPU: the rate of a core of its own, what the plan counts; on a loaded machine the wall rate is lower by
the share of the core the process got). One JSON line a config and case.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _protocol import at_least, at_least_1, emit, interleave, ratio, reps_and_threads, summary  # noqa: E402


def _timed(grads, into, copies: int):
    """A repetition's run: ``copies`` copies of ``grads``'s rows (k, n) into ``into``'s (k, n), row after row."""
    import numpy as np

    np.copyto(into, grads)     # (the first copy into fresh memory pays its page faults)
    k = len(grads)

    def run(_: int) -> dict:
        t0, cpu0 = time.perf_counter(), time.process_time()
        for c in range(copies):
            np.copyto(into[c % k], grads[c % k])
        gb = copies * grads[0].nbytes / 1e9
        return {"gb_per_s": gb / (time.perf_counter() - t0), "gb_per_cpu_s": gb / (time.process_time() - cpu0)}
    return run


def main(argv: list[str] | None = None) -> list[dict]:
    import numpy as np
    import torch

    from downpour.config import load_config
    from downpour.models.registry import build, model_entry
    from downpour.ps.shm import SHM_DIR, Segment, available

    parser = reps_and_threads(__doc__.split("\n")[0], reps=9)
    parser.add_argument("--configs", nargs="+", default=["cat-demo", "cat-untied"], help="presets or files")
    parser.add_argument("--copies", type=at_least_1, default=200, help="copies timed per repetition (default 200)")
    parser.add_argument("--out-of-cache-mb", type=at_least(0), default=768,
                        help="MB of distinct gradients for the out-of-cache case (default 768: with their "
                             "destinations 1.5 GB, past a 480 MiB last-level cache); 0 leaves the case out")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    folder = SHM_DIR if available() else Path(tempfile.gettempdir())
    cases = {"in": 0, "out": args.out_of_cache_mb * 10**6} if args.out_of_cache_mb else {"in": 0}
    rows: list[dict] = []
    for name in args.configs:
        cfg = load_config(name, [])
        model, _ = build(cfg, model_entry(cfg.model.name).input_shape)
        n = sum(p.numel() for p in model.parameters())
        for cache, total in cases.items():
            k = max(1, total // (4 * n))        # distinct gradients (1: in cache)
            copies = max(args.copies, k if cache == "out" else 1)
            grads = np.random.default_rng(0).random((k, n), dtype=np.float32)
            private = np.empty((k, n), np.float32)
            segment = Segment(folder / f"bench-shm-copy-{os.getpid()}", k * n, create=True)
            try:
                reps = interleave({"shm": _timed(grads, segment.data.reshape(k, n), copies),
                                   "private": _timed(grads, private, copies)}, args.reps)
            finally:
                segment.close()     # (the owner: it unlinks the file)
            del grads, private
            emit({"bench": "shm_copy", "config": name, "cache": cache, "values": n, "bytes": 4 * n, "distinct": k,
                  "copies": copies, **summary(reps, "gb_per_s"),
                  "gb_per_cpu_s": summary(reps, "gb_per_cpu_s")["gb_per_cpu_s"],
                  "private_over_shm": ratio(reps, "gb_per_cpu_s", "private", "shm")}, rows)
    return rows


if __name__ == "__main__":
    main()
