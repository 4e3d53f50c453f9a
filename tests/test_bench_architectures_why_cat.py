"""bench/architectures_why_cat.py: each variant paired seed by seed with the cat cell, Holm's p over the variants'
face_owed_controls, a trained variant's --set reaching the cell's network, the whole-crop variants' field (32 pixels,
the cat cell's 22; the three-stage and pooled whole-field ones' too; whole-pool unpooled, its pooling alone gone: 28),
the three-stage one's greedy steps, a pre-registered primary comparison kept out of Holm's family, two variants
paired with each other, an unknown variant refused by name, part 5's arms: fewer faces and the cat cell's own
twin, and the slope per doubling, and part 9's read of 64 of whole-pool's 576 codes: the same 64 for the run, its
no-faces twin and its random-weights twin, and the unit each read chose (part 10), as its index among the read's
candidates and among the layer's codes; none where the test chose none."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import architectures_why_cat as why  # noqa: E402


def _cells(path, variant, seeds, owed):
    with open(path, "a") as fh:
        for seed in seeds:
            row = {f: 0.5 for f in why.FIGURES + why.EXTRA}
            row.update(variant=variant, seed=seed, wall_s=1.0, cpu_s=2.0, face_owed_controls=owed(seed))
            fh.write(json.dumps(row) + "\n")


def test_summary_pairs_each_variant_with_the_cat_cell_of_the_same_seed(tmp_path, capsys):
    cells = tmp_path / "cells.jsonl"
    _cells(cells, "cat", range(4), lambda s: 0.01 * s)
    _cells(cells, "maps-2", [3, 1, 0, 2, 9], lambda s: 0.01 * s + 0.1 + 0.001 * s)   # seed 9: no cat cell to pair
    why.main(["summary", str(cells)])
    out = capsys.readouterr().out
    variant = out.split("maps-2: ")[1]
    assert variant.startswith("4 seeds paired with cat (0, 1, 2, 3), CPU 8 s")
    # the paired differences are 0.100, 0.101, 0.102, 0.103 (mean 0.1015); unpaired, the seeds' spread would hide them
    assert "face_owed_controls: +0.117 [" in variant and "minus cat's +0.102 [+0.099, +0.104]" in variant
    assert "3: +0.030, +0.133" in variant
    assert "Holm over the variants' face_owed_controls differences: maps-2 " in out


def test_summary_leaves_the_primary_out_of_holms_family_and_pairs_two_variants(tmp_path, capsys):
    cells = tmp_path / "cells.jsonl"
    _cells(cells, "cat", range(4), lambda s: 0.01 * s)
    _cells(cells, "whole-64", range(4), lambda s: 0.01 * s + 0.2 + 0.001 * s)
    _cells(cells, "whole-pool", range(4), lambda s: 0.01 * s + 0.05 + 0.002 * s)
    why.main(["summary", str(cells), "--primary", "whole-pool", "--family", "whole-64,whole-pool:whole-64"])
    out = capsys.readouterr().out
    # whole-pool minus whole-64, seed by seed: -0.150, -0.149, -0.148, -0.147 (not whole-pool minus cat's +0.05...)
    assert "whole-pool minus whole-64: face_owed_controls -0.149 [-0.151, -0.146]" in out
    assert "primary (pre-registered, not adjusted): whole-pool minus cat: face_owed_controls +0.053 [" in out
    holm = out.split("Holm over the variants' face_owed_controls differences: ")[1]
    assert holm.startswith("whole-64 ") and ", whole-pool:whole-64 " in holm and "whole-pool " not in holm


def test_summary_refuses_a_comparison_with_a_variant_the_file_lacks(tmp_path):
    cells = tmp_path / "cells.jsonl"
    _cells(cells, "cat", range(3), lambda s: 0.0)
    with pytest.raises(SystemExit, match="whole-pool:whole-64: no such variant in .* \\(it has cat\\)"):
        why.main(["summary", str(cells), "--family", "whole-pool:whole-64"])
    with pytest.raises(SystemExit, match="cat:cat:cat: no such variant"):     # (not a ValueError's traceback)
        why.main(["summary", str(cells), "--primary", "cat:cat:cat"])


def test_summary_refuses_a_file_without_the_cat_cell(tmp_path):
    cells = tmp_path / "cells.jsonl"
    _cells(cells, "no-pool", range(3), lambda s: 0.0)
    with pytest.raises(SystemExit, match="has no cat cell to pair the variants with"):
        why.main(["summary", str(cells)])


def test_a_trained_variant_builds_the_study_cell_with_its_setting():
    from downpour.models.registry import build

    shapes = {}
    for name in why.TRAINED:
        cfg, _ = why.variant_config(name, 0)
        assert cfg.train.steps == (450 if name == "three" else 300) and cfg.seed == 0   # Q7's cell otherwise
        shapes[name] = build(cfg, (1, 32, 32))[0].stages[-1].out_shape
    assert shapes == {"maps-2": (2, 6, 6), "no-pool": (8, 9, 9), "whole": (8, 1, 1), "whole-64": (64, 1, 1),
                      "untied": (8, 6, 6), "tica-0.4": (8, 6, 6), "three": (64, 1, 1),
                      "whole-pool": (64, 1, 1), "whole-pool-2": (64, 1, 1),
                      "whole-unpooled": (64, 3, 3), "pool-no-tica": (64, 1, 1),
                      "whole-pool-l1": (64, 1, 1)}   # the cat cell's: (8, 6, 6)


def test_whole_crop_variants_reach_the_whole_crop_where_the_cat_cell_reaches_22_by_22():
    from downpour.studies import study_class

    study = study_class("architectures")()
    assert why.filter_field(study.cell_config(why._condition(study, "cat"), 0)) == 22
    assert [why.filter_field(why.variant_config(v, 0)[0]) for v in ("whole", "whole-64", "untied")] == [32, 32, 22]
    assert why.filter_field(why.variant_config("three", 0)[0]) == 32   # a third stage, local and pooled
    for name, positions in (("whole-pool", 3), ("whole-pool-2", 2)):   # a whole-crop top that pools a few positions
        cfg, _ = why.variant_config(name, 0)
        assert why.filter_field(cfg) == 32 and cfg.model.options["pools"][1] == positions
    # whole-pool with its pooling alone taken away: the same filter, maps and stage 1; each unit's field 28, not 32
    pooled, unpooled = (why.variant_config(v, 0)[0].model.options for v in ("whole-pool", "whole-unpooled"))
    assert {k for k in pooled if pooled[k] != unpooled[k]} == {"pools"} and unpooled["pools"] == (3, 1)
    assert why.filter_field(why.variant_config("whole-unpooled", 0)[0]) == 28


def test_the_three_stage_variant_gives_each_greedy_stage_the_cat_cells_150_steps():
    from downpour.models.registry import build
    from downpour.train.setup import stages_of

    cfg, _ = why.variant_config("three", 0)
    model = build(cfg, (1, 32, 32))[0]
    assert model.n_stages == 3 and cfg.train.schedule == "greedy"
    stage = stages_of(cfg, model.n_stages)
    assert [stage(s) for s in (0, 149, 150, 299, 300, 449)] == [1, 1, 2, 2, 3, 3]


def test_run_refuses_an_unknown_variant_and_names_the_known_ones():
    known = ("maps-2, no-pool, whole, whole-64, untied, tica-0.4, three, whole-pool, whole-pool-2, whole-unpooled, "
             "pool-no-tica, whole-pool-l1, pool-read-codes, pool-l1-read-codes, pool-read-codes-64")
    with pytest.raises(SystemExit, match=rf"--variants read-codes: not cat or one of {known}"):
        why.main(["run", "--variants", "cat,read-codes", "--out", "/dev/null", "0"])


def test_summary_gives_each_seeds_slope_of_what_the_faces_gave_per_doubling_of_the_faces(tmp_path, capsys):
    import math

    cells = tmp_path / "cells.jsonl"
    # seed s gains 0.01 * (s + 1) per doubling from a level of its own: slopes 0.01 .. 0.04, mean 0.025 (sd 0.0129:
    # t(3) 3.182 * 0.0129 / 2 = 0.0205 either side)
    for variant, n in (("cat", 70), ("faces-35", 35), ("faces-18", 18)):
        _cells(cells, variant, range(4), lambda s, n=n: 0.1 * (s % 2) + 0.01 * (s + 1) * math.log2(n))
    why.main(["summary", str(cells), "--family", "cat:faces-18"])
    out = capsys.readouterr().out
    slope = out.split("slope of face_owed_controls per doubling of the faces (faces: 70 (cat), 18 (faces-18), "
                      "35 (faces-35)): ")[1]
    assert slope.startswith("+0.025 [+0.004, +0.046]") and "(4 seeds; per seed 0: +0.010, 1: +0.020" in slope
    # all the faces minus 18 of them: log2(70 / 18) = 1.96 doublings, 0.0196 .. 0.0784
    assert "cat minus faces-18: face_owed_controls +0.049 [" in out


def test_a_faces_arm_is_the_cat_cell_with_fewer_faces_and_the_cat_cells_twin():
    from downpour.data.builtin import lfw_train_faces
    from downpour.studies import study_class
    from downpour.twins import no_faces_config

    study = study_class("architectures")()
    cat = why.faces_config(study, "cat", 3)
    assert cat.data.train_faces == -1 and why.ALL_FACES == lfw_train_faces(cat.data.lfw_fold())
    for name, n in why.FACES.items():
        cfg = why.faces_config(study, name, 3)
        assert cfg.data.train_faces == n < why.ALL_FACES and cfg.seed == 3
        assert cfg.data.faces_fraction == cat.data.faces_fraction and cfg.model == cat.model and cfg.train == cat.train
        assert no_faces_config(cfg) == no_faces_config(cat)    # one twin serves every arm of a seed


def test_faces_refuses_an_arm_it_does_not_know():
    with pytest.raises(SystemExit, match="--arms faces-5: not cat or one of faces-18, faces-35"):
        why.main(["faces", "--arms", "cat,faces-5", "--out", "/dev/null", "0"])


def test_part_7s_arms_are_whole_pool_read_before_its_pooling_and_trained_without_its_pooled_cost():
    import torch
    from downpour.models.registry import build
    from downpour.objectives import Objective

    pooled, no_tica = (why.variant_config(v, 0)[0] for v in ("whole-pool", "pool-no-tica"))
    assert no_tica.model == pooled.model and no_tica.train == pooled.train and no_tica.data == pooled.data
    assert {k for k in pooled.objective if pooled.objective[k] != no_tica.objective[k]} == {"pooled_l2"}
    assert list(Objective.from_config(no_tica.objective).terms) == ["reconstruction"]    # weight 0 drops the term
    base, layer = why.VARIANT_READS["pool-read-codes"]
    model = build(why.variant_config(base, 0)[0], (1, 32, 32))[0]
    assert base == "whole-pool" and model.features(torch.zeros(1, 1, 32, 32), layer).numel() == 64 * 3 * 3


def test_part_8s_arm_is_whole_pool_with_stage_2s_sparsity_alone_a_per_unit_l1_on_its_codes():
    import torch
    from downpour.batch import Batch
    from downpour.models.registry import build

    pooled, l1 = (why.variant_config(v, 0)[0] for v in ("whole-pool", "whole-pool-l1"))
    assert l1.model == pooled.model and l1.train == pooled.train and l1.data == pooled.data
    own = {"stage2/pooled_l2": {"weight": 0.0, "eps": 0.01}, "stage2/l1": {"weight": 0.2}}   # eps: the shared term's
    assert l1.objective == {**pooled.objective, **own}
    model, objective = build(l1, (1, 32, 32))
    x = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        _, parts = objective(model.forward_train(Batch(x)))
        codes = model.features(x, "stage2/codes")        # (3, 64, 3, 3): before the pool of 3, which stays
    assert codes.shape == (3, 64, 3, 3) and model.config.pools == (3, 3)
    assert set(parts) == {"stage1/reconstruction", "stage1/pooled_l2", "stage2/reconstruction", "stage2/l1"}
    assert parts["stage2/l1"].item() == pytest.approx(0.2 * codes.abs().sum(dim=(1, 2, 3)).mean().item(), rel=1e-5)


def test_a_variants_read_out_comes_with_its_cell_trained_once(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(why, "_read_cells", lambda cfg, m, seed, base, reads, runs, **said: calls.append(
        (cfg.model.options["pools"], seed, base, reads, said)) or [{"variant": base, "seed": seed, "cpu_s": 0.0}])
    monkeypatch.setattr(why, "_trained_cell",
                        lambda name, seed: calls.append((name, seed)) or {"variant": name, "seed": seed, "cpu_s": 0.0})
    why.main(["run", "--variants", "pool-read-codes,whole-pool,pool-no-tica", "--out", str(tmp_path / "c.jsonl"), "3"])
    sets = [list(s) for s in why.TRAINED["whole-pool"]]
    assert calls == [((3, 3), 3, "whole-pool", {"pool-read-codes": "stage2/codes"}, {"sets": sets}),
                     ("pool-no-tica", 3)]     # whole-pool is not trained a second time on its own


def test_part_9s_subset_is_64_of_the_576_codes_drawn_from_the_seed():
    units = why.code_subset(576, 64, 5)
    assert len(set(units)) == 64 and units == sorted(units) and 0 <= units[0] and units[-1] < 576
    assert why.code_subset(576, 64, 5) == units and why.code_subset(576, 64, 6) != units
    with pytest.raises(ValueError, match="a subset of 600 codes of 576: it takes 1 to 576"):
        why.code_subset(576, 600, 5)


def test_part_9s_read_out_is_the_same_64_codes_of_the_run_its_no_faces_twin_and_its_random_weights_twin():
    import torch
    from downpour.analysis.units import randomized_copy, unit_responses
    from downpour.models.registry import build

    cfg = why.variant_config("whole-pool", 0)[0]
    run, no_faces = build(cfg, (1, 32, 32))[0], build(cfg, (1, 32, 32))[0]
    with torch.no_grad():
        for p in no_faces.parameters():      # another network of the same architecture
            p.mul_(-1.5)
    units = why.code_subset(576, 64, 3)
    x = torch.randn(5, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    for net in (run, no_faces):
        read = why.code_reader(net, "stage2/codes", units)
        codes = net.features(x, "stage2/codes").reshape(5, -1)                         # (5, 576)
        assert unit_responses(read, x, "stage2/codes").shape == (5, 64)
        assert torch.equal(read.features(x), codes[:, units])
        # the random-weights twin: the wrapped network's weights reset as the unwrapped one's are, the same 64 read
        random, _ = randomized_copy(read, 7)
        assert torch.equal(random.features(x), randomized_copy(net, 7)[0].features(x, "stage2/codes").reshape(5, -1)[
            :, units])


def test_part_9s_read_gives_the_face_test_the_same_64_units_in_the_run_and_its_no_faces_twin_and_names_its_unit(
        monkeypatch):
    import contextlib
    import torch
    from downpour.models.registry import build
    from downpour.studies import measure, trained

    cfg, m = why.variant_config("whole-pool", 4)
    nets = [build(cfg, (1, 32, 32))[0] for _ in range(2)]
    x = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    read = []

    def face_aucs(run, model, layer, *, no_faces, **_):
        read.append((layer, model.features(x), no_faces[1].features(x)))
        chosen = 5 if model is nets[0] else 10        # the full read's unit 5 of the 576, the subset's 10th of its 64
        return {"lfw": 0.9, "controls": 0.7, "lfw_no_faces": 0.8, "controls_no_faces": 0.6,
                "unit": {"tied_units": [chosen, 2], "tied_signs": [1, -1], "fold": 0}}

    monkeypatch.setattr(trained, "trained_run", lambda c: contextlib.nullcontext(("run", nets[0], {"final_loss": 1})))
    monkeypatch.setattr(trained, "no_faces_twin", lambda c: contextlib.nullcontext(("twin", nets[1])))
    monkeypatch.setattr(measure, "measure_run", lambda *a: {})
    monkeypatch.setattr(trained, "face_aucs", face_aucs)
    rows = why._read_cells(cfg, m, 4, "whole-pool", {"pool-read-codes": "stage2/codes",
                                                     "pool-read-codes-64": ("stage2/codes", 64)})
    units = why.code_subset(576, 64, 4)
    assert rows[2]["units"] == units and rows[2]["subset_seed"] == 4 and rows[2]["code_dims"] == 64
    assert rows[2]["face_owed_controls"] == pytest.approx(0.1)
    # part 10: each read names the unit it chose, among its candidates and among the layer's 576 codes
    assert (rows[1]["unit"], rows[1]["code"]) == (5, 5) and "units" not in rows[1]
    assert (rows[2]["unit"], rows[2]["code"]) == (10, units[10]) and units[10] != 10
    _, (layer, codes, twin_codes) = read
    assert layer == "stage2/codes"
    for net, got in zip(nets, (codes, twin_codes)):
        assert torch.equal(got, net.features(x, layer).reshape(3, -1)[:, units])


def test_a_read_that_chose_no_unit_names_none():
    assert why.chosen_code({}, {}) == {"unit": None, "code": None}
    assert why.chosen_code({}, {"units": [3, 9]}) == {"unit": None, "code": None}
    assert why.chosen_code({"unit": {"tied_units": [1]}}, {"units": [3, 9]}) == {"unit": 1, "code": 9}


def test_part_10s_read_is_whole_pool_l1s_codes_through_the_same_64_as_part_9s():
    assert why.VARIANT_READS["pool-l1-read-codes-64"] == ("whole-pool-l1", why.VARIANT_READS["pool-read-codes-64"][1])
