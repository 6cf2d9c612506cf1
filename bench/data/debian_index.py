"""Read Debian's package index as summarization data: every package's long description and its synopsis.

``apt-get -o Acquire::Languages=en update`` leaves, beside the ``Packages`` index of each release, the
``i18n/Translation-en`` file in which every package of the component has its description written by its
maintainer: a one-line synopsis (the first line of ``Description-en``) and a long description (the lines
after it). The ``Packages`` index maps each binary package to its version and its *source* package (the
``Source:`` field; absent when the two names are equal). Both are deb822 files (RFC 822-style stanzas).

:func:`apt_index_files` finds the two files apt keeps for one release (``apt-get indextargets``) and
:func:`read_index_text` decompresses them (``apt-helper cat-file``, which reads every compression apt writes);
no network is used here. :func:`clean_description` turns a long description into one line of text (the
rules of Debian Policy 5.6.13, below).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.data.cleaning import normalize_text
from bench.data.errors import DataError

UPDATE = "apt-get -o Acquire::Languages=en update"
#: A bullet at the start of a description line: *, -, +, o or a bullet character, then a space.
_BULLET = re.compile(r"^\s*(?:[*\-+\u2022\u00b7]|o(?=\s))\s+(?=\S)")
_ENDS_CLAUSE = re.compile(r"[.:;,!?]$")

CLEANING = (
    "synopsis = first line of Description-en; long description = the lines after it: ' .' lines are paragraph "
    "breaks, flattened to a space; a bullet (*, -, +, o, \u2022 at the start of a line) starts a new item, "
    "its marker removed, and an item or line not ending in [.:;,!?] is joined to the next item with '; '; "
    "text normalised (NFC, whitespace runs -> one space)"
)


def stanzas(text: str) -> Iterator[dict[str, str]]:
    """The stanzas of a deb822 file, each {field: value}; a multi-line value keeps its continuation lines
    (after the first) joined by newlines, each without its one leading space."""
    fields: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields, key = {}, ""
        elif line[0] in " \t":
            if key:
                fields[key] += "\n" + line[1:]
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    if fields:
        yield fields


def clean_description(long_lines: list[str]) -> str:
    """One line of text from the lines of a long description (after the synopsis), see ``CLEANING``."""
    segments: list[str] = []
    for line in long_lines:
        if line.strip() == ".":  # a paragraph break
            segments.append("")
            continue
        m = _BULLET.match(line)
        if m or not segments or segments[-1] == "":
            segments.append(line[m.end():] if m else line)
        else:
            segments[-1] += " " + line
    out = ""
    for seg in (normalize_text(s) for s in segments):
        if not seg:
            continue
        joint = " " if not out or _ENDS_CLAUSE.search(out) else "; "
        out = seg if not out else out + joint + seg
    return normalize_text(out)


@dataclass(frozen=True)
class Description:
    """One package's description from Translation-en: the package, the md5 of its English description (the
    key the Packages index shares), the synopsis and the cleaned long description."""

    package: str
    md5: str
    synopsis: str
    text: str


def read_translations(text: str) -> list[Description]:
    """Every stanza of a Translation-en file with a ``Description-en`` field, in file order."""
    out = []
    for st in stanzas(text):
        desc = st.get("Description-en")
        if "Package" not in st or desc is None:
            continue
        first, *rest = desc.split("\n")
        out.append(Description(st["Package"], st.get("Description-md5", ""), normalize_text(first),
                               clean_description(rest)))
    if not out:
        raise DataError("no Package/Description-en stanza in the Translation-en file: is it a Translation-en index?")
    return out


@dataclass(frozen=True)
class BinaryPackage:
    package: str
    version: str
    source: str  # the source package (the binary's own name when Packages has no Source field)
    md5: str


def read_packages(text: str) -> dict[str, BinaryPackage]:
    """{package: BinaryPackage} from a Packages index; ``Source: name (version)`` keeps the name."""
    out = {}
    for st in stanzas(text):
        if "Package" not in st:
            continue
        source = (st.get("Source") or st["Package"]).split()[0]
        out[st["Package"]] = BinaryPackage(st["Package"], st.get("Version", ""), source, st.get("Description-md5", ""))
    if not out:
        raise DataError("no Package stanza in the Packages file: is it a Packages index?")
    return out


# ------------------------------------------------------------------------------------- apt's own files
@dataclass(frozen=True)
class IndexFiles:
    """The Translation-en and Packages files apt keeps for one release and component, and the release."""

    translation: Path
    packages: Path
    release: dict[str, str]  # Origin, Label, Codename, Suite, Version, Component, Site


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def apt_index_files(component: str = "main") -> IndexFiles:
    """Find, through ``apt-get indextargets``, the Translation-en file of ``component`` and the Packages file
    of the same release (the release without a ``-updates``/``-security`` suffix when apt has several)."""
    fix = f"run `{UPDATE}` (as root) first, or pass translation= and packages= files"
    if shutil.which("apt-get") is None:
        raise DataError(f"apt-get not found, cannot read Debian's index: {fix}")
    proc = _run(["apt-get", "-o", "Acquire::Languages=en", "indextargets"])
    if proc.returncode != 0:
        raise DataError(f"`apt-get indextargets` failed ({(proc.stderr.strip().splitlines() or ['?'])[-1]}): {fix}")
    targets = list(stanzas(proc.stdout))
    translations = [t for t in targets if t.get("Identifier") == "Translations" and t.get("Language") == "en"
                    and t.get("Component") == component and Path(t.get("Filename", "")).is_file()]
    if not translations:
        raise DataError(f"apt has no Translation-en file for component {component}: {fix}")
    translations.sort(key=lambda t: ("-" in t.get("Codename", ""), t.get("Codename", "")))
    chosen = translations[0]
    same = [t for t in targets if t.get("Identifier") == "Packages" and t.get("Component") == component
            and t.get("Codename") == chosen.get("Codename") and t.get("Repo-URI") == chosen.get("Repo-URI")
            and Path(t.get("Filename", "")).is_file()]
    if not same:
        raise DataError(f"apt has no Packages file for {chosen.get('Codename')}/{component}: {fix}")
    keys = ("Origin", "Label", "Codename", "Suite", "Version", "Component", "Site")
    return IndexFiles(Path(chosen["Filename"]), Path(same[0]["Filename"]), {k: chosen.get(k, "") for k in keys})


def read_index_text(path: Path) -> str:
    """The text of an index file as apt stores it (lz4, gz, xz, zst or plain), via ``apt-helper cat-file``;
    a plain file is read directly."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"index file {path} does not exist: run `{UPDATE}` first")
    if path.suffix not in (".lz4", ".gz", ".xz", ".zst", ".bz2", ".lzma"):
        return path.read_text(encoding="utf-8", errors="replace")
    helper = next((h for h in ("/usr/lib/apt/apt-helper", shutil.which("apt-helper")) if h and Path(h).exists()),
                  None)
    if helper is None:
        raise DataError(f"cannot decompress {path.name}: apt-helper not found (pass a decompressed file instead)")
    proc = subprocess.run([helper, "cat-file", str(path)], capture_output=True, check=False)
    if proc.returncode != 0:
        raise DataError(f"`apt-helper cat-file {path}` failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout.decode("utf-8", errors="replace")
