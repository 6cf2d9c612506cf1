"""The harness's shape: bench/ grouped into packages, no import cycles, no private name used across modules, and
every committed record still found under the config hash its folder is named by."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
TOP_LEVEL = {"__init__.py", "__main__.py", "errors.py"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in BENCH.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """Imports under ``if TYPE_CHECKING:`` are for annotations only: they run at no time, so they make no cycle."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            skip.update(id(n) for n in ast.walk(node))
    return skip


def imports(modules: dict[str, Path]) -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """Every module's imports of other bench modules, module-level and function-level alike (a function-level
    import closes a cycle as surely as a top-level one, only later), and the private names imported across
    modules: (importer, module, name)."""
    edges: dict[str, set[str]] = {m: set() for m in modules}
    private = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        skip = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    if f"{source}.{alias.name}" in modules:  # from bench.report import leaderboard
                        edges[name].add(f"{source}.{alias.name}")
                    elif source in modules:
                        edges[name].add(source)
                        if alias.name.startswith("_"):
                            private.append((name, source, alias.name))
            elif isinstance(node, ast.Import):
                edges[name].update(a.name for a in node.names if a.name in modules)
        edges[name].discard(name)
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle_and_passes_a_tree():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_the_import_walk_sees_function_level_imports(tmp_path):
    # the walk itself, on this file's package: bench.sweep.runner imports the trainer inside a method
    edges, _ = imports(_modules())
    assert "bench.train.trainer" in edges["bench.sweep.runner"]
    assert "bench.budget.latency_together" in edges["bench.budget.solve"]  # a function-level import


def test_bench_has_no_import_cycles():
    edges, _ = imports(_modules())
    assert cycles(edges) == []


def test_no_private_name_is_imported_across_modules():
    _, private = imports(_modules())
    assert private == []


def test_the_top_level_of_bench_holds_only_packages_and_the_entry_files():
    loose = sorted(p.name for p in BENCH.glob("*.py") if p.name not in TOP_LEVEL)
    assert loose == []
    packages = sorted(p.name for p in BENCH.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert packages == ["budget", "cli", "compress", "cost", "data", "evaluation", "infra", "latency", "records",
                        "report", "sweep", "train"]


def test_one_definition_of_the_repository_root():
    defined = [str(p.relative_to(ROOT)) for p in BENCH.rglob("*.py")
               if any(line.startswith("REPO = ") for line in p.read_text().splitlines())]
    assert defined == ["bench/records/provenance.py"]


# every committed run folder is found again under its config hash (a moved module must not change a hash)
@pytest.mark.parametrize("budget,task,schedule,folder", [
    ("100M", "mt", "short", "100M"),
    ("100M", "mt", "x4", "100M-x4"),
    ("100M", "lm", "short", "100M-lm"),
    ("100M", "sum", "short", "100M-sum"),
    # 500M translation is being re-run without dropout: its case returns with the re-run's leaderboard (the
    # dropout-0.1 records in results/500M/superseded/dropout-0.1/ are another recipe, so another hash)
    ("500M", "lm", "short", "500M-lm"),
    ("500M", "sum", "short", "500M-sum"),
])
def test_committed_records_keep_their_config_hash(budget, task, schedule, folder):
    import csv

    from bench.sweep.runner import Sweep, SweepOptions

    sweep = Sweep(SweepOptions(budget=budget, task=task, schedule=schedule))
    with (ROOT / "results" / folder / "leaderboard.csv").open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["model"] == r["family"] and r["config_hash"]]
    assert rows, folder
    for r in rows:  # every family the committed leaderboard ranks (a family added since has no records yet)
        assert sweep.plan(r["model"]).folder.name == f"{r['model']}-{r['config_hash']}", (folder, r["model"])


def test_every_module_imports():
    """A moved name that a module still imports from its old home fails here, not at a user's command."""
    import importlib

    broken = {}
    for name in sorted(_modules()):
        if name.endswith("__main__"):
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - every failure is reported by name
            broken[name] = repr(exc)
    assert broken == {}
