"""Start-up of the local runner's optimiser: built and stepped once, downpour's against torch.optim's.

    .venv/bin/python bench/optimiser_start_up.py [--reps 5] [--optimisers sgd adagrad adam]

Every ``torch.optim`` optimiser imports ``torch._dynamo`` when it is built (``add_param_group`` is wrapped by
``torch._disable_dynamo``) and at each ``step``; ``make_optimizer`` builds
``downpour/train/optimisers.py``'s, which call the same kernels without it. Per ``train.optimizer`` choice
(``sgd``, ``adagrad``, ``adam``; lr 0.01), each in a fresh interpreter after ``import torch``: an
``nn.Linear(256, 256)``, its optimiser built, one backward and ``step``. Figures, interleaved
(bench/_protocol.py): ``first_step_s``, the optimiser's build and first step timed inside the child
(``downpour`` against ``torch``, ``first_step_ratio``); ``wall_s``, the whole child (its ``import torch``
included, ``wall_ratio``); ``child_cpu_s``, its CPU seconds. Both kinds' parameters after 3 steps are first
checked equal bit for bit in this process. ``ratio`` < 1: downpour's starts faster. One JSON line per row.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from _protocol import interleave, ratio, reps_and_threads, summary  # noqa: E402
from downpour.train import optimisers  # noqa: E402

CLASSES = {"sgd": "SGD", "adagrad": "Adagrad", "adam": "Adam"}
MAKERS = {"downpour": "from downpour.train import optimisers as where\n", "torch": "where = torch.optim\n"}


def first_step(kind: str, name: str) -> dict[str, float]:
    """A fresh interpreter: ``import torch``, then (timed) the optimiser of ``kind`` built and stepped once."""
    code = ("import time, torch\nmodel = torch.nn.Linear(256, 256)\nt = time.perf_counter()\n" + MAKERS[kind] +
            f"opt = where.{CLASSES[name]}(model.parameters(), lr=0.01)\n"
            "model(torch.ones(8, 256)).sum().backward()\nopt.step()\nprint(time.perf_counter() - t)")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"first_step_s": round(float(out.stdout.split()[-1]), 4), "child_cpu_s": round(cpu, 3)}


def check_same(name: str) -> None:
    """Three steps of each kind on the same parameters and gradients: the same parameters, bit for bit."""
    results = []
    for make in (getattr(optimisers, CLASSES[name]), getattr(torch.optim, CLASSES[name])):
        torch.manual_seed(0)
        model = torch.nn.Linear(16, 16)
        opt = make(model.parameters(), lr=0.01)
        for _ in range(3):
            model.zero_grad()
            model(torch.randn(4, 16)).square().sum().backward()
            opt.step()
        results.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*results)), f"{name}: downpour's step is not torch's"


def main(argv: list[str] | None = None) -> None:
    parser = reps_and_threads(__doc__.split("\n")[0], threads=None)
    parser.add_argument("--optimisers", nargs="+", choices=CLASSES, default=list(CLASSES),
                        help="the train.optimizer choices to time (default: all three)")
    args = parser.parse_args(argv)
    for name in args.optimisers:
        check_same(name)
        reps = interleave({kind: lambda r, kind=kind: first_step(kind, name) for kind in MAKERS}, args.reps)
        row = {"row": name, **summary(reps, "first_step_s"),
               **{k: summary(reps, k)[k] for k in ("wall_s", "child_cpu_s")},
               "first_step_ratio": ratio(reps, "first_step_s", "downpour", "torch"),
               "wall_ratio": ratio(reps, "wall_s", "downpour", "torch"),
               "cpu_ratio": ratio(reps, "child_cpu_s", "downpour", "torch")}
        row.pop("driver_cpu_s")     # (this process's: the work runs in a child)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
