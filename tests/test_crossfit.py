"""Cross-fitting the face test: lfw's folds, each fold scored by the run that never trained on it."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from torch import Tensor

from downpour.analysis.controls import score_controls
from downpour.analysis.crossfit import crossfit_controls
from downpour.analysis.face_controls import LEARNED, NO_FACES, View, face_controls, face_test
from downpour.analysis.face_verdict import PER_NETWORK
from downpour.analysis.headroom import headroom
from downpour.analysis.labelled import LabelledSet, load_labelled
from downpour.cli import main
from downpour.config import DataConfig
from downpour.data import build_dataset, lfw_all, lfw_indices, lfw_split
from downpour.models.base import FeatureModel
from test_analysis_planted import PlantedModel, planted_face_model

pytestmark = pytest.mark.usefixtures("one_thread")   # (the cross-fits' analyses run in this process)

FAST = dict(replicates=400, n_random_filters=100)
NEGATIVES = ("lfw_nonfaces", "phase_scrambled", "upside_down", "block_shuffled", "spectrum_matched_crops")


def _learned(result: dict, negatives: str) -> dict:
    return next(r for r in result["rows"] if r["negatives"] == negatives and r["method"] == LEARNED)


@pytest.mark.parametrize("k", [2, 5, 7])
def test_every_image_is_held_out_by_exactly_one_fold_and_the_classes_stay_balanced(k):
    held = [lfw_indices((i, k))["heldout"] for i in range(k)]
    assert np.array_equal(np.sort(np.concatenate(held)), np.arange(200))
    for i, h in enumerate(held):
        train = lfw_indices((i, k))["train"]
        assert not set(train) & set(h) and len(train) + len(h) == 200
        faces = int((h < 100).sum())
        assert faces == len(h) - faces and faces in (100 // k, 100 // k + 1)    # as many non-faces as faces
    parts = lfw_split(fold=(1, k))
    every = lfw_all()
    assert torch.equal(parts["heldout"].x, every.x[held[1]]) and np.array_equal(parts["heldout"].y.numpy(), every.y.numpy()[held[1]])
    with pytest.raises(ValueError, match="fold 5 of 5"):
        lfw_indices((5, 5))


def test_the_fixed_split_is_unchanged():
    parts = lfw_indices()
    assert np.array_equal(parts["heldout"], np.r_[70:100, 170:200])
    assert torch.equal(lfw_split()["heldout"].x, lfw_all().x[parts["heldout"]])


def test_a_fold_run_trains_without_its_fold_and_the_analysis_tests_on_it():
    cfg = DataConfig(source="faces", mode="crops", size=25, lfw_heldout="fold:1:5")
    data = build_dataset(cfg, seed=0)
    every = lfw_all().x.reshape(200, -1)
    trained_on = torch.cdist(data.x.reshape(len(data.x), -1), every).argmin(dim=1).unique().numpy()
    assert set(trained_on) == set(lfw_indices((1, 5))["train"])          # 160 images, none of fold 1
    held = load_labelled("lfw", (1, 25, 25), lfw_fold=(1, 5))
    assert len(held) == 40 and held.y.sum() == 20 and "fold 1 of 5" in held.info["source"]
    assert torch.equal(held.raw, lfw_all().x[lfw_indices((1, 5))["heldout"]])


def test_analysing_a_fold_run_chooses_on_its_training_images_and_tests_on_its_fold():
    model = Memoriser(lfw_indices((1, 5))["train"])          # knows what fold 1's run trained on
    result = face_controls(model, PlantedModel((1, 25, 25), seed=3), layer=None, input_shape=(1, 25, 25), prepare=None,
                           seeds=[0], fold=(1, 5), **FAST)
    assert result["faces"] == 20 and result["negatives"]["lfw_nonfaces"]["images"] == 20
    assert result["selection"].startswith("the 160 images of lfw's training part (80 faces)")
    row = _learned(result, "lfw_nonfaces")
    assert row["unit"] == 0 and row["selection_auc"] == 1.0 and row["auc_ci"][0] < 0.5 < row["auc_ci"][1]


class Memoriser(FeatureModel):
    """Unit 0 knows the lfw images ``known`` by heart (+5 on faces, -5 on non-faces) and is noise on
    any other image; units 1-3 are noise. Scored on an image it knows, it would look perfect."""

    def __init__(self, known: np.ndarray):
        super().__init__()
        self.input_shape = (1, 25, 25)
        every = lfw_all()
        self.register_buffer("known", every.x[known].reshape(len(known), -1))
        self.register_buffer("label", every.y[known].float() * 10 - 5)

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(len(x), -1)
        distance, nearest = torch.cdist(flat.double(), self.known.double()).min(dim=1)
        out = torch.sin(flat.sum(dim=1, keepdim=True).double() * torch.arange(1, 5, dtype=torch.float64) * 97.0)
        seen = distance < 1e-3
        out[seen, 0] = self.label[nearest[seen]].double()
        return out.float()


def _views(models: list[FeatureModel]) -> list[View]:
    return [View(m, PlantedModel((1, 25, 25), seed=3), (1, 25, 25), None) for m in models]


def test_each_fold_is_scored_by_its_own_run_and_a_memorised_unit_scores_chance():
    # Run i memorised what it trained on (every image but fold i's). Scored with its own fold it is
    # noise; had fold i been scored with run j's units, run j would know those images: AUC 1.
    k = 4
    views = _views([Memoriser(lfw_indices((i, k))["train"]) for i in range(k)])
    result = crossfit_controls(views, layer=None, seed=0, **FAST)
    assert result["faces"] == 100 and result["negatives"]["lfw_nonfaces"]["images"] == 100 and result["folds"] == k
    assert [f["test_faces"] for f in result["per_fold"]] == [25] * k
    for negatives in NEGATIVES:
        row = _learned(result, negatives)
        assert row["splits"] == k and row["selection_auc"] == 1.0 and row["split_unit"] == [0] * k
        assert row["auc_ci"][0] < 0.5 < row["auc_ci"][1], negatives
    # each fold is its own network: no one unit index for the learned unit or the twin (not the index most folds
    # chose, with its share), while a pixel is the same pixel in every fold
    for r in result["rows"]:
        if r["method"] in PER_NETWORK:
            assert r["unit"] is None and r["unit_share"] is None and len(r["split_unit"]) == k, r["method"]
        else:
            assert isinstance(r["unit"], int) and r["unit_share"] > 0, r["method"]
    leaked = crossfit_controls(views[1:] + views[:1], layer=None, seed=0, **FAST)   # fold i scored by run i+1
    assert _learned(leaked, "lfw_nonfaces")["auc"] > 0.95


def test_all_100_faces_narrow_the_interval_of_a_face_template():
    every = lfw_all()
    model = planted_face_model(LabelledSet("lfw", every.x, every.y.numpy(), ["non-face", "face"]), unit=3)
    twin = PlantedModel((1, 25, 25), seed=5)
    fixed = face_controls(model, twin, layer=None, input_shape=(1, 25, 25), prepare=None, seeds=[0], **FAST)
    pooled = crossfit_controls(_views([model] * 5), layer=None, seed=0, **FAST)
    assert pooled["faces"] == 100 and fixed["faces"] == 30
    a, b = _learned(fixed, "upside_down"), _learned(pooled, "upside_down")      # the one not near AUC 1
    assert a["unit"] == 3 and b["split_unit"] == [3] * 5 and a["auc"] < 0.97
    assert b["auc_ci"][1] - b["auc_ci"][0] < 0.8 * (a["auc_ci"][1] - a["auc_ci"][0])
    assert len(b["split_auc"]) == 5 and b["auc"] == pytest.approx(np.mean(b["split_auc"]))
    for fold in pooled["per_fold"]:     # the template is the planted network's best unit, and chosen first
        h = fold["headroom"]
        assert h["chosen_unit"] == fold["learned_unit"] == h["best_unit"] == 3 and h["best_rank"] == 1
        assert h["chosen_worst"] == h["best_worst"] == pytest.approx(min(fold["learned_auc"][n] for n in NEGATIVES[1:]))


def _no_faces_test(model: FeatureModel, no_faces: FeatureModel, prepare=None) -> dict:
    twin = PlantedModel((1, 25, 25), seed=5)
    views = [View(model, twin, (1, 25, 25), None, (no_faces, prepare)) for _ in range(2)]
    return crossfit_controls(views, layer=None, seed=0, **FAST)


def test_the_no_faces_network_is_one_more_method_paired_with_the_unit_and_named_in_the_verdict():
    every = lfw_all()
    template = planted_face_model(LabelledSet("lfw", every.x, every.y.numpy(), ["non-face", "face"]), unit=3)
    same = _no_faces_test(template, template)          # training without faces changed nothing
    for negatives in NEGATIVES:
        row = next(r for r in same["rows"] if r["negatives"] == negatives and r["method"] == NO_FACES)
        assert row["auc"] == _learned(same, negatives)["auc"]
        paired = _learned(same, negatives)["paired"][NO_FACES]
        assert paired["delta"] == 0 and paired["ci"] == [0, 0]
    assert "on 0 of 4: on none is it clear of a network that never saw a face." in same["verdict"]["sentences"][0]
    # a no-faces network of random units: the template is clear of it, and the verdict counts where
    noise = _no_faces_test(template, PlantedModel((1, 25, 25), seed=7))
    above = [p["negatives"] for p in noise["verdict"]["per_negatives"][1:] if NO_FACES in p["beats"]]
    assert "phase_scrambled" in above and f"on {len(above)} of 4 (" in noise["verdict"]["sentences"][0]
    # the no-faces network sees the images through its own input processing, not the learned run's
    flipped = _no_faces_test(template, template, prepare=lambda x: x.flip(-2))
    row = next(r for r in flipped["rows"] if r["negatives"] == "lfw_nonfaces" and r["method"] == NO_FACES)
    assert row["auc"] < _learned(flipped, "lfw_nonfaces")["auc"] - 0.05
    with pytest.raises(ValueError, match="every view needs its no-faces network"):
        crossfit_controls([View(template, template, (1, 25, 25), None, (template, None)),
                           View(template, template, (1, 25, 25), None)], layer=None, **FAST)


def test_headroom_finds_a_unit_the_choice_passed_over():
    # 8 faces then 8 non-faces, then one control image per face. Unit 0 tells faces from non-faces best (the
    # choice) but is brightness: the controls are as bright as the faces. Unit 1 is weaker on the selection
    # and perfect against the controls; unit 2 is noise.
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(8), np.zeros(8)].astype(int)
    source = np.r_[np.arange(16), np.arange(8)]
    negatives = {"lfw_nonfaces": np.arange(8, 16), "scrambled": np.arange(16, 24)}
    r = rng.normal(size=(24, 3))
    r[:16, 0] = np.r_[np.full(8, 5.0), np.zeros(8)] + 0.1 * rng.normal(size=16)
    r[16:, 0] = 5.0 + 0.1 * rng.normal(size=8)                                    # controls: as bright
    r[:16, 1] = np.r_[np.full(8, 1.0), np.zeros(8)] + 0.8 * rng.normal(size=16)
    r[16:, 1] = -3.0
    splits = [(np.r_[0:4, 8:12], np.r_[4:8, 12:16]), (np.r_[4:8, 12:16], np.r_[0:4, 8:12])]
    rows = headroom([r, r], y, negatives, source, splits, controls=("scrambled",))
    for h in rows:
        assert h["chosen_unit"] == 0 and h["chosen_worst"] < 0.8
        assert h["best_unit"] == 1 and h["best_worst"] == 1.0 and h["best_rank"] >= 2 and h["units_above_chosen"] >= 1


def test_mismatched_views_or_responses_are_refused():
    every = lfw_all()
    splits = [(lfw_indices((i, 3))["train"], lfw_indices((i, 3))["heldout"]) for i in range(3)]
    with pytest.raises(ValueError, match="2 views for 3 splits"):
        face_test(every.x.numpy(), every.y.numpy(), splits, _views([PlantedModel((1, 25, 25))] * 2), layer=None,
                  tested=np.arange(200))
    y = np.array([1, 1, 0, 0])
    with pytest.raises(ValueError, match="'m': 1 response arrays for 2 splits"):
        score_controls({"m": [np.zeros((4, 1))]}, y, {"n": np.array([2, 3])}, np.arange(4),
                       [(np.array([0, 2]), np.array([1, 3])), (np.array([1, 3]), np.array([0, 2]))])
    with pytest.raises(ValueError, match="at least 2 folds"):
        crossfit_controls(_views([PlantedModel((1, 25, 25))]), layer=None)


NO_FACES_TINY = ["--config", "ufldl-sae", "--steps", "10", "--set", "data.samples=300", "--set", "train.tensorboard=false",
                 "--set", "analysis.bootstrap=200", "--set", "analysis.control_draws=1", "--set", "analysis.random_filters=50"]
# ufldl-sae's natural patches hold no lfw image (refused alone: test_a_config_that_trains_on_no_lfw_...);
# mixed with lfw's training part (30% of the samples), each fold trains without its own held-out faces
TINY = [*NO_FACES_TINY, "--set", "data.source=natural+faces"]


def test_crossfit_trains_every_fold_pools_the_test_and_resumes(tmp_path, capsys, caplog):
    out = tmp_path / "cf"
    assert main(["crossfit", *TINY, "--folds", "2", "--out", str(out)]) == 0
    assert "low-level-matched controls" in capsys.readouterr().out
    # each fold trained without its own held-out faces: two networks, not one trained twice
    assert "holds no lfw image" not in caplog.text
    for i in range(2):
        assert f'lfw_heldout = "fold:{i}:2"' in (out / f"fold-{i}" / "config.toml").read_text()
    record = json.loads((out / "crossfit.json").read_text())
    assert record["folds"] == 2 and record["faces"] == 100 and record["select"] == "crossfit"
    assert {r["negatives"] for r in record["rows"]} == set(NEGATIVES)
    assert "lfw_heldout" not in record["resolved"]["data"] and record["resolved"]["train"]["steps"] == 10
    page = (out / "crossfit.html").read_text()
    assert "All 100 lfw faces, each tested once" in page and 'id="crossfit-folds"' in page and "of folds)" in page
    # a network's unit index shared by the folds names no one unit (each fold is its own network); a pixel's does
    assert "one per fold (its own network)" in page
    # the overrides as --set writes them, not a Python list ("[['train.steps', 10], 'data.samples=300', ...]")
    assert "with train.steps=10, data.samples=300, " in page and "[[" not in page
    # what the cross-fit set itself is no override typed (it listed analysis.no_faces_twin=false)
    assert "no_faces_twin=" not in page and record["overrides"][-1] == "data.source=natural+faces"
    assert "The criterion does not ask whether the unit owes anything to the faces" in page
    # again: both folds are kept, not retrained, and the pooled test is the same
    assert main(["crossfit", *TINY, "--folds", "2", "--out", str(out)]) == 0
    again = json.loads((out / "crossfit.json").read_text())
    assert [r["kept"] for r in again["runs"]] == [True, True] and again["rows"] == record["rows"]
    # a fold stopped before its first checkpoint is trained again (the local runner repeats bit for bit)
    (out / "fold-1" / "model.json").unlink()
    shutil.rmtree(out / "fold-1" / "checkpoints")
    assert main(["crossfit", *TINY, "--folds", "2", "--out", str(out)]) == 0
    again = json.loads((out / "crossfit.json").read_text())
    assert [r["kept"] for r in again["runs"]] == [True, False] and again["rows"] == record["rows"]
    # the same folds re-pooled with the localizer choice: kept, the test's choice recorded and shown
    assert main(["crossfit", *TINY, "--folds", "2", "--out", str(out), "--set", "analysis.face_choice=localizer"]) == 0
    localized = json.loads((out / "crossfit.json").read_text())
    assert [r["kept"] for r in localized["runs"]] == [True, True] and localized["choice"] == "localizer"
    assert record["choice"] == "nonfaces" and ": a localizer" in (out / "crossfit.html").read_text()
    # another config into the same folder is refused, naming what differs
    assert main(["crossfit", *TINY, "--seed", "9", "--folds", "2", "--out", str(out)]) == 2
    assert "seed" in capsys.readouterr().err
    # side by side too, in this process, before a fold process starts (not "2 of 2 fold runs
    # failed ... run the same command again", which would fail the same way)
    assert main(["crossfit", *TINY, "--set", "train.lr=0.5", "--folds", "2", "--jobs", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds another run" in err and "train.lr" in err and "fold runs failed" not in err
    # fewer steps than the folds reached: refused before any fold, not once fold 0 had logged "resuming"
    assert main(["crossfit", *TINY, "--steps", "5", "--folds", "2", "--out", str(out)]) == 2
    assert "holds a run trained to step 10, past train.steps = 5" in capsys.readouterr().err
    assert main(["crossfit", *TINY, "--folds", "1", "--out", str(tmp_path / "one")]) == 2
    assert "--folds must be in [2, 100]" in capsys.readouterr().err


def test_folds_kept_from_a_command_with_other_threads_are_recorded_as_they_were_trained(tmp_path):
    """crossfit.json's ``resolved`` (and the page's "N threads a fold") is how the folds were trained: run again with
    another train.threads (``--jobs N`` sets it), finished folds are kept with theirs, and the record said the new
    command's, so the folder named a setting that does not repeat its folds bit for bit."""
    out = tmp_path / "cf"
    assert main(["crossfit", *TINY, "--set", "train.threads=1", "--folds", "2", "--out", str(out)]) == 0
    assert main(["crossfit", *TINY, "--set", "train.threads=2", "--folds", "2", "--out", str(out)]) == 0
    record = json.loads((out / "crossfit.json").read_text())
    assert [r["kept"] for r in record["runs"]] == [True, True]
    assert record["resolved"]["train"]["threads"] == 1 and "lfw_heldout" not in record["resolved"]["data"]
    assert "1 thread a fold" in (out / "crossfit.html").read_text()


