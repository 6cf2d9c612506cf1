"""Plain-text corpora with bad or unusual input: nothing is read silently wrong.

Lines end at "\\n" alone (a form feed, U+0085 or U+2028 inside a sentence shifts no pair), CRLF and a UTF-8 BOM
are read as LF without one by the pairs and by the tokenizer alike, and what cannot be aligned (different line
counts, a pair with one side empty, bytes that are not UTF-8) is refused with one line naming the file and line.
"""

from __future__ import annotations

import hashlib
import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import sentencepiece as spm

from bench.cli import main
from bench.data import DataError, TokenizerConfig, get_corpus, get_tokenizer, load_lm_dir, load_parallel_dir
from bench.data.tokenizer import train_tokenizer
from tests.toy_corpus import write_corpus

# Every character but "\n" and "\r" that str.splitlines() breaks a line at.
BREAKS = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


def _write(folder: Path, files: dict[str, str | bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        data = text if isinstance(text, bytes) else text.encode("utf-8")
        (folder / name).write_bytes(data)
    return folder


def _parallel(folder: Path, train_de: str | bytes, train_en: str | bytes, ext=("de", "en")) -> Path:
    rest = {f"{split}.{lang}": f"{split} {lang} eins\n{split} {lang} zwei\n"
            for split in ("valid", "test") for lang in ext}
    return _write(folder, {f"train.{ext[0]}": train_de, f"train.{ext[1]}": train_en, **rest})


# ------------------------------------------------------------------------------------------ line ends
@pytest.mark.parametrize("brk", BREAKS, ids=[f"U+{ord(c):04X}" for c in BREAKS])
def test_a_line_break_character_inside_a_sentence_shifts_no_pair(tmp_path, brk):
    de = f"eins\nzwei{brk}drei\nvier\nfünf\n"  # one inside a source sentence ...
    en = f"one\ntwo three\nfour\nfive{brk}six\n"  # ... and one inside a later target sentence
    folder = _parallel(tmp_path / "c", de, en)
    train = load_parallel_dir(folder, "de", "en")["train"]
    assert list(train) == [("eins", "one"), (f"zwei{brk}drei", "two three"), ("vier", "four"),
                           ("fünf", f"five{brk}six")]
    assert list(get_corpus(folder).load()["train"]) == list(train)


@pytest.mark.parametrize("brk", BREAKS, ids=[f"U+{ord(c):04X}" for c in BREAKS])
def test_a_line_break_character_inside_a_language_modelling_line_stays_in_it(tmp_path, brk):
    folder = _write(tmp_path / "lm", {f"{s}.txt": f"{s} one{brk}more\n{s} two\n" for s in ("train", "valid", "test")})
    assert load_lm_dir(folder)["train"] == [f"train one{brk}more", "train two"]


def test_a_break_character_no_longer_hides_a_missing_line(tmp_path):
    # splitlines() read 3 lines on each side here (and paired "zwei" with "three"); there are 2 and 3
    folder = _parallel(tmp_path / "c", "eins\nzwei\u2028drei\n", "one\ntwo\nthree\n")
    with pytest.raises(DataError) as err:
        load_parallel_dir(folder, "de", "en")
    assert str(err.value) == (f"{folder / 'train.de'} has 2 lines but {folder / 'train.en'} has 3: "
                              "the sides must align line by line")


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\n", b"\r\n")


def _bom(data: bytes) -> bytes:
    return b"\xef\xbb\xbf" + data


WINDOWS = {"crlf": _crlf, "bom": _bom, "bom+crlf": lambda d: _bom(_crlf(d))}


@pytest.fixture
def trainer_inputs(monkeypatch):
    """The files sentencepiece is asked to train on, and their bytes at that moment, call by call."""
    calls: list[list[tuple[str, bytes]]] = []
    real = spm.SentencePieceTrainer.train

    def train(**kwargs):
        calls.append([(f, Path(f).read_bytes()) for f in kwargs["input"]])
        return real(**kwargs)

    monkeypatch.setattr(spm.SentencePieceTrainer, "train", train)
    return calls


def test_a_well_formed_corpus_trains_the_tokenizer_on_its_own_files(tmp_path, trainer_inputs):
    corpus = get_corpus(write_corpus(tmp_path / "plain"))
    get_tokenizer(corpus, TokenizerConfig(vocab_size=60))
    assert [f for f, _ in trainer_inputs[0]] == [str(p) for p in corpus.paths["train"]]
    sidecar = json.loads((corpus.root / "spm-60.json").read_text())
    assert sidecar["inputs"] == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in corpus.paths["train"]}


@pytest.mark.parametrize("damage", list(WINDOWS))
def test_windows_files_read_and_tokenize_as_plain_ones(tmp_path, trainer_inputs, damage):
    plain = write_corpus(tmp_path / "plain")
    windows = write_corpus(tmp_path / "windows")
    for f in windows.iterdir():
        f.write_bytes(WINDOWS[damage](f.read_bytes()))
    assert (windows / "train.de").read_bytes() != (plain / "train.de").read_bytes()
    assert get_corpus(windows).load() == get_corpus(plain).load()  # no "\r", no BOM in any pair

    config = TokenizerConfig(vocab_size=60)
    tok_plain = get_tokenizer(get_corpus(plain), config)
    tok_windows = get_tokenizer(get_corpus(windows), config)
    (plain_in, windows_in) = ([text for _, text in call] for call in trainer_inputs)
    assert windows_in == plain_in == [(plain / "train.de").read_bytes(), (plain / "train.en").read_bytes()]
    assert not any(b"\r" in t or b"\xef\xbb\xbf" in t for t in windows_in)
    pieces = [tok_windows.piece(i) for i in range(tok_windows.vocab_size)]
    assert not any("\r" in p or "\ufeff" in p for p in pieces)
    assert pieces == [tok_plain.piece(i) for i in range(tok_plain.vocab_size)]
    assert (windows / "spm-60.vocab").read_bytes() == (plain / "spm-60.vocab").read_bytes()
    side = {name: json.loads((root / "spm-60.json").read_text())["inputs"] for name, root in
            (("plain", plain), ("windows", windows))}
    assert side["windows"] == side["plain"]  # the hash of the text trained on, not of the raw file
    first = (plain / "train.de").read_text().split("\n")[0]
    assert tok_windows.encode(first) == tok_plain.encode(first)


def test_a_tokenizer_trained_on_a_crlf_file_before_is_retrained(tmp_path, trainer_inputs):
    folder = write_corpus(tmp_path / "c")
    for f in folder.iterdir():
        f.write_bytes(_crlf(f.read_bytes()))
    corpus = get_corpus(folder)
    get_tokenizer(corpus, TokenizerConfig(vocab_size=60))
    sidecar = folder / "spm-60.json"
    record = json.loads(sidecar.read_text())
    record["inputs"] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in corpus.paths["train"]}
    sidecar.write_text(json.dumps(record))  # what the earlier code recorded: the raw files' hashes
    get_tokenizer(corpus, TokenizerConfig(vocab_size=60))
    assert len(trainer_inputs) == 2


