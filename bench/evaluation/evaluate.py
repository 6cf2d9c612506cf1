"""Evaluation of a trained run: sacreBLEU (BLEU, chrF) on detokenized output, validation NLL, perplexity.

Translation: beam search (beam 4, length penalty 1.0, as in the paper) or greedy over the test split and
its "test-clean" subset; hypotheses are decoded by the sentencepiece model (which restores the raw text)
and scored against the raw references with sacreBLEU's defaults (13a tokenization, mixed case); the full
signature string is stored beside every score. Validation NLL per target token (nats, fp32) is the primary
quality number of a short schedule, where BLEU is still near its floor. Language models: NLL per token on
the test split, perplexity per token and per word (words = whitespace tokens + one end-of-line per line).
Summarization (task ``sum``): the same decoding (beam and length penalty of the run's schedule, the same for
every family), summaries capped at ``bench.train.tasks.SUM_MAX_OUTPUT`` subwords, scored by ROUGE-1/2/L F1
(bench.evaluation.rouge, its settings string stored beside the scores) on test and test-clean.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sacrebleu
import torch
from sacrebleu.significance import PairedTest
from torch import nn

from bench.data import Tokenizer, get_corpus
from bench.data.plaintext import text_lines
from bench.errors import BenchError
from bench.evaluation.rouge import rouge, sentence_rouge
from bench.infra.atomic import write_files
from bench.latency.lock import SHARED, hold
from bench.train.batching import encode_parallel, encode_stream, lm_blocks
from bench.train.run_folder import load_checkpoint
from bench.train.tasks import SUM_MAX_OUTPUT, is_seq2seq
from bench.train.trainer import CHECKPOINT
from bench.train.validation import corpus_nll, sentence_nll
from models import create_model


def load_run(run_dir: Path) -> tuple[nn.Module, dict[str, Any], Tokenizer]:
    """(model in eval mode, run spec, tokenizer) from a run folder's checkpoint (weights_only=True)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BenchError(f"run folder {run_dir} does not exist")
    ck = load_checkpoint(run_dir / CHECKPOINT)
    spec = ck.get("spec")
    if not isinstance(spec, dict) or "model" not in spec:
        raise BenchError(f"{run_dir / CHECKPOINT} has no run description; it is not a litebench checkpoint")
    model = create_model(spec["model"], **spec["config"])
    model.load_state_dict(ck["model"])
    model.eval()
    tok_path = spec.get("tokenizer")
    if not tok_path or not Path(tok_path).exists():
        raise BenchError(f"the tokenizer of {run_dir} ({tok_path}) is missing; rebuild the corpus first")
    return model, spec, Tokenizer.load(Path(tok_path))


def bleu_chrf(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, Any]:
    """Corpus BLEU and chrF with sacreBLEU's defaults, and their signatures."""
    bleu, chrf = sacrebleu.BLEU(), sacrebleu.CHRF()
    b = bleu.corpus_score(list(hyps), [list(refs)])
    c = chrf.corpus_score(list(hyps), [list(refs)])
    return {
        "bleu": round(b.score, 4),
        "chrf": round(c.score, 4),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
        "n": len(hyps),
    }


def bleu_sentence_stats(hyps: Sequence[str], refs: Sequence[str]) -> list[list[int]]:
    """sacreBLEU's sufficient statistics per sentence (hypothesis and reference length, then matches and
    totals for 1- to 4-grams): corpus BLEU of any subset or resample is a function of their sum."""
    return [[int(v) for v in row] for row in sacrebleu.BLEU()._extract_corpus_statistics(list(hyps), [list(refs)])]


@torch.no_grad()
def translate(
    model: nn.Module,
    tok: Tokenizer,
    sources: Sequence[str],
    beam: int = 4,
    length_penalty: float = 1.0,
    batch: int = 32,
    max_len_a: float = 1.2,
    max_len_b: int = 10,
) -> list[str]:
    """Detokenized translations, in input order. Output length is capped at a*len(src)+b subwords (<= 200).

    Args:
        model: a sequence-to-sequence model.
        tok: the run's tokenizer.
        sources: the source sentences.
        beam: beam size (1: greedy).
        length_penalty: the beam search's length penalty.
        batch: sentences decoded per batch (sorted by length).
        max_len_a: ``a`` of the length cap.
        max_len_b: ``b`` of the length cap, in subwords.
    """
    cfg = model.config
    encoded = [np.asarray(tok.encode(s) + [tok.eos_id], dtype=np.int64) for s in sources]
    order = np.argsort([len(e) for e in encoded], kind="stable")
    out: list[str] = [""] * len(sources)
    for i in range(0, len(order), batch):
        idx = order[i : i + batch]
        width = max(len(encoded[j]) for j in idx)
        src = torch.full((len(idx), width), cfg.pad_id, dtype=torch.long)
        for row, j in enumerate(idx):
            src[row, : len(encoded[j])] = torch.from_numpy(encoded[j])
        max_len = min(200, int(max_len_a * width + max_len_b))
        hyps = model.generate(src, max_len=max_len, beam=beam, length_penalty=length_penalty)
        for row, j in enumerate(idx):
            ids = hyps[row].tolist()
            if cfg.eos_id in ids:
                ids = ids[: ids.index(cfg.eos_id)]
            out[j] = tok.decode([t for t in ids if t != cfg.pad_id])
    return out


