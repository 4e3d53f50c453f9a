"""How `make test` splits the suite between its processes (tests/conftest.py, pytest-xdist)."""
import sys
from pathlib import Path

import conftest
from conftest import SHARED_RAY, longest_first, scope, shared_ray_modules, stray_ray
from module_seconds import finish_times, module_seconds

TESTS = Path(__file__).parent


def test_the_modules_on_the_shared_ray_go_together_and_the_rest_a_module_each():
    shared = shared_ray_modules(TESTS)
    assert {"tests/test_ps_ray_runs.py", "tests/test_parallel_ray.py", "tests/test_ray_seeds.py"} <= shared
    assert "tests/test_ps_ray_driver_losses.py" not in shared     # stand-ins for Ray: no Ray of its own to share
    assert "tests/test_data_stream_runners.py" not in shared        # own_ray: a Ray of its own, started after its fixtures
    assert "tests/test_cli.py" not in shared
    assert scope("tests/test_ps_ray_runs.py::test_sync_rounds_on_ray", shared) == SHARED_RAY
    assert scope("tests/test_ray_seeds.py::test_x[a::b]", shared) == SHARED_RAY
    assert scope("tests/test_cli.py::test_help", shared) == scope("tests/test_cli.py::test_other[1]", shared)
    assert scope("tests/test_cli.py::test_help", shared) != scope("tests/test_config.py::test_help", shared)


def test_the_processes_take_the_longest_work_first_the_shared_rays_modules_as_their_sum():
    shared = {"tests/test_ps_ray.py", "tests/test_ray_seeds.py"}
    seconds = {"tests/test_ps_ray.py": 30.0, "tests/test_ray_seeds.py": 25.0, "tests/test_twins.py": 52.0,
               "tests/test_cli.py": 3.0, "tests/test_config.py": 3.0}
    modules = ["tests/test_cli.py", "tests/test_config.py", "tests/test_new.py", "tests/test_ps_ray.py",
               "tests/test_ray_seeds.py", "tests/test_twins.py"]
    assert longest_first(seconds, modules, shared) == [
        SHARED_RAY, "tests/test_twins.py", "tests/test_cli.py", "tests/test_config.py", "tests/test_new.py"]
    assert longest_first(seconds, modules, shared, default=60.0)[:2] == ["tests/test_new.py", SHARED_RAY]
    assert longest_first({}, modules[:3], shared) == modules[:3]    # ties (here all: no table) in collection order


def test_the_module_seconds_table_sums_a_durations_outputs_lines_by_module():
    text = """============================== slowest durations ===============================
40.27s call     tests/test_ps_ray.py::test_a[x::y]
2.50s setup    tests/test_ps_ray.py::test_b
0.01s teardown tests/test_cli.py::test_help
(12249 durations < 0.005s hidden.  Use -vv to show these durations.)
= 1 failed, 5060 passed in 814.02s (0:13:34) ="""
    assert module_seconds(text) == {"tests/test_cli.py": 0.0, "tests/test_ps_ray.py": 42.8}
    assert finish_times({"tests/test_a.py": 3.0, "tests/test_b.py": 2.0, "tests/test_c.py": 2.0},
                        ["tests/test_b.py", "tests/test_c.py", "tests/test_a.py"], set()) == [2.0, 5.0]


class _Ray:
    """What :func:`stray_ray` asks of ``ray``: whether it is up, and to shut down."""

    def __init__(self, up: bool) -> None:
        self.up = up

    def is_initialized(self) -> bool:
        return self.up

    def shutdown(self) -> None:
        self.up = False


def test_a_ray_a_module_left_up_without_local_ray_is_named_and_shut_down(monkeypatch):
    monkeypatch.setitem(conftest._shared, "up", False)
    stray = _Ray(up=True)
    monkeypatch.setitem(sys.modules, "ray", stray)
    assert "tests/test_x.py left a Ray running" in stray_ray("tests/test_x.py")
    assert not stray.up                                  # gone: the next module's local_ray starts its own
    assert stray_ray("tests/test_y.py") is None          # (and the next module is not blamed for it)


def test_local_rays_shared_ray_or_none_up_is_no_stray(monkeypatch):
    shared = _Ray(up=True)
    monkeypatch.setitem(sys.modules, "ray", shared)
    monkeypatch.setitem(conftest._shared, "up", True)
    assert stray_ray("tests/test_x.py") is None and shared.up
    monkeypatch.setitem(conftest._shared, "up", False)
    monkeypatch.setitem(sys.modules, "ray", _Ray(up=False))
    assert stray_ray("tests/test_x.py") is None
    monkeypatch.delitem(sys.modules, "ray")
    assert stray_ray("tests/test_x.py") is None          # Ray never imported: nothing asked
