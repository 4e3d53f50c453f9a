"""A conditions table's column heading in words: ``column_words("delta_heldout_recon")`` -> "Δ held-out
reconstruction error", where a key as study.json stores it would leave the reader to decode it; the key stays
findable: study.html's heading carries it as its title, and both pages list each heading's key under the table
(:func:`~downpour.studies.table.keys_note`).

A figure's words are the verdicts' (:func:`~downpour.studies.figure_words.figure_words`, a probe on a layer or on raw
pixels among them); :data:`COLUMNS` adds the keys the verdicts never name (costs in bytes and FLOPs, counts,
parameters), and the forms below read any key built on a figure's: a paired difference ("d_" / "delta_", "Δ ..."), a
face figure of the no-faces twin, a range's seeds at the sweep's end."""
from __future__ import annotations

import re

from downpour.studies.figure_words import figure_words

__all__ = ["COLUMNS", "column_words"]

# key -> heading, for the studies' keys that figure_words reads with underscores as spaces alone
COLUMNS = {
    "params": "parameters", "act_bytes": "activation memory (bytes)", "opt_bytes": "optimiser state (bytes)",
    "flops_fwd": "forward FLOPs per sample", "flops_bwd": "backward FLOPs per sample",
    "train_flops": "training FLOPs", "code_dims": "code dimensions", "final_loss": "final loss",
    "train_seconds": "training seconds", "face_owed_lfw": "what the faces gave the face unit (vs lfw non-faces)",
    "reached_cost": "share of seeds reaching the given cost", "reached_cost_seeds": "seeds measured to the given cost",
    "steps_to_cost": "steps to the given cost", "seconds_to_cost": "seconds to the given cost",
    "raw_flat": "flat share before preparation", "skipped": "share of fields skipped",
    "flops_ratio": "layer FLOPs ratio (skipping / not)", "net_flops_ratio": "network FLOPs ratio (skipping / not)",
    "layer_time_ratio": "layer time ratio (skipping / not)", "net_time_ratio": "network time ratio (skipping / not)",
    "hoyer_gap_rank_correlation_of_means": "rank correlation of the conditions' mean Hoyer sparsity and gap",
    "inv_tied": "face units tied at the top", "inv_ranged": "face units with a range",
    "inv_auc_ranged": "face units with an AUC range", "inv_rotation_disc_auc": "rotation AUC on a disc",
    "stage1_steps": "stage-1 steps", "stage2_steps": "stage-2 steps", "stage_steps": "steps per stage",
    "frozen_during_stage2": "frozen during stage 2", "first_layer": "first layer", "vs": "compared with",
    "glimpse_scales": "glimpse scales",
}


def column_words(key: str) -> str:
    """The heading of column ``key`` in words (the key with underscores as spaces where no words are known)."""
    if key in COLUMNS:
        return COLUMNS[key]
    if diff := re.fullmatch(r"(?:d|delta)_(\w+)", key):
        return f"Δ {column_words(diff[1])}"
    if ended := re.fullmatch(r"(\w+)_censored", key):
        return f"{column_words(ended[1])}: seeds at the sweep's end"
    if twin := re.fullmatch(r"(face_\w+)_no_faces", key):
        return f"{column_words(twin[1])}, trained without faces"
    return figure_words(key)
