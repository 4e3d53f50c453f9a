"""The task loop's wait takes the oldest ready future (:func:`~downpour.ps.restarts_on_ray.first_ready`), on a real
local Ray: a plain ``ray.wait(refs, num_returns=1)`` answers with some ready one, not the first, and a dead actor's
failed call the driver waited on while it ran can be left behind later answers. With such a wait a crashed node's
worker was seen lost 101-121 s after its cycles had failed, the survivor's answers read first
(tests/test_ps_ray_nodes.py, measured 2026-12-06)."""
import time

import pytest

ray = pytest.importorskip("ray")

from downpour.ps.restarts_on_ray import first_ready  # noqa: E402


@ray.remote(num_cpus=0)
class Slow:
    def cycle(self, seconds: float) -> int:
        time.sleep(seconds)
        return 1


@ray.remote(num_cpus=0)
def answer() -> dict:
    return {"steps": 1}


def test_a_dead_actors_failed_call_is_taken_before_later_answers_ready_in_memory(local_ray):
    """Eight times: a call waited on while it runs (as the driver's loop does), its actor killed, then three answers
    ready after it. A plain wait gave one of the three before it in 8 of 12 such tries (Ray 2.60, 2026-12-06): all
    eight taken first by chance is some 1 in 6,000."""
    for _ in range(8):
        actor = Slow.remote()
        failed = actor.cycle.remote(600)
        assert first_ready([failed], timeout=0.3) == []
        ray.kill(actor)
        ray.wait([failed], timeout=60)
        later = [answer.remote() for _ in range(3)]
        ray.get(later)
        assert first_ready([failed, *later], timeout=10) == [failed]
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(failed)


def test_with_none_ready_it_waits_for_the_first_to_come_or_answers_none_past_the_timeout(local_ray):
    actor = Slow.remote()
    slow, quick = actor.cycle.remote(600), answer.remote()
    assert first_ready([slow, quick], timeout=60) == [quick]
    assert first_ready([slow], timeout=0.2) == []
    assert first_ready([], timeout=0) == []
    ray.kill(actor)
