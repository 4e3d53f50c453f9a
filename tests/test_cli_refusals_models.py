"""Model, data and analysis settings that cannot work are refused before the run folder exists: the files a source
reads, labels a model or split needs, greedy schedules, cost terms on data or partitions they cannot take, thread
and shard counts."""
import numpy as np
import pytest
from PIL import Image

from downpour.cli import main
from downpour.config import load_config

pytestmark = pytest.mark.usefixtures("one_thread")   # (its trainings run in this process)


@pytest.mark.parametrize("source, make, named", [
    ("folder", lambda p: (p.mkdir(), (p / "notes.txt").write_text("x")), "holds no image files"),
    ("array", lambda p: p.write_text("not an array"), "does not start like one"),
    ("video", lambda p: (p.mkdir(), (p / "a.png").write_bytes(b"")), "holds no video files"),
])
def test_a_dry_run_looks_at_the_files_a_file_source_reads(tmp_path, capsys, source, make, named):
    _refused_before_the_run(tmp_path, capsys, source, make, named)


def _image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(path)


# each passed --dry-run and failed once the run had written its folder (the doc's "a typo leaves nothing behind")
@pytest.mark.parametrize("source, suffix, make, named, extra", [
    ("array", ".npz", lambda p: np.savez(p, x=np.zeros((4, 8, 8)), z=np.ones(3)), "unexpected keys ['z']", []),
    ("array", ".npz", lambda p: np.savez(p, y=np.zeros(4)), "no array named 'x'", []),
    # refused at the first batch (a traceback: "Target -1 is out of bounds"), or at the load, after the run folder
    ("array", ".npz", lambda p: np.savez(p, x=np.zeros((4, 8, 8)), y=np.array([0, -1, 1, 0])), "y[1] = -1: labels are",
     ["--config", "cnn-digits"]),
    ("array", ".npz", lambda p: np.savez(p, x=np.zeros((4, 8, 8)), y=np.array([0, 1, 2.5, 0])),
     "y has dtype float64 (y[2] = 2.5); labels must be integers", []),
    ("array", ".npy", lambda p: np.save(p, np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True),
     "holds Python objects", []),
    ("array", ".npy", lambda p: np.save(p, np.zeros((4, 5, 8, 8))), "5 channels, expected 1 or 3", []),
    ("folder", "", lambda p: (_image(p / "top.png"), _image(p / "a" / "x.png")), "1 image sits at its top level",
     ["--set", "data.labels=true"]),
])
def test_a_dry_run_reads_an_arrays_header_and_a_labelled_folders_top(tmp_path, capsys, source, suffix, make, named, extra):
    _refused_before_the_run(tmp_path, capsys, source, make, named, suffix, extra)


def _refused_before_the_run(tmp_path, capsys, source, make, named, suffix=None, extra=()):
    path = tmp_path / ("data" + (suffix if suffix is not None else ".npy" if source == "array" else ""))
    make(path)
    argv = ["train", "--config", "ufldl-sae", "--runner", "local", "--set", f"data.source={source}",
            "--set", f"data.path={path}", *extra, "--out", str(tmp_path / "run")]
    assert main([*argv, "--dry-run"]) == 2 and named in capsys.readouterr().err
    assert main(argv) == 2 and not (tmp_path / "run").exists()      # refused before the run directory exists


@pytest.mark.parametrize("argv, named", [
    # passed the dry run on zero labels, then failed at step 1 with a traceback, its run folder left behind
    (["--config", "cnn-digits", "--set", "data.source=natural"],
     "model 'cnn-digits' is supervised: it trains on class labels, and data.source = 'natural' has none"),
    (["--config", "cnn-digits", "--set", "data.source=array", "--set", "data.path=X.npy"], "holds no y (a .npy is x alone"),
    (["--config", "ufldl-sae", "--runner", "local", "--set", "train.schedule=greedy"],
     "model 'ufldl-sae' has one stage (greedy would be joint)"),         # accepted, bit for bit a joint run
    (["--config", "teacher-student", "--set", "data.source=array", "--set", "data.path=X.npy", "--set", "data.size=64",
      "--workers", "2", "--set", "data.split=by-label"], "data.path 'X.npy' holds no y"),
    # a folder's labels where no supervised cost and no by-label split reads them: bit for bit without effect
    (["--config", "ufldl-sae", "--runner", "local", "--set", "data.source=folder", "--set", "data.path=FOLDER",
      "--set", "data.labels=true"], "--set data.labels: only data.split = 'by-label' (or a supervised model.name) reads it, and this run's data.split "
      "is 'iid' and model.name is 'ufldl-sae'"),
])
def test_labels_a_model_or_split_needs_and_a_schedule_with_nothing_to_order_are_refused(tmp_path, capsys, argv, named):
    np.save(tmp_path / "x.npy", np.zeros((20, 1, 8, 8), np.float32))
    for label in "ab":
        (tmp_path / "f" / label).mkdir(parents=True)
        Image.fromarray(np.full((16, 16), 40 if label == "a" else 200, np.uint8)).save(tmp_path / "f" / label / "0.png")
    argv = [a.replace("X.npy", str(tmp_path / "x.npy")).replace("FOLDER", str(tmp_path / "f")) for a in argv]
    assert main(["train", "--dry-run", *argv]) == 2
    assert named in capsys.readouterr().err.replace(str(tmp_path / "x.npy"), "X.npy")


