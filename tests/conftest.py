"""Fixtures shared across test modules."""
import gc
import json
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

from downpour.analysis.blas import one_blas_thread
from scratch_left import no_scratch_left  # noqa: F401 (autouse: a test that leaves downpour's scratch fails)
import scratch_left


@pytest.hookimpl(hookwrapper=True)
def pytest_collection(session):
    """No garbage collection while the ~125 test modules are imported (22 full collections of a growing heap, 2.6 s
    of the collection's 12 s CPU, 2026-12-05), and what they left frozen after: a full collection while the tests run
    does not walk the modules, torch's and Ray's included. (Frozen objects are never collected: they live as long
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
    with one_blas_thread():   # scipy's own BLAS too
        yield
    torch.set_num_threads(n)


@pytest.fixture
def saved(monkeypatch) -> list:
    """The figures a test draws, in order, kept as they are laid out instead of saved (``canvas.save``)."""
    from downpour.analysis import canvas     # (here, not at the top: most tests draw no figure)

    kept: list = []
    monkeypatch.setattr(canvas, "save", lambda fig, path: kept.append(fig) or path)
    return kept


@pytest.fixture
def web_server():
    """A plain HTTP server on a free port of this machine (as `python -m http.server PORT` is): its address."""
    import threading
    from http.server import HTTPServer, SimpleHTTPRequestHandler

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    server = HTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def gcs_like():
    """HOST:PORT of a listener that answers as a head's GCS opens (a Ray 2.60 head's SETTINGS frame, the answer to
    HTTP/2's client preface), then hangs up: the handshake takes it for a head, and the token question gets no answer
    (left to Ray)."""
    import socket
    import threading

    settings = b"\x00\x00\x18\x04\x00\x00\x00\x00\x00\x00\x04\x00@\x00\x00\x00\x05\x00@\x00"
    server = socket.create_server(("127.0.0.1", 0))

    def answer():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:          # (closed: the test is over)
                return
            with conn:
                conn.recv(64)
                conn.sendall(settings)
    threading.Thread(target=answer, daemon=True).start()
    with server:
        yield f"127.0.0.1:{server.getsockname()[1]}"


@pytest.fixture
def actors_in_process(monkeypatch):
    """Ray actors (their classes under Ray's decorator, ``Actor.__ray_metadata__.modified_class``) run in this process:
    ``ray.get`` hands back what the calls returned, an actor's thread count is left be, and whatever they seed of
    torch's RNG (a partition actor seeds it) is restored after the test."""
    import ray

    monkeypatch.setattr(ray, "get", lambda refs: refs)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    with torch.random.fork_rng(devices=[]):
        yield


RAY = dict(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
# address="local": a new Ray of our own, as a plain run starts (ps/connect_on_ray.py); without it ray.init joined
# any cluster another process on the machine had started (RAY_ADDRESS, `ray start`) and refused num_cpus there
_shared: dict[str, object] = {"up": False, "modules": set()}   # whether local_ray's shared Ray is up; the modules on it


def _on_shared_ray(item: pytest.Item) -> bool:
    return "local_ray" in getattr(item, "fixturenames", ()) and item.get_closest_marker("own_ray") is None


def pytest_configure(config):
    # SIGINT handled, as in a terminal, even where the suite was started with it ignored (`pytest ... &` from a script
    # or any shell without job control ignores it, and Python keeps an inherited "ignore"): left ignored, the tests'
    # Ctrl-Cs (os.kill(os.getpid(), signal.SIGINT)) would never come, a run a test stops at step 3 would train on to
    # its end and return 0 where 130 is asked (tests/test_analysis_bad_runs.py), and a command a test starts would
    # inherit the "ignore" too (a cross-fit's fold processes; test_crossfit.py's fixture did this for its test alone)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    scratch_left.start(config)             # this session's temporary folder (tests/scratch_left.py)
    config.addinivalue_line("markers", "own_ray: the module's local_ray is a Ray of its own, started after the "
                                       "module's fixtures (what they put in os.environ reaches Ray's workers)")


def pytest_collection_modifyitems(config, items):
    """The modules on the shared local Ray run one after another, where the first of them was: one start for all
    (docs/benchmarks.md#ray_test_modules); the rest keep their order. On pytest-xdist's processes (`make test`) the
    work units (:func:`scope`) go longest first instead (:func:`longest_first`), the shared Ray's modules together:
    :func:`pytest_xdist_make_scheduler` hands them out in this order, and gives the shared Ray's to one process."""
    modules = _shared["modules"] = {getattr(item, "module", None) for item in items if _on_shared_ray(item)}
    if hasattr(config, "workerinput"):   # the same order on every process (xdist checks they collected alike)
        shared = shared_ray_modules(TESTS)
        table = json.loads(MODULE_SECONDS.read_text()) if MODULE_SECONDS.exists() else {}
        order = longest_first(table, list(dict.fromkeys(item.nodeid.split("::", 1)[0] for item in items)), shared)
        rank = {unit: i for i, unit in enumerate(order)}
        items.sort(key=lambda item: rank[scope(item.nodeid, shared)])   # stable: a module's tests keep their order
        return
    sharing = [item for item in items if getattr(item, "module", None) in modules]
    if sharing:
        first = items.index(sharing[0])
        rest = [item for item in items if getattr(item, "module", None) not in modules]
        items[:] = rest[:first] + sharing + rest[first:]


@pytest.hookimpl(optionalhook=True)     # pytest-xdist's hook: a plain pytest without it runs the suite as before
def pytest_xdist_make_scheduler(config, log):
    """With ``-n N`` (pytest-xdist; `make test` runs two processes), a test module goes whole to one process (its
    module fixtures, a quick study's run among them, are built once), and the modules on the shared local Ray go
    together, to one process: one Ray start, and never two shared Rays at once (:func:`scope`); each to whichever
    process is free, in the order the processes collected them, longest first (:func:`pytest_collection_modifyitems`;
    `make test`'s ``--no-loadscope-reorder`` keeps xdist from ordering them by test count instead). (xdist's own
    ``--dist loadgroup`` would do the latter from marks, but xdist 3.8 writes them into ``item._nodeid``, which
    pytest 9 does not read: both processes would start the shared Ray.)"""
    from xdist.scheduler import LoadScopeScheduling

    shared = shared_ray_modules(TESTS)

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope(nodeid, shared)

    return ByModule(config, log)


SHARED_RAY = "the shared Ray's modules"


def shared_ray_modules(folder: Path) -> set[str]:
    """The test modules on the shared local Ray, told before any process collected (xdist's scheduler sees test ids
    only), by their text: those naming the ``local_ray`` fixture but not ``own_ray``."""
    return {f"tests/{path.name}" for path in folder.glob("test_*.py")
            if "local_ray" in (text := path.read_text()) and "own_ray" not in text}


def scope(nodeid: str, shared: set[str]) -> str:
    """The work a test goes to a process with: its module, or the shared Ray's modules all together."""
    module = nodeid.split("::", 1)[0]
    return SHARED_RAY if module in shared else module


TESTS = Path(__file__).parent
MODULE_SECONDS = TESTS / "module_seconds.json"   # written by tests/module_seconds.py from a --durations=0 output
DEFAULT_SECONDS = 1.0   # a module the table lacks: added after it, or its tests all under --durations' 5 ms
                        # (the median module: 1.3 s)


def longest_first(seconds: dict[str, float], modules: list[str], shared: set[str],
                  default: float = DEFAULT_SECONDS) -> list[str]:
    """The work units (:func:`scope`) of ``modules`` (test ids' module parts, in collection order), longest first by
    ``seconds`` (a module's; ``default`` where it has none), the shared Ray's modules counting as their sum; ties keep
    collection order. xdist hands each unit to whichever process is free: longest first, the two finish within about
    the last unit's time of each other, where collection order left test_twins' 52 s alone at the end
    (docs/benchmarks.md#test_processes)."""
    total = unit_seconds(seconds, modules, shared, default)
    return sorted(total, key=lambda unit: -total[unit])


def unit_seconds(seconds: dict[str, float], modules: list[str], shared: set[str],
                 default: float = DEFAULT_SECONDS) -> dict[str, float]:
    """Each work unit's (:func:`scope`) seconds: its ``modules``' by ``seconds`` (``default`` where it has none),
    summed, in collection order."""
    total: dict[str, float] = {}
    for module in modules:
        unit = scope(module, shared)
        total[unit] = total.get(unit, 0.0) + seconds.get(module, default)
    return total


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Before a test of a module not on the shared Ray (one that starts a Ray of its own, or checks none is up),
    the shared Ray goes."""
    if _shared["up"] and getattr(item, "module", None) not in _shared["modules"]:
        _stop_shared()


def pytest_sessionfinish(session):
    _stop_shared()
    scratch_left.finish(session)


def pytest_terminal_summary(terminalreporter):
    scratch_left.summary(terminalreporter)


def _stop_shared() -> None:
    if _shared["up"]:
        from downpour.ps.shutdown_on_ray import shut_down

        shut_down()   # (ray.shutdown(), a second sooner: its monitor killed first)
        _shared["up"] = False


def _left_clean(ray, wait_s: float = 10.0) -> bool:
    """Whether a module left the shared Ray as it found it: no named actor (a run's) alive, every CPU free (no
    ``Hog``); a kill or a dead job's actors take a moment to go."""
    deadline = time.monotonic() + wait_s
    while True:
        clean = (not ray.util.list_named_actors(all_namespaces=True)
                 and ray.available_resources().get("CPU", 0.0) == ray.cluster_resources().get("CPU"))
        if clean or time.monotonic() > deadline:
            return clean
        time.sleep(0.2)


@pytest.fixture(scope="module", autouse=True)
def no_stray_ray(request):
    """A module fails that leaves a Ray up that it did not start through :func:`local_ray` (a ``ray.get([])``
    on stand-ins starts one of its own: Ray initialises itself at its first call), in its last test's teardown, named;
    that Ray goes, so the next module's ``local_ray`` does not fail with "ray.init twice" and no clue where it came
    from. (Ray's state is asked only where Ray was imported: most modules never import it.)"""
    yield
    if (stray := stray_ray(request.node.nodeid)) is not None:
        pytest.fail(stray, pytrace=False)


def stray_ray(module: str) -> str | None:
    """What is wrong where a Ray is up that ``module`` did not start through :func:`local_ray` (that Ray shut down),
    or None: none up, or local_ray's shared one (an ``own_ray`` one is down by the time this is asked)."""
    ray = sys.modules.get("ray")
    if ray is None or _shared["up"] or not ray.is_initialized():
        return None
    ray.shutdown()
    return (f"{module} left a Ray running that it did not start through the local_ray fixture (a ray.get, ray.wait "
            "or ray.kill that no stand-in took starts one)")


@pytest.fixture(scope="module")
def local_ray(request):
    """A local Ray (2 CPUs) for a test module: shared by the modules asking for it (start-up costs seconds), which
    run together (:func:`pytest_collection_modifyitems`); a module that left actors or CPUs taken behind hands the
    next one a fresh Ray. A module marked ``own_ray`` gets one of its own, shut down after it."""
    ray = pytest.importorskip("ray")
    own = request.node.get_closest_marker("own_ray") is not None
    if own:
        _stop_shared()
    if not (_shared["up"] and ray.is_initialized()):
        from downpour.ps.ray_chatter import quiet_start

        quiet_start()   # Ray's start-up lines, as a run keeps them off its terminal (in a failed test's captured log)
        ray.init(**RAY)
        _shared["up"] = not own
    yield
    if own or not (ray.is_initialized() and _left_clean(ray)):
        from downpour.ps.shutdown_on_ray import shut_down

        shut_down()
        _shared["up"] = False
