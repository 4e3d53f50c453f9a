"""A run written before a key existed reads as the network it trained (downpour.train.recorded): the
cat network's filter_norm and recon (2026-11-29) default to what older runs did not do, so an old
run's weights would be analysed and resumed as a different network, without a word."""
import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from downpour.batch import Batch
from downpour.config import SECTIONS, load_config
from downpour.models.cat import CatConfig
from downpour.models.registry import build, list_models
from downpour.train.checkpoint import CheckpointError
from downpour.train.rundir import RunDir

OLD = Path(__file__).parent / "data" / "run_02ecb53"   # written by downpour at 02ecb53; expected.json says how


def _as_it_computes(run: RunDir) -> tuple[dict[str, float], list[float]]:
    """The cost parts and features of the run's model on expected.json's input."""
    model = run.load_model()
    _, objective = build(run.config, model.input_shape)
    shape = (4, *model.input_shape)
    x = torch.sin(torch.arange(torch.Size(shape).numel(), dtype=torch.float32) * 0.37).reshape(shape)
    with torch.no_grad():
        _, parts = objective(model.forward_train(Batch(x)))
        return {k: float(v) for k, v in parts.items()}, model(x).flatten().tolist()


def test_a_run_from_before_filter_norm_and_recon_computes_what_it_did():
    expected = json.loads((OLD / "expected.json").read_text())
    parts, features = _as_it_computes(RunDir.open(OLD))
    assert parts == pytest.approx(expected["parts"], rel=1e-5)
    assert features == pytest.approx(expected["features"], rel=1e-4, abs=1e-5)


def test_without_the_fills_the_old_run_is_another_network(monkeypatch):
    # what every read did before: today's defaults (normalised filters, interior reconstruction)
    monkeypatch.setattr(CatConfig, "absent_meant", {})
    expected = json.loads((OLD / "expected.json").read_text())
    parts, _ = _as_it_computes(RunDir.open(OLD))
    assert parts != pytest.approx(expected["parts"], rel=1e-2)


def test_the_fills_are_read_from_both_files_and_written_out_on_save(tmp_path):
    run = RunDir(shutil.copytree(OLD, tmp_path / "run"))
    assert run.config.model.options["filter_norm"] == (0.0,) and run.config.model.options["recon"] == "all"
    assert run.load_model().config.recon == "all"
    run.save_config(run.config)             # what a resume's begin() does
    recorded = (run.path / "config.toml").read_text()
    assert "recon = \"all\"" in recorded and "filter_norm" in recorded
    assert load_config(str(run.path / "config.toml")).model.options["recon"] == "all"


def test_the_analysis_random_twin_of_an_old_run_is_its_architecture():
    """The random-weights twin was built from model.json's options alone: today's defaults, another network."""
    from downpour.analysis.run import random_twin

    twin = random_twin(RunDir.open(OLD), seed=1)
    assert (twin.config.filter_norm, twin.config.recon) == ((0.0,), "all")


def test_an_override_wins_over_a_fill_and_a_recorded_key_is_kept():
    run = RunDir.open(OLD)
    assert run.config_with(["model.recon=interior"]).model.options["recon"] == "interior"
    assert run.config.model.options["decoder"] == "untied"         # recorded: no fill for it


def test_a_run_that_records_the_keys_gets_no_fill(tmp_path):
    run = RunDir(shutil.copytree(OLD, tmp_path / "run"))
    text = (run.path / "config.toml").read_text().replace('decoder = "untied"', 'decoder = "untied"\nrecon = "interior"')
    (run.path / "config.toml").write_text(text)
    assert run.config.model.options["recon"] == "interior"
    assert run.config.model.options["filter_norm"] == (0.0,)       # still missing: still filled


