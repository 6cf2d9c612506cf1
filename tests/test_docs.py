"""The documentation stays true to the tree: README.md is a front door (short, its Layout complete), every
relative link of the docs lands on a file (and heading) that exists, and docs/cli.md names every command,
make target and make variable there is."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CLI_DOC = ROOT / "docs" / "cli.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "results" / "README.md"]

_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)


def _prose(text: str) -> str:
    """The text without fenced code blocks, where brackets and parentheses are code, not links."""
    return _FENCE.sub("", text)


def _links(path: Path) -> list[str]:
    return _LINK.findall(_CODE_SPAN.sub("``", _prose(path.read_text())))


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in _HEADING.findall(_prose(path.read_text())):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def _section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def test_readme_is_a_front_door():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; findings go to results/README.md, method to docs/"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_lands(doc):
    assert doc.is_file(), doc
    broken = []
    for target in _links(doc):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target} (no heading with that anchor)")
    assert broken == [], f"{doc.relative_to(ROOT)}: {broken}"


def test_readme_layout_names_every_package_and_module():
    layout = _section(README.read_text(), "Layout")

    def named(name: str) -> bool:
        return re.search(rf"(?<![\w./-]){re.escape(name)}(?![\w-])", layout) is not None

    bench = ROOT / "bench"
    packages = sorted(f"{p.name}/" for p in bench.iterdir() if p.is_dir() and (p / "__init__.py").is_file())
    modules = sorted(p.name for p in bench.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    model_folders = sorted(f"{p.name}/" for p in (ROOT / "models").iterdir()
                           if p.is_dir() and not p.name.startswith(("_", ".")))
    assert packages and model_folders
    missing = [n for n in packages + modules + model_folders if not named(n)]
    assert missing == [], f"README.md's Layout does not name {missing}"


def test_readme_layout_names_no_file_that_is_gone():
    layout = _section(README.read_text(), "Layout")
    files = {p.name for d in ("bench", "models", "scripts") for p in (ROOT / d).rglob("*") if p.is_file()}
    stale = sorted({n for n in re.findall(r"[\w-]+\.(?:py|sh)\b", layout)} - files)
    assert stale == [], f"README.md's Layout names files that do not exist: {stale}"


def _subcommands() -> list[str]:
    from bench.cli.parser import build_parser

    actions = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(actions) == 1
    return sorted(actions[0].choices)


def test_cli_doc_names_every_command():
    text = CLI_DOC.read_text()
    commands = _subcommands()
    assert commands
    missing = [c for c in commands if not re.search(rf"python -m bench {c}\b", text)]
    assert missing == [], f"docs/cli.md has no synopsis for {missing}"
    undocumented = [c for c in commands if f"| `{c}` |" not in text]
    assert undocumented == [], f"docs/cli.md's command table lacks {undocumented}"


def test_cli_doc_names_every_make_target_and_variable():
    makefile = (ROOT / "Makefile").read_text()
    text = CLI_DOC.read_text()
    targets = re.findall(r"^([a-z][a-z-]*):.*## ", makefile, re.MULTILINE)
    variables = re.findall(r"^([A-Z][A-Z_]*)\s*\?=", makefile, re.MULTILINE)
    assert targets and variables
    missing = [t for t in targets if f"`{t}`" not in text] + [v for v in variables if f"`{v}`" not in text]
    assert missing == [], f"docs/cli.md does not name {missing}"


def test_cli_doc_states_the_exit_codes():
    section = re.search(r"^## Exit codes\s*$(.*?)(?=^## |\Z)", CLI_DOC.read_text(), re.MULTILINE | re.DOTALL)
    assert section, "docs/cli.md has no '## Exit codes' section"
    for code in ("0", "1", "2", "130"):
        assert re.search(rf"\*\*{code}\b", section.group(1)), f"exit code {code} is not described"
