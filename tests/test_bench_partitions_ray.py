"""bench/partitions_ray.py: the split replica's Ray run against the whole one, each a ``downpour train`` of its own
(split_threads.train, on Ray and without the no-faces twin); the processes are faked here, the bench runs Ray."""
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import partitions_ray  # noqa: E402
import split_threads  # noqa: E402


def test_partitions_ray_times_split_against_whole_on_ray_without_the_twin(monkeypatch, capsys):
    commands = []

    def run(argv, **kwargs):
        commands.append(argv)
        k = int(argv[argv.index("--set") + 1].split("=")[1])
        result = {"seconds": 2.0 * k, "final_loss": 1.0}
        return subprocess.CompletedProcess(argv, 0, stdout="step 1\n" + json.dumps(result) + "\n", stderr="")

    monkeypatch.setattr(split_threads.subprocess, "run", run)
    (row,) = partitions_ray.main(["--reps", "2", "--steps", "7", "--partitions", "3"])
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == [row]
    assert len(commands) == 4
    for argv, k in zip(commands, (1, 3, 1, 3)):
        shown = " ".join(argv[3:])
        assert shown.startswith("now train --config main --runner ray") and f"cluster.partitions={k}" in shown
        assert "--set analysis.no_faces_twin=false" in shown and "--steps 7 --no-report" in shown
    assert row["seconds"] == {"whole": {"median": 2.0, "range": [2.0, 2.0]}, "split": {"median": 6.0, "range": [6.0, 6.0]}}
    assert row["split_vs_whole"]["of_medians"] == 3.0 and row["partitions"] == 3 and row["reps"] == 2
