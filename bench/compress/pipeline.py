"""The compression pipeline: a trained run -> fp32, int8 and pruned (+ fine-tuned) stages, each measured.

Every stage is saved (bench.compress.sizes), evaluated with bench.evaluation.evaluate's protocol and key layout (the
same evaluator as ``python -m bench evaluate``: validation NLL, sacreBLEU BLEU/chrF on the test split and its
test-clean subset, the run's beam) and timed with bench.latency (forward and translate, batch 1, at 1 thread
and at all cores, in this process). ``choose_sparsity`` picks the largest sparsity whose pruned model keeps its
validation NLL within ``max_nll_increase`` nats of fp32 (criterion ``valid_nll``, the default: it binds even
where BLEU is too low to move), or its BLEU within ``max_bleu_drop`` (criterion ``bleu``), always on the
validation split (never the test split).
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.compress.pruning import (
    check_scope,
    check_sparsity,
    check_tokens,
    finetune_masked,
    measure_sparsity,
    prune_model,
)
from bench.compress.quantization import check_quantize, quantize_int8
from bench.compress.sizes import (
    BASE_SHAPE,
    MB,
    compression_ratio,
    load_compressed,
    save_compressed,
    sparse_int8_size,
    transformer_base_size,
)
from bench.compress.tags import human_tokens, stage_tag
from bench.cost.params import count_params
from bench.data import Tokenizer
from bench.errors import BenchError
from bench.evaluation.evaluate import (
    EvalContext,
    bleu_chrf,
    check_sentence_limit,
    evaluate_model,
    load_run,
    translate,
)
from bench.infra.atomic import write_files
from bench.latency import all_cores, check_threads, measure_latency
from bench.latency.lock import SHARED, holding
from bench.train.trainer import CHECKPOINT
from bench.train.validation import corpus_nll, subset

DEFAULT_CANDIDATES = (0.1, 0.2, 0.3, 0.4, 0.5)


CRITERIA = ("valid_nll", "bleu")


def valid_nll(model: nn.Module, ctx: EvalContext, max_sentences: int | None = None) -> float:
    """NLL per target token (nats) on the first ``max_sentences`` of the validation split (all by default).

    Args:
        model: the model scored.
        ctx: the run's evaluation context (tokenizer, splits).
        max_sentences: validation sentences used; None: all.
    """
    return corpus_nll(model, subset(ctx.valid, max_sentences), ctx.tok.pad_id, ctx.tok.bos_id)


def valid_bleu(model: nn.Module, ctx: EvalContext, max_sentences: int | None = None) -> dict[str, Any]:
    """BLEU/chrF on the first ``max_sentences`` of the validation split (all by default), the run's beam.

    Args:
        model: the model scored.
        ctx: the run's evaluation context (tokenizer, splits, beam).
        max_sentences: validation sentences decoded; None: all.
    """
    src = ctx.splits["valid"].src[:max_sentences]
    refs = ctx.splits["valid"].tgt[:max_sentences]
    hyps = translate(model, ctx.tok, src, beam=ctx.beam, length_penalty=ctx.length_penalty, batch=ctx.batch)
    return bleu_chrf(hyps, refs)


# ============================================================================================ latency
def measure_stage_latency(model: nn.Module, threads: Sequence[int | str | None] = (1, "all"),
                          workloads: Sequence[str] = ("forward", "translate"), name: str | None = None,
                          **timing: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``bench.latency.measure_latency`` of each workload at each thread count (batch 1, CPU, fp32 activations
    outside the int8 matmuls). Returns the flat keys ``<workload>_<p50|p90>_ms_t<threads>`` (+ ``threads_all``)
    and the full records without their raw samples. ``timing``: warmup, min_runs, min_time_s.

    Args:
        model: the stage's model.
        threads: thread counts ("all": every core this process may use).
        workloads: the workloads timed.
        name: the model's name in the records.
    """
    flat: dict[str, Any] = {}
    records, warns = [], []
    for th in threads:
        n = check_threads(th)
        for workload in workloads:
            m = measure_latency(model, workload, threads=n, gemm=False, memory=False, name=name, **timing)
            suffix = f"t{m.threads}"
            flat[f"{workload}_p50_ms_{suffix}"] = m.p50_ms
            flat[f"{workload}_p90_ms_{suffix}"] = m.p90_ms
            if m.warning:
                warns.append(f"{workload} {suffix}: {m.warning}")
            rec = m.to_dict()
            rec.pop("samples_ms", None)
            records.append(rec)
    flat["threads_all"] = all_cores()
    flat["latency_warning"] = " | ".join(warns) or None
    return flat, records


