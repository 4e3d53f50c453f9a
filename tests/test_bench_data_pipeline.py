"""bench/data_pipeline.py on the shared protocol: the worker and the array pass run --reps times interleaved, each
row a median with its range and the load, the pipeline's rate over the training step's paired per repetition.
The roles' processes are stood in for (each real one spawns a fresh interpreter)."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import data_pipeline  # noqa: E402


def test_the_worker_and_the_array_pass_repeat_interleaved_with_a_paired_ratio(monkeypatch, capsys):
    calls = []
    worker_rates = iter([(100.0, 50.0), (300.0, 100.0), (120.0, 80.0)] * 2)   # (pipeline, training step) images/s

    def in_child(target, *args):
        calls.append(target.__name__)
        role = {"driver": {"role": "driver", "peak_rss_mb": 100.0, "shard": b""},
                "memory": {"role": "memory", "peak_rss_mb": 200.0},
                "npy_worker": {"role": "npy", "peak_rss_mb": 50.0, "images_per_s": 1000.0, "pipeline_cpu_ms": 1.0}}
        if target.__name__ != "worker":
            return role[target.__name__]
        rate, train = next(worker_rates)
        return {"role": "worker", "peak_rss_mb": 150.0, "loader_peak_rss_mb": 60.0, "images_per_s": rate,
                "train_images_per_s": train, "streamed_train_images_per_s": train, "pipeline_cpu_ms": 1.0,
                "train_cpu_ms": 2.0}

    monkeypatch.setattr(data_pipeline, "_in_child", in_child)
    monkeypatch.setattr(data_pipeline, "make_folder", lambda folder, n: 0.0)
    data_pipeline.main(["--images", "2", "3", "--reps", "3"])
    assert calls == ["driver", "memory", *["worker", "npy_worker"] * 3, "driver", *["worker", "npy_worker"] * 3]
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    worker = next(r for r in rows if r["role"] == "worker")
    assert worker["reps"] == 3 and worker["images_per_s"] == 120.0
    assert worker["ranges"]["images_per_s"] == [100.0, 300.0]
    assert worker["pipeline_vs_train"] == {"median": 2.0, "range": [1.5, 3.0]}     # 2, 3, 1.5: not 120 / 80
    assert {"median", "range"} <= set(worker["load_1min"])
    assert rows[-1]["role"] == "summary" and rows[-1]["pipeline_vs_train"] == 2.0
