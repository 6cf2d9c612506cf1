"""Read LibreOffice's offline help (Debian ``libreoffice-help-<lang>``) as paragraph-aligned parallel text.

The help is one HTML page per topic under ``usr/share/libreoffice/help/<lang>/text/<module>/.../<page>.html``
and every language ships the same pages with the same relative paths. Each translatable paragraph or
heading is an element ``<p id="par_id3155920">`` / ``<h2 id="hd_id3149">`` whose ``id`` is identical in
every language, so two languages align exactly by (page path, element id): no sentence aligner needed.

Quirks handled here (LibreOffice 7.4 as Debian packages it):

* Inline "switches" show one variant per application or OS::

      <span class="switchinline"><span hidden="true" id="MAC..." class="MAC">LibreOffice - Preferences</span>
      <span hidden="true" id="default...">Tools - Options</span></span>

  We keep the default case (the hidden ``<span>`` without a class), else the first case, so each paragraph
  reads as one sentence the way the help viewer shows it, and both languages pick the same case.
* Code paragraphs (``class="code"``, ``"codeintable"``, ``"smathcode"``) are Basic or formula source, not
  prose; they are skipped.
* Page chrome carries ids too (``bm_module``, ``DEBUG``...): only ``<p>`` and ``<h1>``..``<h6>`` are read
  and empty ones are dropped later by the cleaner.
* Embedded sections repeat one paragraph id on several pages (and occasionally twice on one page); keys
  therefore include the occurrence number of the id within its page.
"""

from __future__ import annotations

import html.parser
from dataclasses import dataclass
from pathlib import Path

from bench.data.cleaning import normalize_text
from bench.data.errors import DataError

HELP_GLOB = "usr/share/libreoffice/help/*/text"
#: Elements whose ``id`` marks one translatable unit.
UNIT_TAGS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6"})
#: ``class`` values of units that hold source code rather than prose.
CODE_CLASSES = frozenset({"code", "codeintable", "smathcode"})
_SKIP_TAGS = frozenset({"script", "style"})
_BREAK_TAGS = frozenset({"br"})

#: What the extractor does, recorded in corpus manifests (change it when the extraction changes).
EXTRACTION = (
    "units: <p>/<h1>-<h6> with an id attribute in usr/share/libreoffice/help/<lang>/text/**/*.html, "
    "skipping class code/codeintable/smathcode; key (page path, id, occurrence in page); "
    "inline switches: default case, else first case; <br> -> space; text normalised"
)

#: ``(page path relative to text/, element id, occurrence of that id in the page)``
ParagraphKey = tuple[str, str, int]


def help_package(lang: str) -> str:
    """Debian package holding the help for a language code: ``en`` -> ``libreoffice-help-en-us``."""
    return {
        "en": "libreoffice-help-en-us",
        "pt": "libreoffice-help-pt-br",
        "zh": "libreoffice-help-zh-cn",
    }.get(lang, f"libreoffice-help-{lang}")


def find_help_root(tree: Path) -> Path:
    """The ``.../help/<lang>/text`` folder inside an extracted package tree (or the folder itself)."""
    if tree.name == "text" and tree.is_dir():
        return tree
    roots = sorted(tree.glob(HELP_GLOB))
    if len(roots) != 1:
        found = ", ".join(str(r) for r in roots) or "none"
        raise DataError(f"expected exactly one {HELP_GLOB} under {tree}, found {found}")
    return roots[0]


