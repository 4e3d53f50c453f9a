"""The Ray driver (``RayCluster``) on stand-ins, no Ray started (tests/test_ps_ray_driver_losses.py,
test_ps_ray_driver_checkpoints.py): ``FakeRay`` where the driver's modules call ``ray`` (the ``fake_ray`` fixture),
``FakeActor`` for its actors, and :func:`stand_in`, the driver's own state on them."""
from typing import Any

import pytest
import ray
from scripted_ray import HandedCluster

import downpour.ps.asking_on_ray as asking_module
import downpour.ps.cluster_on_ray as driver_module
import downpour.ps.driving_on_ray as driving_module
import downpour.ps.restarts_on_ray as restarts_module
import downpour.ps.starting_on_ray as starting_module
from downpour.ps.cluster_on_ray import RayCluster
from downpour.ps.coordinator import Coordinator
from downpour.ps.node_environments import start_report


class FakeRay:
    """What the driver calls of ``ray``: ``get`` (values pass through; an exception is raised), ``kill``, ``nodes``."""

    exceptions = ray.exceptions

    def __init__(self) -> None:
        self.killed: list[Any] = []
        self.node_list: list[dict[str, Any]] = []   # what ``nodes`` answers

    def nodes(self) -> list[dict[str, Any]]:
        return self.node_list

    def get(self, refs: Any, timeout: float | None = None) -> Any:
        values = [r.value if isinstance(r, Ref) else r for r in (refs if isinstance(refs, list) else [refs])]
        for v in values:
            if isinstance(v, BaseException):
                raise v
        return values if isinstance(refs, list) else values[0]

    def kill(self, actor: Any) -> None:
        self.killed.append(actor)

    def wait(self, refs: list[Any], num_returns: int = 1, timeout: float | None = None) -> tuple[list[Any], list[Any]]:
        """Every stood-in future is ready (an actor's answer is its value)."""
        return refs[:num_returns], refs[num_returns:]


class Ref:
    """A stood-in future: hashable, as Ray's ObjectRef is (the driver keeps sets of them), whatever its value."""

    def __init__(self, value: Any) -> None:
        self.value = value


class FakeActor:
    """``actor.method.remote(*args)`` answers a :class:`Ref` of ``answers[method](*args)`` (a value, or an
    exception ``ray.get`` raises); ``start_report``, where not given, answers ``node``'s node with this install's
    record (``node``'s exception where it is one)."""

    def __init__(self, **answers: Any) -> None:
        self.answers = answers
        if "node" in answers and "start_report" not in answers:
            self.answers["start_report"] = lambda: _report(answers["node"]())

    def __getattr__(self, method: str) -> Any:
        answer = self.answers.get(method, lambda *a: None)
        return type("Method", (), {"remote": staticmethod(lambda *args: Ref(answer(*args)))})()


def stand_in(coord: Coordinator, shard_actors: list[Any], workers: list[Any], restarts: int = 0) -> RayCluster:
    """The driver's own state on stand-in actors, built by its real constructor (no Ray: scripted_ray.HandedCluster)."""
    return HandedCluster(coord, shard_actors, workers, restarts)


@pytest.fixture
def fake_ray(monkeypatch):
    """:class:`FakeRay` where the driver, its questions and its restarts call ``ray``: the stand-in."""
    fake = FakeRay()
    monkeypatch.setattr(driver_module, "ray", fake)
    monkeypatch.setattr(asking_module, "ray", fake)
    monkeypatch.setattr(restarts_module, "ray", fake)
    monkeypatch.setattr(starting_module, "ray", fake)
    monkeypatch.setattr(driving_module, "ray", fake)
    return fake


def _report(node: Any) -> Any:
    """An actor's start_report on ``node`` (an exception passes through: the actor's answers fail)."""
    return node if isinstance(node, BaseException) else start_report(node)
