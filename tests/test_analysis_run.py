"""analyze_run / write_report on a real (tiny, simulated-cluster) run directory, and the report in Chromium;
the analysis of other small runs (a stacked cat network, a run on no face, labelled folders of JPEGs). What the report
says of analyses it is given: test_report_loss_headlines.py, test_report_words.py, test_report_cluster_faults.py."""
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
from nesting import nested, page_text

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


@pytest.fixture(scope="module")
def again(run_dir, tmp_path_factory) -> tuple[dict, list[dict]]:
    """A copy of ``run_dir`` analysed again with its options: (the analysis, the results invariance_plot drew). One
    analysis for the two tests that read it (each analysed its own copy: 2.5 s each in CI, 2026-12-07)."""
    import downpour.analysis.run as run_module

    drawn = []
    plot = run_module.figures.invariance_plot
    copy = shutil.copytree(run_dir, tmp_path_factory.mktemp("again") / "copy")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_module.figures, "invariance_plot", lambda result, *a, **k: drawn.append(result) or plot(
            result, *a, **k))
        return analyze_run(copy, **FAST), drawn


def test_the_first_layer_filters_are_scored_once_for_the_summary_and_the_figures_frames(run_dir):
    """Until 2026-12-07 analyze_run scored and decided them for edge_summary, then again for edge_like's frames in
    filters.png: 3 decisions, of the filters twice. Once: the filters' and the noise filters' beside them, one each;
    the frames are the summary's decision."""
    a = json.loads((run_dir / "analysis.json").read_text())
    assert a["filters"]["edge_fraction"] is not None                     # (measured: else nothing is scored)
    assert DECIDED == [(a["filters"]["count"], *a["filters"]["shape"])] * 2


def test_the_start_from_start_compares_with_is_checked_against_the_one_training_recorded(run_dir):
    """analyze_run's filters.from_start: its start, rebuilt from the seed, is the one the simulated run fingerprinted
    at its step 0 (environment.json's start_weights), so it is said verified."""
    f = json.loads((run_dir / "analysis.json").read_text())["filters"]
    assert f["from_start"]["verified"] is True and "from_start_left_out" not in f


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


def test_analysis_is_reproducible(run_dir, again):
    first = json.loads((run_dir / "analysis.json").read_text())
    for key in ("face_neuron", "top_images", "probes", "invariance"):
        assert again[0][key] == first[key], key


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


def test_the_reports_words_hold_no_parenthesis_inside_another(run_dir):
    """Every paragraph, cell, caption and note of the report: the face test's, the guide's, the controls' and the
    staleness paragraph's ("(simulated cluster, ..., delay uniform:0:3 (virtual time), ...)" nested;
    tests/nesting.py)."""
    assert nested(page_text(write_report(run_dir).read_text())) == []


