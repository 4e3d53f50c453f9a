"""Fixtures shared across test modules."""
import gc

import pytest
import torch
from threadpoolctl import threadpool_limits


@pytest.hookimpl(hookwrapper=True)
def pytest_collection(session):
    """No garbage collection while the ~125 test modules are imported (22 full collections of a growing heap, 2.6 s
    of the collection's 12 s CPU, 2026-12-05), and what they left frozen after: a full collection while the tests run
    no longer walks the modules, torch's and Ray's included. (Frozen objects are never collected: they live as long
    as the session anyway.)"""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.freeze()


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tiny nets on one intra-op thread, and numpy/scikit-learn on one BLAS thread: on 2 busy
    cores a second thread only adds overhead (3-4x slower for an 8x8 RBM step; a logistic-regression probe on
    1300 digits 16 s instead of 0.5 s, 2026-12-05). Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1, user_api="blas"):
        yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray (2 CPUs) for a test module, shut down after it: start-up costs seconds."""
    ray = pytest.importorskip("ray")
    # address="local": a new Ray of our own, as a plain run starts (ps/connect_on_ray.py); without it ray.init joined
    # any cluster another process on the machine had started (RAY_ADDRESS, `ray start`) and refused num_cpus there
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
