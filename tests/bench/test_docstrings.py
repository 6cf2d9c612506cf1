"""Every public function or method of bench/ with more than two parameters documents them: its docstring has a
Google-style ``Args:`` section naming each one (``name: what it is``)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
MAX_UNDOCUMENTED = 2  # parameters a function may have without an Args section (self and cls not counted)
SECTION = re.compile(r"^\s*(Args|Arguments|Returns|Yields|Raises|Examples?|Notes?|Attributes|See Also):\s*$")

Function = ast.FunctionDef | ast.AsyncFunctionDef


def _public_functions(tree: ast.Module) -> Iterator[tuple[str, Function]]:
    """(qualified name, node) of the module's public functions and of the public methods of its public classes."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            yield node.name, node
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for sub in node.body:
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)) and not sub.name.startswith("_"):
                    yield f"{node.name}.{sub.name}", sub


def parameters(fn: Function) -> list[str]:
    """Positional, keyword and keyword-only parameters, in order, without a leading self or cls."""
    a = fn.args
    names = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    return names[1:] if names and names[0] in ("self", "cls") else names


def args_section(doc: str) -> str | None:
    """The text of the docstring's ``Args:`` section (up to the next section or the end); None without one."""
    lines = doc.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "Args:"), None)
    if start is None:
        return None
    body = []
    for line in lines[start + 1:]:
        if SECTION.match(line):
            break
        body.append(line)
    return "\n".join(body)


def documented() -> list[tuple[str, list[str], str | None]]:
    """(where, parameters, Args section) of every public function of bench/ with more than two parameters."""
    out = []
    for path in sorted(BENCH.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for name, fn in _public_functions(tree):
            params = parameters(fn)
            if len(params) > MAX_UNDOCUMENTED:
                where = f"{path.relative_to(ROOT)}:{fn.lineno} {name}"
                out.append((where, params, args_section(ast.get_docstring(fn) or "")))
    return out


def test_the_walk_counts_parameters_and_reads_the_args_section():
    fn = ast.parse("class A:\n    def f(self, a, /, b, *c, d, **e):\n        pass\n").body[0].body[0]
    assert parameters(fn) == ["a", "b", "d"]
    doc = "Summary.\n\nArgs:\n    a: one.\n    b: two,\n        continued.\n\nReturns:\n    c: not an arg.\n"
    assert args_section(doc) == "    a: one.\n    b: two,\n        continued.\n"
    assert args_section("Summary.") is None


def test_every_public_function_with_more_than_two_parameters_has_an_args_section():
    missing = [where for where, _, section in documented() if section is None]
    assert missing == [], f"{len(missing)} function(s) without an Args: section:\n" + "\n".join(missing)


def named(param: str, section: str) -> bool:
    """Whether the Args section has a line ``param: ...``."""
    return re.search(rf"(?m)^\s*{re.escape(param)}:", section) is not None


def test_every_parameter_is_named_in_its_args_section():
    unnamed = []
    for where, params, section in documented():
        absent = [p for p in params if section is not None and not named(p, section)]
        if absent:
            unnamed.append(f"{where}: {', '.join(absent)}")
    assert unnamed == [], "parameters missing from their Args: section:\n" + "\n".join(unnamed)
