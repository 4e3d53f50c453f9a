"""bench/jpeg_draft.py on small photos: the reduction each gets and its crops' difference from a full decode."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import jpeg_draft  # noqa: E402


def test_the_bench_reports_each_photos_reduction_and_a_small_difference(tmp_path):
    paths = jpeg_draft.write_photos(tmp_path, [(640, 480), (600, 400), (643, 480)])
    rows = jpeg_draft.differences(paths, 16, True)
    assert [r["reduction"] for r in rows] == [8, 4, 1]       # 600x400: its square starts 100 px in, not 8-aligned
    assert 0 < rows[0]["draft_vs_full"]["max"] < 0.01 and rows[2]["draft_vs_full"]["max"] == 0   # odd: full decode
    assert all(r["draft_vs_full"]["mean"] < r["box_vs_bilinear_resize"]["mean"] for r in rows[:2])


def test_the_bench_cuts_tiles_reduced_where_they_stay_four_crops_wide(tmp_path):
    paths = jpeg_draft.write_photos(tmp_path, [(640, 480), (643, 480)])
    rows = jpeg_draft.differences(paths, 8, True, tile=128)
    assert [(r["reduction"], r["crops"]) for r in rows] == [(4, 15), (1, 15)]   # 5x3 tiles of 128 px; odd: full decode
    assert 0 < rows[0]["draft_vs_full"]["max"] < 0.01 and rows[1]["draft_vs_full"]["max"] == 0
    assert rows[0]["draft_vs_full"]["mean"] < rows[0]["box_vs_bilinear_resize"]["mean"]