def test_a_bom_does_not_split_the_first_word(tmp_path):
    folder = _parallel(tmp_path / "c", "\ufeffHaus und Baum\nzwei\n", "\ufeffhouse and tree\ntwo\n")
    assert list(load_parallel_dir(folder, "de", "en")["train"]) == [("Haus und Baum", "house and tree"),
                                                                    ("zwei", "two")]
    lm = _write(tmp_path / "lm", {f"{s}.txt": f"\ufeff{s} eins\r\n{s} zwei\r\n" for s in ("train", "valid", "test")})
    assert load_lm_dir(lm)["train"] == ["train eins", "train zwei"]


# ------------------------------------------------------------------------------------------ refused
@pytest.mark.parametrize("empty_side", ["de", "en"])
@pytest.mark.parametrize("blank", ["", "  ", "\t"], ids=["empty", "spaces", "tab"])
def test_a_pair_with_one_side_empty_is_refused_naming_file_and_line(tmp_path, empty_side, blank):
    lines = {"de": ["eins", "zwei", "drei"], "en": ["one", "two", "three"]}
    lines[empty_side][1] = blank
    folder = _parallel(tmp_path / "c", "\n".join(lines["de"]) + "\n", "\n".join(lines["en"]) + "\n")
    full_side = "en" if empty_side == "de" else "de"
    with pytest.raises(DataError) as err:
        load_parallel_dir(folder, "de", "en")
    assert str(err.value) == (f"{folder / f'train.{empty_side}'} line 2 is empty but {folder / f'train.{full_side}'} "
                              "line 2 is not: every pair needs both sides (fill it in, or delete the line from both "
                              "files)")


