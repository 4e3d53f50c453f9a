"""Where a main-job training step's CPU goes, part by part, in a real ``downpour train`` run.

    .venv/bin/python bench/step_profile.py --out /tmp/profile          # the 20-step reference run, once
    .venv/bin/python bench/step_profile.py --out /tmp/profile --reps 3 -- --steps 40
    .venv/bin/python bench/step_profile.py --out /tmp/profile --reps 4 --keep-bytes 0    # runs alternate: kept, not

Runs ``downpour train --runner local --steps 20 --set train.log_every=5 --no-report --out OUT/rep-N`` (the main job's
defaults; more train flags after ``--`` replace those) in this process, ``--reps`` times, with timers wrapped around the
step's parts: this process's CPU (``time.process_time``, every thread: the untied kernel's rows run on worker
threads) around each call, summed per stage over the run and its no-faces twin, divided by the steps. Parts nest
(``contains``): the step (``train_step``) holds the forward (``forward_train``), the cost and the backward; the kernel
rows are inside those; ``fields`` is the receptive-field copies (``_lc_kernels._windows``, each thread's own CPU), by
the kernel call that made them. ``update`` is the optimiser's step, outside ``train_step``. One JSON line per stage
and repetition, the figures in ms a step; the run's model.safetensors md5 beside them. ``--keep-bytes N``: every
other run (the odd repetitions) with ``_lc_kernels.KEEP_BYTES = N`` (0: the forward keeps no receptive fields, each
chunk's copied again for the weight gradient), the others at the kernel's own budget; ``keep_bytes`` says which.
"""
from __future__ import annotations

import hashlib
import sys
import threading
import time
from collections import defaultdict
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from _protocol import emit, load_1min, reps_and_threads, swapped  # noqa: E402
from downpour import cli  # noqa: E402
from downpour.layers import _lc_kernels as K  # noqa: E402
from downpour.layers.lcn import LocalContrastNorm2d  # noqa: E402
from downpour.layers.pooling import L2Pool2d  # noqa: E402
from downpour.models.cat import CatNet  # noqa: E402
from downpour.objectives import Objective  # noqa: E402
from downpour.train import loop  # noqa: E402

REFERENCE = ["--runner", "local", "--steps", "20", "--set", "train.log_every=5", "--no-report"]
# what each timed part holds, for the reader of the JSON
CONTAINS = {"step": ["forward", "cost", "backward"], "forward": ["kernel forward", "kernel adjoint", "pool", "lcn"],
            "backward": ["kernel forward's backward", "kernel adjoint's backward"]}


class Timers:
    """CPU seconds and calls per (stage, part); ``fields`` copies per (stage, the kernel call that made them)."""

    def __init__(self) -> None:
        self.stage: int | None = None
        self.kernel = "outside the kernel's Functions"   # the kernel call running now (one at a time: a step is serial)
        self.seconds: dict[tuple, float] = defaultdict(float)
        self.calls: dict[tuple, int] = defaultdict(int)
        self.lock = threading.Lock()

    def add(self, part: str, seconds: float) -> None:
        with self.lock:
            self.seconds[(self.stage, part)] += seconds
            self.calls[(self.stage, part)] += 1

    @contextmanager
    def timing(self, part: str, clock: Callable[[], float] = time.process_time) -> Iterator[None]:
        t0 = clock()
        try:
            yield
        finally:
            self.add(part, clock() - t0)

    def wrap(self, fn: Callable, part: str, kernel: bool = False) -> Callable:
        def timed(*args, **kwargs):
            was = self.kernel
            if kernel:
                self.kernel = part
            try:
                with self.timing(part):
                    return fn(*args, **kwargs)
            finally:
                self.kernel = was
        return timed


@contextmanager
def patched(timers: Timers) -> Iterator[None]:
    """The step's parts timed (module and class attributes swapped for the run, put back after)."""
    swaps: list[tuple[object, str, object]] = []

    def swap(owner: object, name: str, new: object) -> None:
        swaps.append((owner, name, new))

    stage_for_step = loop.stage_for_step

    def staged(*args):
        timers.stage = stage_for_step(*args)
        return timers.stage

    make_optimizer = loop.make_optimizer

    def timed_optimizer(*args, **kwargs):
        opt = make_optimizer(*args, **kwargs)
        step = timers.wrap(opt.step, "update")

        def update(*a, **kw):
            try:
                return step(*a, **kw)
            finally:
                timers.stage = None     # (what runs between steps is no step's)
        opt.step = update
        return opt

    windows = K._windows

    def timed_windows(*args):
        t0 = time.thread_time()
        out = windows(*args)
        timers.add(f"fields, {timers.kernel}", time.thread_time() - t0)
        return out

    backward = torch.Tensor.backward
    swap(loop, "stage_for_step", staged)
    swap(loop, "make_optimizer", timed_optimizer)
    swap(loop, "train_step", timers.wrap(loop.train_step, "step"))
    swap(CatNet, "forward_train", timers.wrap(CatNet.forward_train, "forward"))
    swap(torch.Tensor, "backward", timers.wrap(backward, "backward"))
    swap(L2Pool2d, "forward", timers.wrap(L2Pool2d.forward, "pool"))
    swap(LocalContrastNorm2d, "forward", timers.wrap(LocalContrastNorm2d.forward, "lcn"))
    swap(K, "_windows", timed_windows)
    for cls, name in ((K._Apply, "kernel forward"), (K._Adjoint, "kernel adjoint")):
        swap(cls, "forward", staticmethod(timers.wrap(cls.forward, name, kernel=True)))
        swap(cls, "backward", staticmethod(timers.wrap(cls.backward, f"{name}'s backward", kernel=True)))
    swap(Objective, "__call__", timers.wrap(Objective.__call__, "cost"))
    with ExitStack() as stack:
        for owner, name, new in swaps:
            stack.enter_context(swapped(owner, name, new))
        yield


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> None:
    parser = reps_and_threads(__doc__.splitlines()[0], threads=None, reps=1)     # (a rep: one whole run)
    parser.add_argument("--out", type=Path, required=True, help="a folder for the runs (OUT/rep-N each)")
    parser.add_argument("--keep-bytes", type=int, default=None,
                        help="the odd repetitions' _lc_kernels.KEEP_BYTES (default: every run at the kernel's own)")
    parser.add_argument("train", nargs="*", help="train flags after --, in place of the reference run's")
    args = parser.parse_args(argv)
    out: list[dict] = []
    for rep in range(args.reps):
        run = args.out / f"rep-{rep}"
        timers = Timers()
        load = load_1min()
        keep_bytes = args.keep_bytes if args.keep_bytes is not None and rep % 2 else K.KEEP_BYTES
        with swapped(K, "KEEP_BYTES", keep_bytes), patched(timers):
            code = cli.main(["train", *(args.train or REFERENCE), "--out", str(run)])
        if code != 0:
            raise SystemExit(f"step_profile: downpour train exited {code}")
        model = run / "model.safetensors"
        for stage in sorted({s for s, _ in timers.seconds if s is not None}):
            steps = timers.calls[(stage, "step")]
            parts = {part: round(sec / steps * 1e3, 3) for (s, part), sec in sorted(timers.seconds.items(),
                                                                                    key=lambda kv: kv[0][1])
                     if s == stage and steps}
            emit({"bench": "step_profile", "rep": rep, "keep_bytes": keep_bytes, "stage": stage, "steps": steps,
                  "ms_a_step": parts,
                  "contains": CONTAINS, "threads": torch.get_num_threads(), "model_md5": md5(model),
                  "load_1min": [load, load_1min()]}, out)


if __name__ == "__main__":
    main()
