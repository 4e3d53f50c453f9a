"""bench/variance_gate.py on the protocol: every row is a median over interleaved repetitions, with its
range and the load beside it."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import variance_gate  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_quick_rows_are_medians_over_repetitions_with_their_load(capsys):
    variance_gate.main(["--quick", "--reps", "3", "--repeats", "1", "--layers", "untied", "conv"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["image"], r["layer"]) for r in rows] == [("padded", "untied"), ("padded", "conv"),
                                                         ("grass", "untied"), ("grass", "conv")]
    for r in rows:
        lo, hi = r["speedup_range"]
        assert r["reps"] == 3 and lo <= r["speedup"] <= hi
        assert r["ms_ungated"] > 0 and r["ms_gated"] > 0 and len(r["load_1min"]) == 2
        assert r["path"] in ("gated", "bands", "ungated") and r["path_exact"] in ("gated", "dense", "bands")
        assert 0.0 <= r["flat_fraction"] <= 1.0 and r["speedup_exact"] > 0
        assert (r["estimated_open"] is not None) == (r["path"] == "ungated")
    assert next(r for r in rows if r["image"] == "grass")["flat_fraction"] < 0.05      # busy: nothing to skip
    assert all(r["path"] == "ungated" for r in rows if r["image"] == "grass")     # ... so auto runs the layer plain
    assert next(r for r in rows if r["image"] == "padded")["flat_fraction"] > 0.5      # a face in a flat canvas
    # ... whose tile-rows above and below it are closed: the band path computes about half the rows
    assert next(r for r in rows if r["image"] == "padded" and r["layer"] == "conv")["band_rows"] < 0.7


def test_the_main_jobs_tiled_layer_has_rows_too(capsys):
    variance_gate.main(["--quick", "--reps", "1", "--repeats", "1", "--layers", "tiled"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["image"], r["layer"]) for r in rows] == [("padded", "tiled"), ("grass", "tiled")]
    assert all(r["ms_ungated"] > 0 and r["ms_gated"] > 0 for r in rows)
    # one repetition: speedup is ungated / gated, above 1 exactly when the gated call was faster
    assert all((r["speedup"] - 1) * (r["ms_ungated"] - r["ms_gated"]) >= 0 for r in rows)
    # shared banks: the padded face's closed tile-rows leave the band path about half the rows
    assert rows[0]["flat_fraction"] > 0.5 and rows[0]["band_rows"] < 0.7
