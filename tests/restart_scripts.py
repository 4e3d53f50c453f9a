"""What the scripted restart tests share (tests/test_ps_restarts_*.py): the run's length, a worker actor's scripted
death (``_dies_at``), the driver's events as (event, worker, step) (``_events``), and the ``runtime`` fixture
(tests/scripted_ray.py's stand-in Ray)."""
import pytest
from scripted_ray import scripted_runtime


STEPS = 120


def _events(coord):
    return [(e["event"], e.get("worker", e.get("workers")), e["step"]) for e in coord.events]


def _dies_at(step):
    """A worker actor that dies when it is granted its first cycle reaching ``step`` (before it computes it)."""
    return {"dies": lambda n, first, k: first + k > step}


@pytest.fixture
def runtime(monkeypatch):
    return scripted_runtime(monkeypatch)
