"""The summarization corpus from Debian's index, on a small synthetic Translation-en + Packages pair
(tests/fixtures/debian): parsing and cleaning, the join, the split by *source* package, the duplicate and leak
filters, test-clean, the files written, and the folder layout the loaders read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.data import DataError, get_corpus
from bench.data.debian_index import clean_description, read_index_text, read_packages, read_translations
from bench.data.splitting import HashSplit
from bench.data.sum_corpus import build_sum_corpus

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "debian"
# fractions that give every split a few of the fixture's eight source packages
SPLIT = HashSplit(test_frac=0.25, valid_frac=0.25)
BETA = ("Beta plays local music collections from a text interface. Features: gapless playback of FLAC and Ogg "
        "files; playlists and a searchable library; scrobbling to several services. It needs no graphical "
        "environment and very little memory to run well.")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("sumcache")
    return build_sum_corpus(cache_dir=cache, translation=FIXTURES / "Translation-en", packages=FIXTURES / "Packages",
                            split=SPLIT)


def _lines(folder: Path, name: str) -> list[str]:
    return (folder / name).read_text(encoding="utf-8").splitlines()


def test_parsing_translation_en_and_packages() -> None:
    descs = read_translations(read_index_text(FIXTURES / "Translation-en"))
    assert len(descs) == 18
    beta = next(d for d in descs if d.package == "beta")
    assert beta.synopsis == "lightweight music player for the terminal"
    assert beta.text == BETA  # paragraphs flattened, bullets cleaned and joined with "; "
    pkgs = read_packages(read_index_text(FIXTURES / "Packages"))
    assert len(pkgs) == 16
    assert pkgs["libalpha-dev"].source == "alpha" and pkgs["alpha"].source == "alpha"
    assert (pkgs["lambda-utils"].source, pkgs["lambda-utils"].version) == ("lambda", "1.2-3+b1")  # "name (version)"


def test_clean_description_rules() -> None:
    assert clean_description(["First line", "continues here.", ".", "Second  paragraph"]) == (
        "First line continues here. Second paragraph")
    assert clean_description(["List:", " * one", " * two", " o three"]) == "List: one; two; three"
    assert clean_description(["Ends with a dot.", " - item"]) == "Ends with a dot. item"


def test_split_by_source_package_and_filters(built: Path) -> None:
    manifest = json.loads((built / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["translation_entries"] == 18 and counts["joined"] == 16
    assert counts["not_in_packages"] == 2  # another architecture's package, a stale description md5
    assert counts["dropped_by_rule"] == {"too_short": 1}
    assert counts["duplicate_pairs"] == 1  # theta-extra repeats iota-extra's pair exactly
    assert counts["source_in_train_dropped"] == {"valid": 0, "test": 1}  # iota's description is kappa's (train)
    assert counts["test_near_duplicates_of_train"] == 1  # beta-doc's description is zeta's but for one word
    assert counts["pairs"] == {"train": 6, "valid": 4, "test": 3, "test-clean": 2}
    packages, sources = {}, {}
    for split in ("train", "valid", "test"):
        rows = [line.split() for line in _lines(built, f"{split}.pkg")]
        assert len(rows) == len(_lines(built, f"{split}.src")) == len(_lines(built, f"{split}.tgt"))
        packages[split] = {r[0] for r in rows}
        sources[split] = {r[2] for r in rows}
    # no source package on two sides: alpha's three binaries (one description shared by two) stay together
    assert not (sources["train"] & sources["valid"] or sources["train"] & sources["test"]
                or sources["valid"] & sources["test"])
    assert packages["valid"] == {"alpha", "libalpha1", "libalpha-dev", "lambda-utils"}
    assert packages["test"] == {"beta", "beta-doc", "iota-extra"}
    # the duplicate pair is there once, over the whole corpus
    pairs = [(s, t) for split in ("train", "valid", "test")
             for s, t in zip(_lines(built, f"{split}.src"), _lines(built, f"{split}.tgt"))]
    assert len(pairs) == len(set(pairs)) == 13
    assert "beta-doc" not in {line.split()[0] for line in _lines(built, "test-clean.pkg")}
    assert BETA in _lines(built, "test.src")


def test_built_corpus_reads_as_a_summarization_corpus_and_is_cached(built: Path) -> None:
    corpus = get_corpus(built)
    assert (corpus.task, corpus.src, corpus.tgt) == ("sum", "src", "tgt")
    splits = corpus.load()
    assert set(splits) == {"train", "valid", "test", "test-clean"} and len(splits["train"]) == 6
    manifest = json.loads((built / "manifest.json").read_text())
    assert [s["index"] for s in manifest["sources"]] == ["Translation-en", "Packages"]
    assert manifest["config"]["split"]["test_frac"] == 0.25
    again = build_sum_corpus(cache_dir=built.parent, translation=Path("/nonexistent"), packages=Path("/nonexistent"),
                             split=SPLIT)
    assert again == built  # current: nothing read again


def test_a_folder_of_src_tgt_files_is_a_summarization_corpus(tmp_path: Path) -> None:
    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.src").write_text("a long text about one thing\nanother long text\n")
        (tmp_path / f"{split}.tgt").write_text("one thing\nanother\n")
    corpus = get_corpus(tmp_path)
    assert corpus.task == "sum" and len(corpus.load()["valid"]) == 2
    (tmp_path / "test.tgt").write_text("only one line\n")
    with pytest.raises(DataError, match="test.src has 2 lines but .*test.tgt has 1"):
        get_corpus(tmp_path, task="sum").load()


def test_bad_index_files_are_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("Foo: bar\n")
    with pytest.raises(DataError, match="no Package/Description-en stanza"):
        build_sum_corpus(cache_dir=tmp_path / "c", translation=tmp_path / "empty", packages=FIXTURES / "Packages")
    with pytest.raises(DataError, match="pass both translation= and packages="):
        build_sum_corpus(cache_dir=tmp_path / "c", translation=FIXTURES / "Translation-en")
    with pytest.raises(DataError, match="unknown summarization corpus"):
        build_sum_corpus("debian-manpages", cache_dir=tmp_path / "c")