class _UnitParser(html.parser.HTMLParser):
    """Collect the text of every ``<p id=..>``/``<h*>`` unit of one page, resolving inline switches."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.units: list[tuple[str, str]] = []  # (id, raw text) in document order
        self._unit: tuple[str, str] | None = None  # (tag, id) being read
        self._depth = 0  # nesting of the unit's own <h*> tag inside itself
        self._skip = 0  # inside <script>/<style>
        # Text buffers: the unit's, then per open switch one for the open case (or the text between cases).
        self._buffers: list[list[str]] = []
        self._spans: list[str] = []  # kind of every open <span> in the unit: "plain" | "switch" | "case"
        self._switches: list[dict] = []

    # -- unit boundaries --------------------------------------------------------------------------
    def _start_unit(self, tag: str, uid: str) -> None:
        self._unit, self._depth = (tag, uid), 1
        self._buffers, self._spans, self._switches = [[]], [], []

    def _end_unit(self) -> None:
        assert self._unit is not None
        # Close switches left open by broken markup, so their text is not lost.
        while self._switches:
            self._close_switch()
        text = "".join(self._buffers[0])
        self.units.append((self._unit[1], text))
        self._unit = None

    # -- switches -----------------------------------------------------------------------------------
    def _close_switch(self) -> None:
        frame = self._switches.pop()
        last = "".join(self._buffers.pop())  # text after the last case, or an unclosed case's text
        if "is_default" in frame:
            frame["cases"].append((last, frame.pop("is_default")))
        else:
            frame["post"] = last
        chosen = next((t for t, default in frame["cases"] if default), None)
        if chosen is None:
            chosen = frame["cases"][0][0] if frame["cases"] else ""
        self._buffers[-1].append(frame["pre"] + chosen + frame["post"])

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in _SKIP_TAGS:
            self._skip += 1
            return
        if self._unit is None:
            classes = set((a.get("class") or "").split())
            if tag in UNIT_TAGS and a.get("id") and not classes & CODE_CLASSES:
                self._start_unit(tag, a["id"] or "")
            return
        if tag in UNIT_TAGS and self._unit[0] == "p":  # <p> or <h*> inside <p> closes it, as in HTML
            self._end_unit()
            self.handle_starttag(tag, attrs)
            return
        if tag == self._unit[0]:
            self._depth += 1
        if tag in _BREAK_TAGS:
            self._data(" ")
        if tag != "span":
            return
        classes = set((a.get("class") or "").split())
        if classes & {"switch", "switchinline"}:
            self._spans.append("switch")
            self._switches.append({"cases": [], "pre": "", "post": ""})
            self._buffers.append([])  # whitespace between cases lands here
        elif self._switches and self._spans and self._spans[-1] == "switch" and "hidden" in a:
            self._spans.append("case")
            frame = self._switches[-1]
            between = "".join(self._buffers.pop())
            if not frame["cases"]:
                frame["pre"] = between
            self._buffers.append([])
            frame["is_default"] = not a.get("class")
        else:
            self._spans.append("plain")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._unit is not None and tag in _BREAK_TAGS:
            self._data(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
            return
        if self._unit is None:
            return
        if tag == self._unit[0]:
            self._depth -= 1
            if self._depth == 0:
                self._end_unit()
            return
        if tag != "span" or not self._spans:
            return
        kind = self._spans.pop()
        if kind == "case":
            frame = self._switches[-1]
            frame["cases"].append(("".join(self._buffers.pop()), frame.pop("is_default", False)))
            self._buffers.append([])  # collects what follows this case inside the switch
        elif kind == "switch":
            self._close_switch()

    def handle_data(self, data: str) -> None:
        if self._unit is not None and not self._skip:
            self._data(data)

    def _data(self, data: str) -> None:
        self._buffers[-1].append(data)


def parse_units(page_html: str) -> list[tuple[str, str]]:
    """(id, text) of every translatable unit of one help page, in document order; text is normalised."""
    parser = _UnitParser()
    parser.feed(page_html)
    parser.close()
    return [(uid, normalize_text(text)) for uid, text in parser.units]


def extract_paragraphs(help_root: Path) -> dict[ParagraphKey, str]:
    """All units of all pages under a ``.../help/<lang>/text`` folder, keyed by (page, id, occurrence)."""
    root = find_help_root(help_root)
    out: dict[ParagraphKey, str] = {}
    for page in sorted(root.rglob("*.html")):
        rel = page.relative_to(root).as_posix()
        seen: dict[str, int] = {}
        for uid, text in parse_units(page.read_text(encoding="utf-8", errors="replace")):
            k = seen.get(uid, 0)
            seen[uid] = k + 1
            out[(rel, uid, k)] = text
    if not out:
        raise DataError(
            f"no <p id=...> paragraphs in any *.html under {root}: is this a LibreOffice help tree?"
        )
    return out


@dataclass(frozen=True, slots=True)
class AlignedPair:
    """One paragraph in two languages. ``page`` is the path relative to ``text/`` (same in every language)."""

    page: str
    pid: str
    src: str
    tgt: str


@dataclass(frozen=True)
class Alignment:
    """Result of aligning two help trees: the pairs (sorted by page, then document order) and counts."""

    pairs: list[AlignedPair]
    src_units: int
    tgt_units: int
    pages: int

    @property
    def unaligned(self) -> int:
        return self.src_units + self.tgt_units - 2 * len(self.pairs)


def align_help_trees(src_tree: Path, tgt_tree: Path) -> Alignment:
    """Align two extracted help trees (package roots or ``.../text`` folders) by (page, id, occurrence)."""
    src = extract_paragraphs(src_tree)
    tgt = extract_paragraphs(tgt_tree)
    pairs = [AlignedPair(key[0], key[1], text, tgt[key]) for key, text in src.items() if key in tgt]
    pages = len({p.page for p in pairs})
    return Alignment(pairs=pairs, src_units=len(src), tgt_units=len(tgt), pages=pages)
