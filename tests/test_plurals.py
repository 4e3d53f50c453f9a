"""Counted nouns are said by downpour._names.plural ('1 seed', '2 seeds'), not built by hand in each f-string: until
2026-12-05 seven f-strings added the s themselves, each its own way (`'s' * (n != 1)`, `'s' if n > 1 else ''`, ...)."""
import ast
from pathlib import Path

import downpour
from downpour._names import plural

ROOT = Path(downpour.__file__).parent
SUFFIXES = ("s", "es")


def _suffix(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value in SUFFIXES


def _hand_built(node: ast.expr) -> bool:
    """``{'s' * (n != 1)}`` or ``{'s' if n != 1 else ''}`` (either way round) in an f-string."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        return _suffix(node.left) or _suffix(node.right)
    if isinstance(node, ast.IfExp):
        ends = (node.body, node.orelse)
        return any(_suffix(e) for e in ends) and any(isinstance(e, ast.Constant) and e.value == "" for e in ends)
    return False


def _found(source: str) -> list[str]:
    return [f"line {node.lineno}: {ast.unparse(node.value)}" for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.FormattedValue) and _hand_built(node.value)]


def test_no_f_string_adds_a_plural_s_by_hand():
    forms = ["f\"{n} seed{'s' * (n != 1)}\"", "f\"{n} seed{'s' if n != 1 else ''}\"", "f\"{n} box{'' if n == 1 else 'es'}\""]
    assert all(_found(f) for f in forms) and not _found("f'{plural(n, \"seed\")} {n}'")     # (the scan sees them)
    found = {path.relative_to(ROOT).as_posix(): _found(path.read_text()) for path in sorted(ROOT.rglob("*.py"))}
    assert not {k: v for k, v in found.items() if v}, "plurals built by hand (use downpour._names.plural)"
    assert plural(0, "worker machine") == "0 worker machines" and plural(1, "seed") == "1 seed"
