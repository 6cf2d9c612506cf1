"""The command line as one package: lazy command imports, the console script, and the project's own rules
about where code and references live."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _commands(help_text: str) -> list[str]:
    """The command names of a ``--help`` text: the ``{a,b,...}`` choice list."""
    m = re.search(r"\{([a-z,]+)\}", help_text)
    assert m, help_text
    return m.group(1).split(",")


def test_models_command_loads_no_evaluation_tokenizer_or_fvcore():
    code = (
        "import runpy, sys, json\n"
        "sys.argv = ['bench', 'models']\n"
        "try:\n"
        "    runpy.run_module('bench', run_name='__main__')\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        "heavy = ('sacrebleu', 'sentencepiece', 'fvcore', 'thop', 'pandas', 'matplotlib')\n"
        "print(json.dumps(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert "lite_transformer" in proc.stdout
    assert json.loads(lines[-1]) == []


def test_console_script_and_module_list_the_same_commands():
    script = Path(sys.executable).parent / "litebench"
    assert script.exists(), "the litebench console script is missing: reinstall with `make setup`"
    a = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    b = subprocess.run([sys.executable, "-m", "bench", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert a.returncode == b.returncode == 0, (a.stderr, b.stderr)
    assert _commands(a.stdout) == _commands(b.stdout)
    assert {"models", "profile", "latency", "train", "run", "report", "compress"} <= set(_commands(a.stdout))
    assert a.stdout.startswith("usage: litebench") and b.stdout.startswith("usage: python -m bench")
    bad = subprocess.run([str(script), "modelz"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: litebench:")


def _library_modules() -> list[Path]:
    return sorted(p for d in ("bench", "models") for p in (ROOT / d).rglob("*.py")
                  if "cli" not in p.parts and p.name != "__main__.py")


def test_no_library_module_imports_the_command_line():
    pattern = re.compile(r"^\s*(from\s+(bench\.cli|\.+cli)\b|import\s+bench\.cli\b)", re.MULTILINE)
    offenders = [str(p.relative_to(ROOT)) for p in _library_modules() if pattern.search(p.read_text())]
    assert offenders == []


def test_no_module_over_500_lines():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for d in ("bench", "models")
             for p in (ROOT / d).rglob("*.py")}
    assert {k: v for k, v in sizes.items() if v > 500} == {}


@pytest.mark.parametrize("where", ["bench", "models", "budgets", "docs", "scripts", "README.md", "Makefile"])
def test_the_project_points_only_inside_itself(where):
    path = ROOT / where
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and p.suffix != ".pyc"]
    assert files, where
    pattern = re.compile(r"shared/design|issue [0-9]")
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in files for i, line in enumerate(p.read_text().splitlines(), 1)
            if pattern.search(line)]
    assert hits == []