def write_texts(files: Mapping[Path, str]) -> list[Path]:
    """Several UTF-8 text files all-or-nothing (bench.infra.atomic.write_files): none is replaced unless all were
    written in full."""
    return write_files({Path(path): (lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
                        for path, text in files.items()})


def check_sentence_limit(value: Any, what: str = "--max-sentences") -> int | None:
    """A sentence limit: None (every sentence) or an integer >= 1. Anything else is one clear line: 0 would
    score nothing, and a negative count, as a slice, all but the last sentences."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise BenchError(f"{what} must be an integer >= 1 (leave it out to score every sentence), got {value!r}")
    return int(value)


def score_test_splits(
    model: nn.Module, tok: Tokenizer, splits: dict[str, Any], beam: int, length_penalty: float,
    limit: int | None, batch: int, out_dir: Path | None = None, hyp_suffix: str = "", tgt_lang: str = "",
    task: str = "mt", pending: dict[Path, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """BLEU/chrF (``task="sum"``: ROUGE, summaries capped at SUM_MAX_OUTPUT subwords) of ``model`` on the test
    split and its test-clean subset (translated once: test-clean is a subset of test; a split with no pair among
    the first ``limit`` test sentences is not scored). With ``out_dir``, ``hyp.<split>.<hyp_suffix>`` and
    ``ref.<split>.<tgt_lang>``: written together once every split is scored, or, with ``pending``, added to it
    for the caller to write with its other outputs (nothing is replaced before the whole evaluation succeeded).

    Args:
        model: the model scored.
        tok: the run's tokenizer.
        splits: the corpus's splits (``test``, and ``test-clean`` when it has one).
        beam: beam size.
        length_penalty: the beam search's length penalty.
        limit: the first test sentences scored; None: all.
        batch: sentences decoded per batch.
        out_dir: where the hypotheses and references go; None: not written.
        hyp_suffix: the hypothesis files' suffix (``[<tag>.]beam<b>.<lang>``).
        tgt_lang: the reference files' language suffix.
        task: "mt" (BLEU/chrF) or "sum" (ROUGE).
        pending: path -> text to be written by the caller; None: written here.
    """
    limit = check_sentence_limit(limit)
    src, refs = splits["test"].src[:limit], splits["test"].tgt[:limit]
    cap = {"max_len_a": 0.0, "max_len_b": SUM_MAX_OUTPUT} if task == "sum" else {}
    hyps = translate(model, tok, src, beam=beam, length_penalty=length_penalty, batch=batch, **cap)
    by_pair = dict(zip(zip(src, refs), hyps))
    scores, files = {}, {}
    for split in ("test", "test-clean"):
        if split not in splits:
            continue
        pairs = [p for p in zip(splits[split].src, splits[split].tgt) if p in by_pair]
        if not pairs:  # a sentence limit can leave test-clean empty: a score of nothing would be a made-up one
            continue
        split_hyps = [by_pair[p] for p in pairs]
        if out_dir is not None:
            files[Path(out_dir) / f"hyp.{split}.{hyp_suffix}"] = "\n".join(split_hyps) + "\n"
            files[Path(out_dir) / f"ref.{split}.{tgt_lang}"] = "\n".join(r for _, r in pairs) + "\n"
        scores[split] = (rouge if task == "sum" else bleu_chrf)(split_hyps, [r for _, r in pairs])
    if pending is not None:
        pending.update(files)
    elif files:
        write_texts(files)
    return scores


def eval_settings(
    spec: dict[str, Any], beam: int | None = None, length_penalty: float | None = None,
    max_sentences: int | None = None, batch: int | None = None,
) -> tuple[int, float, int | None, int]:
    """(beam, length penalty, sentence limit, batch): the arguments given, else the run's schedule's.

    Args:
        spec: the run's spec (run.json), whose schedule gives the defaults.
        beam: beam size; None: the run's schedule's (eval_beam, else 4).
        length_penalty: the beam search's length penalty; None: the schedule's (eval_length_penalty, else 1.0).
        max_sentences: test sentences scored; None: the schedule's eval_sentences (None there: all).
        batch: sentences decoded per batch; None: the schedule's (eval_batch, else 32).
    """
    sched = spec.get("schedule", {})
    beam = beam if beam is not None else int(sched.get("eval_beam", 4))
    if beam < 1:
        raise BenchError(f"--beam must be >= 1, got {beam}")
    lp = length_penalty if length_penalty is not None else float(sched.get("eval_length_penalty", 1.0))
    if max_sentences is not None:
        limit = check_sentence_limit(max_sentences)
    else:
        limit = check_sentence_limit(sched.get("eval_sentences"), "the run's schedule's eval_sentences")
    return beam, lp, limit, batch or int(sched.get("eval_batch", 32))


@dataclass
class EvalContext:
    """What a model of one run is evaluated on, loaded once: the run's tokenizer, corpus splits, validation
    data and decoding settings (the arguments given, else the run's schedule's)."""

    spec: dict[str, Any]
    tok: Tokenizer
    corpus_name: str
    splits: dict[str, Any]
    valid: Any  # MTData, or LM (inputs, targets) blocks
    tgt_lang: str
    beam: int
    length_penalty: float
    limit: int | None
    batch: int

    @classmethod
    def for_run(cls, spec: dict[str, Any], tok: Tokenizer, beam: int | None = None,
                length_penalty: float | None = None, max_sentences: int | None = None,
                batch: int | None = None) -> EvalContext:
        """The context of a run: its corpus loaded, its validation data encoded, the decoding settings of
        :func:`eval_settings`.

        Args:
            spec: the run's spec (run.json).
            tok: the run's tokenizer.
            beam: beam size; None: the run's schedule's (eval_beam, else 4).
            length_penalty: the beam search's length penalty; None: the schedule's (eval_length_penalty, else 1.0).
            max_sentences: test sentences scored; None: the schedule's eval_sentences (None there: all).
            batch: sentences decoded per batch; None: the schedule's (eval_batch, else 32).
        """
        beam, lp, limit, batch = eval_settings(spec, beam, length_penalty, max_sentences, batch)
        corpus = get_corpus(spec["corpus"], task=spec["task"])
        splits = corpus.load()
        if is_seq2seq(spec["task"]):
            valid = encode_parallel(tok, splits["valid"].src, splits["valid"].tgt)
            tgt = str(corpus.tgt)
        else:
            valid = lm_blocks(encode_stream(tok, splits["valid"]), int(spec.get("schedule", {}).get("lm_block", 128)))
            tgt = ""
        return cls(spec, tok, corpus.name, splits, valid, tgt, beam, lp, limit, batch)


def evaluate_model(model: nn.Module, ctx: EvalContext, out_dir: Path | None = None,
                   tag: str | None = None, pending: dict[Path, str] | None = None) -> dict[str, Any]:
    """Score an in-memory model. Translation: ``valid_nll``, ``beam``, ``length_penalty``, then ``test`` and
    ``test_clean`` (each: bleu, chrf, their signatures, n; summarization: rouge1, rouge2, rougeL, rouge_settings,
    n); with ``out_dir`` the hypotheses are written as
    ``hyp.<split>.[<tag>.]beam<b>.<lang>`` and the references as ``ref.<split>.<lang>`` (with ``pending``: added to
    it, for the caller to write with its other outputs once everything succeeded). Language models:
    ``valid_nll``, ``test_nll``, ``ppl``, ``ppl_word``, ``test_tokens``.

    Args:
        model: the model scored.
        ctx: the run's evaluation context.
        out_dir: where the hypotheses and references go; None: not written.
        tag: inserted in the hypothesis file names (a compression stage); None: none.
        pending: path -> text to be written by the caller; None: written here.
    """
    tok = ctx.tok
    result: dict[str, Any] = {"valid_nll": corpus_nll(model, ctx.valid, tok.pad_id, tok.bos_id)}
    if is_seq2seq(ctx.spec["task"]):
        result.update({"beam": ctx.beam, "length_penalty": ctx.length_penalty})
        suffix = f"{tag + '.' if tag else ''}beam{ctx.beam}.{ctx.tgt_lang}"
        scores = score_test_splits(model, tok, ctx.splits, ctx.beam, ctx.length_penalty, ctx.limit, ctx.batch,
                                   out_dir, suffix, ctx.tgt_lang, task=ctx.spec["task"], pending=pending)
        result.update({split.replace("-", "_"): score for split, score in scores.items()})
    else:
        block = int(ctx.spec.get("schedule", {}).get("lm_block", 128))
        lines = ctx.splits["test"][: ctx.limit]
        stream = encode_stream(tok, lines)
        test = lm_blocks(stream, block)
        nll = corpus_nll(model, test, tok.pad_id, tok.bos_id)
        n_tokens = test[1].numel()
        words = sum(len(line.split()) + 1 for line in lines) * n_tokens / max(len(stream) - 1, 1)
        result.update({"test_nll": nll, "ppl": math.exp(nll), "ppl_word": math.exp(nll * n_tokens / words),
                       "test_tokens": n_tokens})
    return result


def evaluate_run(
    run_dir: Path,
    beam: int | None = None,
    length_penalty: float | None = None,
    max_sentences: int | None = None,
    batch: int | None = None,
) -> dict[str, Any]:
    """Score a run folder and write ``eval.json`` and the hypotheses beside its checkpoint, all together once
    everything is scored (a failure replaces none of them). Holds the machine lock shared (bench.latency.lock).

    Args:
        run_dir: the trained run folder.
        beam: beam size; None: the run's schedule's (eval_beam, else 4).
        length_penalty: the beam search's length penalty; None: the schedule's (eval_length_penalty, else 1.0).
        max_sentences: test sentences scored; None: the schedule's eval_sentences (None there: all).
        batch: sentences decoded per batch; None: the schedule's (eval_batch, else 32).
    """
    check_sentence_limit(max_sentences)  # before anything runs
    with hold(SHARED, what=f"evaluating {run_dir}"):
        return _evaluate_run(Path(run_dir), beam, length_penalty, max_sentences, batch)


def _evaluate_run(run_dir: Path, beam: int | None, length_penalty: float | None, max_sentences: int | None,
                  batch: int | None) -> dict[str, Any]:
    model, spec, tok = load_run(run_dir)
    ctx = EvalContext.for_run(spec, tok, beam, length_penalty, max_sentences, batch)
    result: dict[str, Any] = {"model": spec["model"], "seed": spec.get("seed"), "corpus": ctx.corpus_name}
    pending: dict[Path, str] = {}  # the hypotheses and references: written with eval.json, at the end
    result.update(evaluate_model(model, ctx, run_dir, pending=pending))
    # per validation sentence (a language model: per block), so that paired tests between runs re-run from the
    # record alone: the validation NLL (a bootstrap over sentences or blocks); translation and summarization
    # also keep the test hypotheses in test order and their BLEU statistics or ROUGE scores
    nll, counts = sentence_nll(model, ctx.valid, tok.pad_id, tok.bos_id)
    result["valid_sentence_nll"] = [round(v, 5) for v in nll]
    result["valid_sentence_tokens"] = counts
    if is_seq2seq(spec["task"]):
        suffix = f"beam{ctx.beam}.{ctx.tgt_lang}"
        hyps = text_lines(pending[run_dir / f"hyp.test.{suffix}"])
        refs = text_lines(pending[run_dir / f"ref.test.{ctx.tgt_lang}"])
        result["test"]["hypotheses"] = hyps
        if spec["task"] == "sum":  # per summary: [ROUGE-1, ROUGE-2, ROUGE-L] F1
            per = sentence_rouge(hyps, refs)
            result["test"]["rouge_sentences"] = [[round(v, 5) for v in row] for row in zip(*per.values())]
        else:
            result["test"]["bleu_stats"] = bleu_sentence_stats(hyps, refs)
    pending[run_dir / "eval.json"] = json.dumps(result, indent=2, default=str)
    write_texts(pending)
    return result


def _read_lines(path: Path) -> list[str]:
    """A text file's lines; a file that cannot be read or is not UTF-8 text (one cut off inside a character) is
    one clear line naming it."""
    try:
        return text_lines(path.read_text(encoding="utf-8"))  # "\n" alone ends a sentence, as the corpus reads
    except UnicodeDecodeError as exc:
        raise BenchError(f"{path} is not UTF-8 text (cut off or corrupt at byte {exc.start}); "
                         "re-run `python -m bench evaluate` on its run") from None
    except OSError as exc:
        raise BenchError(f"{path} cannot be read: {exc.strerror or exc}") from None


def _run_task(run: Path) -> str:
    """The task of a run folder's ``run.json`` ("mt" without one); a file that does not parse names itself."""
    spec = run / "run.json"
    if not spec.is_file():
        return "mt"
    try:
        raw = json.loads(spec.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise BenchError(f"{spec} is not UTF-8 text (cut off or corrupt at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise BenchError(f"{spec} is not valid JSON (cut off or corrupt: {exc.msg}, line {exc.lineno} column "
                         f"{exc.colno})") from None
    except OSError as exc:
        raise BenchError(f"{spec} cannot be read: {exc.strerror or exc}") from None
    if not isinstance(raw, dict):
        raise BenchError(f"{spec} holds a JSON {type(raw).__name__}, not a run description (an object)")
    task = raw.get("task", "mt")
    if not isinstance(task, str):
        raise BenchError(f"{spec}: 'task' must be a task name, got {task!r}")
    return task


_EVAL_HYP = re.compile(r"hyp\.[^.]+\.beam\d+\.[^.]*")  # evaluate's hypotheses (compress's carry a tag)


def paired_bootstrap(run_a: Path, run_b: Path, split: str = "test", n_samples: int = 1000) -> dict[str, Any]:
    """sacreBLEU's paired bootstrap resampling between the hypotheses of two evaluated runs (same split,
    same references): BLEU of each, its bootstrap mean and 95% interval (``ci95``: the half-width, as
    sacreBLEU reports ``mean ± ci``), and the p-value of the difference (B against A). Two runs whose
    hypotheses give the same BLEU statistics on every sentence (a run with itself) do not differ: ``identical``
    is true and the p-value 1.0 (sacreBLEU's formula would give its floor, 1/(n+1), for no difference at all).
    A file that does not read or parse, or hypotheses and references of different lengths, is one clear line
    naming the file.

    Args:
        run_a: the first evaluated translation run folder (A).
        run_b: the second (B, tested against A).
        split: the split whose hypotheses are compared: "test" or "test-clean".
        n_samples: bootstrap resamples.
    """
    hyps, refs = [], []
    for run in (Path(run_a), Path(run_b)):
        task = _run_task(run)
        if task != "mt":  # BLEU on summaries or a language model's text would mean nothing
            raise BenchError(f"{run} is a {task} run: this test compares translations' BLEU; the leaderboard's "
                             "pairwise table (`python -m bench report`) compares summarization and LM runs")
        files = sorted(f for f in run.glob(f"hyp.{split}.beam*.*") if _EVAL_HYP.fullmatch(f.name))
        if len(files) > 1:
            raise BenchError(f"{run} has hypotheses from several beams ({', '.join(f.name for f in files)}); "
                             "keep one, or compare run folders evaluated once")
        ref_files = sorted(run.glob(f"ref.{split}.*"))
        if not files or not ref_files:
            raise BenchError(f"{run} has no hypotheses for {split}; run `python -m bench evaluate {run}` first")
        hyp, ref = _read_lines(files[0]), _read_lines(ref_files[0])
        if len(hyp) != len(ref):
            raise BenchError(f"{files[0]} holds {len(hyp)} hypotheses but {ref_files[0]} {len(ref)} references: one "
                             f"of them is cut off; re-run `python -m bench evaluate {run}`")
        if not ref:
            raise BenchError(f"{ref_files[0]} is empty: nothing to compare; re-run `python -m bench evaluate {run}`")
        hyps.append(hyp)
        refs.append(ref)
    if refs[0] != refs[1]:
        raise BenchError(f"the two runs were scored against different {split} references")
    test = PairedTest([("a", hyps[0]), ("b", hyps[1])], {"BLEU": sacrebleu.BLEU()}, [refs[0]], test_type="bs",
                      n_samples=n_samples)
    _, scores = test()
    a, b = scores["BLEU"][0], scores["BLEU"][1]
    identical = bleu_sentence_stats(hyps[0], refs[0]) == bleu_sentence_stats(hyps[1], refs[0])
    return {
        "split": split,
        "a": {"run": str(run_a), "bleu": a.score, "mean": a.mean, "ci95": _ci95(a)},
        "b": {"run": str(run_b), "bleu": b.score, "mean": b.mean, "ci95": _ci95(b)},
        "p_value": 1.0 if identical else b.p_value,
        "identical": identical,
        "n_samples": n_samples,
    }


def _ci95(result: Any) -> list[float] | None:
    """sacreBLEU's bootstrap mean +- its 95% half-width, as [low, high]."""
    if getattr(result, "mean", None) is None or getattr(result, "ci", None) is None:
        return None
    return [float(result.mean - result.ci), float(result.mean + result.ci)]
