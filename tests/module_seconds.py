"""Writes tests/module_seconds.json: each test module's seconds (its tests' setup, call and teardown summed) in a
pytest ``--durations=0`` output, the table `make test`'s processes take the modules by, longest first
(tests/conftest.py's ``longest_first``). After a suite run that added or slowed modules::

    make test ARGS="--durations=0" | tee /tmp/suite.log
    .venv/bin/python tests/module_seconds.py /tmp/suite.log

It says too when two processes would end, each taking the next unit when free (xdist's LoadScope), in collection
order (the shared Ray's modules first) and longest first.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from conftest import SHARED_RAY, longest_first, shared_ray_modules, unit_seconds
from downpour._names import plural

LINE = re.compile(r"\s*(\d+(?:\.\d+)?)s (?:setup|call|teardown)\s+([^:\s]+)::")


def module_seconds(text: str) -> dict[str, float]:
    """Each module's seconds in a ``--durations=0`` output's lines (``12.34s call     tests/test_x.py::test_y``),
    to 0.1 s, by module name."""
    seconds: dict[str, float] = {}
    for line in text.splitlines():
        if found := LINE.match(line):
            seconds[found[2]] = seconds.get(found[2], 0.0) + float(found[1])
    return {module: round(s, 1) for module, s in sorted(seconds.items())}


def finish_times(seconds: dict[str, float], order: list[str], shared: set[str], processes: int = 2) -> list[float]:
    """When each process ends if each takes the next unit of ``order`` (:func:`conftest.scope`) as it comes free."""
    units = unit_seconds(seconds, list(seconds), shared)
    ends = [0.0] * processes
    for unit in order:
        ends[ends.index(min(ends))] += units.get(unit, 0.0)
    return sorted(ends)


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        sys.exit("usage: tests/module_seconds.py DURATIONS_LOG   (a pytest --durations=0 output)")
    seconds = module_seconds(Path(argv[0]).read_text())
    if not seconds:
        sys.exit(f"{argv[0]}: no '--durations=0' lines (like '12.34s call     tests/test_x.py::test_y')")
    out = Path(__file__).with_name("module_seconds.json")
    out.write_text(json.dumps(seconds, indent=0) + "\n")
    shared = shared_ray_modules(out.parent)
    modules = sorted({*seconds, *(f"tests/{path.name}" for path in out.parent.glob("test_*.py"))})
    collection = [SHARED_RAY] + [module for module in modules if module not in shared]
    for name, order in (("collection order", collection), ("longest first", longest_first(seconds, modules, shared))):
        ends = finish_times(seconds, order, shared)
        print(f"two processes, {name}: end at " + " s and ".join(f"{end:.0f}" for end in ends) + " s")
    print(f"{out}: {plural(len(seconds), 'module')}, {sum(seconds.values()):.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
