"""downpour plan's output read as a user reads it: the text and --json say the same, and no line contradicts another."""
import json

import pytest

from downpour.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

MAIN_SPLIT = ["plan", "--config", "main", "--partitions", "2", "--machines", "8"]


def _plan(capsys, argv):
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert main([*argv, "--json"]) == 0
    return text, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("argv, moved", [(MAIN_SPLIT, "through the replica's process"),
                                         (["plan", "--partitions", "16"], "halo exchange"),
                                         (["plan", "--config", "main", "--partitions", "1", "--machines", "8"], None)])
def test_every_assumption_printed_is_under_its_heading_in_json_too_and_says_what_this_layout_moves(capsys, argv, moved):
    """The main job split in 2 printed its timing assumption with no 'assumptions:' heading, saying 'halo exchange'
    two lines under 'no halo between partitions', and --json's network.assumptions (documented as the lines printed
    under "assumptions") was [] for it: the line was printed only, whatever the layout."""
    text, plan = _plan(capsys, argv)
    said = plan["network"]["assumptions"]
    assert said and text.rstrip("\n").endswith("\n".join(["", "assumptions:", *(f"  - {a}" for a in said)]))
    timing = [a for a in said if a.startswith("cores scale")]
    assert len(timing) == 1
    assert ("halo" in timing[0]) == (moved == "halo exchange")
    assert moved is None or moved in timing[0]