def test_a_summarization_folder_is_checked_alike(tmp_path):
    folder = _parallel(tmp_path / "s", "a long text\nanother text\n", "text\n\n", ext=("src", "tgt"))
    with pytest.raises(DataError, match=r"train\.tgt line 2 is empty but .*train\.src line 2 is not"):
        get_corpus(folder, task="sum").load()


def test_both_sides_empty_on_the_same_line_is_not_a_one_sided_pair(tmp_path):
    folder = _parallel(tmp_path / "c", "eins\n\ndrei\n", "one\n\nthree\n")
    assert list(load_parallel_dir(folder, "de", "en")["train"]) == [("eins", "one"), ("", ""), ("drei", "three")]


def test_a_file_that_is_not_utf8_is_named_with_its_line(tmp_path):
    de = b"eins\nzwei\ndr\xe9i\n"  # "drei" with a latin-1 byte
    folder = _parallel(tmp_path / "c", de, "one\ntwo\nthree\n")
    with pytest.raises(DataError) as err:
        load_parallel_dir(folder, "de", "en")
    assert str(err.value) == f"{folder / 'train.de'} is not UTF-8 text (line 3, byte 12): convert it with iconv"
    with pytest.raises(DataError, match=r"train\.de is not UTF-8 text \(line 3, byte 12\)"):
        train_tokenizer([folder / "train.de"], tmp_path / "spm-60.model", TokenizerConfig(vocab_size=60))
    assert not (tmp_path / "spm-60.model").exists()


# ------------------------------------------------------------------------------------------ the command line
def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _merge_lines_10_11(path: Path) -> None:
    lines = path.read_text().split("\n")
    path.write_text("\n".join([*lines[:9], lines[9] + "\u2028" + lines[10], *lines[11:]]))


def _blank_line_5(path: Path) -> None:
    lines = path.read_text().split("\n")
    path.write_text("\n".join([*lines[:4], "", *lines[5:]]))


def _latin1_line_7(path: Path) -> None:
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join([*lines[:6], lines[6] + b" \xe9", *lines[7:]]))


@pytest.mark.parametrize("damage, file, expect", [
    (_merge_lines_10_11, "train.de", "train.de has 299 lines but {c}/train.en has 300: the sides must align"),
    (_blank_line_5, "train.en", "train.en line 5 is empty but {c}/train.de line 5 is not"),
    (_latin1_line_7, "train.en", "train.en is not UTF-8 text (line 7, byte "),
], ids=["u2028-hides-a-missing-line", "one-side-empty", "latin-1"])
def test_train_refuses_bad_corpora_in_one_line_with_exit_2(tmp_path, damage, file, expect):
    corpus = write_corpus(tmp_path / "c", n_train=300)
    damage(corpus / file)
    out = tmp_path / "run"
    code, stdout, err = _cli("train", "transformer", "--corpus", str(corpus), "--out", str(out), "--max-steps", "1")
    assert code == 2 and stdout == "", (code, stdout, err)
    assert err.startswith(f"error: {corpus}/") and err.count("\n") == 1 and "Traceback" not in err, err
    assert expect.format(c=corpus) in err, err
    assert not out.exists() and not list(corpus.glob("spm-*"))
