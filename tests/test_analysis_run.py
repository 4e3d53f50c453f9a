"""analyze_run / write_report on a real (tiny, simulated-cluster) run directory, and the report in Chromium."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from downpour.analysis import edges
from downpour.analysis.report import write_report
from downpour.analysis.report_guide import method_name
from downpour.analysis.run import analyze_run
from downpour.config import ConfigError, load_config, save_config
from downpour.train.rundir import NotARunError, RunDir
from sim_run import simulated_run

pytestmark = pytest.mark.usefixtures("one_thread")   # (its trainings and analyses run in this process)

CHROMIUM = Path("/usr/bin/chromium")
FAST = dict(splits=2, probes=["lfw", "digits"], probe_samples=300, probe_folds=3, stimulus_steps=40,
            stimulus_restarts=2, random_filters=200, top_k=6, bootstrap=200)
# FAST without the probes: their own keys are refused where none runs (analysis.probes = [])
NO_PROBES = {**{k: v for k, v in FAST.items() if k not in ("probe_samples", "probe_folds")}, "probes": []}
CONTROL_KEYS = {"negatives", "level", "method", "auc", "auc_ci", "accuracy_mean", "accuracy_std", "splits", "unit",
                "unit_share", "sign", "threshold", "selection_auc", "candidates", "test_positives", "test_negatives",
                "test_positives_range", "test_negatives_range",
                "accuracy_ci", "tied", "tie_share", "undecided", "tie_spread_limit", "tie_rule", "undecided_splits",
                "tied_auc"}
BY_LAYER_KEYS = {"negatives", "auc", "auc_ci", "passes", "paired", "undecided", "tie_spread_limit",
                 "tie_rule"}   # controls_by_layer's
LEARNED_UNIT = "learned unit"
DECIDED: list[tuple[int, ...]] = []     # the shapes edges._edgy decided in run_dir's analysis
NEGATIVES = ["lfw_nonfaces", "phase_scrambled", "upside_down", "block_shuffled", "spectrum_matched_crops"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """ufldl-sae trained 40 steps on a simulated 3-worker cluster (so it has staleness.json), then analysed."""
    path = simulated_run(tmp_path_factory.mktemp("analysis") / "run", "ufldl-sae", [
        "train.steps=40", "data.samples=2000", "train.log_every=5", "cluster.workers=3", 'cluster.delay="uniform:0:3"'])
    decide = edges._edgy
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(edges, "_edgy", lambda f, scores: DECIDED.append(tuple(f.shape)) or decide(f, scores))
        analyze_run(path, **FAST)
    return path


def test_the_first_layer_filters_are_scored_once_for_the_summary_and_the_figures_frames(run_dir):
    """Until 2026-12-07 analyze_run scored and decided them for edge_summary, then again for edge_like's frames in
    filters.png: 3 decisions, of the filters twice. Once: the filters' and the noise filters' beside them, one each;
    the frames are the summary's decision."""
    a = json.loads((run_dir / "analysis.json").read_text())
    assert a["filters"]["edge_fraction"] is not None                     # (measured: else nothing is scored)
    assert DECIDED == [(a["filters"]["count"], *a["filters"]["shape"])] * 2


def test_analysis_json_has_every_number(run_dir):
    a = json.loads((run_dir / "analysis.json").read_text())
    methods = [r["method"] for r in a["face_neuron"]["rows"]]
    assert methods == ["learned unit", "chance (majority class)", "random weights, same architecture", "best single pixel",
                       "best of 200 random linear filters", "linear probe on raw pixels (logistic regression)"]
    assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in a["face_neuron"]["rows"])
    assert "same images" in a["face_neuron"]["paper_style"]["method"]
    assert [s["splits"] for s in a["face_neuron"]["over_splits"]] == [2] * 6
    assert all(r["tied"] >= 1 for r in a["face_neuron"]["rows"] if "unit" in r and r is not a["face_neuron"]["paper_style"])
    assert a["face_neuron"]["split"]["selection"] + a["face_neuron"]["split"]["test"] == sum(a["labelled_set"]["counts"].values())
    assert a["labelled_set"]["whitened"] is True        # the run used ZCA, so the test images were whitened too
    assert len(a["optimal_stimulus"]["image"]) == 1 and len(a["top_images"]["indices"]) == 6
    assert {c["transform"] for c in a["invariance"]["curves"]} == {"scale", "translation_x", "translation_y", "rotation"}
    # each range beside its interval, and the stimulus among the pool's images (since 2026-12-06)
    summary = a["invariance"]["summary"]
    assert set(summary["range_ci"]) == set(summary["ranges"]) and "range_ci" not in a["invariance"]
    for name, r in summary["ranges"].items():
        ci = summary["range_ci"][name]
        assert r is None or ci is None or ci["width"] is None or (ci["replicates"] == 500 and ci["low"][0] <= ci["low"][1])
    # the AUC ranges' intervals beside them, and the tied units' mean widths' where the tie has several
    sel = a["invariance"]["selectivity"]
    assert set(sel["range_ci"]) == set(sel["ranges"]) and "selectivity_ci" not in a["invariance"]
    assert all(ci["replicates"] == 500 and ci["auc"][0] <= sel["auc"][name] <= ci["auc"][1]
               for name, ci in sel["range_ci"].items())
    tied = a["invariance"]["tied"]
    assert ("mean_ci" in tied) == (tied["size"] > 1)
    assert 0.0 <= a["optimal_stimulus"]["among_pool"]["percentile"] <= 100.0
    assert [r["features"] for r in a["probes"][1]["rows"]] == ["input pixels", "codes"]
    assert a["staleness"]["overall"] and a["training"]["workers"] == [0, 1, 2]
    assert a["filters"]["count"] == 25 and 0.0 <= a["filters"]["coherence_mean"] <= 1.0
    for name in ("loss", "filters", "staleness", "stimulus", "invariance", "responses"):
        assert (run_dir / a["figures"][name]).stat().st_size > 1000, name


