"""bench/_protocol.py: configurations interleaved, medians and ranges, both kinds of ratio, and the
CPU of child processes that getrusage never sees."""
import re
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import _protocol as P  # noqa: E402


def test_configurations_run_interleaved_and_every_run_records_the_load():
    order = []
    reps = P.interleave({"a": lambda r: order.append(("a", r)) or {"x": 1.0},
                         "b": lambda r: order.append(("b", r)) or {"x": 2.0}}, reps=3)
    assert order == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    run = reps[1]["b"]
    assert run["x"] == 2.0 and {"load_before", "load_after", "wall_s", "driver_cpu_s"} <= set(run)
    assert run["load_before"] >= 0 and run["driver_cpu_s"] >= 0


def _reps(pairs):
    return [{"fast": {"x": f, "load_before": 1.0, "load_after": 2.0, "driver_cpu_s": 0.1},
             "slow": {"x": s, "load_before": 0.5, "load_after": 3.0, "driver_cpu_s": 0.2}} for f, s in pairs]


def test_summary_gives_median_and_range_per_configuration_and_the_load_range():
    out = P.summary(_reps([(10, 4), (30, 5), (20, 100)]), "x")
    assert out["x"]["fast"] == {"median": 20, "range": [10, 30]}
    assert out["x"]["slow"] == {"median": 5, "range": [4, 100]}
    assert out["load_1min"]["range"] == [0.5, 3.0] and out["reps"] == 3


def test_ratio_of_medians_differs_from_the_median_of_paired_ratios():
    # a slow stretch hits both runs of rep 2: the paired ratios cancel it, the medians do not
    out = P.ratio(_reps([(10, 5), (12, 6), (2, 1)]), "x", "fast", "slow")
    assert out["of_medians"] == 2.0 and out["paired"] == {"median": 2.0, "range": [2.0, 2.0]}
    out = P.ratio(_reps([(10, 5), (12, 4), (30, 20)]), "x", "fast", "slow")
    assert out["of_medians"] == 12 / 5 and out["paired"]["median"] == 2.0 and out["paired"]["range"] == [1.5, 3.0]


def test_a_ratio_under_a_thousandth_keeps_its_digits():
    """The ratio of the medians keeps its significant digits: rounded to 3 decimals it reads 0.0 under 0.0005
    (parameter_server's memcpy against a round trip of a small model), 0.018 beside a paired 0.0182."""
    out = P.ratio(_reps([(0.0000123, 0.0421)]), "x", "fast", "slow")
    assert out["of_medians"] == out["paired"]["median"] == 0.000292
    assert P.ratio(_reps([(0.00182, 0.1)]), "x", "fast", "slow")["of_medians"] == 0.0182


def test_child_cpu_counts_a_busy_child_by_name_and_window():
    with P.ChildCPU(every=0.05) as children:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"],
                       check=True)
        t1 = time.perf_counter()
        time.sleep(0.2)
    whole, span = children.by_name()
    name = Path(sys.executable).name[:15]
    assert 0.2 <= whole.get(name, 0.0) <= 1.0 and span > 0.3
    before, _ = children.by_name(t1 + 0.15, float("inf"))   # after the child ended: nothing
    assert before.get(name, 0.0) == 0.0


@pytest.mark.parametrize("script, argv, named", [
    ("filter_norm", ["--reps", "0"], "argument --reps: must be at least 1, got 0"),
    ("filter_norm", ["--kernel", "40", "--reps", "1"], "in_size (32, 32) is smaller than kernel_size 40"),
    ("server_rules", ["--applies", "0"], "argument --applies: must be at least 1, got 0"),
    ("step_check", ["--config", "nosuch", "--reps", "1"], "'nosuch': no such preset or file"),
    ("jpeg_draft", ["--size", "0"], "argument --size: must be at least 1, got 0"),
    ("jpeg_draft", ["--tile", "-1"], "argument --tile: must be at least 0 (0: no tiles), got -1"),
    ("start_up", ["--threads", "0"], "argument --threads: must be at least 1, got 0"),
])
def test_a_bad_bench_option_is_a_usage_error_naming_it(script, argv, named, capsys):
    """Not a crash in min() of nothing, a division by zero, or a traceback."""
    import importlib

    with pytest.raises(SystemExit) as stop:
        importlib.import_module(script).main(argv)
    assert stop.value.code == 2 and named in capsys.readouterr().err