# ============================================================================================ stages
def _load_mt_run(run_dir: Path) -> tuple[nn.Module, dict[str, Any], Tokenizer]:
    run_dir = Path(run_dir)
    if run_dir.is_dir() and not (run_dir / CHECKPOINT).exists():
        raise BenchError(f"{run_dir} has no {CHECKPOINT}; train it first (python -m bench train ... --out {run_dir})")
    model, spec, tok = load_run(run_dir)
    if spec.get("task") != "mt":
        raise BenchError(f"{run_dir} is a {spec.get('task')} run; compress measures BLEU and supports translation "
                         "runs only")
    return model, spec, tok


_EVAL_HYP = re.compile(r"hyp\.[^.]+\.beam\d+\.[^.]*")  # evaluate's hypotheses; a stage's carry its tag


def _check_out_dir(out: Path, run_dir: Path, spec: dict[str, Any] | None = None) -> None:
    """Refuse an output folder whose files compression would replace without having written them: a run folder
    (its evaluation's ``ref.<split>.<lang>`` files are named as a stage's), a folder that holds an evaluation
    (``eval.json``, evaluate's ``hyp.<split>.beam<b>.<lang>``), or the compression of another run (its
    ``compress.json``). The same run's earlier compression in the same folder is replaced."""
    out = Path(out)
    where = "give another --out (default: RUN_DIR/compress-<stage>)"
    if out.exists() and not out.is_dir():
        raise BenchError(f"--out {out} is a file, not a folder; {where}")
    if not out.is_dir():
        return
    if (out / CHECKPOINT).exists():
        raise BenchError(f"--out {out} is a run folder (it holds {CHECKPOINT}): compression would replace its "
                         f"evaluation's reference files; {where}")
    evaluation = sorted(p.name for p in out.iterdir() if p.name == "eval.json" or _EVAL_HYP.fullmatch(p.name))
    if evaluation:
        raise BenchError(f"--out {out} holds an evaluation ({', '.join(evaluation)}): compression would replace "
                         f"its reference files; {where}")
    record = out / "compress.json"
    if not record.exists():
        return
    try:
        old = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BenchError(f"--out {out}: {record} cannot be read or parsed ({type(exc).__name__}); it is not this "
                         f"run's compression; {where}, or remove it") from None
    same = isinstance(old, dict) and Path(str(old.get("run_dir"))).resolve() == Path(run_dir).resolve()
    if same and spec is not None:
        same = (old.get("model"), old.get("seed")) == (spec.get("model"), spec.get("seed"))
    if not same:
        other = old.get("run_dir") if isinstance(old, dict) else None
        raise BenchError(f"--out {out} holds the compression of another run ({other or 'unknown'}); {where}")


