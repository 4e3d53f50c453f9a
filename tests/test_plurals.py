"""Counted nouns are said by downpour._names.plural ('1 seed', '2 seeds'), not built by hand in each f-string, each its
own way (`'s' * (n != 1)`, `'s' if n > 1 else ''`, ...)."""
import ast
import re
from pathlib import Path

import downpour
from downpour._names import listed, plural

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


def _joined_by_hand(source: str) -> list[str]:
    """``" and ".join(...)`` or ``" or ".join(...)``: three or more read "a and b and c"."""
    return [f"line {node.lineno}: {ast.unparse(node)}" for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "join"
            and isinstance(node.func.value, ast.Constant) and node.func.value.value in (" and ", " or ")]


def test_no_list_in_words_is_joined_with_and_by_hand():
    """Lists in messages and sentences are said by downpour._names.listed ("a, b and c"): joined with " and ", the face
    test's criterion would read "above the AUCs of a and b and c" with three baselines."""
    assert _joined_by_hand("f\"{' and '.join(xs)}\"") and _joined_by_hand("' or '.join(xs)")      # (the scan sees them)
    assert not _joined_by_hand("', '.join(xs)")
    found = {path.relative_to(ROOT).as_posix(): _joined_by_hand(path.read_text())
             for path in sorted(ROOT.rglob("*.py"))}
    assert not {k: v for k, v in found.items() if v}, "lists joined by hand (use downpour._names.listed)"
    assert [listed(w) for w in ([], ["a"], ["a", "b"], ["a", "b", "c"])] == ["", "a", "a and b", "a, b and c"]
    assert listed(iter(["x", "y", "z"]), "or") == "x, y or z"


def _hedged(source: str) -> list[str]:
    """``f"{n} filter(s)"``, ``f"{n} {noun}(s)"``: a count followed by a noun (and a word before it) ending in "(s)"."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.JoinedStr):
            for count, words in zip(node.values, node.values[1:]):
                if (isinstance(count, ast.FormattedValue) and isinstance(words, ast.Constant)
                        and re.match(r"(( [\w-]+)? \w+)?\(s\)", words.value)):
                    found.append(f"line {node.lineno}: {ast.unparse(count.value)}{words.value[:30]}")
    return found


def test_no_f_string_counts_a_noun_with_s_in_brackets():
    """No f-string counts a noun with "(s)": the report on an RBM of 200 steps would say "the layer has collapsed onto 1
    distinct filter(s)"."""
    assert _hedged("f'onto {n} distinct filter(s), which'") and _hedged("f'its {n} {noun}(s) give'")
    assert not _hedged("f'onto {plural(n, \"filter\")}'")
    found = {path.relative_to(ROOT).as_posix(): _hedged(path.read_text()) for path in sorted(ROOT.rglob("*.py"))}
    assert not {k: v for k, v in found.items() if v}, "a count with a noun(s) (use downpour._names.plural)"
