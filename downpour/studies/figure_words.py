"""A study figure's name as a verdict says it: ``figure_words("delta_heldout_recon")`` -> "held-out reconstruction
error". Holm's paragraph names the readings it keeps in these words, not by the key a cell stores
("more/l1=0.01: delta_heldout_recon higher" said nothing to a reader). A paired difference ("d_" or "delta_" before
the figure) reads as its figure: "higher" already says against the condition's reference. A name not in
:data:`WORDS` reads with its underscores as spaces. The comparisons table of study.html and study.md names each
comparison by the same words."""
from __future__ import annotations

import re

__all__ = ["WORDS", "figure_words"]

# figure name (as the studies store it) -> words; the studies' keys, from costs, staleness, templates, flat-skipping,
# mechanisms, first-layer and architectures. Templates', architectures' and mechanisms' difference sentences read
# these words; mechanisms' LABELS add each range's unit ("scale range (octaves)"), which its numbers need.
WORDS = {
    "hoyer": "Hoyer sparsity", "active": "fraction of codes active", "mean_code": "mean code",
    "gap": "over-fitting gap", "heldout_recon": "held-out reconstruction error",
    "train_recon": "training reconstruction error",
    "hoyer_gap_rank_correlation": "rank correlation of Hoyer sparsity and the gap",
    "probe": "probe accuracy", "probe_digits": "digits probe accuracy", "probe_lfw": "lfw probe accuracy",
    "face_auc_lfw": "face AUC vs lfw non-faces", "face_auc_controls": "face AUC on the matched controls",
    "face_owed_controls": "what the faces gave the face unit", "edge_fraction": "edge-like fraction",
    "seconds_per_step": "seconds per step", "time": "time", "stage1_cost": "final stage-1 cost",
    "vs_cost": "final cost", "vs_success": "success rate", "diverged_vs": "seeds diverged",
    "inv_scale_octaves": "scale range", "inv_scale_up_octaves": "scale range's upper end",
    "inv_shift": "translation range", "inv_rotation": "rotation range",
    # (the ranges of the AUC as mechanisms' verdict says them: the comparisons table said "scale range (by AUC)" beside
    # its "scale range of the AUC (octaves)")
    "inv_scale_octaves_auc": "scale range of the AUC", "inv_scale_up_octaves_auc": "scale range of the AUC's upper end",
    "inv_shift_auc": "translation range of the AUC", "inv_rotation_auc": "rotation range of the AUC",
}


def figure_words(name: str) -> str:
    """The words for figure ``name``, its "d_" / "delta_" prefix dropped."""
    base = re.sub(r"^(d|delta)_", "", name)
    if base in WORDS:
        return WORDS[base]
    if probe := re.fullmatch(r"probe_(\w+?)_(\w+)", base):      # a probe on a layer: first-layer's probe_{set}_{layer}
        return f"{probe[1]} probe accuracy on {_layer_words(probe[2])}"
    return base.replace("_", " ")


def _layer_words(layer: str) -> str:
    """A probed layer in words: "stage1" -> "stage 1"; the input ("raw", "pixels", "raw_pixels") -> "raw pixels"."""
    if layer in ("raw", "pixels", "raw_pixels"):
        return "raw pixels"
    return re.sub(r"^stage(\d+)$", r"stage \1", layer).replace("_", " ")
