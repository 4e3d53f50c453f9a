"""What the summary line ``downpour train`` prints at a run's end says of its data (every runner's)."""
from __future__ import annotations

from typing import Any

# how many files the run had (a stream's listed items and how many of them were read; in memory the images read),
# the other files left out, then the sums of the reads: the counts of files come first, as the sums and n_skipped
# alone would say on no line of a run's console how many of a folder's 3,010 image files it trained on
SUMMARY_KEYS = ("n_items", "items_read", "n_images", "n_ignored", "reads", "samples", "n_skipped",
                "workers_unreported", "counted_from_step")


def summary_data(data_info: dict[str, Any]) -> dict[str, Any]:
    """The keys of :data:`SUMMARY_KEYS` that a run's data telemetry (data.json's content) has, in that order."""
    return {k: data_info[k] for k in SUMMARY_KEYS if k in data_info}
