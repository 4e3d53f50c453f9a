"""The why-cat study's arms (bench/architectures_why_cat.py): the read-outs of the cat cell's two networks
(``READS``), the trained variants (``TRAINED``, each one ``--set`` more on Q7's cat cell), the read-outs of a trained
variant's networks (``VARIANT_READS``), the arms trained on fewer faces (``FACES``), and the configs each arm trains.
"""
from __future__ import annotations

READS = {"read-pooled": "stage2/pooled",    # the top stage before its LCN (L2 pooled codes)
         "read-codes": "stage2/codes"}      # the top stage's filter outputs: before its L2 pooling and LCN
TRAINED = {"maps-2": (("model.maps", (8, 2)),),      # stage 2 with 2 maps: a 72-unit code (the RBM's is 64), not 288
           "no-pool": (("model.pools", (1, 1)),),    # no L2 pooling in either stage (its cost becomes RICA's L1)
           # stage 2 sees the whole crop: a 12x12 filter on stage 1's 12x12 pooled map, no pooling after it (a 1x1 map,
           # each unit's field 10 + 11*2 = 32 pixels: the whole 32x32 crop); 8 units, or 64 (the RBM's code size)
           "whole": (("model.kernels", (8, 12)), ("model.pools", (3, 1))),
           "whole-64": (("model.maps", (8, 64)), ("model.kernels", (8, 12)), ("model.pools", (3, 1))),
           "untied": (("model.tile", 0),),     # no tiling, in both stages (model.tile is one value for the network)
           "tica-0.4": (("objective.pooled_l2.weight", 0.4),),   # twice the pooled-L2 (TICA) weight, both stages
           # the paper's three stages: stages 1-2 the cat cell's, a third local, tiled, L2-pooled stage on stage 2's 6x6
           # map (4x4 filters: a 3x3 map, pooled 3x3 to 1x1; field 22 + 3*2 + 2*2 = 32, the whole crop), 64 maps; 450
           # greedy steps, 150 a stage as the cat cell's two (so stages 1-2 train as the cat cell's do)
           "three": (("model.maps", (8, 8, 64)), ("model.kernels", (8, 5, 4)), ("model.strides", (1, 1, 1)),
                     ("model.pools", (3, 3, 3)), ("model.pool_strides", (2, 1, 1)), ("train.steps", 450)),
           # part 4: a whole-field top that keeps its L2 pooling. A 10x10 filter on stage 1's 12x12 map gives a 3x3 map
           # (tile 2: 4 banks), pooled 3x3 to 1x1: each filter sees 10 + 9*2 = 28 pixels, each pooled unit 32, the
           # whole crop, pooled over 9 positions; 64 maps, as whole-64. "whole-pool-2": an 11x11 filter (30 pixels), a
           # 2x2 map pooled 2x2 (4 positions, at tile 2 each its own weights)
           "whole-pool": (("model.maps", (8, 64)), ("model.kernels", (8, 10)), ("model.pools", (3, 3))),
           "whole-pool-2": (("model.maps", (8, 64)), ("model.kernels", (8, 11)), ("model.pools", (3, 2))),
           # part 6: whole-pool with its pooling alone taken away: the same 10x10 filter, 64 maps and tile 2, a 3x3
           # map kept unpooled (pool 1: its sparsity term the per-unit L1, its top LCN a 3-wide window over the 3x3
           # map): 576 units, each filter's field 10 + 9*2 = 28 pixels, not the pooled unit's 32
           "whole-unpooled": (("model.maps", (8, 64)), ("model.kernels", (8, 10)), ("model.pools", (3, 1))),
           # part 7: whole-pool trained without its pooled-L2 (TICA) sparsity term: weight 0 drops the term
           # (objectives.Objective), and the objective is one for the network, so in both stages (stage 1 then differs
           # from the cat cell's): reconstruction alone, at the fixed filter norm; pooling and the read-out kept
           "pool-no-tica": (("model.maps", (8, 64)), ("model.kernels", (8, 10)), ("model.pools", (3, 3)),
                            ("objective.pooled_l2.weight", 0.0)),
           # part 8: whole-pool with stage 2's sparsity alone made per-unit: its own terms (objectives.Objective's
           # PART/TERM) turn its pooled L2 off and put an L1 on its 576 codes at the pooled term's weight (0.2, what a
           # pool of 1 gives whole-unpooled, but for eps: |h| for sqrt(0.01 + h²)); its pools, read-out, LCN and stage
           # 1 (the shared pooled L2) are whole-pool's
           "whole-pool-l1": (("model.maps", (8, 64)), ("model.kernels", (8, 10)), ("model.pools", (3, 3)),
                             ("objective.stage2/pooled_l2.weight", 0.0), ("objective.stage2/l1.weight", 0.2))}