def _stage(model: nn.Module, tag: str, *, spec: dict[str, Any], ctx: EvalContext, out_dir: Path,
           meta: dict[str, Any], fp32_counts: dict[str, int], threads: Sequence[int | str | None],
           latency: bool, timing: Mapping[str, Any], latency_records: dict[str, Any],
           pending: dict[Path, str], staged: dict[Path, Path]) -> dict[str, Any]:
    path = out_dir / f"model-{tag}.pt"
    staged[path] = out_dir / f".{path.name}.staged"  # hidden; moved to ``path`` with the other outputs at the end
    disk = save_compressed(model, staged[path], spec, {**meta, "tag": tag})
    model, _ = load_compressed(staged[path])  # what is measured is what the file holds
    sparse = sparse_int8_size(model, meta.get("qscheme", "per_channel"))
    sp = measure_sparsity(model)
    cfg = spec["config"]
    rec: dict[str, Any] = {
        "stage": "compress",
        "model": spec["model"],
        "seed": spec.get("seed"),
        "compression": tag,
        "quantize": meta.get("quantize") or "none",
        "qscheme": meta.get("qscheme") if meta.get("quantize") else None,
        "prune_target": meta.get("prune") or 0.0,
        "prune_scope": meta.get("prune_scope") if meta.get("prune") else None,
        "finetune_tokens": meta.get("finetune_tokens"),
        "sparsity": sp["sparsity"],
        "pruned_set_weights": sp["weights"],
        "file": str(path),
        "size_bytes_disk": disk,
        "size_mb_disk": disk / MB,
        "size_bytes_sparse_int8": sparse["bytes"],
        "size_mb_sparse_int8": sparse["bytes"] / MB,
        "size_mb_sparse_int8_no_emb": sparse["bytes_no_emb"] / MB,
        "size_mb_fp32_params": 4 * fp32_counts["params_total"] / MB,
        "size_mb_fp32_params_no_emb": 4 * fp32_counts["params"] / MB,
        "sparse_int8_schemes": ", ".join(f"{k}: {v}" for k, v in sorted(sparse["schemes"].items())),
        "compression_ratio": compression_ratio(disk, cfg),
        "compression_ratio_sparse_int8": compression_ratio(sparse["bytes"], cfg),
        "compression_ratio_no_emb": compression_ratio(sparse["bytes_no_emb"], cfg, include_embeddings=False),
    }
    rec.update(evaluate_model(model, ctx, out_dir, tag, pending=pending))  # written with compress.json
    if latency:
        flat, records = measure_stage_latency(model, threads, name=f"{spec['model']} {tag}", **timing)
        rec.update(flat)
        latency_records[tag] = records
    return rec