def test_emit_prints_a_row_as_one_json_line_and_keeps_it(capsys):
    out = [{"row": "earlier"}]
    row = {"bench": "x", "ratio": {"of_medians": 1.5}}
    assert P.emit(row, out) is row and out == [{"row": "earlier"}, row]
    assert capsys.readouterr().out == '{"bench": "x", "ratio": {"of_medians": 1.5}}\n'


# every bench reading --reps / --threads, with its own defaults (None: the bench has no such flag)
FLAGGED = {"actor_preload": (3, None), "actor_start": (5, None), "adjoint_backward": (30, 1), "analysis_repeats": (5, 1), "checkpoint_save": (7, 1), "data_pipeline": (3, None),
           "edge_metric": (3, None), "face_test": (7, None),
           "filter_norm": (30, 1), "frozen_cache": (5, 1), "help_start_up": (5, None), "invariance_ci": (5, 1),
           "invariance_sweep": (5, 1),
           "jpeg_draft": (5, None), "kept_fields": (30, 1), "layer_responses": (5, 1), "locally_connected": (9, 1), "model_parallel": (7, 1),
           "optimiser_start_up": (5, None), "parameter_server": (5, None), "partitions_ray": (3, 1),
           "pool_lcn": (15, 1), "probe_blas": (5, 1),
           "probe_layers": (5, 1), "ray_close": (3, 1), "ray_start": (3, 1), "report_figures": (5, None),
           "replacement_seconds": (3, 1),
           "scaling": (None, 1), "server_rules": (7, 1), "shard_apply": (9, 1), "shm_copy": (9, 1), "sim_rng": (5, 1),
           "spectral_fit": (5, 2),
           "split_threads": (3, 2), "start_up": (5, 2), "step_check": (9, 1), "step_profile": (1, None),
           "stimulus_grad": (5, None),
           "tie_null": (7, None), "tiled": (5, 1), "twin_actors": (3, None),
           "training_throughput": (5, 1), "variance_gate": (5, 1), "verdict_figure": (7, None), "wait_order": (5, None),
           "warp_blur": (5, 1)}
BENCH = Path(__file__).resolve().parents[1] / "bench"


def _help(script, capsys, monkeypatch):
    import importlib

    monkeypatch.setattr(sys, "argv", [f"{script}.py", "--help"])      # (a few benches' main takes no argv)
    with pytest.raises(SystemExit) as stop:
        importlib.import_module(script).main()
    assert stop.value.code == 0
    return " ".join(capsys.readouterr().out.split())      # (argparse wraps the lines at the terminal's width)


@pytest.mark.parametrize("script", sorted(FLAGGED))
def test_every_bench_takes_reps_and_threads_from_the_shared_parser(script, capsys, monkeypatch):
    """The benches share their flags: nine declaring their own had --threads without a floor, --reps with five help
    texts or none."""
    reps, threads = FLAGGED[script]
    shown = _help(script, capsys, monkeypatch)
    zero = "; 0: torch's default" if script == "training_throughput" else ""     # (its workers' threads: train.threads)
    for flag, default, said in (
            ("--reps", reps, f"timed repetitions of each measurement (default: {reps}; the bench's docstring says how "
                             "they are combined)"),
            ("--threads", threads, f"torch intra-op threads of the timed work (default: {threads}{zero})")):
        if default is None:
            assert f"{flag} " not in shown
        else:
            assert f"{flag} {flag[2:].upper()} {said}" in shown


@pytest.mark.parametrize("script", sorted(p.stem for p in BENCH.glob("[!_]*.py") if p.stem not in FLAGGED))
def test_every_bench_showing_the_shared_flags_is_checked_above(script, capsys, monkeypatch):
    """Every bench that takes the shared flags is in FLAGGED, else nothing checks its defaults (as for
    checkpoint_save, help_start_up, invariance_sweep and split_threads, missing from it)."""
    shown = _help(script, capsys, monkeypatch)
    assert "timed repetitions of each measurement" not in shown
    assert "torch intra-op threads of the timed work" not in shown


