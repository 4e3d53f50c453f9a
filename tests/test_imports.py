"""Layers point down only (docs/architecture.md): every import in the package, lazy ones too, is
read from the source and checked against the floor it may reach."""
import ast
from pathlib import Path

import pytest

import downpour

ROOT = Path(downpour.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every downpour module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "downpour" or name.startswith("downpour.")}


def _modules(*parts: str) -> list[Path]:
    return sorted(p for part in parts for p in ([ROOT / part] if part.endswith(".py") else (ROOT / part).glob("*.py")))


@pytest.mark.parametrize("path", _modules("batch.py", "errors.py", "_names.py", "scratch_names.py"), ids=lambda p: p.name)
def test_the_ground_floor_imports_nothing_from_downpour(path):
    assert _imports(path) == set()


ABOVE_MODELS = ("downpour.models", "downpour.train", "downpour.ps", "downpour.analysis", "downpour.learner",
                "downpour.preflight", "downpour.resume_checks", "downpour.cli")


@pytest.mark.parametrize("path", _modules("layers", "data", "objectives.py"), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_nothing_below_models_imports_models_or_above(path):
    assert not {name for name in _imports(path) if name.startswith(ABOVE_MODELS)}


@pytest.mark.parametrize("path", _modules("ps", "analysis"), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_parameter_server_and_analysis_use_neither_the_local_loop_nor_the_learner(path):
    assert not {name for name in _imports(path) if name.startswith(("downpour.train.loop", "downpour.learner", "downpour.cli"))}


# The house, bottom to top (docs/architecture.md). A module imports its own package or a lower floor.
FLOORS = [("_names", "errors", "batch", "parent_death", "cli_log", "scratch_names"), ("settings", "config_files"), ("config",), ("config_diff", "layers", "objectives", "data"), ("models",),
          ("train",), ("parallel",), ("ps", "analysis"), ("sandblaster", "learner_save"), ("cluster_checks",),
          ("learner", "preflight", "resume_checks", "runners", "plan", "cli_flags", "cli_plan_flags", "cli_refused"),
          ("twins", "crossfit_folds"), ("studies", "crossfit"), ("cli_study", "cli_analyze", "cli_models", "cli_plan"),
          ("cli_train",), ("cli",),
          ("__main__",)]
FLOOR = {name: level for level, names in enumerate(FLOORS) for name in names}


def _home(module: str) -> str:
    """``downpour.ps.setup`` -> ``ps``; ``downpour.config`` -> ``config``."""
    return module.split(".")[1] if "." in module else ""


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_import_points_down_the_floors(path):
    rel = path.relative_to(ROOT)
    if rel.as_posix() == "__init__.py" or rel.parts[0] == "presets":
        return
    own = rel.parts[0].removesuffix(".py")
    assert own in FLOOR, f"{rel} is on no floor: add it to FLOORS (and docs/architecture.md)"
    upward = {m for m in _imports(path) if _home(m) and _home(m) != own and FLOOR[_home(m)] >= FLOOR[own]}
    assert not upward, f"{rel} imports {sorted(upward)} from its own floor or above"


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_only_the_on_ray_modules_import_ray(path):
    # everything else runs without Ray: the simulator, the local loop, analysis, a plan
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
    assert "ray" not in found or path.name.endswith("on_ray.py")


def test_a_training_process_starts_without_the_analysis_libraries():
    """`downpour train` reads analysis.options (preflight): the analysis package imported every module on
    import, pulling scikit-learn, scipy.stats and matplotlib into each training process (1.5 s of its 5)."""
    import subprocess
    import sys

    code = ("import sys, downpour.cli, downpour.preflight, downpour.train.loop, downpour.analysis.options; "
            "print(sorted(m for m in ('sklearn', 'scipy.stats', 'matplotlib') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_the_listing_commands_and_every_help_start_without_torch():
    """`downpour presets`, `--help` and `study list` print at once: with the command-line checks importing the model
    registry and the data package at module level, and `study list` every study, each listing imports torch first
    (2-4 s). Every command's `--help` too: `study NAME --help` reads its conditions from its design module
    (studies/designs/), not the study's module, which imports torch. Each command runs in the
    same interpreter, after the one before it: the first that imports torch, numpy or ray is named."""
    import subprocess
    import sys

    import argparse

    from downpour.cli import build_parser
    from downpour.studies import STUDIES

    subcommands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    commands = [["presets"], ["--help"], ["study", "list"], *([command, "--help"] for command in subcommands),
                *(["study", name, "--help"] for name in STUDIES)]
    assert {"train", "analyze", "report", "study"} <= set(subcommands)          # (every command the parser has)
    code = ("import contextlib, io, sys\nfrom downpour.cli import main\n"
            f"for argv in {commands!r}:\n"
            "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "        main(argv)\n"
            "    print(' '.join(argv), sorted(m for m in ('torch', 'numpy', 'ray') if m in sys.modules))\n")
    lines = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert lines == [f"{' '.join(argv)} []" for argv in commands]


def test_a_studys_help_starts_without_the_analysis_libraries():
    """`downpour study NAME --help` imports the study's module for its conditions: the statistics, figures and
    probes it reaches imported scipy.stats, matplotlib and scikit-learn at module level (about 2 of its 5 s)."""
    import subprocess
    import sys

    from downpour.studies import STUDIES

    code = ("import contextlib, io, sys\nfrom downpour.cli import main\n"
            f"for name in {list(STUDIES)!r}:\n"
            "    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):\n"
            "        main(['study', name, '--help'])\n"
            "    assert 'conditions:' in out.getvalue(), name\n"
            "print(sorted(m for m in ('sklearn', 'scipy.stats', 'matplotlib') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_a_local_training_process_never_imports_torch_dynamo_pyav_or_skimage_io(tmp_path):
    """torch.optim's optimisers import torch._dynamo when built and at their first step (1.2 s of an idle start,
    3 s on 2 busy cores, in every local run, study worker and cross-fit fold): a local run, its resume and each
    of train.optimizer's choices step without it (train/optimisers.py). Nor PyAV (data/video.py imports it where a
    video is read) or skimage.io (data/builtin.py reads the built-in photographs with PIL), which a run on the
    built-in images does not use: importing both costs each process 0.35 s of CPU, 2-2.7 s of wall on the loaded
    2-core VM."""
    import subprocess
    import sys

    code = ("import sys, torch\n"
            "import downpour.cli_train, downpour.preflight, downpour.ps.setup, downpour.twins\n"
            "from downpour.config import load_config\n"
            "from downpour.train.loop import run_local\n"
            "from downpour.train.rundir import RunDir\n"
            "from downpour.train.setup import make_optimizer\n"
            "small = ['model.maps=[2]', 'model.kernels=[4]', 'model.strides=[2]', 'model.pools=[2]', "
            "'model.pool_strides=[1]', 'data.size=16', 'train.batch_size=4', 'train.tensorboard=false', "
            "'train.optimizer=adam']\n"
            f"out = {str(tmp_path / 'run')!r}\n"
            "cfg = load_config('cat-demo', small + ['train.steps=2'])\n"
            "run_local(cfg, RunDir.create(out, cfg))\n"
            "run_local(load_config(out + '/config.toml', ['train.steps=3']), RunDir.open(out), resume=True)\n"
            "for name in ('sgd', 'adagrad', 'adam'):\n"
            "    p = torch.nn.Parameter(torch.ones(2)); p.grad = torch.ones(2)\n"
            "    opt = make_optimizer(load_config('cat-demo', [f'train.optimizer={name}']).train, [p])\n"
            "    opt.step(); opt.load_state_dict(opt.state_dict())\n"
            "print(cfg.data.source, sorted(m for m in ('torch._dynamo', 'av', 'skimage.io') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == "natural+faces []\n"


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_module_is_at_most_400_lines(path):
    # docs/architecture.md: past 400 lines a module is split by idea (checked here, not left to review)
    lines = len(path.read_text().splitlines())
    assert lines <= 400, f"{path.relative_to(ROOT)} is {lines} lines: split it by idea (docs/architecture.md)"


def test_the_run_folders_data_json_is_named_by_one_constant():
    """data.json, which the data, the runners, a resume and the report all read or write, is named once
    (``downpour.data.patches.DATA_JSON``): two spellings of one file's name drift apart unseen."""
    named = [path.relative_to(ROOT).as_posix() for path in sorted(ROOT.rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Constant) and node.value == "data.json"]
    assert named == ["data/patches.py"]


@pytest.mark.parametrize("path", sorted(ROOT.rglob("__init__.py")), ids=lambda p: p.parent.relative_to(ROOT).as_posix())
def test_no_package_rebinds_the_name_of_one_of_its_modules(path):
    """A package that re-exports a function named like its module (``downpour.plan`` re-exported ``calibrate`` from
    ``plan/calibrate.py``) makes ``from downpour.plan import calibrate`` the function and a monkeypatch string
    "downpour.plan.calibrate.X" unable to reach the module's X."""
    package = ".".join(("downpour", *path.parent.relative_to(ROOT).parts))
    modules = {p.stem for p in path.parent.glob("*.py")} | {p.parent.name for p in path.parent.glob("*/__init__.py")}
    bound = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module != package:      # (importing the module itself is fine)
            bound.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.Assign):
            bound.update(t.id for t in node.targets if isinstance(t, ast.Name))
    assert not bound & modules, f"{package} binds {sorted(bound & modules)}, the name of its own module"