def test_a_cluster_runs_report_says_its_staleness_in_words_beside_the_histogram(run_dir):
    """staleness.json's mean and max, and the settings that made them, in the report's training section (until
    2026-12-06 the histogram alone: its legend's means, no delay, no setting)."""
    html = write_report(run_dir).read_text()
    overall = json.loads((run_dir / "staleness.json").read_text())["overall"]
    section = html.split('id="training"')[1].split('id="filters"')[0]
    assert (f"<b>Staleness</b> (simulated cluster, 3 workers, 2 shards, async, delay uniform:0:3 in virtual time, "
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
    assert "out_of_plane_rotation" in html and "Out-of-plane rotation was not measured" not in html
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


def test_a_ufldl_runs_stimulus_is_drawn_in_pixels_without_the_mid_grey_offset():
    """normalize = "ufldl" maps the whitened values into [0.1, 0.9] around 0.5; the picture undid only the
    whitening, so the 0.5 went through it as a constant offset and the ufldl-sae stimulus looked washed out."""
    import numpy as np

    from downpour.analysis.stimulus import in_pixels
    from downpour.data.preprocess import Preprocess

    x = np.random.default_rng(0).random((500, 1, 8, 8)).astype(np.float32)
    prepare, prepared, _ = Preprocess.fit(x, "ufldl", "zca", 0.01)
    shown = in_pixels(prepare, prepared[3]).numpy()
    assert np.std(shown - x[3]) < 0.01      # the sample, up to its own mean (ufldl removes it; was 0.25 off)


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


def test_the_report_names_a_probe_folders_unreadable_images_under_its_probe(run_dir, tmp_path):
    """A probe folder's unreadable images were counted in analysis.json's probe (n_skipped, skipped) and said in the
    log alone; the report says them under that probe's table, in the training data's words, and nothing where a probe
    skipped none."""
    copy = shutil.copytree(run_dir, tmp_path / "run")
    a = json.loads((copy / "analysis.json").read_text())
    lfw, digits = a["probes"]
    a["probes"] = [{**lfw, "n_skipped": 0, "skipped": []},
                   {**digits, "dataset": "shapes", "n_skipped": 2,
                    "skipped": [{"file": "shapes/a/bad.png", "reason": "UnidentifiedImageError: cannot identify\nmore"},
                                {"file": "shapes/b/cut.png", "reason": "OSError: truncated"}]}]
    (copy / "analysis.json").write_text(json.dumps(a))
    probes = write_report(copy, analyze_if_missing=False).read_text().split('<h2 id="probes">')[1].split("<h2")[0]
    note = ('<p class="note">The probe set shapes: 2 files skipped, unreadable or too small (first: shapes/a/bad.png: '
            "UnidentifiedImageError: cannot identify); its entry in analysis.json&#x27;s probes names every one.</p>")
    assert probes.count("skipped") == 1 and note in probes
    assert probes.index('id="probe-table-shapes"') < probes.index(note)       # under its own probe's table


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


def test_the_invariance_figure_is_drawn_with_the_levels_its_ranges_are_read_at(again):
    """The report's caption names dash-dot lines at the levels of its range table, and invariance_plot draws them from
    the result's summary and selectivity; analyze_run drew the figure before it added those (until 2026-12-06), so no
    run's invariance.png had the lines (a main job's report, read by a new user, 2026-12-06)."""
    a, drawn = again
    assert len(drawn) == 1
    assert drawn[0]["summary"]["floor"] == a["invariance"]["summary"]["floor"] == 0.5
    assert drawn[0]["selectivity"]["auc"] == a["invariance"]["selectivity"]["auc"]


def test_a_report_without_posed_images_says_why_out_of_plane_rotation_was_not_measured_in_one_clause(run_dir):
    """It read "Out-of-plane rotation: not measured: needs images of one object at known poses (analysis.poses); none
    were given.": a label on a label, the reason after a second colon."""
    html = write_report(run_dir).read_text()
    note = html.split("Out-of-plane rotation")[1].split("</p>")[0]
    assert note == (" was not measured, as it needs images of one object at known poses (analysis.poses); none were "
                    "given.")


def test_a_probe_folders_unreadable_image_is_skipped_and_counted_in_its_probe(run_dir, tmp_path, caplog):
    """`--set 'analysis.probes=["DIR"]'` with a corrupt image: skipped and said in the log, but analysis.json's probe
    kept no count of it (the labelled set's and the training data's are kept). Said once: the folder is read for its
    labels at the start and again for its probe, and the log named the file twice."""
    from PIL import Image

    folder = tmp_path / "probe"
    for k, name in enumerate(("a", "b")):
        (folder / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(torch.full((20, 20), 60 * k + 10 * i, dtype=torch.uint8).numpy()).save(
                folder / name / f"{i}.png")
    (folder / "a" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\ncut short")
    copy = shutil.copytree(run_dir, tmp_path / "run")
    with caplog.at_level("WARNING", logger="downpour.data"):
        a = analyze_run(copy, **{**FAST, "probes": [str(folder)], "probe_folds": 2, "stimulus_steps": 5})
    assert [r.getMessage() for r in caplog.records].count(
        f"skipped {folder / 'a' / 'bad.png'}: {a['probes'][0]['skipped'][0]['reason']}") == 1
    probe = a["probes"][0]
    assert probe["n_skipped"] == 1 and probe["skipped"][0]["file"].endswith("bad.png") and probe["samples"] == 12
    # (lfw: nothing skipped, no count; its probe alone and 5 stimulus steps, as above: only the probe is read)
    assert "n_skipped" not in analyze_run(copy, **{**FAST, "probes": ["lfw"], "stimulus_steps": 5})["probes"][0]


def test_a_damaged_data_json_is_said_by_name_where_the_report_leaves_its_note_out(run_dir, tmp_path, caplog):
    """A data.json cut short dropped the report's note of the skipped files without a word."""
    copy = shutil.copytree(run_dir, tmp_path / "run")
    (copy / "data.json").write_text('{"n_skipped": 2, "skipped": [')
    with caplog.at_level("WARNING", logger="downpour.analysis.report_parts"):
        write_report(copy, analyze_if_missing=False)
    said = [r.getMessage() for r in caplog.records if "data.json" in r.getMessage()]
    assert len(said) == 1 and "is not valid JSON" in said[0] and str(copy / "data.json") in said[0]


@pytest.mark.parametrize("analysed", [True, False], ids=["analysed", "analysed-by-the-report"])
def test_a_damaged_staleness_json_is_said_once_by_name_where_the_report_leaves_its_paragraph_out(
        run_dir, tmp_path, caplog, monkeypatch, analysed):
    """A staleness.json cut short dropped the Staleness paragraph without a word (the analysis said it, drawing its
    histogram); a report that analyses the run first says it once, not the analysis's warning and its own."""
    from downpour.analysis import run as analysis_run

    copy = shutil.copytree(run_dir, tmp_path / "run")
    (copy / "staleness.json").write_text('{"overall": {"pushes": 30, "mean"')
    if not analysed:
        (copy / "analysis.json").unlink()
        monkeypatch.setattr(analysis_run, "analyze_run", lambda path: analyze_run(path, **NO_PROBES))
    with caplog.at_level("WARNING"):
        html = write_report(copy, analyze_if_missing=not analysed).read_text()
    said = [r.getMessage() for r in caplog.records if "staleness.json" in r.getMessage()]
    assert len(said) == 1 and str(copy / "staleness.json") in said[0]
    assert ("is not valid JSON" in said[0]) if analysed else ("not JSON" in said[0])
    assert "<b>Staleness</b>" not in html


def test_analyze_report_says_a_damaged_staleness_json_once(run_dir, tmp_path, caplog, monkeypatch, capsys):
    """`downpour analyze RUN --report` analyses, then reports the analysis.json it wrote: the analysis's drawing names
    the damaged staleness.json ("skipping ... not JSON"), and the report's own warning of it said it again."""
    from downpour.analysis import run as analysis_run
    from downpour.cli import main

    copy = shutil.copytree(run_dir, tmp_path / "run")
    (copy / "staleness.json").write_text('{"overall": {"pushes": 30, "mean"')
    monkeypatch.setattr(analysis_run, "analyze_run", lambda path, **o: analyze_run(path, **{**NO_PROBES, **o}))
    with caplog.at_level("WARNING"):
        assert main(["analyze", str(copy), "--report"]) == 0
    said = [r.getMessage() for r in caplog.records if "staleness.json" in r.getMessage()]
    assert len(said) == 1 and str(copy / "staleness.json") in said[0] and "not JSON" in said[0]
    assert "<b>Staleness</b>" not in (copy / "report.html").read_text()


def test_train_report_says_a_staleness_json_damaged_before_its_analysis_once(tmp_path, caplog, monkeypatch):
    """`downpour train --report` analyses the run it trained, then reports it (cli_analyze.analyze_and_report): a
    staleness.json damaged between the two is said once by name, and the Staleness paragraph left out, as
    `downpour analyze --report` says it (the test above)."""
    from downpour.analysis import run as analysis_run
    from downpour.cli import main

    path = tmp_path / "run"

    def damaged_first(run, **o):       # the run trained, its staleness.json cut short before the analysis reads it
        (Path(run) / "staleness.json").write_text('{"overall": {"pushes": 30, "mean"')
        return analyze_run(run, **{**NO_PROBES, **o})
    monkeypatch.setattr(analysis_run, "analyze_run", damaged_first)
    with caplog.at_level("WARNING"):
        assert main(["train", "--config", "ufldl-sae", "--out", str(path), "--report", "--set",
                     'cluster.runner="simulated"', "--set", "train.tensorboard=false", "--set", "train.steps=40",
                     "--set", "data.samples=2000", "--set", "cluster.workers=3"]) == 0
    said = [r.getMessage() for r in caplog.records if "staleness.json" in r.getMessage()]
    assert len(said) == 1 and str(path / "staleness.json") in said[0] and "not JSON" in said[0]
    assert "<b>Staleness</b>" not in (path / "report.html").read_text()