@holding(SHARED, "compression")
def compress_run(
    run_dir: Path | str,
    quantize: str | None = "int8",
    prune: float | str | None = None,
    prune_scope: str = "global",
    finetune_tokens: int | None = None,
    out_dir: Path | str | None = None,
    threads: Sequence[int | str | None] = (1, "all"),
    *,
    qscheme: str = "per_channel",
    beam: int | None = None,
    length_penalty: float | None = None,
    max_sentences: int | None = None,
    latency: bool = True,
    timing: Mapping[str, Any] | None = None,
    finetune_lr: float | None = None,
    candidates: Sequence[float] = DEFAULT_CANDIDATES,
    max_bleu_drop: float = 0.5,
    choose_sentences: int | None = None,
    progress: bool = False,
    criterion: str = "valid_nll",
    max_nll_increase: float = 0.05,
) -> dict[str, Any]:
    """Compress a trained run folder and measure every stage (module docstring): "fp32", then "int8" (with
    ``quantize``), then the pruned model ("int8+prune0.30", or "prune0.30" without ``quantize``) when
    ``prune`` is given; ``prune="auto"`` picks the sparsity with :func:`choose_sparsity` on the validation
    split. Each stage's model goes to ``out_dir/model-<tag>.pt`` (default ``RUN_DIR/compress-<final tag>``),
    everything to ``out_dir/compress.json`` (with the stages' hypotheses and references, all at the end; an
    ``out_dir`` that holds a run, an evaluation or another run's compression is refused before anything runs,
    see :func:`_check_out_dir`). Returns that dict: ``stages`` (one flat record per stage, the
    leaderboard's compress rows), ``settings``, ``choice``, ``finetune``, ``transformer_base``, ``latency``.
    Holds the machine lock shared, and exclusively while it times a stage (bench.latency.lock).

    Args:
        run_dir: the trained translation run folder.
        quantize: "int8", or None: no quantization.
        prune: the sparsity in (0, 1), "auto" (:func:`choose_sparsity`), or None: no pruning.
        prune_scope: "global" (one ranking over all weights) or "layer" (per tensor).
        finetune_tokens: target tokens of fine-tuning with the mask held, after pruning; None: none.
        out_dir: the output folder; None: RUN_DIR/compress-<final tag>.
        threads: thread counts each stage is timed at ("all": every core).
        qscheme: int8 weight scales: "per_channel" or "per_tensor".
        beam: beam size; None: the run's.
        length_penalty: None: the run's.
        max_sentences: test sentences scored; None: all.
        latency: time each stage (False: sizes and quality only).
        timing: warmup, min_runs, min_time_s of each timing; None: the defaults.
        finetune_lr: fine-tuning peak learning rate; None: a tenth of the run's.
        candidates: the sparsities ``prune="auto"`` tries, in increasing order.
        max_bleu_drop: BLEU points a candidate may lose (criterion "bleu").
        choose_sentences: validation sentences the choice scores; None: all.
        progress: show fine-tuning progress bars.
        criterion: what the choice holds: "valid_nll" or "bleu".
        max_nll_increase: nats of validation NLL a candidate may add (criterion "valid_nll").
    """
    quantize = check_quantize(quantize)
    scope = check_scope(prune_scope)
    auto = isinstance(prune, str) and prune.strip().lower() == "auto"
    sparsity = None if auto or prune is None else check_sparsity(prune)
    if sparsity == 0.0:
        sparsity = None
    ft_tokens = check_tokens(finetune_tokens)
    if ft_tokens and sparsity is None and not auto:
        raise BenchError("--finetune-tokens fine-tunes a pruned model with its mask held; give --prune too")
    if quantize is None and sparsity is None and not auto:
        raise BenchError("nothing to compress: give --quantize int8, --prune SPARSITY (or auto), or both")
    allowed = _allowed(criterion, max_bleu_drop, max_nll_increase)
    check_sentence_limit(max_sentences)
    check_sentence_limit(choose_sentences, "choose_sentences")
    timing = dict(timing or {})

    model, spec, tok = _load_mt_run(Path(run_dir))
    if out_dir is not None:  # before anything runs (the default folder is the run's own compress-<stage>)
        _check_out_dir(Path(out_dir), Path(run_dir), spec)
    ctx = EvalContext.for_run(spec, tok, beam, length_penalty, max_sentences)
    choice = None
    if auto:
        choice = _choose(model, spec, ctx, candidates, criterion, allowed, quantize, scope, ft_tokens, finetune_lr,
                         choose_sentences, Path(out_dir or Path(run_dir) / "compress-choose"), progress, qscheme)
        sparsity = choice["sparsity"]
        if sparsity is None and quantize is None:
            raise BenchError(f"prune auto: no candidate sparsity kept {criterion} within {allowed} of fp32 on the "
                             "validation split, and no quantization was asked for")
    final = stage_tag(quantize, sparsity, scope, ft_tokens if sparsity else None)
    out = Path(out_dir) if out_dir else Path(run_dir) / f"compress-{final}"
    out.mkdir(parents=True, exist_ok=True)

    counts = count_params(model)
    # every output (the stages' model files, hypotheses and references, compress.json) is moved into place at the
    # end, all together: a failing stage replaces none of what an earlier compression left in ``out``
    pending: dict[Path, str] = {}
    staged: dict[Path, Path] = {}
    common = dict(spec=spec, ctx=ctx, out_dir=out, fp32_counts=counts, threads=threads, latency=latency,
                  timing=timing, pending=pending, staged=staged)
    latency_records: dict[str, Any] = {}
    try:
        stages = [_stage(model, "fp32", meta={"quantize": None}, latency_records=latency_records, **common)]
        if quantize:
            qmodel = quantize_int8(model, qscheme)
            stages.append(_stage(qmodel, stage_tag(quantize, None), meta={"quantize": quantize, "qscheme": qscheme},
                                 latency_records=latency_records, **common))
            del qmodel
        ft_summary = None
        if sparsity:
            pruned = copy.deepcopy(model)
            masks = prune_model(pruned, sparsity, scope)
            if ft_tokens:
                ft_summary = finetune_masked(pruned, spec, tok, masks, ft_tokens, out / "finetune", finetune_lr,
                                             progress)
                pruned.eval()
            target = quantize_int8(pruned, qscheme) if quantize else pruned
            meta = {"quantize": quantize, "qscheme": qscheme, "prune": sparsity, "prune_scope": scope,
                    "finetune_tokens": ft_summary["train_tokens"] if ft_summary else None}
            stages.append(_stage(target, final, meta=meta, latency_records=latency_records, **common))
    except BaseException:
        _discard(staged)
        raise
    result = {
        "run_dir": str(run_dir),
        "out_dir": str(out),
        "model": spec["model"],
        "seed": spec.get("seed"),
        "settings": {"quantize": quantize, "qscheme": qscheme if quantize else None, "prune": sparsity,
                     "prune_auto": auto, "prune_scope": scope, "finetune_tokens": ft_tokens,
                     "finetune_lr": ft_summary["lr"] if ft_summary else None, "beam": ctx.beam,
                     "length_penalty": ctx.length_penalty, "test_sentences": ctx.limit,
                     "threads": [str(t) for t in threads] if latency else [], "torch": torch.__version__,
                     "quantized_engine": torch.backends.quantized.engine},
        "stages": stages,
        "choice": choice,
        "finetune": ft_summary,
        "transformer_base": {**transformer_base_size(spec["config"]), **BASE_SHAPE},
        "latency": latency_records,
    }
    pending[out / "compress.json"] = json.dumps(result, indent=2, default=str)
    try:
        write_files({**{path: (lambda tmp, src=src: os.replace(src, tmp)) for path, src in staged.items()},
                     **{path: (lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
                        for path, text in pending.items()}})
    finally:
        _discard(staged)
    return result


def _discard(staged: Mapping[Path, Path]) -> None:
    """Remove the staged model files that were not moved into place."""
    for src in staged.values():
        src.unlink(missing_ok=True)


# ============================================================================================ sparsity choice
def _allowed(criterion: str, max_bleu_drop: float, max_nll_increase: float) -> float:
    if criterion not in CRITERIA:
        raise BenchError(f"prune criterion {criterion!r} is not valid; valid: {', '.join(CRITERIA)}")
    allowed = max_bleu_drop if criterion == "bleu" else max_nll_increase
    name = "max_bleu_drop" if criterion == "bleu" else "max_nll_increase"
    if not math.isfinite(allowed) or allowed < 0:
        raise BenchError(f"{name} must be >= 0, got {allowed}")
    return allowed


def _choose(model: nn.Module, spec: dict[str, Any], ctx: EvalContext, candidates: Sequence[float],
            criterion: str, allowed: float, quantize: str | None, scope: str, finetune_tokens: int | None,
            finetune_lr: float | None, max_sentences: int | None, out_dir: Path,
            progress: bool, qscheme: str = "per_channel") -> dict[str, Any]:
    max_sentences = check_sentence_limit(max_sentences, "the validation sentence limit")
    cands = sorted({check_sparsity(c, "candidate") for c in candidates} - {0.0})
    if not cands:
        raise BenchError("choose_sparsity needs at least one candidate sparsity in (0, 1)")

    def score(m: nn.Module) -> dict[str, Any]:
        if criterion == "bleu":
            return valid_bleu(m, ctx, max_sentences)
        return {"valid_nll": valid_nll(m, ctx, max_sentences)}

    ref = score(model)
    tried, chosen = [], None
    for s in cands:
        pruned = copy.deepcopy(model)
        masks = prune_model(pruned, s, scope)
        if finetune_tokens:
            finetune_masked(pruned, spec, ctx.tok, masks, finetune_tokens, out_dir / f"choose-{s:.2f}", finetune_lr,
                            progress)
            pruned.eval()
        target = quantize_int8(pruned, qscheme) if quantize else pruned
        got = score(target)
        if criterion == "bleu":
            loss = ref["bleu"] - got["bleu"]
            entry = {"sparsity": s, "bleu": got["bleu"], "chrf": got["chrf"], "bleu_drop": loss}
        else:
            loss = got["valid_nll"] - ref["valid_nll"]
            entry = {"sparsity": s, "valid_nll": got["valid_nll"], "nll_increase": loss}
        ok = loss <= allowed
        tried.append({**entry, "ok": ok})
        if not ok:
            break
        chosen = s
    n = len(ctx.splits["valid"].src[:max_sentences])
    out = {
        "sparsity": chosen,
        "criterion": criterion,
        "split": "valid",
        "valid_sentences": n,
        "reference": "fp32",
        "allowed": allowed,
        "pipeline": "+".join([*([quantize] if quantize else []), "prune<s>" + ("-layer" if scope == "layer" else ""),
                              *([f"ft{human_tokens(finetune_tokens)}"] if finetune_tokens else [])]),
        "rule": f"candidates in increasing order; the last one before the first whose {criterion} loss against "
                "fp32 exceeds the allowed one (None when the smallest already does)",
        "candidates": tried,
    }
    if criterion == "bleu":
        out.update(reference_bleu=ref["bleu"], bleu_signature=ref["bleu_signature"], max_bleu_drop=allowed)
    else:
        out.update(reference_valid_nll=ref["valid_nll"], max_nll_increase=allowed)
    return out


def choose_sparsity(
    run_dir: Path | str,
    candidates: Sequence[float] = DEFAULT_CANDIDATES,
    max_bleu_drop: float = 0.5,
    *,
    criterion: str = "valid_nll",
    max_nll_increase: float = 0.05,
    quantize: str | None = "int8",
    qscheme: str = "per_channel",
    prune_scope: str = "global",
    finetune_tokens: int | None = None,
    finetune_lr: float | None = None,
    max_sentences: int | None = None,
    beam: int | None = None,
    out_dir: Path | str | None = None,
) -> dict[str, Any]:
    """The largest candidate sparsity whose pruned (+ int8, + fine-tuned when asked) model keeps its validation
    quality (never the test split's); candidates in increasing order, stopping at the first failure. Returns
    ``sparsity`` (None when even the smallest fails) and every candidate's score and loss against fp32.

    Args:
        run_dir: the trained translation run.
        candidates: the sparsities tried, each in (0, 1).
        max_bleu_drop: BLEU a candidate may lose (``criterion="bleu"``).
        criterion: "valid_nll" (the default) or "bleu", both on the validation split.
        max_nll_increase: validation NLL a candidate may add, nats (``criterion="valid_nll"``).
        quantize: "int8" (each candidate quantized too) or None.
        qscheme: the int8 scheme (per_channel or per_tensor).
        prune_scope: "global" (one threshold) or "layer" (each layer alike).
        finetune_tokens: target tokens of fine-tuning after pruning, mask held; None: none.
        finetune_lr: the fine-tuning's peak rate (None: the run's recipe).
        max_sentences: the first N validation sentences scored (None: all).
        beam: the beam size (None: the run's schedule's).
        out_dir: where the candidates go (default RUN_DIR/compress-choose).
    """
    quantize = check_quantize(quantize)
    scope = check_scope(prune_scope)
    ft = check_tokens(finetune_tokens)
    allowed = _allowed(criterion, max_bleu_drop, max_nll_increase)
    model, spec, tok = _load_mt_run(Path(run_dir))
    ctx = EvalContext.for_run(spec, tok, beam)
    out = Path(out_dir) if out_dir else Path(run_dir) / "compress-choose"
    return _choose(model, spec, ctx, candidates, criterion, allowed, quantize, scope, ft, finetune_lr,
                   max_sentences, out, False, qscheme)

