"""The ```python blocks of README.md and docs/*.md, as a user pastes them: every block parses and every
name it imports from downpour exists, and the blocks that need no run, data set or minutes of training
run as written, one file's blocks in order in one fresh namespace (so a block that uses torch it never
imports, or calls a gate on an ``x`` it never made, fails). The others train or read a finished
run (analysis.md's needs runs/main, training.md's a cross-validation of 5 trainings): run by hand."""
import ast
import importlib
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_AS_WRITTEN = ["layers.md", "designs.md"]    # 0.2 s and 1.7 s on 2 cores


def _blocks(path):
    text = path.read_text()
    return [(text[:m.start()].count("\n") + 2, m.group(1)) for m in re.finditer(r"```python\n(.*?)```", text, re.S)]


ALL = [(p, line, code) for p in DOCS for line, code in _blocks(p)]


def test_the_docs_have_python_blocks():
    # a change of fence (```py) would make every test below pass on nothing
    assert len(ALL) >= 9 and {p.name for p, _, _ in ALL} >= {"analysis.md", "data.md", *RUN_AS_WRITTEN}


@pytest.mark.parametrize("path,line,code", ALL, ids=[f"{p.name}:{line}" for p, line, _ in ALL])
def test_every_block_parses_and_its_downpour_imports_exist(path, line, code):
    tree = ast.parse(code, filename=f"{path.name}:{line}")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "downpour":
            module = importlib.import_module(node.module)
            missing = [a.name for a in node.names if not hasattr(module, a.name) and not (
                hasattr(module, "__path__") and importlib.util.find_spec(f"{node.module}.{a.name}"))]
            assert not missing, f"{path.name}:{line}: {node.module} has no {', '.join(missing)}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "downpour":
                    importlib.import_module(alias.name)


@pytest.mark.parametrize("name", RUN_AS_WRITTEN)
def test_the_blocks_that_need_no_run_run_as_written(name):
    path = ROOT / "docs" / name
    namespace = {}
    for line, code in _blocks(path):
        exec(compile(code, f"{name}:{line}", "exec"), namespace)
