"""bench/training_throughput.py's breakdown on a made-up profile: each figure per training step, the
shards' apply per push counted once however many shards share it."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import training_throughput  # noqa: E402


class NoChildren:
    def by_name(self, t0: float, t1: float) -> tuple[dict[str, float], float]:
        return {}, t1 - t0


def _profile(shards: int) -> dict:
    worker = {"since": 0.0, "until": 10.0, "counts": {"steps": 100}, "cpu_s": 3.0,
              "seconds": {"step": 3.2, "grad_flatten": 0.2, "fetch_read": 0.1}}
    # every push is split over the shards: each applies its part of all 100 pushes, in 0.1 s
    shard = {"counts": {"pushes": 100}, "seconds": {"apply": 0.1}, "cpu_s": 0.15}
    return {"workers": [worker], "shards": [dict(shard) for _ in range(shards)],
            "driver": {"seconds": {"wait": 0.5}, "cpu_s": 0.2}}


@pytest.mark.parametrize("shards", [1, 2, 4])
def test_the_apply_per_push_is_every_shards_part_of_one_push(shards):
    ms = training_throughput.per_step(_profile(shards), NoChildren(), steps=100)
    assert ms["shard.apply_per_push"] == pytest.approx(1.0 * shards)     # 1 ms of each shard's time per push
    assert ms["worker.compute"] == pytest.approx(30.0) and ms["worker.fetch_read"] == pytest.approx(1.0)
    assert ms["driver.wait"] == pytest.approx(5.0) and ms["cpu.shards"] == pytest.approx(1.5 * shards)
    assert ms["cpu_ms_per_step"] == pytest.approx(30.0 + 1.5 * shards + 2.0)


@pytest.mark.parametrize("steps", ["0", "5"])
def test_steps_below_10_are_refused_with_the_floor_the_help_declares(steps, monkeypatch, capsys):
    """--steps's help says at least 10 (two logged rows), and the refusal says so too (not "must be at least 1")."""
    monkeypatch.setattr(sys, "argv", ["training_throughput.py", "--steps", steps])
    with pytest.raises(SystemExit) as exit_:
        training_throughput.main()
    assert exit_.value.code == 2
    assert f"argument --steps: must be at least 10, got {steps}" in capsys.readouterr().err


@pytest.mark.parametrize("steps, warned", [("10", True), ("99", True), ("100", False)])
def test_a_short_run_warns_that_its_ratios_mean_little(steps, warned, monkeypatch, capsys):
    """--steps 10 prints a Ray-vs-local ratio with a word that Ray's start-up weighs in it.
    The runs are stood in for: only what main prints around them is checked."""
    import json

    monkeypatch.setattr(training_throughput, "measure", lambda name, rep, args, root: {
        "samples_per_s": 100.0, **({} if name == "local" else {"per_step_ms": {"worker.compute": 1.0}})})
    training_throughput.main(["--steps", steps, "--reps", "1"])
    out, err = capsys.readouterr()
    summary = json.loads(out.splitlines()[-1])
    assert ("warning: --steps" in err) == warned and ("warning" in summary) == warned
    if warned:
        assert f"--steps {steps} is under 100" in summary["warning"] and "start-up" in summary["warning"]
