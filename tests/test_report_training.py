"""The report of a run whose input is not an image (analysis/report_training.py): teacher-student's, the staleness
study's model: a run studied for its stale updates shows its loss curve, its staleness histogram and any
"diverged" (not refused by `downpour train --report` before training, nor by `downpour report` and `analyze` with the
analysis)."""
from __future__ import annotations

import json
import shutil

import pytest

from downpour.analysis.report import write_report
from downpour.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")   # (the run trains in this process)


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """teacher-student on 2 simulated workers, 20 steps, --report (not refused before training)."""
    run = tmp_path_factory.mktemp("ts") / "run"
    assert main(["train", "--config", "teacher-student", "--report", "--runner", "simulated", "--workers", "2", "--steps", "20",
                 "--set", "train.log_every=5", "--set", "train.threads=1", "--out", str(run)]) == 0
    return run


def test_a_teacher_student_run_ends_with_a_report_of_its_training_and_says_why_nothing_else(reported):
    html = (reported / "report.html").read_text()
    # one title, the tab's and the heading's (not "downpour report: run" in the tab)
    assert "<title>downpour run report: run</title>" in html and "<h1>downpour run report: run</h1>" in html
    assert '<h2 id="training">Training curves</h2>' in html and 'alt="loss curves per cost part"' in html
    assert 'alt="staleness histogram"' in html and "<b>Staleness</b> (simulated cluster, 2 workers" in html
    assert "Loss " in html and " over 4 logged rows" in html
    assert ("This run's input is not an image: each sample is 1x1x8 (data.source = gaussian)" in html
            and "no first-layer filter picture" in html)
    assert 'id="filters"' not in html and 'id="face-neuron"' not in html and 'id="probes"' not in html   # no empty panels
    # the command from the folder holding the run, relative: an absolute path breaks once the run is moved
    assert ("How the run trained, seed 0: from the folder that holds <code>run/</code>,\n<code>downpour train --config "
            "run/config.toml --out NEW_FOLDER</code>") in html and str(reported) not in html
    assert sorted(p.name for p in (reported / "figures").iterdir()) == ["loss.png", "staleness.png"]
    assert not (reported / "analysis.json").exists()      # nothing measured: nothing for a study to misread


def test_report_draws_it_again_and_analyze_points_to_it(reported, capsys):
    (reported / "report.html").unlink()
    assert main(["report", str(reported)]) == 0
    assert "downpour: report written to" in capsys.readouterr().out and (reported / "report.html").is_file()
    assert main(["analyze", str(reported)]) == 2
    err = capsys.readouterr().err
    assert "is not an image of at least 4x4" in err and f"`downpour report {reported}` writes its report" in err
    assert not (reported / "analysis.json").exists()


def test_a_damaged_staleness_json_is_said_once_by_name(reported, tmp_path, caplog):
    """Cut short: the Staleness paragraph and the faults are left out (the histogram is drawn from metrics.jsonl's
    staleness), and the file is named once, by the histogram's drawing, not again for the paragraph."""
    copy = shutil.copytree(reported, tmp_path / "run")
    (copy / "staleness.json").write_text('{"overall": {"pushes": 40, "mean"')
    with caplog.at_level("WARNING"):
        html = write_report(copy).read_text()
    said = [r.getMessage() for r in caplog.records if "staleness.json" in r.getMessage()]
    assert len(said) == 1 and str(copy / "staleness.json") in said[0]
    assert "<b>Staleness</b>" not in html and 'alt="staleness histogram"' in html


def test_a_cluster_json_that_is_not_an_object_is_named_not_dropped_without_a_word(reported, tmp_path, caplog):
    """Valid JSON but a list: the notes read it as none, as a file cut short, so it is named as one is."""
    copy = shutil.copytree(reported, tmp_path / "run")
    assert isinstance(json.loads((copy / "cluster.json").read_text()), dict)   # (the runner wrote one)
    (copy / "cluster.json").write_text("[1, 2]")
    with caplog.at_level("WARNING"):
        write_report(copy)
    said = [r.getMessage() for r in caplog.records if "cluster.json" in r.getMessage()]
    assert said == [f"{str(copy / 'cluster.json')!r} is not a JSON object (it holds an array): the report leaves out "
                    "what it would say of it"]


def test_a_teacher_student_run_writes_its_report_by_default(tmp_path):
    """The preset's analysis.report is on, as the main preset's; the staleness study's cell hashes hash it as off
    whatever it is, so they do not move (studies/run.py, HASHED_AS)."""
    run = tmp_path / "run"
    assert main(["train", "--config", "teacher-student", "--runner", "simulated", "--workers", "2", "--steps", "60",
                 "--set", "train.threads=1", "--out", str(run)]) == 0
    assert '<h2 id="training">Training curves</h2>' in (run / "report.html").read_text()


def test_a_diverged_runs_report_says_so_first(tmp_path):
    """teacher-student on 3 simulated workers at the preset's rate (staleness 2) runs away: its headline says so."""
    run = tmp_path / "run"
    assert main(["train", "--config", "teacher-student", "--runner", "simulated", "--workers", "3", "--steps", "150",
                 "--set", "train.threads=1", "--no-report", "--out", str(run)]) == 0
    assert not (run / "report.html").exists()
    html = write_report(run).read_text()
    headline = html[html.index("<h1>"):html.index('<h2 id="training">')]
    assert "<strong>The run diverged: its loss grew from 1.25 at step 1 to " in headline   # (its first push alone)
    assert "every figure below is of a model that ran away" in headline