@pytest.mark.parametrize("cls", sorted({e.family.config_class for e in list_models()} | set(SECTIONS.values()),
                                       key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_every_absence_names_a_field_and_a_valid_value(cls):
    fields = {f.name for f in dataclasses.fields(cls)}
    assert set(cls.absent_meant) <= fields
    assert cls.absent_meant == {} or cls(**cls.absent_meant)       # builds: the values pass the field checks


def test_a_new_run_started_from_an_old_runs_config_is_the_network_the_old_run_trained(tmp_path, capsys):
    """`--config OLD_RUN/config.toml` (what a refused resume advises) read the missing keys as today's defaults:
    filter_norm [1.0], recon "interior", another network; a resume of the same run reads them as they meant."""
    import tomllib

    from downpour.cli import main

    shutil.copytree(OLD, tmp_path / "old")
    assert main(["train", "--config", str(tmp_path / "old" / "config.toml"), "--runner", "local", "--dry-run"]) == 0
    model = tomllib.loads(capsys.readouterr().out)["model"]
    assert model["filter_norm"] == [0.0] and model["recon"] == "all"


def test_a_run_from_before_mix_items_reads_it_as_each_items_samples_in_a_row(tmp_path):
    """data.mix_items (2026-12-03) shuffles blocks of items' samples together; a run written before it
    streamed each item's samples in a row, and a streamed one's checkpointed position counts within an item
    (this old run is in memory: the fill is what a streamed one's resume reads too)."""
    run = RunDir(shutil.copytree(OLD, tmp_path / "run"))
    assert "mix_items" not in (run.path / "config.toml").read_text()
    assert run.config.data.mix_items == 1
    assert load_config("cat-demo").data.mix_items == 64      # a new run's default


def test_a_run_from_before_mix_items_is_the_same_recipe_to_a_cross_fit(tmp_path):
    """A cross-fit (or twin) run again over a folder an older downpour trained compares its config with the run's:
    the run's absent mix_items reads as 1, today's default is 64, and the run was refused as "another run" (its data
    held in memory never read the key, and a --set of it is refused there). Streamed data still differ."""
    from downpour.config_diff import config_differences
    from downpour.twins import check_same_run

    run = RunDir(shutil.copytree(OLD, tmp_path / "run"))
    recipe = load_config(str(OLD / "config.toml"), [("model.filter_norm", [0.0]), ("model.recon", "all")])
    assert recipe.data.mix_items == 64 and run.config.data.mix_items == 1
    assert check_same_run(recipe, run.path).path == run.path
    streamed = dataclasses.replace(recipe.data, source="folder", path=str(tmp_path), pipeline="stream")
    assert [key for key, _, _ in config_differences(dataclasses.replace(recipe, data=streamed),
                                                    dataclasses.replace(recipe, data=dataclasses.replace(streamed, mix_items=1)))] == ["data.mix_items"]


def test_a_run_made_from_a_config_built_in_python_saves_it_resolved_and_reads_it_back_as_trained(tmp_path):
    """RunDir.create with load_config's unresolved config wrote only the options set; the cat network's missing
    filter_norm then read back as an old run's 0 (free filters): a resume or analysis built another network."""
    run = RunDir.create(tmp_path / "run", load_config("cat-demo", ["train.steps=4"]))
    assert "filter_norm" in (run.path / "config.toml").read_text()
    assert run.config.model.options["filter_norm"] == [1.0] and run.config.model.options["recon"] == "interior"


def test_a_recorded_auto_pipeline_matches_the_choice_a_resume_is_told_to_write():
    """A run made in Python keeps data.pipeline = "auto"; a resume whose data crossed the size line is told to write
    "stream" or "memory" into config.toml (check_resumed_on), which the edit check must then take."""
    from downpour.train.config_record import config_record, recorded_differences

    auto = load_config("ufldl-sae", ['data.pipeline="auto"'])
    assert recorded_differences(config_record(auto), load_config("ufldl-sae", ['data.pipeline="memory"'])) == []
    memory = config_record(load_config("ufldl-sae", ['data.pipeline="memory"']))
    assert recorded_differences(memory, auto) == [("data.pipeline", "memory", "auto")]


def test_a_checkpoint_of_another_model_has_its_name_told_first_before_keys_that_sort_before_it():
    """An RBM's checkpoint in a CNN's run differs in cluster.lr too, a key before model.name by name: the name comes
    first (the resume's refusal says the checkpoint is another model's, not "put cluster.lr back")."""
    from downpour.train.config_record import config_record, recorded_differences

    rbm = config_record(load_config("rbm-digits", ["cluster.lr=0.02"]))
    said = [key for key, _, _ in recorded_differences(rbm, load_config("cnn-digits", ["cluster.lr=0.0"]))]
    assert said[0] == "model.name" and "cluster.lr" in said and said[1:] == sorted(said[1:])


def test_a_python_made_run_from_before_resolution_is_told_which_option_to_write_back(tmp_path):
    """Such a run's config.toml lacks filter_norm (it wrote only the options set), read as an old run's 0; its
    model.json says what it trained: the refusal says so and what to write, not that a file was edited."""
    from downpour.train.loop import run_local

    cfg = load_config("cat-demo", ["train.steps=2", "train.tensorboard=false", "data.size=16", "model.kernels=[5,3]",
                                   "model.maps=[2,2]"])
    run = RunDir.create(tmp_path / "run", cfg)
    run_local(cfg, run)
    config = run.path / "config.toml"
    lines = config.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith("filter_norm = ["))
    end = next(i for i in range(at, len(lines)) if lines[i].startswith("]"))
    config.write_text("".join(lines[:at] + lines[end + 1:]))          # as a Python-made run wrote it before
    with pytest.raises(CheckpointError, match=r"lacks it.*write filter_norm = \[1.0\] into its \[model\]"):
        RunDir(run.path).load_model()
    config.write_text(config.read_text().replace("[model]\n", "[model]\nfilter_norm = [1.0]\n"))
    assert RunDir(run.path).load_model() is not None