def test_no_bench_declares_reps_or_threads_itself():
    own = [f"{path.name}: {flag}" for path in sorted(BENCH.glob("*.py")) if path.name != "_protocol.py"
           for flag in ("--reps", "--threads") if f'add_argument("{flag}"' in path.read_text()]
    assert not own


def test_rank_interval_counts_draws_not_reps(capsys, monkeypatch):
    """Its 1,000 simulated studies are no timed repetitions: not --reps."""
    shown = _help("rank_interval", capsys, monkeypatch)
    assert "--draws DRAWS simulated studies per scenario and data size (default: 1000)" in shown
    assert "--reps" not in shown


@pytest.mark.parametrize("script", sorted(p.stem for p in BENCH.glob("[!_]*.py")))
def test_every_bench_answers_help_without_measuring(script, capsys, monkeypatch):
    """``python bench/X.py --help`` prints its usage and exits: a bench with no parser (as step_peak was) runs its
    whole measurement. (Through sys.argv: a few benches' main takes no argv.)"""
    import importlib

    monkeypatch.setattr(sys, "argv", [f"{script}.py", "--help"])
    bench = importlib.import_module(script)
    assert bench.main.__module__ == script     # its own: twin_actors' main was downpour.cli's, whose --help passed
    with pytest.raises(SystemExit) as stop:
        bench.main()
    assert stop.value.code == 0 and capsys.readouterr().out.startswith("usage:")


class _Parsed(Exception):
    """Raised once a bench's command line parsed: the test stops there, before anything is measured."""


def _make_bench_args() -> dict[str, list[str] | None]:
    """What ``make bench`` runs each bench script with, read from the Makefile's ``case`` (None: skipped)."""
    recipe = (BENCH.parent / "Makefile").read_text().split("\nbench:", 1)[1].split("\n\n", 1)[0]
    recipe = re.sub(r"\\\n\s*", "", recipe)      # the shell's line continuations joined
    pattern = r"((?:bench/\w+\.py\|)*(?:bench/\w+\.py|\*))\) ([^;]*?) ;;"     # names|names) action ;;
    arms = {name: action for names, action in re.findall(pattern, recipe) for name in names.split("|")}
    out = {}
    for stem in sorted(p.stem for p in BENCH.glob("[!_]*.py")):
        arm = arms.get(f"bench/{stem}.py", arms["*"])
        out[stem] = None if arm == "continue" else arm.removeprefix("args=").split()
    return out


@pytest.mark.parametrize("script, argv", sorted(_make_bench_args().items()))
def test_make_bench_runs_every_bench_with_arguments_it_accepts(script, argv, monkeypatch):
    """``make bench`` runs every bench: else it stops at rank_interval, whose study file is a required argument."""
    import argparse
    import importlib

    if argv is None:
        pytest.skip(f"make bench skips {script}")
    parse = argparse.ArgumentParser.parse_args

    def parsed(self, *args, **kwargs):
        parse(self, *args, **kwargs)
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parsed)
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *argv])
    with pytest.raises(_Parsed):
        importlib.import_module(script).main()


def test_a_figure_under_a_millisecond_keeps_its_digits():
    """A time of microseconds in seconds keeps its digits: else it prints 0.0 (checkpoint_save's digests of the main
    job's model: 'sha256_only': {'median': 0.0})."""
    out = P.summary(_reps([(0.000123456, 0.0421), (0.000234, 0.0432), (0.0009, 0.05)]), "x")
    assert out["x"]["fast"] == {"median": 0.000234, "range": [0.000123, 0.0009]}
    assert out["x"]["slow"] == {"median": 0.0432, "range": [0.0421, 0.05]}
    assert P.summary(_reps([(123.456, 0.5)]), "x")["x"] == {"fast": {"median": 123.5, "range": [123.5, 123.5]},
                                                            "slow": {"median": 0.5, "range": [0.5, 0.5]}}
    run = P.measured(lambda: {})
    assert run["wall_s"] > 0        # (a run of microseconds: else 0.0)