def test_analysis_json_has_the_face_test_with_intervals_and_a_verdict(run_dir):
    fn = json.loads((run_dir / "analysis.json").read_text())["face_neuron"]
    rows = fn["controls"]
    methods = ["learned unit", "random weights, same architecture", "best single pixel", "best of 200 random linear filters",
               "mean intensity", "contrast (std)", "gradient energy", "logistic regression on raw pixels"]
    assert [(r["negatives"], r["method"]) for r in rows] == [(n, m) for n in NEGATIVES for m in methods]
    for r in rows:
        assert set(r) == CONTROL_KEYS | ({"paired"} if r["method"] == "learned unit" else set())
        assert r["auc_ci"][0] <= r["auc_ci"][1] and 0.0 <= r["auc"] <= 1.0 and r["splits"] == 1
        assert 0.0 <= r["accuracy_ci"][0] <= r["accuracy_ci"][1] <= 1.0
        # chosen on lfw's training part, so all 60 held-out images are tested; control_draws (5) per face
        drawn = r["negatives"] in ("phase_scrambled", "block_shuffled", "spectrum_matched_crops")
        assert r["test_positives"] == 30 and r["test_negatives"] == (150 if drawn else 30)
    assert fn["controls_setup"]["select"] == "train" and "140 images" in fn["controls_setup"]["selection"]
    assert fn["controls_setup"]["choice"] == "nonfaces"              # the default: faces vs non-faces
    learned = next(r for r in rows if r["method"] == "learned unit")
    analysis = json.loads((run_dir / "analysis.json").read_text())
    assert set(learned["paired"]) == set(methods[1:])                # the unit minus each baseline, same replicates
    # the pictures show the unit the face test's verdict is about
    assert fn["pictured"] == {"unit": learned["unit"], "sign": learned["sign"], "threshold": learned["threshold"],
                              "chosen_by": "the face test (its learned unit)", "tied": learned["tied"],
                              "tied_units": fn["controls_ties"][LEARNED_UNIT]["units"],
                              "tied_signs": fn["controls_ties"][LEARNED_UNIT]["signs"]}
    # the tie beside every chosen unit (its own first), once per method, and the invariance ranges over that tied set
    for r in rows:
        units = fn["controls_ties"][r["method"]]["units"]
        assert r["tied"] == len(units) >= 1 and units[0] == r["unit"] and r["tie_share"] == r["tied"] / r["candidates"]
        assert r["tied_auc"]["min"] <= r["tied_auc"]["mean"] <= r["tied_auc"]["max"]
    assert set(fn["controls_ties"]) == set(methods)
    tied = analysis["invariance"]["tied"]
    assert tied["units"] == fn["controls_ties"][LEARNED_UNIT]["units"] and tied["size"] == learned["tied"]
    assert tied["ranges"]["scale"][0] == analysis["invariance"]["summary"]["ranges"]["scale"]   # the chosen unit's own
    assert set(tied["widths"]) == {"scale", "scale_up", "translation_x", "translation_y", "rotation"}
    analysis = json.loads((run_dir / "analysis.json").read_text())
    assert analysis["optimal_stimulus"]["unit"] == learned["unit"] and analysis["optimal_stimulus"]["sign"] == learned["sign"]
    # ... and so do the histogram's responses it keeps (they were the first split's best unit's)
    from downpour.analysis.options import open_run
    from downpour.analysis.units import unit_responses
    from downpour.analysis.labelled import load_labelled
    from downpour.analysis.options import run_preprocess
    opened = open_run(run_dir)
    images = load_labelled("lfw", tuple(opened[1].input_shape), prepare=run_preprocess(opened[0]))
    unit_says = unit_responses(opened[1], images.x, analysis["layer"])[:, learned["unit"]]
    assert fn["responses"]["unit"] == learned["unit"]
    assert fn["responses"]["positive"] == pytest.approx(unit_says[images.y == 1].tolist(), abs=1e-5)
    verdict = fn["controls_verdict"]
    assert all("Paired on the same images" in s for s in verdict["sentences"][1:])
    assert [p["negatives"] for p in verdict["per_negatives"]] == NEGATIVES
    assert isinstance(verdict["passes_low_level"], bool) and len(verdict["sentences"]) == 6
    assert fn["controls_setup"]["bootstrap"]["replicates"] == 200
    # The baselines do not depend on the run: the pixel rows are those of the raw 25x25 images.
    assert next(r for r in rows if r["method"] == "best single pixel")["candidates"] == 625
    # every feature layer, the analysed one first and equal to the main table's learned rows
    by_layer = fn["controls_by_layer"]
    from downpour.analysis.options import open_run
    analysed = json.loads((run_dir / "analysis.json").read_text())["layer"]
    others = [name for name in open_run(run_dir)[1].feature_layers() if name != analysed]
    assert [r["layer"] for r in by_layer] == [analysed] + others
    learned = {r["negatives"]: r["auc"] for r in rows if r["method"] == "learned unit"}
    assert [(c["negatives"], c["auc"]) for c in by_layer[0]["negatives"]] == list(learned.items())
    # each layer's learned unit keeps its tie's figures, as the rows do (since 2026-12-05)
    assert all(set(c) == BY_LAYER_KEYS for r in by_layer for c in r["negatives"])
    tie = {r["negatives"]: (r["undecided"], r["tie_spread_limit"]) for r in rows if r["method"] == "learned unit"}
    assert [(c["negatives"], (c["undecided"], c["tie_spread_limit"])) for c in by_layer[0]["negatives"]] == list(tie.items())


