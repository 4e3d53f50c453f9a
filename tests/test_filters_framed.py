"""filters.png frames the filters the edge-like metric counts: the framed tiles are the ones behind analysis.json
filters.edge_fraction, so its share can be checked by eye."""
from __future__ import annotations

import numpy as np
from matplotlib.patches import Rectangle

from downpour.analysis import figures
from downpour.analysis.edges import edge_like, edge_summary


def _planted(rng: np.random.Generator, edges: int, noise: int, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(n, 1, size, size) step edges (the metric passes all) and Gaussian noise (it passes none), shuffled; and which
    are the edges."""
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    theta = rng.uniform(0, np.pi, edges)[:, None, None]
    steps = np.tanh((x * np.cos(theta) + y * np.sin(theta)) / 0.8)
    bank = np.concatenate([steps, rng.standard_normal((noise, size, size))])[:, None]
    order = rng.permutation(len(bank))
    return bank[order], order < edges


def _frames(saved: list) -> list[tuple[float, float]]:
    ax = saved[-1].axes[0]
    return sorted(p.get_xy() for p in ax.patches if isinstance(p, Rectangle))


def test_the_framed_filters_are_the_ones_edge_fraction_counts(tmp_path, saved):
    bank, is_edge = _planted(np.random.default_rng(0), 11, 14)
    edgy = edge_like(bank)
    summary = edge_summary(bank)
    assert np.array_equal(edgy, is_edge) and round(summary["edge_fraction"] * summary["count"]) == 11
    figures.filter_grid(bank, tmp_path / "filters.png", edgy=edgy)
    cols = 5                                                  # 25 tiles of 8x8, 5 a row, a 1-pixel border each
    assert _frames(saved) == sorted((q * 9, r * 9) for r, q in map(lambda i: divmod(int(i), cols), np.flatnonzero(edgy)))
    assert "framed: edge-like by the metric (11 of 25)" in saved[-1].axes[0].get_title()


def test_a_sample_frames_its_shown_edges_and_channel_tiles_frame_their_filter(tmp_path, saved):
    bank, is_edge = _planted(np.random.default_rng(1), 60, 140)
    figures.filter_grid(bank, tmp_path / "sample.png", edgy=edge_like(bank), max_filters=50)
    shown = np.linspace(0, len(bank) - 1, 50).round().astype(int)
    assert len(_frames(saved)) == is_edge[shown].sum()
    assert "(60 of 200)" in saved[-1].axes[0].get_title()
    assert f"(50 of 200, evenly spaced; {is_edge[shown].sum()} framed)" in saved[-1].axes[0].get_title()
    two = np.concatenate([bank[:10], bank[:10]], axis=1)      # 2 channels: a grey tile per channel
    figures.filter_grid(two, tmp_path / "two.png", edgy=edge_like(two))
    assert len(_frames(saved)) == 2 * is_edge[:10].sum() > 0
    figures.filter_grid(bank, tmp_path / "plain.png")         # no decision given: nothing framed, nothing said
    assert not _frames(saved) and "framed" not in saved[-1].axes[0].get_title()