@pytest.mark.parametrize("what", ["missing", "empty", "file"])
def test_a_check_run_that_is_no_run_names_the_flag(tmp_path, capsys, what):
    """`downpour plan --check-run /tmp/nonexist` said "'/tmp/nonexist' does not exist", naming no flag, where
    `--config /nonexistent.toml` says "--config /nonexistent.toml: no such file"."""
    path = tmp_path / "run"
    if what == "empty":
        path.mkdir()
    elif what == "file":
        path.write_text("")
    assert main(["plan", "--check-run", str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"downpour: error: --check-run {path}: ")


@pytest.mark.parametrize("key, flag", [("cluster.workers", "--replicas"), ("cluster.shards", "--shards"),
                                       ("cluster.partitions", "--partitions")])
def test_a_set_of_the_layout_points_at_the_flag_that_sets_it(capsys, key, flag):
    """`downpour plan --set cluster.partitions=2` listed what a plan reads and nothing of --partitions, which sets it
    (--check-simulated's refusal of --set cluster.workers names --replicas)."""
    assert main(["plan", "--set", f"{key}=2"]) == 2
    assert f"give {flag} 2 instead" in capsys.readouterr().err


def test_a_cluster_too_slow_to_finish_a_step_says_its_figures_in_a_few_digits(capsys):
    """--bandwidth 1e-300 printed its step as a 300-digit number of seconds ("cycle of 1 step(s): 344306900129...")
    and its throughput as "0.00 examples/s"."""
    text, plan = _plan(capsys, ["plan", "--bandwidth", "1e-300"])
    assert max(len(line) for line in text.splitlines() if line.startswith(("step ", "cycle "))) < 400
    predicted = next(line for line in text.splitlines() if line.startswith("predicted: "))
    assert plan["samples_per_s"] > 0 and not predicted.startswith("predicted: 0.00 ")


def test_the_main_jobs_queue_depth_the_plan_does_not_model_is_said(capsys, caplog):
    """main.toml sets cluster.queue_depth = 1 (a Ray worker waits for fresh parameters before its next cycle), and
    the plan, which times a push travelling while the next steps compute, dropped it without a word."""
    with caplog.at_level("WARNING", logger="downpour.plan.run_config"):
        assert main(["plan", "--config", "main", "--partitions", "2", "--machines", "8"]) == 0
    assert "cluster.queue_depth = 1" in caplog.text and "not read" in caplog.text


@pytest.mark.parametrize("rule, state", [("sgd", 0), ("adagrad", 1), ("adam", 2)])
def test_a_shards_memory_says_what_its_rule_keeps_beside_the_parameters(capsys, rule, state):
    """`--set cluster.rule=sgd` read "per shard 16.90kB (parameters + sgd state)" (`--config cat-demo --machines 4`):
    SGD keeps none, as the bytes say."""
    text, plan = _plan(capsys, ["plan", "--config", "cat-demo", "--machines", "4", "--set", f"cluster.rule={rule}"])
    shards, params = plan["cluster"]["shards"], plan["network"]["params"]
    assert plan["shard_bytes"] * shards == pytest.approx(params * 4 * (1 + state))
    said = "(parameters; sgd keeps no state)" if rule == "sgd" else f"(parameters + {rule} state)"
    assert said in text and ("sgd state" not in text)


@pytest.mark.parametrize("partitions, halo", [("1", False), ("16", True)])
def test_one_partition_says_no_halo_in_its_step(capsys, partitions, halo):
    """One partition a replica exchanges no halo: its step read "compute 4.61 s + halo 0.0 µs + fetch ..." and its
    bytes "halo 0B per example" (`downpour plan --partitions 1`, 2026-12-06); DistBelief's split says its own."""
    text, plan = _plan(capsys, ["plan", "--partitions", partitions])
    step = next(line for line in text.splitlines() if line.startswith("step (batch"))
    pushed = next(line for line in text.splitlines() if line.startswith("bytes per push"))
    assert ("+ halo " in step) == ("; halo " in pushed) == halo == (plan["partition"]["halo_bytes"] > 0)


def test_the_paper_line_quotes_the_papers_two_figures_and_the_plans_own_against_each(capsys):
    """It read "the paper: 1.15G connections; this count is +5.8% of it": the paper's abstract says 1 billion
    connections, and its 1.15 billion are parameters, 2.12x fewer than the 2.43 G the plan's first line counts."""
    text, plan = _plan(capsys, ["plan"])
    net = plan["network"]
    assert (net["paper_connections"], net["paper_params"]) == (1e9, 1.15e9)
    assert net["params"] / 1.15e9 == pytest.approx(2.12, abs=0.005)        # 2,433,716,928 (W1 + W2) / 1.15e9
    said = next(line for line in text.splitlines() if line.startswith("  the paper: "))
    assert "1 billion connections (its abstract) and 1.15 billion parameters (Le's 2012 talk abstracts)" in said
    assert "+5.8% of 1.15 billion" in said and "parameters 2.12x it" in said and "1.15G connections" not in said


def test_the_papers_network_says_what_a_pass_over_its_images_and_its_three_days_take(capsys):
    """A pass over the paper's 10 million images went unsaid; docs/plan.md did the sum by hand for one layout."""
    text, plan = _plan(capsys, ["plan"])
    rate = plan["samples_per_s"]                                  # 606.07 samples/s (2026-12-06)
    said = next(line for line in text.splitlines() if line.startswith("the paper's 10 million images"))
    assert f"one pass in {1e7 / rate / 3600:.3g} h" in said and f"are {3 * 86400 * rate / 1e7:.3g} passes" in said
    assert plan["network"]["paper_pass_s"] == pytest.approx(1e7 / rate)
    other, _ = _plan(capsys, ["plan", "--model", "cat-demo", "--machines", "4"])
    assert "the paper's 10 million" not in other and "the paper:" not in other


def test_a_split_replicas_assumptions_say_its_frozen_stages_run_every_step_as_its_figures_do(capsys):
    """`--config cat-untied --replicas 2 --partitions 2` timed every step running stage 1 (network.frozen_runs []), and
    its assumption line said the cache answered all but 0.0932 of them, for "1 replica"."""
    argv = ["plan", "--config", "cat-untied", "--replicas", "2", "--partitions", "2", "--shards", "2", "--machines", "8"]
    text, plan = _plan(capsys, argv)
    assert plan["network"]["frozen_runs"] == [] and "frozen cache once" not in text
    said = [a for a in plan["network"]["assumptions"] if "frozen" in a]
    assert said == ["a greedy step runs the frozen stages below it on every step: the replica is split into partitions, "
                    "whose actors drop the frozen cache"] and f"  - {said[0]}" in text
    _, unsplit = _plan(capsys, [*argv[:6], "1", *argv[7:]])       # --partitions 1: the two replicas' own caches
    assert unsplit["network"]["frozen_runs"][1] < 1 and any("2 replicas, each its own cache" in a
                                                            for a in unsplit["network"]["assumptions"])


def test_a_checks_partitions_flag_names_the_key_that_splits_the_simulated_run(capsys):
    """`plan --check-simulated --partitions 2` was told "drop it" alone, where `--set cluster.partitions=2` splits the
    simulated run's replicas (its staleness checked as any other's)."""
    assert main(["plan", "--check-simulated", "--partitions", "2"]) == 2
    err = capsys.readouterr().err
    assert "--partitions: not read by plan --check-simulated" in err and "--set cluster.partitions=2" in err


def test_a_config_plan_gives_the_train_command_of_its_layout_and_train_reads_it_so(capsys):
    """The plan said "2 replicas x 2 partitions + ... + 2 shards" and left the flags to the reader, where train's are
    named otherwise (--replicas is its --workers; --partitions it did not take until 2026-12-06)."""
    import shlex

    from downpour.cli import build_parser
    from downpour.cli_train import _overrides
    from downpour.config import load_config

    argv = ["plan", "--config", "cat-untied", "--replicas", "2", "--partitions", "2", "--shards", "2", "--machines", "8",
            "--set", "cluster.n_push=2", "--set", "model.maps=[4,4]"]
    text, plan = _plan(capsys, argv)
    command = plan["train_command"]
    assert f"to train this layout on a Ray cluster of 8 nodes, an actor a node: {command}" in text
    words = shlex.split(command)
    assert words[:2] == ["downpour", "train"] and "'model.maps=[4,4]'" in command     # pasted whole into a shell
    cfg = load_config("cat-untied", _overrides(build_parser().parse_args(words[1:])))
    lay = plan["cluster"]
    assert (cfg.cluster.workers, cfg.cluster.partitions, cfg.cluster.shards) == (lay["replicas"], lay["partitions"],
                                                                                 lay["shards"]) == (2, 2, 2)
    assert cfg.cluster.runner == "ray" and cfg.cluster.n_push == 2 and cfg.model.options["maps"] == [4, 4]
    paper, _ = _plan(capsys, ["plan"])            # no preset trains the paper's network at full size
    assert "to train this layout" not in paper


def test_the_staleness_formula_says_what_its_letters_are(capsys):
    """"mean staleness 62.3 (R·(p + d + ā)/p − 1, steady state)": R, p, d and ā were said in docs/plan.md alone."""
    text, plan = _plan(capsys, ["plan", "--set", "cluster.n_push=10", "--set", "cluster.n_fetch=10"])
    predicted = next(line for line in text.splitlines() if line.startswith("predicted: "))
    assert "R replicas, p = n_push = 10, d the push delay, ā the mean steps from a cycle's fetch" in predicted


@pytest.mark.parametrize("partitions, warned", [(16, False), (17, True), (81, True)])
def test_a_replica_split_past_16_partitions_is_told_its_speed_up_is_a_bound_beside_the_papers(capsys, partitions,
                                                                                             warned):
    """At K = 81 the plan's step is ~73x its K = 1 step, where Dean et al. measured about 12x on 81 machines (Denil
    et al. 2013 quote it): the printed plan said nothing of it until 2026-12-06."""
    text, plan = _plan(capsys, ["plan", "--replicas", "1", "--partitions", str(partitions), "--machines", "2000"])
    notes = [line for line in text.splitlines() if line.startswith("note: ")]
    bound = [a for a in plan["network"]["assumptions"] if "upper bound" in a]
    assert len(notes) == len(bound) == warned and "upper bound" not in text.split("assumptions:")[1]
    if warned:
        assert notes[0] == f"note: {bound[0]}" and bound[0].startswith(f"{partitions} partitions per replica")
        assert "about 12x on 81 machines, 14x on 128" in bound[0] and "splits the fetch evenly" in bound[0]


@pytest.mark.parametrize("given, chosen", [([], ["replicas", "partitions", "shards"]), (["--shards", "2"],
                                                                                      ["replicas", "partitions"]),
                                           (["--replicas", "1", "--partitions", "1"], ["shards"]),
                                           (["--replicas", "1", "--partitions", "1", "--shards", "2"], [])])
def test_the_layout_line_says_which_counts_the_plan_chose(capsys, given, chosen):
    """`downpour plan` printed "33 replicas x 16 partitions + 472 shards" for the paper's network as if given, or the
    paper's: the search chose all three."""
    text, plan = _plan(capsys, ["plan", "--model", "cat-demo", "--machines", "4", *given])
    lines = text.splitlines()
    under = lines[next(i for i, line in enumerate(lines) if line.startswith("cluster: ")) + 1]
    assert plan["chosen"] == chosen
    assert under.startswith(f"  {', '.join(chosen)} chosen by the plan, not given: ") == bool(chosen)
    if chosen:
        assert under.endswith(", ".join("--" + name for name in chosen) + ")") and "from the paper" not in under
        assert ("the fewest shards within 1% of the machines left's samples/s" in under) == ("shards" in chosen)
    paper, _ = _plan(capsys, ["plan"])
    assert "replicas, partitions, shards chosen by the plan, not given" in paper and "not a layout from the paper" in paper
