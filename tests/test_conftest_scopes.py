"""How `make test` splits the suite between its processes (tests/conftest.py, pytest-xdist)."""
from pathlib import Path

from conftest import SHARED_RAY, scope, shared_ray_modules

TESTS = Path(__file__).parent


def test_the_modules_on_the_shared_ray_go_together_and_the_rest_a_module_each():
    shared = shared_ray_modules(TESTS)
    assert {"tests/test_ps_ray.py", "tests/test_parallel_ray.py", "tests/test_ray_seeds.py"} <= shared
    assert "tests/test_data_stream_runners.py" not in shared        # own_ray: a Ray of its own, started after its fixtures
    assert "tests/test_cli.py" not in shared
    assert scope("tests/test_ps_ray.py::test_sync_rounds_on_ray", shared) == SHARED_RAY
    assert scope("tests/test_ray_seeds.py::test_x[a::b]", shared) == SHARED_RAY
    assert scope("tests/test_cli.py::test_help", shared) == scope("tests/test_cli.py::test_other[1]", shared)
    assert scope("tests/test_cli.py::test_help", shared) != scope("tests/test_config.py::test_help", shared)