def test_crossfit_json_holds_the_command_that_repeats_it(tmp_path):
    """The folder alone says how to repeat the cross-fit: crossfit.json's ``command`` (and the page) is the command
    line, shell-quoted, that trains its folds as they were (in its own folder: keeps them all, the same test)."""
    import html
    import shlex

    out = tmp_path / "my cf"
    assert main(["crossfit", *TINY, "--folds", "2", "--seed", "3", "--out", str(out)]) == 0
    record = json.loads((out / "crossfit.json").read_text())
    command = shlex.split(record["command"])
    assert command[:2] == ["downpour", "crossfit"] and command[-2:] == ["--out", str(out)]
    assert ["--seed", "3"] == command[command.index("--seed"):][:2] and "--folds 2 --control none" in record["command"]
    assert main(command[1:]) == 0
    again = json.loads((out / "crossfit.json").read_text())
    assert [r["kept"] for r in again["runs"]] == [True, True] and again["rows"] == record["rows"]
    assert html.escape(record["command"]) in (out / "crossfit.html").read_text()

def test_the_last_line_says_the_folds_their_faces_the_seed_and_the_intervals(tmp_path, capsys):
    """The console gave the verdict's intervals and the files written, not how many folds tested how many faces each,
    nor the seed: "cross-fitted face test written to ..." alone."""
    assert main(["crossfit", *TINY, "--folds", "3", "--seed", "2", "--out", str(tmp_path / "cf")]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("downpour: cross-fitted face test (3 folds of 33-34 faces, seed 2, percentile 95% "
                           "intervals over 200 bootstrap replicates) written to ")
    from downpour.cli_train import tested      # --folds 100: one face a fold, not "1 faces"
    one = {"folds": 100, "per_fold": [{"test_faces": 1}] * 100, "resolved": {"seed": 0},
           "bootstrap": {"interval": "percentile 95%", "replicates": 2000}}
    assert tested(one).startswith("100 folds of 1 face, seed 0")

def test_a_damaged_checkpoint_keeps_a_finished_fold_and_says_the_way_on_for_an_unfinished_one(tmp_path, capsys):
    """An empty checkpoint file stopped the whole cross-fit ("not a readable safetensors file", exit 2), even in a
    fold whose model was whole (read to resume, and for a warning of the pooled test), and said no way on."""
    out = tmp_path / "cf"
    assert main(["crossfit", *TINY, "--folds", "2", "--out", str(out)]) == 0
    record = json.loads((out / "crossfit.json").read_text())
    for weights in (out / "fold-0" / "checkpoints").glob("*.safetensors"):
        weights.write_bytes(b"")
    assert main(["crossfit", *TINY, "--folds", "2", "--out", str(out)]) == 0
    again = json.loads((out / "crossfit.json").read_text())
    assert [r["kept"] for r in again["runs"]] == [True, True] and again["rows"] == record["rows"]
    (out / "fold-0" / "model.safetensors").write_bytes(b"")      # unfinished now: its checkpoint is what it resumes from
    capsys.readouterr()
    assert main(["crossfit", *TINY, "--folds", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "not a readable safetensors file" in err and f"remove {out / 'fold-0' / 'checkpoints'}" in err
    assert "run the same command again to train it again from its start" in err

@pytest.mark.parametrize("mine", ["notes.txt", "crossfit.json"])
def test_a_folder_holding_files_a_crossfit_did_not_write_is_refused_and_left_as_it_was(tmp_path, capsys, mine):
    """`downpour crossfit --out` a folder of unrelated files is refused, naming the folder and the file, before
    anything is trained: else their crossfit.json is overwritten with the cross-fit's record, and any other file is
    left mixed in with the folds (going on in its own folder: the test above)."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / mine).write_text('{"my": "results"}')
    assert main(["crossfit", *TINY, "--folds", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and f"did not write ({mine})" in err
    assert [p.name for p in out.iterdir()] == [mine] and (out / mine).read_text() == '{"my": "results"}'


def test_a_crossfit_json_cut_short_is_said_as_such_with_the_way_on_not_as_foreign(tmp_path, capsys):
    """A crossfit.json that does not parse (its command killed as it wrote it, a full disk) is no file of someone
    else's: the refusal said "did not write ... pick another --out", which leaves every trained fold behind. It names
    the file as unreadable and says that removing it lets the same command write it again from the folds."""
    out = tmp_path / "cf"
    out.mkdir()
    (out / "crossfit.json").write_text('{"config": "cat-demo", "overrides": [], "res')
    assert main(["crossfit", *TINY, "--folds", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "did not write" not in err and "pick another --out" not in err
    assert f"{str(out / 'crossfit.json')!r} cannot be read" in err and "remove it and run the same command again" in err
    assert [p.name for p in out.iterdir()] == ["crossfit.json"]

def test_the_record_and_page_are_written_whole_and_a_kill_as_they_were_written_leaves_its_own_folder(tmp_path):
    """crossfit.json and crossfit.html go through a temporary file moved in (a kill mid-write left a cut-short
    crossfit.json); the temporary file a kill leaves behind is the cross-fit's own, not a foreign file."""
    from downpour.crossfit import check_crossfit_folder
    from downpour.train.folders import RunExistsError
    from downpour.train.model_file import temp_of

    (tmp_path / "fold-0").mkdir()
    for name in ("crossfit.json", "crossfit.html"):
        temp_of(tmp_path / name).write_text("{")
    check_crossfit_folder(tmp_path, 2)
    (tmp_path / "notes.txt.tmp").write_text("")
    with pytest.raises(RunExistsError, match=r"did not write \(notes.txt.tmp\)"):
        check_crossfit_folder(tmp_path, 2)


def test_its_own_folder_run_again_with_fewer_folds_is_refused_as_such_not_as_foreign_files(tmp_path):
    from downpour.crossfit import check_crossfit_folder
    from downpour.train.folders import RunExistsError

    for name in ("fold-0", "fold-1", "fold-2"):
        (tmp_path / name).mkdir()
        (tmp_path / f"{name}.log").write_text("")
    check_crossfit_folder(tmp_path, 3)
    with pytest.raises(RunExistsError, match=r"a cross-fit of more folds than 2 \(fold-2, fold-2.log\): run it again with its own --folds"):
        check_crossfit_folder(tmp_path, 2)


def test_a_greedy_fold_run_again_with_other_steps_is_refused_in_the_cross_fits_words(tmp_path):
    """A cat-demo fold trained for 20 steps, its cross-fit run again with --steps 30: a greedy run cannot change its
    steps, and the refusal says which and what to type (its steps or another --out), not check_resume's "start a new
    run (downpour train --config FOLD/config.toml --steps 30 --out NEW)", a run outside the cross-fit."""
    from downpour.config import load_config
    from downpour.train.folders import RunExistsError
    from downpour.train.rundir import RunDir
    from downpour.twins import check_same_run

    run = RunDir.create(tmp_path / "fold-0", load_config("cat-demo", ["train.steps=20"]))
    (run.path / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')   # (a fold that trained)
    assert check_same_run(load_config("cat-demo", ["train.steps=20"]), run.path).path == run.path
    with pytest.raises(RunExistsError) as refused:
        check_same_run(load_config("cat-demo", ["train.steps=30"]), run.path)
    said = str(refused.value)
    assert "its config differs in train.steps (20 -> 30;" in said and "(--steps 20), or pick another --out" in said
    assert "downpour train" not in said


def test_its_own_folder_run_again_with_more_folds_is_refused_naming_its_folds(tmp_path):
    """--folds 3 on a cross-fit of 2 is refused naming its folds, not as "fold-0 holds another run: its config differs
    in data.lfw_heldout; ... give the config it was trained with", a key the user never typed; a fold-0 holding no
    fold is left to the run's own check."""
    from downpour.crossfit import check_crossfit_folder
    from downpour.train.folders import RunExistsError

    (tmp_path / "fold-0").mkdir()
    (tmp_path / "fold-0" / "config.toml").write_text('[data]\nlfw_heldout = "fold:0:2"\n')
    check_crossfit_folder(tmp_path, 2)
    with pytest.raises(RunExistsError, match=r"holds a cross-fit of 2 folds, not 3 .*: run it again with --folds 2"):
        check_crossfit_folder(tmp_path, 3)
    (tmp_path / "fold-0" / "config.toml").write_text('[data]\nlfw_heldout = "none"\n')
    check_crossfit_folder(tmp_path, 3)


class _NoProcesses:
    """A multiprocessing context that fails the test if a fold process is started."""
    def Pipe(self, *args, **kwargs):
        raise AssertionError("a finished fold was started again in its own process")


def test_folds_trained_side_by_side_give_the_same_test_as_one_after_another(tmp_path, monkeypatch):
    one = ["crossfit", *TINY, "--set", "train.threads=1", "--folds", "2"]
    assert main([*one, "--out", str(tmp_path / "seq")]) == 0
    assert main([*one, "--jobs", "2", "--out", str(tmp_path / "par")]) == 0
    seq, par = (json.loads((tmp_path / d / "crossfit.json").read_text()) for d in ("seq", "par"))
    assert par["rows"] == seq["rows"] and [r["final_loss"] for r in par["runs"]] == [r["final_loss"] for r in seq["runs"]]
    for i in range(2):   # each fold's output went to its own log, not to the terminal
        assert "step" in (tmp_path / "par" / f"fold-{i}.log").read_text()
    # again over finished folds: kept without a process each (one imports torch to say "finished, kept", and
    # crossfit.html's training time of the command read 3.9 s where docs/analysis.md says 0 s)
    monkeypatch.setattr("downpour.crossfit.multiprocessing.get_context", lambda method: _NoProcesses())
    assert main([*one, "--jobs", "2", "--out", str(tmp_path / "par")]) == 0
    again = json.loads((tmp_path / "par" / "crossfit.json").read_text())
    assert [r["kept"] for r in again["runs"]] == [True, True] and again["rows"] == par["rows"]


def test_a_failed_fold_does_not_stop_the_others_and_is_named(tmp_path, capsys):
    out = tmp_path / "cf"
    out.mkdir()
    # fold 1 must fail once it starts (a file there is refused before any fold trains): a link to nowhere
    (out / "fold-1").symlink_to(tmp_path / "nowhere" / "fold-1")
    # (fold 0 on the simulator: its process never imports torch's compiler, as the local runner's optimiser does)
    assert main(["crossfit", *TINY, "--runner", "simulated", "--folds", "2", "--jobs", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "1 of 2 fold runs failed" in err and "cf/fold-1: " in err and "fold-1.log" in err
    assert "Traceback" in (out / "fold-1.log").read_text()
    assert json.loads((out / "fold-0" / "model.json").read_text())["step"] == 10   # the other fold finished
    assert not (out / "crossfit.json").exists()                                    # and no test was pooled


def test_a_failed_fold_one_after_another_does_not_stop_the_later_folds_and_is_named(tmp_path, capsys, monkeypatch):
    """With --jobs 1 (the default) the first failure ended the cross-fit: folds 2 and 3 were never trained
    and the error ("downpour: error: <the DataError>") did not say which fold failed."""
    from downpour.errors import DataError

    trained = []

    def train_kept(cfg, path):       # the bookkeeping only: no fold is trained
        if path.name == "fold-1":
            raise DataError("row 3 is NaN")
        trained.append(path.name)
        return {"run": str(path), "kept": None, "seconds": 0.0, "final_loss": 1.0}

    monkeypatch.setattr("downpour.crossfit.train_kept", train_kept)
    out = tmp_path / "cf"
    assert main(["crossfit", *TINY, "--folds", "4", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert trained == ["fold-0", "fold-2", "fold-3"]
    assert f"1 of 4 fold runs failed, the others are kept ({out / 'fold-1'}: DataError: row 3 is NaN)" in err
    assert not (out / "crossfit.json").exists()


def test_a_fold_refused_its_settings_is_told_they_change_in_a_new_out(tmp_path, capsys, monkeypatch):
    """A fold refused for its data's size is told to use fewer workers in a new --out: the same cross-fit with
    --workers 19 ("use at most 19 (--workers 19)") would refuse every fold trained (their cluster.workers differ)."""
    from downpour.errors import ConfigError

    def train_kept(cfg, path):       # the bookkeeping only: no fold is trained
        if path.name == "fold-1":
            raise ConfigError("cluster.workers = 20, but data.source = 'faces' gives only 19 samples, and each worker "
                              "trains on a share of its own; use at most 19 (--workers 19)", key="cluster.workers")
        return {"run": str(path), "kept": None, "seconds": 0.0, "final_loss": 1.0}

    monkeypatch.setattr("downpour.crossfit.train_kept", train_kept)
    assert main(["crossfit", *TINY, "--folds", "2", "--out", str(tmp_path / "cf")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "(--workers 19) [in a new --out: the folds trained in this one keep their settings and refuse others]" in err
    assert "refuses them again: a cross-fit with changed ones goes in a new --out" in err


def test_a_stopped_fold_names_the_cross_fits_command_not_its_own_resume(tmp_path, capsys, caplog, monkeypatch):
    """With --jobs 1 a Ctrl-C's fold warning names the cross-fit's command too, not only the fold's "continue with
    --resume OUT/fold-0" (which finishes that fold alone) before the cross-fit's "the same command goes on"."""
    import os
    import signal

    from downpour.train.telemetry import PartsMean

    add = PartsMean.add

    def add_then_ctrl_c(self, parts, samples=0, loss=None):
        add(self, parts, samples, loss)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(PartsMean, "add", add_then_ctrl_c)
    out = tmp_path / "cf"
    with caplog.at_level("WARNING"):
        assert main(["crossfit", *TINY, "--folds", "2", "--out", str(out)]) == 130
    assert f"checkpoint saved, continue with the same `downpour crossfit --out {out}` command (it resumes every fold)" \
        in caplog.text and "--resume" not in caplog.text
    assert "the same command goes on" in capsys.readouterr().err
    from downpour.train.go_on import go_on      # the stop left no cross-fit behind: a run trained next, in the same
    assert go_on(tmp_path / "run") == f"--resume {tmp_path / 'run'}"   # process (a notebook), names its own --resume


@pytest.mark.parametrize("flags,message", [(["--jobs", "0"], "--jobs must be at least 1"),
                                           (["--jobs", "2", "--runner", "ray"], "use --jobs 1 with it"),
                                           # recorded in crossfit.json and ignored by the pooled test, before
                                           (["--set", "analysis.dataset=digits", "--set", "analysis.face_select=heldout"],
                                            "--set analysis.dataset, analysis.face_select: the cross-fit's face test "
                                            "does not read them")])
def test_bad_jobs_are_refused_before_any_training(tmp_path, capsys, flags, message):
    assert main(["crossfit", *TINY, "--folds", "2", *flags, "--out", str(tmp_path / "cf")]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "cf").exists()


FACES_TINY = ["--config", "cat-demo", "--runner", "local", "--steps", "4", "--set", "train.tensorboard=false",
              "--set", "data.size=16", "--set", "model.kernels=[5,3]", "--set", "model.maps=[2,2]",
              "--set", "analysis.bootstrap=200", "--set", "analysis.control_draws=1",
              "--set", "analysis.random_filters=50"]


# side by side on the simulator: its fold processes never import torch's compiler, which the local runner's
# optimiser does (~3 s of CPU each of the 4); the local runner's fold processes are the tests above and below
@pytest.mark.parametrize("flags", [["--control", "no-faces"],
                                   ["--set", "analysis.no_faces_twin=true", "--jobs", "2", "--runner", "simulated"]],
                         ids=["--control", "the config's no_faces_twin"])
def test_crossfit_with_the_no_faces_control_trains_each_fold_twice_and_scores_both(tmp_path, capsys, flags):
    out = tmp_path / "cf"
    assert main(["crossfit", *FACES_TINY, "--folds", "2", *flags, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Against the no-faces network (the same recipe and seed, trained with data.train_faces = 0)" in printed
    record = json.loads((out / "crossfit.json").read_text())
    assert record["control"] == "no-faces" and len(record["runs"]) == len(record["no_faces_runs"]) == 2
    assert {r["method"] for r in record["rows"]} >= {LEARNED, NO_FACES}
    for i in range(2):
        bare = (out / f"fold-{i}" / "no-faces" / "config.toml").read_text()
        assert "train_faces = 0" in bare and f'lfw_heldout = "fold:{i}:2"' in bare and "no_faces_twin = false" in bare
        fold = (out / f"fold-{i}" / "config.toml").read_text()
        assert "train_faces = -1" in fold and "no_faces_twin = true" in fold     # `downpour analyze` on it scores its twin
    page = (out / "crossfit.html").read_text()
    assert "fold-I/no-faces/" in page and "The criterion does not ask whether" not in page
    if "--jobs" in flags:
        assert "step" in (out / "fold-1.no-faces.log").read_text()
    else:
        assert main(["crossfit", *FACES_TINY, "--folds", "2", *flags, "--out", str(out)]) == 0   # all kept, tested again
        assert all(r["kept"] for r in json.loads((out / "crossfit.json").read_text())["no_faces_runs"])


def _no_training(monkeypatch) -> list[str]:
    """The folds train_kept was asked to train; each stops there (a DataError: a failed fold, named)."""
    from downpour.errors import DataError

    asked = []

    def train_kept(cfg, path):
        asked.append(path.name)
        raise DataError("stopped by the test")

    monkeypatch.setattr("downpour.crossfit.train_kept", train_kept)
    return asked


@pytest.mark.parametrize("argv", [[*NO_FACES_TINY], [*NO_FACES_TINY, "--control", "no-faces"],
                                  [*FACES_TINY, "--control", "none", "--set", "data.faces_fraction=0"]])
def test_a_config_that_trains_on_no_lfw_image_is_refused_before_any_fold_trains(tmp_path, capsys, monkeypatch, argv):
    """`downpour crossfit --config ufldl-sae` is refused, naming the config and why; nothing is trained or written.
    Else it trains K folds that each hold out nothing (the same network K times: natural patches hold no lfw image)
    and prints a pooled face-test verdict."""
    asked = _no_training(monkeypatch)
    assert main(["crossfit", *argv, "--folds", "2", "--out", str(tmp_path / "cf")]) == 2
    err = capsys.readouterr().err
    assert f"--config {argv[1]}: its training data hold no lfw image (data.source = " in err
    assert "cross-fitting holds out each fold's lfw images from its training: its 2 folds would train the same network" in err
    assert err.count("\n") == 1 and asked == [] and not (tmp_path / "cf").exists()


@pytest.mark.parametrize("faces", [[], ["--set", "data.train_faces=0"]])   # (0: lfw's non-faces, each fold its own)
def test_a_config_that_trains_on_lfw_starts_its_folds(tmp_path, capsys, monkeypatch, faces):
    asked = _no_training(monkeypatch)
    assert main(["crossfit", *TINY, *faces, "--folds", "2", "--out", str(tmp_path / "cf")]) == 2
    assert asked == ["fold-0", "fold-1"] and "2 of 2 fold runs failed" in capsys.readouterr().err


def test_twins_added_to_finished_folds_are_scored_and_folds_without_faces_get_none(tmp_path, capsys):
    out = tmp_path / "cf"
    assert main(["crossfit", *FACES_TINY, "--folds", "2", "--control", "none", "--out", str(out)]) == 0
    first = json.loads((out / "crossfit.json").read_text())["runs"]
    assert main(["crossfit", *FACES_TINY, "--folds", "2", "--control", "no-faces", "--out", str(out)]) == 0
    record = json.loads((out / "crossfit.json").read_text())
    # the kept folds' configs ask for their twin (`downpour analyze fold-I` scores it), and their
    # training record is read back, not erased (seconds and final_loss were None)
    assert all("no_faces_twin = true" in (out / f"fold-{i}" / "config.toml").read_text() for i in range(2))
    assert [(r["kept"], r["final_loss"]) for r in record["runs"]] == [(True, r["final_loss"]) for r in first]
    assert all(r["seconds"] is not None for r in record["runs"])
    # a config whose folds see no face: the default is no twin (it trained every fold twice, the same run); its
    # folds still differ (each holds out its own lfw non-faces) and it is docs/analysis.md's "0 faces" cross-fit
    none, carries = tmp_path / "none", tmp_path / "carries.toml"
    carries.write_text('base = "cat-demo"\n[analysis]\nno_faces_twin = true\n')
    tiny = [*FACES_TINY[:1], str(carries), *FACES_TINY[2:]]
    assert main(["crossfit", *tiny, "--folds", "2", "--set", "data.train_faces=0", "--out", str(none)]) == 0
    assert json.loads((none / "crossfit.json").read_text())["control"] == "none"
    assert not (none / "fold-0" / "no-faces").exists()
    # asked for with --set, it is refused, as `downpour train` refuses it (not dropped unsaid), and so is a
    # --control that contradicts it
    capsys.readouterr()
    assert main(["crossfit", *FACES_TINY, "--folds", "2", "--set", "analysis.no_faces_twin=true",
                 "--set", "data.train_faces=0", "--out", str(tmp_path / "asked")]) == 2
    assert "analysis.no_faces_twin: this run trains on no lfw face" in capsys.readouterr().err
    assert main(["crossfit", *FACES_TINY, "--folds", "2", "--set", "analysis.no_faces_twin=true", "--control", "none",
                 "--out", str(tmp_path / "both")]) == 2
    assert "--control none and --set analysis.no_faces_twin=true both say" in capsys.readouterr().err
    assert not (tmp_path / "asked").exists() and not (tmp_path / "both").exists()
    # its folder is no run: analyze says what it is, also where the cross-fit stopped before its report (not
    # "not a downpour run directory (no config.toml)", where a user stopped would try it)
    assert main(["analyze", str(out)]) == 2 and "is a cross-fit's folder, not a run" in capsys.readouterr().err
    (out / "crossfit.json").unlink()
    assert main(["analyze", str(out)]) == 2
    assert "is a cross-fit's folder, not a run, stopped before its report" in capsys.readouterr().err


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT", "SIGKILL", "group SIGINT"])
def test_a_stopped_parallel_crossfit_stops_its_fold_processes_with_their_checkpoints(tmp_path, stop):
    """A stop reaches the fold processes, which save their checkpoints: else a SIGTERM reaching only the parent says
    "terminated" and then waits while both fold processes train on to their end (and a rerun meanwhile would write into
    their folders); a SIGINT sent to the parent alone (`kill -INT`, not a terminal's Ctrl-C) does the same, then kills
    them after 120 s with nothing saved; a SIGKILL leaves them training as orphans. However it stops, it leaves nothing
    in the temporary folder (a fold has no scratch there, unlike a study's cells: what it leaves is its fold folder in
    OUT, which the same command goes on from)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    group = stop.startswith("group")        # a terminal's Ctrl-C: every process of the group, inside a held block
    stop = getattr(signal, stop.split()[-1])

    out, scratch = tmp_path / "cf", tmp_path / "tmp"
    scratch.mkdir()
    argv = [sys.executable, "-m", "downpour.cli", "crossfit", "--config", "cat-demo", "--runner",
            "simulated" if group else "local", "--steps", "100000", "--folds", "2", "--jobs", "2", "--control", "none",
            "--set", "train.log_every=5", "--set", "data.size=16", "--set", "model.kernels=[5,3]",
            "--set", "model.maps=[2,2]", "--out", str(out)]           # (the simulator holds signals at every event)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(scratch)}, start_new_session=group)
    logs = [out / "fold-0.log", out / "fold-1.log"]
    try:
        deadline = time.time() + 240
        while not all(p.is_file() and "step " in p.read_text() for p in logs):
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.5)
        os.killpg(proc.pid, stop) if group else proc.send_signal(stop)
        _, err = proc.communicate(timeout=150 if stop != signal.SIGINT else 60)
    finally:
        proc.kill()
    if stop == signal.SIGKILL:           # the folds learn of it from Linux, and save their checkpoints
        deadline = time.time() + 60
        while not all("checkpoint saved" in log.read_text() for log in logs) and time.time() < deadline:
            time.sleep(0.5)
    else:
        assert proc.returncode == 128 + stop, err
        assert "cross-fit stopped" in err and "the same command goes on" in err, err   # not the folds' own --resume
    for i, log in enumerate(logs):
        assert re.search("checkpoint (was )?saved", log.read_text())       # the local runner's words, the simulator's
        step = json.loads((out / f"fold-{i}" / "checkpoints" / ("server.json" if group else "local.json")).read_text())["step"]
        assert 0 < step < 100000
    sizes = [p.stat().st_size for p in logs]
    time.sleep(1)                                         # (a fold logs every 5 steps: many lines a second)
    assert [p.stat().st_size for p in logs] == sizes      # nothing trains on after the command ended
    assert list(scratch.iterdir()) == []


def test_the_selection_names_every_folds_training_size_where_they_differ():
    """Each fold's own size, not fold 0's (132 images, 66 faces) for every fold: with 3 folds the others train on 134.
    It names them as the fold's training part, not as images the run trained on: a run of natural patches
    (data.source = natural) or one without faces (data.train_faces = 0) does not, and its page would say it had
    trained on 66 faces."""
    k = 3
    result = crossfit_controls(_views([Memoriser(lfw_indices((i, k))["train"]) for i in range(k)]), layer=None, seed=0,
                               **FAST)
    assert [f["select_images"] for f in result["per_fold"]] == [132, 134, 134]
    assert result["selection"] == "the 132-134 images of its fold's training part of lfw (66-67 faces)"


def test_a_fold_folder_holding_other_files_is_refused_before_any_fold_trains(tmp_path, capsys):
    (tmp_path / "cf" / "fold-1").mkdir(parents=True)
    (tmp_path / "cf" / "fold-1" / "data.csv").write_text("y")
    argv = ["crossfit", "--config", "cat-demo", "--runner", "local", "--steps", "4", "--folds", "2", "--control", "none",
            "--out", str(tmp_path / "cf")]
    assert main(argv) == 2 and "fold-1' is not an empty folder (data.csv)" in capsys.readouterr().err
    assert not (tmp_path / "cf" / "fold-0").exists()          # fold 0 trained first, before


def test_a_run_folder_as_the_cross_fits_out_is_refused_before_any_fold_trains(tmp_path, capsys):
    """`--out runs/cat` where a run trained: its folds and crossfit.json were written inside that run's folder."""
    from pathlib import Path

    run = shutil.copytree(Path(__file__).parent / "data" / "run_02ecb53", tmp_path / "cat")
    argv = ["crossfit", "--config", "cat-demo", "--runner", "local", "--steps", "4", "--folds", "2", "--control", "none",
            "--out", str(run)]
    assert main(argv) == 2
    assert f"{str(run)!r} holds a run (config.toml)" in capsys.readouterr().err
    assert not (run / "fold-0").exists() and not (run / "crossfit.json").exists()


@pytest.mark.parametrize("make, message", [
    (lambda p: None, r"'[^']*cf' does not exist"),
    (lambda p: p.mkdir(), r"'[^']*cf' holds no crossfit\.json: it is not the --out of a `downpour crossfit`"),
    (lambda p: (p.mkdir(), (p / "config.toml").write_text("seed = 0\n")),
     r"'[^']*cf' holds no crossfit\.json: it is a run \(config\.toml\); `downpour report [^`]*cf` writes its report"),
])
def test_the_crossfit_report_of_a_folder_that_is_no_crossfit_says_what_it_is(tmp_path, make, message):
    # docs/analysis.md's Python API: not a bare FileNotFoundError of crossfit.json
    from downpour.analysis.report_crossfit import write_crossfit_report
    from downpour.errors import NotARunError
    make(tmp_path / "cf")
    with pytest.raises(NotARunError, match=message):
        write_crossfit_report(tmp_path / "cf")


def test_the_pages_opening_lists_each_typed_override_once_and_not_what_it_says_in_words():
    from downpour.analysis.report_crossfit import _typed_overrides

    # a crossfit.json written before 2026-12-07 records the cross-fit's own settings among them
    typed = [["train.steps", 10], "seed=3", "data.samples=300", "train.steps=20", ["train.threads", 8],
             ["analysis.no_faces_twin", True], ["seed", 4]]
    assert _typed_overrides(typed) == "data.samples=300, train.steps=20"
    assert _typed_overrides([["seed", 3]]) == ""