# part 7: read-outs of a trained variant's own two networks (its run and its no-faces twin, read the same way), as READS
# are of the cat cell's: "pool-read-codes" reads whole-pool's stage 2 before its L2 pooling and LCN (stage2/codes, as
# read-codes does the cat cell's): 64 maps x 3 x 3 = 576 units. Part 8's "pool-l1-read-codes" reads whole-pool-l1's the
# same way. Its base variant's cell comes with it, trained once
# Part 9's "pool-read-codes-64" reads 64 of those 576 codes (a layer given as (layer, units): see CodeSubset), as many
# candidates for the face unit's choice as whole-pool's pooled read has
# Part 10's "pool-l1-read-codes-64" reads whole-pool-l1's the same way (for a seed, the same 64 codes: code_subset)
VARIANT_READS = {"pool-read-codes": ("whole-pool", "stage2/codes"),
                 "pool-l1-read-codes": ("whole-pool-l1", "stage2/codes"),
                 "pool-read-codes-64": ("whole-pool", ("stage2/codes", 64)),
                 "pool-l1-read-codes-64": ("whole-pool-l1", ("stage2/codes", 64))}
# part 5: the cat cell trained on the first N of the lfw training part's 70 faces (data.train_faces; the cat cell, -1,
# trains on all 70), its 70 non-faces and data.faces_fraction kept: so fewer faces are also fewer face samples (0.3 *
# 70/140 = 15% of the samples at 70 faces, 0.3 * 35/105 = 10% at 35, 0.3 * 18/88 = 6.1% at 18)
FACES = {"faces-18": 18, "faces-35": 35}
ALL_FACES = 70      # lfw_train_faces() of the fixed split: the cat cell's count
FIGURES = ("face_owed_controls", "face_auc_controls", "face_auc_controls_no_faces", "face_owed_lfw", "face_auc_lfw")
EXTRA = ("code_dims", "edge_fraction", "final_loss")


def filter_field(cfg) -> int:
    """The side in pixels of the crop window that a top-stage pooled unit's filters and pools reach (its linear field;
    LCN's windows, and its divisor's floor, the mean over the whole map, reach further)."""
    o = cfg.model.options
    side, step = 1, 1
    for k, s, q, u in zip(o["kernels"], o["strides"], o["pools"], o["pool_strides"]):
        side, step = side + (k - 1) * step, step * s
        side, step = side + (q - 1) * step, step * u
    return side


def _condition(study, name: str):
    return next(c for c in study.conditions() if c.name == name)


def variant_config(name: str, seed: int):
    """The cat arm's cell config of Q7 built with the trained variant ``name``'s ``--set`` (``TRAINED``)."""
    from downpour.studies import study_class

    study = study_class("architectures")(sets=list(TRAINED[name]))
    return study.cell_config(_condition(study, "cat"), seed), study.measures()


def faces_config(study, name: str, seed: int):
    """The cat cell's config of ``study`` on ``seed``, trained on ``FACES[name]`` faces (``cat``: all of them)."""
    import dataclasses
    from downpour.preflight import check_run_config

    cfg = study.cell_config(_condition(study, "cat"), seed)
    if name == "cat":
        return cfg
    return check_run_config(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, train_faces=FACES[name])))
