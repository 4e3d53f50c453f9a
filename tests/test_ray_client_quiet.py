"""Joining over ``ray://`` says nothing of Ray's own plumbing: Ray 2.60's ``ray.init`` turns its default log_to_driver
(None) into True, hands every argument that differs from the default to the Ray Client server's ``ray.init``, and
logs "Passing the following kwargs to ray.init() on the server: log_to_driver", which every `downpour train --address
ray://HOST:10001` would print. Ray's own ``ray.init`` runs here up to the client's connection."""
import logging

import pytest

ray = pytest.importorskip("ray")


def test_a_ray_client_join_does_not_print_rays_note_of_the_arguments_it_hands_the_server(monkeypatch):
    from ray import client_builder

    from downpour.errors import RunError
    from downpour.ps import connect_on_ray

    def connect(self):   # where the client would dial the server
        raise ConnectionError("stand-in: no Ray Client server")

    monkeypatch.setattr(connect_on_ray, "_reachable", lambda address, timeout: None)
    monkeypatch.setattr(client_builder.ClientBuilder, "connect", connect)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    said = _Heard()
    logger = logging.getLogger("ray.client_builder")   # (heard where Ray's own handler would print it)
    logger.addHandler(said)
    try:
        with pytest.raises(RunError, match="stand-in"):
            connect_on_ray.connect("ray://127.0.0.1:10001")
    finally:
        logger.removeHandler(said)
    assert not [m for m in said.messages if "Passing the following kwargs" in m]


class _Heard(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_rays_note_of_more_arguments_than_its_own_default_still_prints():
    """Only Ray's note of the one argument it hands on by itself is dropped, word for word: one that names more (an
    argument a run passes on purpose) is not hidden by it."""
    from downpour.ps.ray_chatter import quiet_start

    quiet_start()
    builder = logging.getLogger("ray.client_builder")
    said = "Passing the following kwargs to ray.init() on the server: "
    notes = [builder.makeRecord(builder.name, logging.INFO, __file__, 1, said + kwargs, (), None)
             for kwargs in ("log_to_driver", "log_to_driver, runtime_env", "namespace")]
    assert [builder.filter(n) for n in notes] == [False, True, True]