@pytest.mark.parametrize("script", sorted(p.stem for p in BENCH.glob("[!_]*.py")))
def test_every_bench_puts_its_own_checkout_first_on_the_import_path(script, monkeypatch):
    """``python bench/X.py`` puts only bench/ on the path: seven benches (checkpoint_save, data_pipeline, jpeg_draft,
    parameter_server, sandblaster, training_throughput, variance_gate) run from a worktree without PYTHONPATH
    would import the downpour the venv has installed, another checkout's. Runs each script's opening
    (its top-level statements before its first import of downpour or of a bench module, leaving out other
    packages' imports) on the path ``python bench/X.py`` starts with from elsewhere, and asserts that downpour is
    then found in this checkout."""
    import ast
    from importlib.machinery import PathFinder

    def first_party(name):
        top = name.split(".")[0]
        return top == "downpour" or (BENCH / f"{top}.py").exists()

    path = BENCH / f"{script}.py"
    opening = []
    for node in ast.parse(path.read_text()).body:
        names = ([node.module or ""] if isinstance(node, ast.ImportFrom) else
                 [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        if any(first_party(name) for name in names):
            break
        if all(name.split(".")[0] in sys.stdlib_module_names for name in names):
            opening.append(node)
    started = [str(BENCH)] + [p for p in sys.path if Path(p or ".").resolve() != BENCH.parent]
    monkeypatch.setattr(sys, "path", started)
    exec(compile(ast.Module(opening, type_ignores=[]), str(path), "exec"), {"__file__": str(path), "__name__": "x"})
    found = PathFinder.find_spec("downpour", sys.path)
    assert found and Path(found.origin).resolve().is_relative_to(BENCH.parent), \
        f"bench/{script}.py imports downpour from {found and found.origin}"


def test_swapped_puts_a_class_staticmethod_back_as_one_and_a_module_value_back_even_after_an_error():
    class Kernel:
        @staticmethod
        def forward(x):
            return x + 1

    stored = vars(Kernel)["forward"]
    with P.swapped(Kernel, "forward", staticmethod(lambda x: x * 10)):
        assert Kernel.forward(2) == 20
    assert vars(Kernel)["forward"] is stored and Kernel().forward(2) == 3   # (a bare function: self taken for x)
    kernels = types.ModuleType("kernels")
    kernels.KEEP_BYTES = 1 << 20
    with pytest.raises(RuntimeError), P.swapped(kernels, "KEEP_BYTES", 0):
        assert kernels.KEEP_BYTES == 0
        raise RuntimeError("the bench failed mid-run")
    assert kernels.KEEP_BYTES == 1 << 20


def test_paired_gives_each_side_by_its_pick_and_the_rounds_own_ratios(monkeypatch):
    import _paired
    rounds = {"new": [0.004, 0.001, 0.003], "old": [0.002, 0.004, 0.006]}     # s a call; paired: 2, 0.25, 0.5
    monkeypatch.setattr(_paired, "round_seconds", lambda fns, reps, clock: rounds)
    by_median = _paired.paired(lambda: None, lambda: None, reps=3)
    best = _paired.paired(lambda: None, lambda: None, reps=3, pick=min)
    for key in ("", "cpu_"):
        assert (by_median[f"{key}ms_new"], by_median[f"{key}ms_old"], by_median[f"{key}new_vs_old"]) == (3.0, 4.0, 0.75)
        assert (best[f"{key}ms_new"], best[f"{key}ms_old"], best[f"{key}new_vs_old"]) == (1.0, 2.0, 0.5)
        assert best[f"{key}paired_median"] == by_median[f"{key}paired_median"] == 0.5
        assert best[f"{key}paired_range"] == [0.25, 2.0]


def test_same_needs_every_tensor_equal_to_the_bit_and_none_where_the_other_has_none():
    import torch
    from _paired import same
    loss, grads = torch.tensor(1.0), [torch.ones(2), None]
    assert same((loss, grads), (loss.clone(), [torch.ones(2), None]))
    assert not same((loss, grads), (loss, [torch.ones(2) + 1e-7, None]))
    assert not same((loss, grads), (loss, [torch.ones(2)]))                  # a gradient missing
    assert not same((loss, grads), (loss, [None, None]))                     # one path's gradient None