def test_analysis_is_reproducible(run_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    again = analyze_run(copy, **FAST)
    first = json.loads((run_dir / "analysis.json").read_text())
    for key in ("face_neuron", "top_images", "probes", "invariance"):
        assert again[key] == first[key], key


def test_not_a_run_fails_clearly(tmp_path):
    with pytest.raises(NotARunError, match="not a downpour run directory"):
        analyze_run(tmp_path)
    with pytest.raises(NotARunError, match="does not exist"):
        write_report(tmp_path / "missing")
    cfg = load_config("ufldl-sae")
    save_config(cfg, tmp_path / "config.toml")          # a run that never finished training
    with pytest.raises(NotARunError, match="model.json"):
        analyze_run(tmp_path)


def test_unknown_option_names_the_nearest(run_dir):
    with pytest.raises(ValueError, match="did you mean 'splits'"):
        analyze_run(run_dir, split=3)
    with pytest.raises(ValueError, match=r"analysis.top_k must be in \[1, 36\], got 0"):
        analyze_run(run_dir, top_k=0)


def test_cli_reports_a_non_run(tmp_path, capsys):
    from downpour.cli import main

    assert main(["analyze", str(tmp_path)]) == 2
    assert "not a downpour run directory" in capsys.readouterr().err


def test_cli_report_writes_the_html(run_dir, capsys):
    from downpour.cli import main

    (run_dir / "report.html").unlink(missing_ok=True)
    assert main(["report", str(run_dir)]) == 0
    assert str(run_dir / "report.html") in capsys.readouterr().out
    html = (run_dir / "report.html").read_text()
    assert 'id="face-neuron-table"' in html and 'id="face-controls-table"' in html
    table = html.split('id="face-controls-table"')[1].split("</table>")[0]
    assert table.count("<tr") == 1 + 40 and table.count('class="learned"') == 5   # header, 5 sets x 8 methods
    assert "low-level-matched controls the learned unit meets the criterion" in html
    assert "accuracy [95% CI]" in table and "140 images of lfw" in html                # chosen once, on the training part
    by_layer = html.split('id="face-controls-by-layer"')[1].split("</table>")[0]
    assert by_layer.count("<tr") == 1 + len(json.loads((run_dir / "analysis.json").read_text())["face_neuron"]["controls_by_layer"])



def test_a_cluster_runs_report_says_its_staleness_in_words_beside_the_histogram(run_dir):
    """staleness.json's mean and max, and the settings that made them, in the report's training section (until
    2026-12-06 the histogram alone: its legend's means, no delay, no setting)."""
    html = write_report(run_dir).read_text()
    overall = json.loads((run_dir / "staleness.json").read_text())["overall"]
    section = html.split('id="training"')[1].split('id="filters"')[0]
    assert (f"<b>Staleness</b> (simulated cluster, 3 workers, 2 shards, async, delay uniform:0:3 (virtual time), "
            f"n_fetch 1, n_push 1, no compensation): mean {overall['mean']:.2f}, max {overall['max']}, "
            f"over {overall['pushes']} shard updates") in section


def test_the_report_figures_bench_draws_a_cluster_runs_staleness_as_the_report_reads_it(run_dir, tmp_path):
    """bench/report_figures.py took analysis.json's staleness, whose keys JSON made strings: on any run with staleness
    it stopped at np.dot ("data type must provide an itemsize", until 2026-12-07). It draws the histograms the report
    draws, from the run's staleness.json."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import report_figures

    overall = json.loads((run_dir / "staleness.json").read_text())["overall"]["histogram"]
    assert json.loads((run_dir / "analysis.json").read_text())["staleness"]["overall"] == overall   # (string keys)
    draw, drawn = report_figures.training_plots.staleness_histogram, []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(report_figures.training_plots, "staleness_histogram", lambda h, p: drawn.append(h) or draw(h, p))
        assert report_figures.drawings(run_dir)["staleness"](tmp_path).is_file()
    assert drawn[0]["overall"] == {int(k): v for k, v in overall.items()}      # the run's, not the made-up bars

_CHECK = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt);
  const rows = document.querySelectorAll("#face-neuron-table tbody tr").length;
  const out = document.createElement("pre");
  out.id = "render-check";
  out.textContent = JSON.stringify({images: imgs.length, broken: broken, face_rows: rows});
  document.body.appendChild(out);
});
</script>"""


def _render(html_path: Path, tmp_path: Path) -> dict:
    """Load a copy of the page (plus a checker script) in headless Chromium; return what the checker saw."""
    page = tmp_path / "checked.html"
    page.write_text(html_path.read_text().replace("</body>", _CHECK + "</body>"))
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=5000", "--dump-dom", page.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'<pre id="render-check">(.*?)</pre>', dom, re.S)
    assert found, f"the checker did not run; chromium printed {dom[:500]!r}"
    return json.loads(found.group(1).replace("&quot;", '"'))


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
def test_report_renders_in_chromium(run_dir, tmp_path):
    report = write_report(run_dir)
    assert report == run_dir / "report.html"
    analysis = json.loads((run_dir / "analysis.json").read_text())
    seen = _render(report, tmp_path)
    assert seen["broken"] == []
    # analysis.json's six, and the face test's verdict figure, drawn from its rows as the page is written
    assert seen["images"] == len(analysis["figures"]) + 1 == 7
    assert seen["face_rows"] == 7                      # six methods and the paper-style row
    # The checker is not blind: a page with a broken image is caught.
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><img alt="nothing" src="data:image/png;base64,AAAA"></body></html>')
    assert _render(bad, tmp_path)["broken"] == ["nothing"]


def test_stacked_cat_network_run(tmp_path):
    """The main job's model: an untrained cat-demo saved as a run, analysed over its stage layers."""
    from downpour.models.registry import build

    cfg = load_config("cat-demo", ["train.tensorboard=false"])
    model, _ = build(cfg, (1, 32, 32))
    run = RunDir.create(tmp_path / "cat", cfg)
    run.save_model(model, step=0)
    a = analyze_run(run.path, **{**FAST, "probes": ["lfw"], "stimulus_steps": 10})
    assert a["layer"] == "stage2" and a["face_neuron"]["rows"][0]["candidates"] == model(torch.zeros(1, 1, 32, 32)).numel()
    assert [r["features"] for r in a["probes"][0]["rows"]] == ["input pixels", "stage1", "stage2"]
    assert "loss" not in a["figures"] and "filters" in a["figures"]      # no metrics yet: no loss curve
    assert write_report(run.path).stat().st_size > 10_000


def test_posed_images_add_the_out_of_plane_curve_to_analysis_and_report(run_dir, tmp_path):
    import numpy as np
    from PIL import Image

    poses = tmp_path / "poses"
    for angle in (-45, 0, 45):
        (poses / str(angle)).mkdir(parents=True)
        for i in range(3):
            img = np.random.default_rng(i).random((16, 16)) * (1 - abs(angle) / 90)
            Image.fromarray((img * 255).astype(np.uint8)).save(poses / str(angle) / f"object{i}.png")
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    a = analyze_run(copy, **{**NO_PROBES, "poses": str(poses)})
    curve = a["invariance"]["curves"][-1]
    assert curve["transform"] == "out_of_plane_rotation" and curve["values"] == [-45.0, 0.0, 45.0]
    assert a["invariance"]["out_of_plane_rotation"]["images"] == {"-45.0": 3, "0.0": 3, "45.0": 3}
    html = write_report(copy).read_text()
    assert "out_of_plane_rotation" in html and "Out-of-plane rotation: not measured" not in html
    (poses / "sideways").mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(poses / "sideways" / "x.png")
    with pytest.raises(ValueError, match="'sideways'.*not an angle"):
        analyze_run(copy, **{**NO_PROBES, "poses": str(poses)})
    # two folders of one angle: one was dropped without a word; no frontal folder: named after the face test's
    # minutes, without the key. Both now before any measurement, naming analysis.poses.
    shutil.rmtree(poses / "sideways")
    shutil.copytree(poses / "0", poses / "0.0")
    with pytest.raises(ConfigError, match=r"sub-folders '0' and '0.0' .* are the same angle \(0 degrees\)") as err:
        analyze_run(copy, **{**NO_PROBES, "poses": str(poses)})
    assert err.value.key == "analysis.poses"
    shutil.rmtree(poses / "0")
    shutil.rmtree(poses / "0.0")
    with pytest.raises(ConfigError, match=r"has no frontal pose \(a sub-folder named 0\).*\[-45.0, 45.0\]"):
        analyze_run(copy, **{**NO_PROBES, "poses": str(poses)})


def _untrained_cat(path: Path, *overrides: str) -> Path:
    from downpour.models.registry import build

    cfg = load_config("cat-demo", ["train.tensorboard=false", "data.size=16", "model.kernels=[5,3]", "model.maps=[2,2]",
                                   *overrides])
    run = RunDir.create(path, cfg)
    run.save_model(build(cfg, (1, 16, 16))[0], step=0)
    return run.path


def test_the_face_tests_summary_says_where_the_network_saw_no_face(run_dir, tmp_path):
    """A cat-demo trained 30 steps on a folder of noise images ended on "face test: On 4 of 4 low-level-matched
    controls the learned unit meets the criterion" and nothing else; run_dir trained on natural images alone."""
    summary = json.loads((run_dir / "analysis.json").read_text())["face_neuron"]["controls_verdict"]["sentences"][0]
    assert summary.endswith(" This network trained on no lfw face (data.source = 'natural'): what its unit tells faces "
                            "from, it learned from other images.")
    seen = analyze_run(_untrained_cat(tmp_path / "faces"), **{**NO_PROBES, "stimulus_steps": 5, "splits": 1})
    assert "trained on no lfw face" not in seen["face_neuron"]["controls_verdict"]["sentences"][0]
    from downpour.analysis.face_verdict import said_faceless

    for sets, why in ((["data.train_faces=0"], "data.train_faces = 0"), (["data.faces_fraction=0"], "data.faces_fraction = 0")):
        cfg = load_config("cat-demo", sets)
        said = said_faceless({"controls": [{}], "controls_verdict": {"sentences": ["On 4 of 4."]}}, cfg.analysis, cfg.data)
        assert said["controls_verdict"]["sentences"][0].startswith(f"On 4 of 4. This network trained on no lfw face ({why})")


def test_a_no_faces_run_is_scored_beside_the_unit_and_a_wrong_one_is_named(tmp_path):
    run = _untrained_cat(tmp_path / "run")
    bare = _untrained_cat(tmp_path / "bare", "data.train_faces=0")
    opts = {**NO_PROBES, "stimulus_steps": 5, "splits": 1}
    a = analyze_run(run, **opts, no_faces_run=str(bare))["face_neuron"]
    assert {r["negatives"] for r in a["controls"] if r["method"] == "the no-faces network"} == set(NEGATIVES)
    assert all("the no-faces network" in p["paired"] for p in a["controls_verdict"]["per_negatives"])
    assert "Against the no-faces network (the same recipe and seed" in a["controls_verdict"]["sentences"][0]
    assert "does not ask whether" not in write_report(run).read_text()
    for other, match in ((_untrained_cat(tmp_path / "faces"), "data.train_faces = -1, not 0: it saw faces"),
                         (_untrained_cat(tmp_path / "wide", "data.train_faces=0", "model.maps=[3,2]"), "has model"),
                         (tmp_path / "nothing", "analysis.no_faces_run: ")):
        with pytest.raises(ConfigError, match=match):
            analyze_run(run, **opts, no_faces_run=str(other))


def test_a_failed_analysis_leaves_the_last_ones_figures_and_json_together(run_dir, tmp_path):
    """Figures are drawn aside and join figures/ only with their analysis.json: a bad option found late
    (poses, after the stimulus figures) changes nothing on disk."""
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    before = {p.name: p.read_bytes() for p in (copy / "figures").iterdir()}
    saved = (copy / "analysis.json").read_text()
    (tmp_path / "front").mkdir()
    (tmp_path / "profile").mkdir()
    with pytest.raises(ConfigError, match="analysis.poses"):
        analyze_run(copy, **{**FAST, "top_k": 3, "poses": str(tmp_path)})
    assert {p.name: p.read_bytes() for p in (copy / "figures").iterdir()} == before
    assert (copy / "analysis.json").read_text() == saved and not (copy / "figures.partial").exists()


def test_the_twin_advice_works_or_says_there_is_none(run_dir):
    with pytest.raises(ConfigError, match=re.escape("none can be trained: the run saw no lfw face (data.source = 'natural')")):
        analyze_run(run_dir, **FAST, no_faces_twin=True)


def test_a_split_that_cannot_hold_every_class_is_named_and_probes_report_the_folds_used():
    import numpy as np

    from downpour.analysis.labelled import LabelledSet
    from downpour.analysis.probe import INPUT, probe_table
    from downpour.analysis.selectivity import split
    from downpour.models.registry import create_model

    y = np.repeat([0, 1], 30)
    with pytest.raises(ConfigError, match="analysis.test_fraction = 0.98"):
        split(y, 0.98, 0)
    model = create_model("ufldl-sae", (1, 8, 8))
    data = LabelledSet("tiny", torch.randn(12, 1, 8, 8), np.repeat([0, 1], 6), ["a", "b"], {}, raw=torch.randn(12, 1, 8, 8))
    table = probe_table(model, data, folds=40)
    assert (table["folds"], table["folds_asked"]) == (6, 40) and table["rows"][0]["features"] == INPUT
    assert all(len(r["folds"]) == 6 for r in table["rows"])


@pytest.mark.parametrize("sets, said", [
    ([], "Not a cluster run"),
    (["cluster.runner=simulated", "cluster.algorithm=sandblaster"], "Sandblaster L-BFGS"),
    (["cluster.runner=simulated"], "No staleness.json in this run"),
])
def test_the_report_says_why_a_run_has_no_staleness_histogram(tmp_path, sets, said):
    from downpour.analysis.report_cluster import no_staleness as _no_staleness

    run = RunDir.create(tmp_path / "r", load_config("tica-8x8", sets))
    assert said in _no_staleness(run)


def test_the_report_names_a_cluster_runs_lost_and_restarted_workers(tmp_path):
    """staleness.json recorded a worker lost at step 167; the report showed only the histogram, worker 0's bars
    smaller, and nothing said it was lost, when, or whether it came back. A shard restart at step 0 is from the start
    (until 2026-12-07 "from the checkpoint of step 0", where the run had none: its log says "no checkpoint yet")."""
    import json

    from downpour.analysis.report_cluster import cluster_faults as _cluster_faults

    run = RunDir.create(tmp_path / "r", load_config("tica-8x8", ["cluster.runner=simulated"]))
    assert _cluster_faults(run) == ""                                    # no staleness.json: nothing said
    events = [{"event": "joined", "workers": [1], "step": 3},
              {"event": "worker-lost", "worker": 0, "step": 167, "reason": "ActorDiedError: the actor died\nmore"},
              {"event": "worker-restarted", "worker": 0, "step": 170},
              {"event": "shards-restarted", "step": 0, "reason": "ActorDiedError"}, {"event": "worker-lost"},
              {"event": "restart-given-up", "worker": 1, "step": 200, "reason": "not up within 120 s"}]
    (run.path / "staleness.json").write_text(json.dumps({"events": events}))
    assert _cluster_faults(run) == ('<p class="note">Faults: worker 0 lost at step 167 (ActorDiedError: the actor '
                                    'died), restarted at step 170; the shards restarted from the start, '
                                    'step 0 (ActorDiedError); worker ? lost at step ?; worker 1&#x27;s restart '
                                    'given up at step 200 (not up within 120 s).</p>')
    lost = {"event": "shards-lost", "step": 63, "reason": "shard 1 lost at step 63 (ConnectionError)"}
    (run.path / "staleness.json").write_text(json.dumps({"events": [lost]}))
    assert _cluster_faults(run) == ('<p class="note">Faults: the run stopped at step 63, a shard lost with '
                                    'cluster.shard_restarts spent (shard 1 lost at step 63 (ConnectionError)).</p>')
    on = {**events[1], "where": "node bbbbbbbb at 10.0.0.2"}    # Ray's (since 2026-12-06): the node it ran on
    (run.path / "staleness.json").write_text(json.dumps({"events": [on]}))
    assert "worker 0 lost at step 167 on node bbbbbbbb at 10.0.0.2 (ActorDiedError: the actor died)" in \
        _cluster_faults(run)
    (run.path / "staleness.json").write_text(json.dumps({"events": events[1:2] * 300}))
    assert _cluster_faults(run).count("lost at step 167") == 10 and "; and 290 more (staleness.json" in _cluster_faults(run)
    (run.path / "staleness.json").write_text(json.dumps({"events": []}))
    assert _cluster_faults(run) == ""


def test_the_faults_line_says_a_replacement_placed_again_in_its_losss_entry(tmp_path):
    """A replacement pinned to a node that crashed before Ray said so is started again off it (restarts_on_ray, since
    2026-12-05): its ``restart-placed-again`` is said in the loss's entry, which stays open for what came of it."""
    import json

    from downpour.analysis.report_cluster import cluster_faults as _cluster_faults

    run = RunDir.create(tmp_path / "r", load_config("tica-8x8", ["cluster.runner=simulated"]))
    events = [{"event": "worker-lost", "worker": 1, "step": 20, "reason": "ActorUnavailableError"},
              {"event": "restart-placed-again", "worker": 1, "step": 31,
               "reason": "its node cccccccc gone (ActorDiedError)"},
              {"event": "worker-restarted", "worker": 1, "step": 33}]
    (run.path / "staleness.json").write_text(json.dumps({"events": events}))
    assert _cluster_faults(run) == ('<p class="note">Faults: worker 1 lost at step 20 (ActorUnavailableError), its '
                                    'replacement placed again at step 31 (its node cccccccc gone (ActorDiedError)), '
                                    'restarted at step 33.</p>')


def test_the_faults_line_says_a_shard_restart_and_its_resume_in_one_entry(tmp_path):
    """A shard restart's ``resumed`` (same step, next event) goes into the restart's entry, the lost workers it
    brought back named there; a resume of the user's own stays an entry of its own, and a simulated resume that
    started one worker (the other still lost) says "1 worker" (it said "its 1 workers")."""
    import json

    from downpour.analysis.report_cluster import cluster_faults as _cluster_faults

    run = RunDir.create(tmp_path / "r", load_config("tica-8x8", ["cluster.runner=simulated"]))
    events = [{"event": "worker-lost", "worker": 1, "step": 21, "reason": "ActorDiedError"},
              {"event": "not-restarted", "worker": 1, "step": 21, "reason": "cluster.restarts = 0"},
              {"event": "shards-restarted", "step": 16, "reason": "shard 0 lost at step 30 (ConnectionError)", "n": 1},
              {"event": "resumed", "step": 16, "workers": [0, 1]},
              {"event": "resumed", "step": 40, "workers": [0]}]
    (run.path / "staleness.json").write_text(json.dumps({"events": events}))
    assert _cluster_faults(run) == (
        '<p class="note">Faults: worker 1 lost at step 21 (ActorDiedError), not restarted (cluster.restarts = 0); '
        'the shards restarted from the checkpoint of step 16 (shard 0 lost at step 30 (ConnectionError)), its 2 '
        'workers started again (worker 1 back after its loss); the run resumed at step 40 with 1 worker started.</p>')


def test_a_resume_that_started_no_worker_says_none_not_its_0_workers(tmp_path):
    """A simulated resume whose workers were all lost starts none of them: the entry said "with its 0 workers
    started"; an event without the list (written by no runner now) does not claim a count."""
    import json

    from downpour.analysis.report_cluster import cluster_faults as _cluster_faults

    run = RunDir.create(tmp_path / "r", load_config("tica-8x8", ["cluster.runner=simulated"]))
    events = [{"event": "resumed", "step": 40, "workers": []}, {"event": "resumed", "step": 50}]
    (run.path / "staleness.json").write_text(json.dumps({"events": events}))
    assert _cluster_faults(run) == ('<p class="note">Faults: the run resumed at step 40 with none of its workers started; '
                                    'the run resumed at step 50 with its workers started.</p>')


def test_a_greedy_runs_loss_headline_compares_each_stage_with_itself():
    """A greedy run's ``loss`` is stage 1's cost first and stage 2's last: the headline gives each
    stage's own first and last cost (the transition row counts for both), a joint run keeps one."""
    from downpour.analysis.report import _loss_headline
    from downpour.analysis.training import training_summary

    greedy = [{"step": 10, "loss": 200.0, "stage1/reconstruction": 40.0, "stage1/pooled_l2": 160.0},
              {"step": 20, "loss": 150.0, "stage1/reconstruction": 20.0, "stage1/pooled_l2": 140.0,
               "stage2/reconstruction": 90.0, "stage2/pooled_l2": 200.0, "stage2/metric/code_std": 9.0},
              {"step": 30, "loss": 280.0, "stage2/reconstruction": 60.0, "stage2/pooled_l2": 220.0}]
    t = training_summary(greedy)
    assert t["stages"] == [
        {"stage": "stage1", "first_step": 10, "last_step": 20, "first_loss": 200.0, "last_loss": 160.0, "logged_rows": 2},
        {"stage": "stage2", "first_step": 20, "last_step": 30, "first_loss": 290.0, "last_loss": 280.0, "logged_rows": 2}]
    said = _loss_headline(t)
    assert "stage1 200 → 160 (steps 10–20)" in said and "stage2 290 → 280 (steps 20–30)" in said and "3 logged rows" in said
    joint = [{"step": s, "loss": l, "stage1/reconstruction": l / 2, "stage2/reconstruction": l / 2} for s, l in ((10, 9.0), (20, 5.0))]
    assert training_summary(joint)["stages"] == [] and _loss_headline(training_summary(joint)).startswith("Loss 9 → 5 over 2")
    plain = [{"step": 10, "loss": 3.0, "reconstruction": 3.0}]
    assert training_summary(plain)["stages"] == []


def test_a_joint_runs_loss_headline_gives_each_stages_share_and_names_a_frozen_one():
    """cat-demo, joint, model.first_layer = "gabor", 300 steps: the headline read "Loss 5773 → 5392", about 5,300 of
    it stage 1's cost, which has nothing to train and only moved with the batches, while stage 2's fell 319 → 117."""
    from downpour.analysis.report import _loss_headline
    from downpour.analysis.training import frozen_stages, training_summary
    from downpour.models.registry import create_model

    assert frozen_stages(create_model("cat-demo", first_layer="gabor")) == ["stage1"]
    assert frozen_stages(create_model("cat-demo", first_layer="random")) == ["stage1"]
    assert frozen_stages(create_model("cat-demo")) == frozen_stages(create_model("rica-8x8")) == []
    joint = [{"step": 10, "loss": 5773.0, "stage1/reconstruction": 5214.0, "stage1/pooled_l2": 239.0,
              "stage2/reconstruction": 203.0, "stage2/pooled_l2": 117.0, "stage2/metric/code_std": 9.0},
             {"step": 300, "loss": 5392.0, "stage1/reconstruction": 5043.0, "stage1/pooled_l2": 233.0,
              "stage2/reconstruction": 11.0, "stage2/pooled_l2": 105.0, "stage2/metric/code_std": 7.0}]
    t = training_summary(joint, frozen=["stage1"])
    assert t["stages"] == []                                   # not trained in turn: the loss is one sum throughout
    assert [(s["stage"], s["first_loss"], s["last_loss"], s.get("frozen")) for s in t["joint_stages"]] == [
        ("stage1", 5453.0, 5276.0, True), ("stage2", 320.0, 116.0, None)]
    said = _loss_headline(t)
    assert said.startswith("Loss 5773 → 5392 over 2 logged rows, the sum of each stage's own cost (trained together): ")
    assert "stage1 5453 → 5276 (frozen: no parameter of it trains" in said and "stage2 320 → 116." in said
    assert "(frozen" not in _loss_headline(training_summary(joint))      # nothing said frozen unless it is
    greedy = [{"step": 10, "loss": 5453.0, "stage1/reconstruction": 5453.0}, {"step": 20, "loss": 320.0, "stage2/reconstruction": 320.0}]
    assert "stage1 5453 (one logged row, step 10) (frozen: no parameter" in _loss_headline(training_summary(greedy, ["stage1"]))
    # one stage is the loss itself; an analysis.json from before 2026-12-04 (no joint_stages) keeps the one sum
    assert "joint_stages" not in training_summary([{"step": 10, "loss": 3.0, "stage1/reconstruction": 3.0}])
    assert _loss_headline({**t, "joint_stages": None}).startswith("Loss 5773 → 5392 over 2 logged rows. Logged beside")


def test_the_report_says_when_the_edge_like_filters_are_copies_of_a_few():
    from downpour.analysis.report import _filters

    base = {"available": True, "count": 100, "shape": [1, 8, 8], "edge_fraction": 1.0, "edge_fraction_noise": 0.0,
            "coherence_mean": 0.78, "coherence_noise": 0.16, "criteria": {}}
    collapsed = _filters({**base, "edge_distinct_fraction": 0.01, "edge_mean_abs_cosine": 0.95})
    assert "1.0% are distinct" in collapsed and "collapsed onto 1 distinct filter," in collapsed
    varied = _filters({**base, "edge_distinct_fraction": 0.9, "edge_mean_abs_cosine": 0.12})
    assert "90.0% are distinct" in varied and "collapsed" not in varied
    assert "distinct" not in _filters(base)                  # an analysis.json from before the measure


def test_the_report_says_when_the_edge_like_filters_all_share_one_orientation():
    """rbm-digits after 500 steps: 77% edge-like whole-digit templates, orientation agreement 0.99; the report
    said only '77.0% are edge-like' and that they were 12 distinct, never that they were one vertical structure."""
    from downpour.analysis.report import _filters

    base = {"available": True, "count": 100, "shape": [1, 8, 8], "edge_fraction": 0.77, "edge_fraction_noise": 0.0,
            "coherence_mean": 0.71, "coherence_noise": 0.16, "criteria": {}}
    assert "share one orientation (agreement 0.99" in _filters({**base, "edge_orientation_agreement": 0.99})
    assert "share one orientation" not in _filters({**base, "edge_orientation_agreement": 0.12})   # cat-demo: 0.08
    assert "share one orientation" not in _filters({**base, "edge_fraction": 0.05, "edge_orientation_agreement": 1.0})
    assert "share one orientation" not in _filters(base)            # an analysis.json from before the measure


def test_a_designed_first_layer_is_said_so_and_its_repeats_are_not_called_a_collapse():
    """cat-demo with model.first_layer = "gabor" puts the same 8-filter bank at each of its 4 tiled banks: the
    report called that "collapsed onto 8 distinct filter(s)" and never said the filters were not learned."""
    from downpour.analysis.report import _filters
    from downpour.analysis.run import _filter_stats
    from downpour.models.registry import create_model

    model = create_model("cat-demo", (1, 32, 32), first_layer="gabor")
    stats, _ = _filter_stats(model, model.first_layer_filters().numpy(), 0)
    assert stats["first_layer"] == "gabor"
    said = _filters(stats)
    assert "collapsed" not in said and "not learned" in said and "by construction" in said
    learned = create_model("cat-demo", (1, 32, 32))
    assert _filter_stats(learned, learned.first_layer_filters().numpy(), 0)[0]["first_layer"] == "learned"
    assert "not learned" not in _filters({**stats, "first_layer": "learned"})


def test_a_gabor_started_first_layer_is_said_to_be_learned_and_its_edge_share_trainings():
    """model.first_layer = "gabor-init" starts from the Gabor bank and learns: the report said its edge-like share
    "says what the layer was given, not what training found" and its copies were "by construction". cat-demo with
    it, 300 steps: 0.0% edge-like, from a bank whose every filter passes."""
    from downpour.analysis.report import _filters
    from downpour.analysis.run import _filter_stats
    from downpour.models.registry import create_model

    model = create_model("cat-demo", (1, 32, 32), first_layer="gabor-init")
    start, _ = _filter_stats(model, model.first_layer_filters().numpy(), 0)
    assert start["first_layer"] == "gabor-init" and start["edge_fraction"] == 1.0 and start["edge_distinct_fraction"] < 0.5
    said = _filters(start)
    assert "what training made of that start" in said and "not what training found" not in said
    assert "by construction" not in said and "collapsed" not in said and "training has not moved them apart" in said
    trained = _filters({**start, "edge_fraction": 0.0, "edge_distinct_fraction": None})
    assert "not learned" not in trained and "what the layer was given, not what training found" not in trained


def test_a_run_with_one_logged_row_does_not_report_an_unmoved_loss():
    """rbm-digits --steps 30 logs one row (train.log_every = 50): the headline read "Loss -2.976 → -2.976 over
    1 logged rows", a loss that did not move."""
    from downpour.analysis.report import _loss_headline
    from downpour.analysis.training import training_summary

    said = _loss_headline(training_summary([{"step": 30, "loss": -2.976, "contrastive_divergence": -2.976}]))
    assert "→" not in said and "at step 30" in said and "only logged row" in said


def test_an_rbms_headline_gives_its_diagnostics_and_says_its_cost_is_a_free_energy_gap():
    """rbm-digits (1500 steps) read "Loss -2.053 → 0.2474 over 30 logged rows" and nothing else: a cost that rose,
    read as divergence, while the reconstruction error fell 2.562 → 1.38 and the pseudo-likelihood rose."""
    from downpour.analysis.report import _loss_headline
    from downpour.analysis.training import training_summary

    rbm = [{"step": 50, "loss": -2.053, "contrastive_divergence": -2.053, "metric/reconstruction_error": 2.562,
            "metric/pseudo_likelihood": -27.51},
           {"step": 1500, "loss": 0.2474, "contrastive_divergence": 0.2474, "metric/reconstruction_error": 1.38,
            "metric/pseudo_likelihood": -20.78}]
    said = _loss_headline(training_summary(rbm))
    assert said.startswith("Loss -2.053 → 0.2474 over 2 logged rows.")
    assert "metric/reconstruction_error 2.562 → 1.38" in said and "metric/pseudo_likelihood -27.51 → -20.78" in said
    assert "free-energy gap" in said and "not part of it" in said
    plain = _loss_headline(training_summary([{"step": 10, "loss": 3.0, "reconstruction": 3.0},
                                              {"step": 20, "loss": 2.0, "reconstruction": 2.0}]))
    assert plain == "Loss 3 → 2 over 2 logged rows."


def test_a_ufldl_runs_stimulus_is_drawn_in_pixels_without_the_mid_grey_offset():
    """normalize = "ufldl" maps the whitened values into [0.1, 0.9] around 0.5; the picture undid only the
    whitening, so the 0.5 went through it as a constant offset and the ufldl-sae stimulus looked washed out."""
    import numpy as np

    from downpour.analysis.run import _in_pixels
    from downpour.data.preprocess import Preprocess

    x = np.random.default_rng(0).random((500, 1, 8, 8)).astype(np.float32)
    prepare, prepared, _ = Preprocess.fit(x, "ufldl", "zca", 0.01)
    shown = _in_pixels(prepare, prepared[3]).numpy()
    assert np.std(shown - x[3]) < 0.01      # the sample, up to its own mean (ufldl removes it; was 0.25 off)


def test_a_layer_not_measured_says_why_escaped_once():
    from downpour.analysis.report_controls import controls_by_layer as _controls_by_layer

    html = _controls_by_layer([{"layer": "a", "negatives": [{"negatives": "upside_down", "auc": 0.5, "auc_ci": [0.4, 0.6],
                                                            "passes": False}]},
                               {"layer": "s", "negatives": [], "not_measured": "no unit of 's' <is> finite"}], {})
    assert "no unit of &#x27;s&#x27; &lt;is&gt; finite" in html and "&amp;" not in html


def test_the_report_says_how_many_files_the_run_skipped_and_names_the_first(run_dir, tmp_path):
    """data.json named the skipped files of a folder run; report.html said nothing of them."""
    from downpour.analysis.report_notes import data_note

    assert data_note(None) == "" and data_note({"n_skipped": 0, "skipped": []}) == ""
    data = {"n_skipped": 6, "skipped": [{"file": "/d/a<b>.png", "reason": "OSError: truncated\nmore"}] * 6,
            "unlisted": [{"folder": "/d/locked", "reason": "PermissionError: Permission denied"}],
            "n_upscaled": 2, "upscaled": [{"file": "/d/tiny.png", "size": "4x4"}, {"file": "/d/t2.png", "size": "8x6"}]}
    note = ('<p class="note">Data: 6 files skipped, unreadable or too small (first: /d/a&lt;b&gt;.png: OSError: '
            'truncated); 1 folder that could not be listed left out (first: /d/locked: PermissionError: Permission '
            'denied); 2 files enlarged to data.size in crops mode, a blur (first: /d/tiny.png, 4x4); data.json names '
            'every one.</p>')
    assert data_note(data) == note
    copy = shutil.copytree(run_dir, tmp_path / "run")
    (copy / "data.json").write_text(json.dumps(data))
    assert note in write_report(copy, analyze_if_missing=False).read_text()


def test_the_report_says_the_symbolic_links_the_listing_did_not_follow():
    """data.json's loops (links to a folder holding them, not followed) were said in the log alone (until
    2026-12-06)."""
    from downpour.analysis.report_notes import data_note

    data = {"loops": [{"link": "/d/sub/up", "to": "/d"}, {"link": "/d/b/up", "to": "/d"}]}
    assert data_note(data) == ('<p class="note">Data: 2 symbolic links to a folder holding them not followed, the '
                               'files there read once (first: /d/sub/up -&gt; /d); data.json names every one.</p>')


def test_the_report_names_the_labelled_folders_unreadable_images(run_dir, tmp_path):
    """A concept folder's unreadable images were skipped, counted in analysis.json's labelled_set and said in the log;
    report.html said nothing of them (until 2026-12-05), though it says the training data's."""
    copy = shutil.copytree(run_dir, tmp_path / "run")
    a = json.loads((copy / "analysis.json").read_text())
    a["face_neuron"]["dataset"] = "concept"
    a["labelled_set"] = {**(a.get("labelled_set") or {}), "n_skipped": 1,
                         "skipped": [{"file": "concept/other/bad.png", "reason": "UnidentifiedImageError: cannot identify"}]}
    (copy / "analysis.json").write_text(json.dumps(a))
    assert ('<p class="note">The labelled set concept: 1 file skipped, unreadable or too small (first: '
            "concept/other/bad.png: UnidentifiedImageError: cannot identify); analysis.json&#x27;s labelled_set names "
            "every one.</p>") in write_report(copy, analyze_if_missing=False).read_text()


def test_top_images_come_from_images_the_pictured_unit_was_not_chosen_on(run_dir, tmp_path):
    """On digits the pictured unit is the first split's best, chosen on half the images; its top images were
    drawn from all of them, so the images it was chosen to rank first could fill the row (and its count of the
    concept's images was read with no chance level). Now: from the split's test images, the share said."""
    import numpy as np

    from downpour.analysis.labelled import load_labelled
    from downpour.analysis.selectivity import split

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    fast = {k: v for k, v in NO_PROBES.items() if k != "bootstrap"}       # (only the face test reads it)
    a = analyze_run(copy, **{**fast, "dataset": "digits", "positive": 3, "splits": 1, "top_k": 20})
    y = load_labelled("digits", (1, 8, 8)).y == 3
    select, test = split(y.astype(np.int64), a["options"]["test_fraction"], a["face_neuron"]["split_seeds"][0])
    top = a["top_images"]
    assert a["face_neuron"]["pictured"]["chosen_by"] == "the best single neuron of the first split"
    assert set(top["indices"]) <= set(test.tolist()) and not set(top["indices"]) & set(select.tolist())
    assert top["pool"] == len(test) and top["positive_in_pool"] == int(y[test].sum())
    assert a["invariance"]["images"] == int(y[test].sum())              # the invariance curves: the same images
    html = write_report(copy).read_text()
    assert f"its top 20 of the first split&#x27;s {len(test)} test images" in html and "expected by chance" in html
    lfw = json.loads((run_dir / "analysis.json").read_text())["top_images"]    # the face test's unit: all held out
    assert lfw["pool"] == 60 and lfw["drawn_from"].startswith("all 60 held-out images")


def test_a_run_that_saw_no_face_is_not_told_to_train_a_no_faces_twin(run_dir):
    from types import SimpleNamespace

    from downpour.analysis.report_notes import faces_seen, owed_note

    html = write_report(run_dir).read_text()           # ufldl-sae: natural patches, no face; the twin is refused for it
    assert "This network trained on no lfw face (data.source = " in html
    assert "no_faces_twin = true" not in html and "the faces it trained on" not in html
    assert faces_seen(SimpleNamespace(config=load_config("cat-demo"))) == ""          # saw faces: the advice stays
    assert "no_faces_twin = true" in owed_note("")
    assert faces_seen(SimpleNamespace(config=load_config("cat-demo", ["data.train_faces=0"]))) == "data.train_faces = 0"
    # the note names the setting the face test's summary names beside it (it said data.train_faces = 0 of this one)
    both = load_config("cat-demo", ["data.faces_fraction=0", "data.train_faces=0"])
    assert faces_seen(SimpleNamespace(config=both)) == both.data.no_faces_setting() == "data.faces_fraction = 0"


def test_an_untied_layers_note_gives_the_runs_own_samples_and_claims_nothing_it_did_not_measure():
    """lcn-digits (untied 3x3 filters, 1,797 digits) was told it had "the ~1,250 images that ship offline" and
    "far too little data per filter": cat-untied's numbers, measured on another model and other data."""
    from downpour.analysis.report import _filters

    lcn = {"available": True, "count": 576, "shape": [1, 3, 3], "edge_fraction": 0.0, "edge_fraction_noise": 0.0,
           "coherence_mean": 0.4, "coherence_noise": 0.3, "criteria": {},
           "sharing": {"kind": "untied", "banks": 36, "positions": 36}}
    said = _filters(lcn, 1797)
    assert "36 positions" in said and "the run's 1,797 training samples" in said and "cat-untied" in said
    assert "ship offline" not in said and "far too little" not in said
    assert "each training image" in _filters(lcn) and "untied" not in _filters({**lcn, "sharing": {"kind": "tiled"}}, 1797)


def test_a_stage_logged_once_is_not_said_to_have_gone_from_its_cost_to_itself():
    """cat-3stage, 30 steps, log_every 10: each stage logged one row, and the headline read
    "stage1 2255 → 2255 (steps 10–10)", a loss that did not move."""
    from downpour.analysis.report import _loss_headline
    from downpour.analysis.training import training_summary

    rows = [{"step": 10, "loss": 2255.0, "stage1/reconstruction": 255.0, "stage1/pooled_l2": 2000.0},
            {"step": 20, "loss": 2235.0, "stage2/reconstruction": 235.0, "stage2/pooled_l2": 2000.0},
            {"step": 30, "loss": 1478.0, "stage3/reconstruction": 478.0, "stage3/pooled_l2": 1000.0}]
    said = _loss_headline(training_summary(rows))
    assert "stage1 2255 (one logged row, step 10)" in said and "stage3 1478 (one logged row, step 30)" in said
    assert "→" not in said


def test_a_unit_the_concept_lowers_is_shown_beside_the_images_it_answers_least_and_the_words_say_so(run_dir, tmp_path):
    """rbm-digits' unit 81 (sign -1): the figure showed "the 9 images it answers least", the words "its top 9 images"."""
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    said = {}
    for sign in (1, -1):
        a = json.loads((copy / "analysis.json").read_text())
        a["optimal_stimulus"]["sign"] = sign
        (copy / "analysis.json").write_text(json.dumps(a))
        said[sign] = write_report(copy, analyze_if_missing=False).read_text()
    k = len(a["top_images"]["indices"])
    assert f"its top {k} of " in said[1] and "answers least" not in said[1]
    assert f"the {k} it answers least of " in said[-1] and f"its top {k}" not in said[-1]


def test_the_stimulus_heading_and_label_say_what_a_lowered_unit_is_shown_with(run_dir, tmp_path):
    """The report's words for a unit the concept lowers changed on 2026-12-04; its heading and the figure's label still
    said "optimal stimulus and top images" until 2026-12-06."""
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    a = json.loads((copy / "analysis.json").read_text())
    a["optimal_stimulus"]["sign"] = -1
    (copy / "analysis.json").write_text(json.dumps(a))
    said = write_report(copy, analyze_if_missing=False).read_text()
    assert '<h2 id="stimulus">Most suppressing stimulus and images it answers least</h2>' in said
    assert 'alt="most suppressing stimulus and images it answers least"' in said
    assert "top images" not in said.split('<h2 id="stimulus">')[1].split("<h2")[0]
    # (the pictured-unit sentence's list: "its images it answers least" until 2026-12-06)
    assert ", the images it answers least and its invariance below." in said, said.split('<h2 id="stimulus">')[1][:600]

def _jpeg_classes(root: Path) -> Path:
    """Classes a/ and b/ of four 128x128 grey JPEGs each (quality 90), with structure down to 16 px."""
    import numpy as np
    from PIL import Image

    for k, c in enumerate("ab"):
        (root / c).mkdir(parents=True)
        for i in range(4):
            small = np.random.default_rng(10 * i + k).integers(0, 256, (8, 8), dtype=np.uint8)
            Image.fromarray(small).resize((128, 128), Image.BICUBIC).save(root / c / f"{i}.jpg", quality=90)
    return root


def test_a_labelled_folder_decodes_its_jpegs_in_full_or_reduced_as_asked(tmp_path):
    """Against an independent reference: Pillow's full decode, resized to 8x8 by torch (each image is square)."""
    import numpy as np
    from PIL import Image

    from downpour.analysis.labelled import load_labelled, resize_to

    root = _jpeg_classes(tmp_path)
    full = [resize_to(torch.from_numpy(np.asarray(Image.open(p), np.float32) / 255)[None, None], (1, 8, 8))[0]
            for p in sorted(root.glob("*/*.jpg"))]
    for draft in (False, True):
        data = load_labelled(str(root), (1, 8, 8), jpeg_draft=draft)
        gap = max(min(float((x - row).abs().max()) for row in data.pixels) for x in full)   # rows are shuffled
        assert (gap < 1e-5) is not draft and data.info["jpeg_draft"] is draft      # draft: a 1/8 decode, 16x16
        assert data.info.get("jpeg_decode") == (2 if draft else None)   # the rule that reduced them, as data.json has it


@pytest.mark.parametrize("draft", [True, False])
def test_a_labelled_folder_is_decoded_as_the_run_decoded_its_own_jpegs(run_dir, tmp_path, draft):
    """It was decoded with data.jpeg_draft's default whatever the run had recorded: a run trained with false (every
    JPEG in full) was analysed on reduced decodes, and analysis.json said jpeg_draft true."""
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    config = copy / "config.toml"
    assert "jpeg_draft = true" in config.read_text()
    config.write_text(config.read_text().replace("jpeg_draft = true", f"jpeg_draft = {str(draft).lower()}"))
    fast = {k: v for k, v in NO_PROBES.items() if k != "bootstrap"}      # (the face test's alone)
    a = analyze_run(copy, **{**fast, "dataset": str(_jpeg_classes(tmp_path / "classes")), "positive": 1})
    assert a["labelled_set"]["jpeg_draft"] is draft
    assert a["labelled_set"].get("jpeg_decode") == (2 if draft else None)   # reproducible from the run folder


@pytest.mark.parametrize("key, value", [("probe_folds", 3), ("probe_samples", 50), ("probe_layers", ["stage1/codes"])])
def test_a_probe_key_typed_where_no_probe_runs_is_refused_by_name(run_dir, key, value):
    """analysis.probes = [] skips the probes; their keys typed beside it were taken and read by nothing."""
    with pytest.raises(ConfigError, match=rf"analysis.{key}: only the linear probes read it, and this analysis runs none"):
        analyze_run(run_dir, **{**NO_PROBES, key: value})


def test_the_best_neuron_tables_plus_minus_is_said_to_be_the_std_across_splits():
    """The table's "68.3% ± 7.8%" and "0.692 ± 0.094" were said to average over the splits, the ± not said at all
    (a standard deviation across splits, not an error of the mean or an interval)."""
    from downpour.analysis.report import _face_neuron

    row = {"method": "learned unit", "unit": 7, "selection_auc": 0.8, "selection_accuracy": 0.8, "test_accuracy": 0.7,
           "test_auc": 0.75}
    fn = {"rows": [row], "over_splits": [{"method": "learned unit", "mean": 0.68, "std": 0.08, "auc_mean": 0.69,
                                          "auc_std": 0.09}],
          "paper_style": {"method": "learned unit, paper style", "unit": 3, "test_accuracy": 0.85},
          "split": {"selection": 30, "test": 30, "seed": 0, "positives_in_test": 15}, "split_seeds": list(range(50)),
          "positive_class": "face", "dataset": "lfw", "choice": {}}
    html = _face_neuron({"face_neuron": fn, "layer": "stage2"})
    assert "over 50 seeded splits, mean ± std across the splits" in html


def test_the_top_images_words_say_what_the_number_above_each_image_is():
    """The figure puts a number above each top image (0.426, 0.812, ...) and neither it nor the words said it was the
    unit's response."""
    from downpour.analysis.report_notes import top_words

    top = {"indices": [1, 2, 3], "positive_in_top": 2, "pool": 60, "positive_in_pool": 30, "drawn_from": "60 held-out images"}
    assert "the number above each is the unit's response to it" in top_words(top, sign=-1)


def test_the_top_images_count_says_how_often_chance_draws_as_many():
    """"6 of them from the concept's class, against 4.5 expected by chance" stood alone (until 2026-12-06): a reader
    could not tell 6 of 9 from a finding. A random 9 of 60 images, 30 of the concept, hold 6 or more with probability
    sum_x C(30, x) C(30, 9 - x) / C(60, 9) over x >= 6."""
    from math import comb

    from downpour.analysis.report_notes import top_words

    top = {"indices": list(range(9)), "positive_in_top": 6, "pool": 60, "positive_in_pool": 30, "drawn_from": "them"}
    p = sum(comb(30, x) * comb(30, 9 - x) for x in range(6, 10)) / comb(60, 9)
    assert f"(the class is 50.0% of those images: a random 9 of them hold 6 or more in {100 * p:.1f}% of draws;" in (
        top_words(top, sign=-1))
    none = {**top, "positive_in_top": 0}            # 0 or more: every draw, not worth a clause
    assert "of draws" not in top_words(none) and "(the class is 50.0% of those images; the number" in top_words(none)


def test_the_report_opens_on_its_findings_links_its_sections_and_says_what_each_method_is(run_dir):
    """A student opening report.html met the loss first, the verdict half-way down, no list of the sections, and the
    tables' baselines as bare labels (until 2026-12-06); every in-page link must land on an id of the page."""
    html = write_report(run_dir).read_text()
    a = json.loads((run_dir / "analysis.json").read_text())
    top = html.split('<h2 id="training">')[0]
    assert a["face_neuron"]["controls_verdict"]["sentences"][0].replace("'", "&#x27;") in top
    ids = set(re.findall(r'id="([^"]+)"', html))
    links = re.findall(r'href="#([^"]+)"', html)
    assert {"training", "filters", "face-neuron", "face-test", "stimulus", "invariance", "probes", "config"} <= set(links)
    assert [i for i in links if i not in ids] == []
    said = dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", html))
    fn = a["face_neuron"]
    methods = {method_name(r["method"]) for r in [*fn["rows"], fn["paper_style"], *fn["controls"]]}   # as shown
    assert {m.replace("'", "&#x27;") for m in methods} - set(said) == set()


def test_the_invariance_figure_is_drawn_with_the_levels_its_ranges_are_read_at(run_dir, tmp_path, monkeypatch):
    """The report's caption names dash-dot lines at the levels of its range table, and invariance_plot draws them from
    the result's summary and selectivity; analyze_run drew the figure before it added those (until 2026-12-06), so no
    run's invariance.png had the lines (a main job's report, read by a new user, 2026-12-06)."""
    import downpour.analysis.run as run_module
    drawn = []
    plot = run_module.figures.invariance_plot
    monkeypatch.setattr(run_module.figures, "invariance_plot", lambda result, *a, **k: drawn.append(result) or plot(
        result, *a, **k))
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    a = analyze_run(copy, **FAST)
    assert len(drawn) == 1
    assert drawn[0]["summary"]["floor"] == a["invariance"]["summary"]["floor"] == 0.5
    assert drawn[0]["selectivity"]["auc"] == a["invariance"]["selectivity"]["auc"]