@pytest.mark.parametrize("sets, named", [
    (["model.classes=5"], "model.classes = 5, but the labels of data.source = 'digits' run over 10 classes (0..9); "
                          "set model.classes = 10"),
    (["model.name=cnn-faces", "data.size=25"], "model.classes = 2, but the labels of data.source = 'digits' run over 10"),
    (["data.source=array", "data.path=XY.npz", "model.classes=12"], "run over 13 classes (0..12); set model.classes = 13"),
    (["model.name=cnn-faces", "data.source=folder", "data.path=FOLDER", "data.labels=true", "data.size=25"],
     "model.classes = 2, but the labels of data.source = 'folder' run over 3 classes (0..2)"),
])
def test_a_supervised_model_with_fewer_classes_than_the_labels_is_refused_before_its_run_folder(tmp_path, capsys, sets, named):
    """Passed the dry run (its zero labels fit any class count), then failed at the first batch holding a larger
    label with a traceback ("ValueError: label 9 does not fit model.classes = 5"), its run folder left behind."""
    np.savez(tmp_path / "xy.npz", x=np.zeros((20, 1, 8, 8), np.float32), y=np.arange(20) % 13)
    for label in "abc":
        (tmp_path / "f" / label).mkdir(parents=True)
        Image.fromarray(np.full((32, 32), 40, np.uint8)).save(tmp_path / "f" / label / "0.png")
    sets = [s.replace("XY.npz", str(tmp_path / "xy.npz")).replace("FOLDER", str(tmp_path / "f")) for s in sets]
    argv = ["train", "--config", "cnn-digits", *[a for s in sets for a in ("--set", s)], "--set", "train.steps=2",
            "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_greedy_schedule_on_a_model_that_cannot_be_built_gets_the_models_error_not_a_traceback(tmp_path, capsys):
    """The one-stage check built the model before the crossfit's checks: a ValueError traceback from the Gabor bank."""
    assert main(["crossfit", "--config", "cat-demo", "--runner", "local", "--set", "model.name=rica-local", "--set",
                 "model.first_layer=gabor", "--set", "model.kernel_size=1", "--set", "train.schedule=greedy",
                 "--out", str(tmp_path / "cf")]) == 2
    assert "model.first_layer = 'gabor' needs filters of at least 2x2 pixels" in capsys.readouterr().err


def test_a_crossfit_names_the_set_behind_a_model_error_as_train_does(tmp_path, capsys):
    """It said only "model 'tica-8x8': model.init_scale = 0.1 is not read", not which --set gave it."""
    assert main(["crossfit", "--config", "tica-8x8", "--set", "model.first_layer=gabor", "--set", "model.init_scale=0.1",
                 "--out", str(tmp_path / "cf")]) == 2
    assert "--set model.init_scale=0.1: model 'tica-8x8': model.init_scale = 0.1 is not read" in capsys.readouterr().err


def test_augmentation_of_gaussian_vectors_in_a_config_file_is_refused_too(tmp_path, capsys):
    """Refused only as a typed --set: a file (or a study's --set) still shifted and flipped the N(0, I) vectors."""
    (tmp_path / "aug.toml").write_text('base = "teacher-student"\n[data]\nflip = true\nshift = 2\n')
    assert main(["train", "--config", str(tmp_path / "aug.toml"), "--dry-run"]) == 2
    assert "no image to shift, zoom or flip" in capsys.readouterr().err


def test_a_labelled_array_or_lfw_split_by_label_and_feed_a_supervised_model(tmp_path, capsys):
    """Refused before ("data.source = 'array' has none") though an .npz's y and lfw's labels are read."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "xy.npz", x=rng.random((40, 1, 8, 8), dtype=np.float32), y=np.arange(40) % 10)
    for source in (["data.source=array", f"data.path={tmp_path / 'xy.npz'}"], ["model.name=cnn-faces", "data.source=faces",
                                                                                   "data.size=25"]):
        sets = [arg for key in source for arg in ("--set", key)]
        assert main(["train", "--config", "cnn-digits", "--runner", "simulated", "--workers", "2", *sets,
                     "--set", "data.split=by-label", "--dry-run"]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("argv, named", [
    (["--set", "analysis.layer=poolde"], "analysis.layer = 'poolde' is not a feature layer of model 'tica-8x8'"),
    (["--set", 'analysis.probe_layers=["x"]'], "analysis.probe_layers = 'x' is not a feature layer"),
    (["--set", "analysis.no_faces_run=NOWHERE"], "analysis.no_faces_run"),
    (["--set", "analysis.positive=-5"], "analysis.positive = -5: the labelled set 'lfw' has classes 0-1"),
    (["--set", "analysis.dataset=digits", "--set", "analysis.positive=10"], "'digits' has classes 0-9"),
    (["--set", "analysis.no_faces_run=EMPTY"], "the --out directory of a `downpour train` run"),
    (["--set", "analysis.no_faces_run=OTHER"], "has data.samples = 300, this run 10000: not the same recipe"),
    (["--set", "analysis.dataset="], "analysis.dataset: '' is neither a built-in labelled set"),   # was: the working dir
])
def test_an_analysis_setting_that_cannot_work_is_refused_before_training(tmp_path, capsys, argv, named):
    """They passed --dry-run and failed after the training (80 s of it on the main job)."""
    (tmp_path / "empty").mkdir()
    if "analysis.no_faces_run=OTHER" in argv:     # a finished run of another recipe
        assert main(["train", "--config", "tica-8x8", "--runner", "local", "--steps", "2", "--set", "data.samples=300",
                     "--set", "data.train_faces=0", "--set", "data.source=faces", "--set", "train.tensorboard=false",
                     "--out", str(tmp_path / "other")]) == 0
        capsys.readouterr()
    argv = [a.replace("NOWHERE", str(tmp_path / "nowhere")).replace("EMPTY", str(tmp_path / "empty"))
            .replace("OTHER", str(tmp_path / "other")) for a in argv]
    assert main(["train", "--config", "tica-8x8", "--dry-run", *argv]) == 2
    assert named in capsys.readouterr().err


def test_a_split_replica_checks_its_analysis_layer_too(capsys):
    """With cluster.partitions > 1 the check was skipped: the typo failed after the training."""
    assert main(["train", "--config", "cat-untied", "--runner", "simulated", "--workers", "2", "--shards", "4",
                 "--set", "cluster.partitions=2", "--set", "analysis.layer=stage9", "--dry-run"]) == 2
    assert "analysis.layer = 'stage9' is not a feature layer" in capsys.readouterr().err


def test_a_greedy_run_with_fewer_steps_than_stages_is_refused(capsys):
    """Stage 2 kept its initial weights, and the run ended with exit 0."""
    assert main(["train", "--config", "cat-demo", "--runner", "local", "--steps", "1", "--dry-run"]) == 2
    assert "train.steps = 1 gives some of the model's 2 stages no step" in capsys.readouterr().err
    assert main(["train", "--config", "cat-demo", "--runner", "local", "--steps", "1", "--dry-run",
                 "--set", "train.schedule=joint"]) == 0


def test_a_greedy_ray_run_with_more_stages_than_an_inbox_carries_is_refused_before_it_starts(capsys):
    """63 one-map stages on Ray: the last stage's first push could not be staged (an inbox's stages word holds
    stages 1..62), the worker was lost at step 62 of 63 and the run stopped there; 62 stages, the simulator
    and a joint schedule train."""
    def argv(n, *more):
        ones = "[" + ",".join(["1"] * n) + "]"
        keys = ("maps", "kernels", "strides", "pools", "pool_strides")
        return ["train", "--config", "cat-demo", "--runner", "ray", "--steps", "63", "--dry-run",
                "--set", "train.schedule=greedy", *[a for k in keys for a in ("--set", f"model.{k}={ones}")], *more]

    assert main(argv(63)) == 2
    err = capsys.readouterr().err
    assert "has 63 greedy stages" in err and "stages 1..62" in err and "--set model.maps=" in err
    assert main(argv(62)) == 0
    assert main(argv(63, "--runner", "simulated")) == 0
    assert main(argv(63, "--set", "train.schedule=joint")) == 0


@pytest.mark.parametrize("sets", [["--config", "tica-8x8", "--set", "model.name=rica-8x8"],
                                  ["--config", "ufldl-sae", "--set", "model.activation=relu"],
                                  ["--config", "cnn-digits"]])
def test_kl_sparsity_on_codes_outside_0_1_is_refused(capsys, sets):
    """rica-8x8's linear codes: about half the units were clamped out of the term and got no gradient from it. ReLU
    codes are refused alike, whatever their size on one batch: until 2026-12-06 a ReLU autoencoder's (up to 3.1) were
    and cnn-digits' (under 1 on a batch of unit size) were not."""
    argv = ["train", *sets, "--runner", "local", "--steps", "3", "--dry-run", "--set", "objective.kl_sparsity=3"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "objective.kl_sparsity needs codes that stay in [0, 1] for any input" in err
    # the aside only where the codes were in [0, 1] at unit size (rica's linear codes grow too, but are not ReLU's)
    assert ("(in [0, 1] at unit size: they grow with the input, as a ReLU's do)" in err) == ("cnn-digits" in sets), err


def test_kl_sparsity_on_a_bernoulli_rbm_is_checked_on_data_it_takes_and_moves_no_chain(capsys):
    """The check fed every model a normal batch: a Bernoulli RBM refuses data outside [0, 1], so the registered
    rbm-sparse and the documented KL recipe could not be trained; and its forward moved a PCD model's chains."""
    import torch

    from downpour.models.cost_fit import check_cost_fits
    from downpour.models.registry import build

    assert main(["train", "--config", "rbm-digits", "--set", "model.name=rbm-sparse", "--dry-run"]) == 0
    cfg = load_config("rbm-digits", ["model.persistent=true", "model.chains=8", "objective.kl_sparsity={weight=1.0}"])
    model, objective = build(cfg, (1, 8, 8))
    model.train()
    before = model.chains_h.clone()
    check_cost_fits("rbm-digits", model, objective, (1, 8, 8))
    assert torch.equal(model.chains_h, before)
    assert main(["train", "--config", "ufldl-sae", "--dry-run"]) == 0          # sigmoid codes: its own preset


def test_more_shards_than_parameters_is_refused_before_the_run_directory_exists(tmp_path, capsys):
    """The runner found it once config.toml was written (the folder was taken over on the next try)."""
    argv = ["train", "--config", "ufldl-sae", "--runner", "simulated", "--shards", "100000", "--steps", "5",
            "--out", str(tmp_path / "run")]
    assert main([*argv, "--dry-run"]) == 2 and "cluster.shards=100000 is more than the model's 3289" in capsys.readouterr().err
    assert main(argv) == 2 and not (tmp_path / "run").exists()


def test_weight_l2_on_ray_partitions_is_refused_where_it_could_not_see_the_filters(capsys):
    """The partition actors hold the filters: the term was 0 with no gradient on Ray, applied on the simulator."""
    argv = ["train", "--config", "cat-untied", "--dry-run", "--workers", "2", "--shards", "4", "--set", "cluster.partitions=2",
            "--set", "model.filter_norm=[0.0]", "--set", "objective.weight_l2=0.01"]
    assert main([*argv, "--runner", "ray"]) == 2
    assert "objective.weight_l2 = 0.01 with cluster.partitions = 2 on Ray" in capsys.readouterr().err
    assert main([*argv, "--runner", "simulated"]) == 0


@pytest.mark.parametrize("term", ["objective.denoising.weight=0.5", "objective.contractive.weight=0.1"])
def test_a_term_that_encodes_again_on_ray_partitions_is_refused_before_the_run(capsys, term):
    """The partition actors keep one graph per stage and keep the input's gradient: the run passed its checks
    and died at step 0 (KeyError in the actor's backward; "not used in the graph" for contractive)."""
    argv = ["train", "--config", "cat-untied", "--dry-run", "--workers", "2", "--shards", "4",
            "--set", "cluster.partitions=2", "--set", term]
    assert main([*argv, "--runner", "ray"]) == 2
    name = term.split(".")[1]
    assert f"objective.{name} with cluster.partitions = 2 on Ray: the term encodes its own input again" in \
        capsys.readouterr().err
    assert main([*argv, "--runner", "simulated"]) == 0


def test_a_thread_count_torch_cannot_take_is_refused_before_the_run_folder(tmp_path, capsys):
    """train.threads had no upper bound: 1e20 passed --dry-run, then overflowed in torch.set_num_threads
    after config.toml was written."""
    argv = ["train", "--config", "ufldl-sae", "--runner", "local", "--set", "train.threads=99999999999999999999"]
    assert main([*argv, "--out", str(tmp_path / "r")]) == 2
    assert "train.threads must be in [0, 4096]" in capsys.readouterr().err and not (tmp_path / "r").exists()
