"""Short-schedule training: one recipe for every model of a comparison.

Token-count batches bucketed by length; Adam (0.9, 0.98); linear warm-up then cosine (over the token
budget) or inverse-sqrt decay; label-smoothed cross-entropy (0.1); gradient clipping; the family's own
dropout; fp32 or bf16 autocast; stops at max_tokens (target tokens seen; or stop_tokens, a truncated run),
max_steps or max_time, whichever comes first; validation NLL on a schedule; atomic checkpoints with exact
resume; a JSONL log; `torchrun` (DDP: gloo on CPU, nccl on GPU) splits every global batch between the
processes.

A run folder holds: run.json (what was trained: model, config, corpus, tokenizer, schedule, seed),
checkpoint.pt (weights, optimizer, position in the data, RNG), train.jsonl (the log), train.json (summary).
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from bench.data import DataError, Tokenizer, get_corpus
from bench.data.tokenizer import TokenizerConfig, get_tokenizer_capped
from bench.errors import BenchError
from bench.infra.atomic import save_torch as atomic_save
from bench.infra.atomic import write_text as atomic_write_text
from bench.latency.lock import SHARED, hold
from bench.train.batching import (
    collate_mt,
    encode_parallel,
    encode_stream,
    epoch_order,
    lm_batches,
    lm_blocks,
    token_batches,
)
from bench.train.run_folder import (
    corpus_digest,
    differences,
    folder_lock,
    load_checkpoint,
    tokenizer_digest,
    trim_log,
)
from bench.train.schedules import Schedule
from bench.train.tasks import is_seq2seq, model_task
from bench.train.validation import (  # noqa: F401 (re-exported: the loss is also what validation measures)
    corpus_nll,
    label_smoothed_nll,
    sentence_nll,
    subset,
    unigram_entropy,
)
from models import create_model

CHECKPOINT = "checkpoint.pt"


# ----------------------------------------------------------------------------------------------- helpers
def learning_rate(s: Schedule, step: int, tokens: int, warmup_tokens: int = 0) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine from the peak to ``min_lr`` over what remains of the
    token budget after warm-up (``warmup_tokens`` were seen during it; the step budget when there is no token
    budget), or inverse square root.

    Args:
        s: the schedule (lr, min_lr, warmup_steps, decay, its budgets).
        step: optimizer steps taken.
        tokens: target tokens seen.
        warmup_tokens: target tokens seen during warm-up.
    """
    if step < s.warmup_steps:
        return s.lr * (step + 1) / s.warmup_steps
    if s.decay == "inverse_sqrt":
        return s.lr * math.sqrt(s.warmup_steps / (step + 1))
    if s.max_tokens:
        progress = (tokens - warmup_tokens) / max(s.max_tokens - warmup_tokens, 1)
    elif s.max_steps:
        progress = (step - s.warmup_steps) / max(s.max_steps - s.warmup_steps, 1)
    else:
        progress = 0.0
    return s.min_lr + 0.5 * (s.lr - s.min_lr) * (1 + math.cos(math.pi * min(1.0, max(0.0, progress))))


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# ------------------------------------------------------------------------------------------------- data
@dataclass
class TaskData:
    """The tokenized splits a run trains and validates on."""

    task: str
    tokenizer: Tokenizer
    train: Any  # MTData or (inputs, targets) blocks
    valid: Any
    corpus_name: str
    corpus_manifest: dict | None = None
    vocab_note: str | None = None  # set when the corpus was too small for the vocabulary asked for
    corpus_sha256: str | None = None  # the content of every split file (bench.train.run_folder.corpus_digest)


def load_task_data(
    corpus: str | Path, task: str, schedule: Schedule, vocab_size: int = 8000, cache_dir: Path | None = None
) -> TaskData:
    """The corpus's splits and its tokenizer, encoded for ``task`` as ``schedule`` says.

    Args:
        corpus: a corpus name or folder.
        task: mt, lm or sum.
        schedule: its max_len caps training pairs; its lm_block sizes language-model blocks.
        vocab_size: the subword vocabulary asked for (capped where the corpus is too small).
        cache_dir: where built-in corpora are built; None: the default.
    """
    kw = {"cache_dir": cache_dir} if cache_dir else {}
    corp = get_corpus(corpus, task=task, **kw)
    if corp.task != task:
        raise BenchError(f"corpus {corpus} is a {corp.task} corpus, not {task}")
    splits = corp.load()  # before the tokenizer: a broken corpus is reported as such, not as a vocabulary error
    tok, note = get_tokenizer_capped(corp, TokenizerConfig(vocab_size=vocab_size))
    if is_seq2seq(task):  # translation, summarization
        train = encode_parallel(tok, splits["train"].src, splits["train"].tgt, schedule.max_len)
        valid = encode_parallel(tok, splits["valid"].src, splits["valid"].tgt)
        if len(train) == 0:
            raise DataError(f"corpus {corp.name}: no training pair is at most {schedule.max_len} subwords long")
    else:
        train = lm_blocks(encode_stream(tok, splits["train"]), schedule.lm_block)
        valid = lm_blocks(encode_stream(tok, splits["valid"]), schedule.lm_block)
        if len(train[0]) == 0:
            raise DataError(f"corpus {corp.name}: the train split is shorter than one {schedule.lm_block}-token block")
    # a built-in name, or the folder's absolute path, so that evaluation finds the same corpus again
    spec = str(corpus) if str(corpus) == corp.name else str(Path(corpus).resolve())
    return TaskData(task, tok, train, valid, spec, corp.manifest, note, corpus_digest(corp.paths))


@dataclass
class TrainState:
    step: int = 0
    epoch: int = 0
    batch_index: int = 0  # position within the epoch's batch order
    tokens: int = 0  # target tokens seen, all processes together
    warmup_tokens: int = 0  # target tokens seen by the end of warm-up (where the cosine starts)
    wall_s: float = 0.0
    valid_nll: float | None = None
    history: list[dict] = field(default_factory=list)


class Trainer:
    def __init__(
        self,
        model_name: str,
        config: dict[str, Any],
        data: TaskData,
        schedule: Schedule,
        seed: int,
        out_dir: Path,
        progress: bool = True,
        device: str = "cpu",
    ) -> None:
        self.rank, self.world = _rank_world()
        self.model_name, self.data, self.schedule, self.seed = model_name, data, schedule, seed
        self.out_dir, self.progress, self.device = Path(out_dir), progress and self.rank == 0, torch.device(device)
        tok = data.tokenizer
        if config.get("task", model_task(data.task)) != model_task(data.task):
            raise BenchError(f"the model config is for task {config['task']!r} but the corpus is {data.task!r}")
        self.config = {
            **config,
            "task": model_task(data.task),
            "vocab_size": tok.vocab_size,
            "tgt_vocab_size": None,
            "bos_id": tok.bos_id,
            "pad_id": tok.pad_id,
            "eos_id": tok.eos_id,
            "unk_id": tok.unk_id,
        }
        torch.manual_seed(seed)
        self.model = create_model(model_name, **self.config).to(self.device)
        self.net: nn.Module = self.model
        if self.world > 1:
            self.net = nn.parallel.DistributedDataParallel(self.model)
        s = schedule
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=s.lr, betas=s.betas, eps=s.eps, weight_decay=s.weight_decay, fused=True
        )
        self.state = TrainState()
        if is_seq2seq(data.task):
            self.batches = token_batches(data.train, s.batch_tokens, seed)
        else:
            self.batches = lm_batches(len(data.train[0]), s.batch_tokens, s.lm_block)
        self.pad = tok.pad_id
        self._stop_requested = False
        self.resumed_from_step: int | None = None  # the checkpoint's step when run() resumed one
        self.resumed_from_steps: list[int] = []  # every resume of this run, in order (a long run may stop often)

    # ------------------------------------------------------------------ run folder
    def spec(self) -> dict[str, Any]:
        tok = self.data.tokenizer
        return {
            "model": self.model_name,
            "config": self.model.config.to_dict(),
            "task": self.data.task,
            "corpus": self.data.corpus_name,
            "corpus_sha256": self.data.corpus_sha256,
            "tokenizer": str(tok.path) if tok.path else None,
            "tokenizer_sha256": tokenizer_digest(tok),
            "vocab_size": tok.vocab_size,
            "schedule": self.schedule.to_dict(),
            "seed": self.seed,
            "world_size": self.world,
        }

    def save(self) -> None:
        if self.rank != 0:
            return
        st = self.state
        atomic_save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "state": {
                    k: getattr(st, k) for k in ("step", "epoch", "batch_index", "tokens", "warmup_tokens", "wall_s")
                },
                "valid_nll": st.valid_nll,
                "rng": torch.get_rng_state(),
                **({"cuda_rng": torch.cuda.get_rng_state_all()} if self.device.type == "cuda" else {}),
                "spec": json.loads(json.dumps(self.spec())),
                "resumed_from_steps": list(self.resumed_from_steps),
            },
            self.out_dir / CHECKPOINT,
        )

    def restore(self, path: Path) -> None:
        """Continue the run whose checkpoint is ``path``: weights, optimizer, position in the data and RNG, so
        that the rest of the run is the uninterrupted run's. It must be this run (bench.train.run_folder.SAME_RUN: same
        model, config, task, corpus and its content, tokenizer, vocabulary, schedule and seed), and the log loses
        the lines written after the checkpoint (a run killed between checkpoints repeats those steps)."""
        ck = load_checkpoint(path)
        if differ := differences(ck.get("spec"), json.loads(json.dumps(self.spec()))):
            raise BenchError(f"{path} belongs to another run ({', '.join(differ)} differ); "
                             "start the folder afresh (bench train --fresh) or use another --out")
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        for k, v in ck["state"].items():
            setattr(self.state, k, v)
        self.state.valid_nll = ck.get("valid_nll")
        torch.set_rng_state(ck["rng"])
        if self.device.type == "cuda" and "cuda_rng" in ck:  # dropout masks on the GPU, as uninterrupted
            torch.cuda.set_rng_state_all(ck["cuda_rng"])
        self.resumed_from_step = self.state.step
        self.resumed_from_steps = [*ck.get("resumed_from_steps", []), self.state.step]
        if self.rank == 0:
            trim_log(self.out_dir, self.state.step)

    # ------------------------------------------------------------------ one step
    def _batch(self, idx: np.ndarray) -> dict[str, Tensor]:
        idx = idx[self.rank :: self.world] if self.world > 1 else idx
        if is_seq2seq(self.data.task):
            b = collate_mt(self.data.train, idx, self.pad, self.data.tokenizer.bos_id)
        else:
            inputs, targets = self.data.train
            b = {"tokens": inputs[idx], "target": targets[idx], "ntokens": int(targets[idx].ne(self.pad).sum())}
        return {k: v.to(self.device) if isinstance(v, Tensor) else v for k, v in b.items()}

    def _forward(self, b: dict[str, Tensor]) -> Tensor:
        if is_seq2seq(self.data.task):
            return self.net(b["src"], b["prev"])
        return self.net(b["tokens"])

    def _autocast(self):
        enabled = self.schedule.precision == "bf16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def train_step(self, idx: np.ndarray) -> tuple[float, int]:
        """One update on the global batch ``idx``; returns (loss per target token, global target tokens)."""
        s = self.schedule
        self.model.train()
        b = self._batch(idx)
        ntokens = torch.tensor(float(b["ntokens"]), device=self.device)
        if self.world > 1:
            dist.all_reduce(ntokens)
        with self._autocast():
            logits = self._forward(b)
        loss, _ = label_smoothed_nll(logits, b["target"], s.label_smoothing, self.pad)
        (loss * self.world / ntokens).backward()  # DDP averages over processes: the global per-token mean
        if s.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), s.clip_norm)
        if self.state.step == s.warmup_steps:
            self.state.warmup_tokens = self.state.tokens
        lr = learning_rate(s, self.state.step, self.state.tokens, self.state.warmup_tokens)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = loss.detach().clone()
        if self.world > 1:
            dist.all_reduce(loss_sum)
        return float(loss_sum / ntokens), int(ntokens.item())

    # ------------------------------------------------------------------ validation
    def validate(self, limit: int | None) -> float:
        """NLL per target token (nats), fp32, no label smoothing."""
        tok = self.data.tokenizer
        return corpus_nll(
            self.model,
            subset(self.data.valid, limit, self.schedule.valid_seed),
            tok.pad_id,
            tok.bos_id,
            2 * self.schedule.batch_tokens,
            self.device,
        )

    # ------------------------------------------------------------------ loop
    def _should_stop(self, started: float) -> str | None:
        s, st = self.schedule, self.state
        if s.max_tokens is not None and st.tokens >= s.max_tokens:
            return "max_tokens"
        if s.stop_tokens is not None and st.tokens >= s.stop_tokens:
            return "stop_tokens"
        if s.max_steps is not None and st.step >= s.max_steps:
            return "max_steps"
        if s.max_time is not None and st.wall_s + (time.perf_counter() - started) >= s.max_time:
            return "max_time"
        return None

    def _log(self, record: dict) -> None:
        if self.rank == 0:
            with open(self.out_dir / "train.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")

    def run(self, resume: bool = True, stop_at_step: int | None = None, fresh: bool = False) -> dict[str, Any]:
        """Train until the schedule stops (or ``stop_at_step``: the run checkpoints and returns as on SIGINT/SIGTERM),
        the schedule checked first, the folder locked (``fresh``: its run removed first; bench.train.run_folder) and the
        machine lock held shared throughout (bench.latency.lock): no latency measurement times while this trains.

        Args:
            resume: continue from the folder's checkpoint when it has one.
            stop_at_step: checkpoint and return at this step; None: run to the end.
            fresh: remove the folder's run first.
        """
        self.schedule.check()
        with folder_lock(self.out_dir, self.rank, fresh), hold(SHARED, what=f"training {self.model_name}"):
            return self._run(resume and not fresh, stop_at_step)

    def _run(self, resume: bool, stop_at_step: int | None) -> dict[str, Any]:
        s, st = self.schedule, self.state
        ck = self.out_dir / CHECKPOINT
        if resume and ck.exists():
            self.restore(ck)
        elif self.rank == 0:
            atomic_write_text(self.out_dir / "run.json", json.dumps(self.spec(), indent=2))
            (self.out_dir / "train.jsonl").unlink(missing_ok=True)
        old_handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def request_stop(signum, frame):  # finish the step, checkpoint, leave
            self._stop_requested = True

        if self.rank == 0 and threading_is_main():
            for sig in old_handlers:
                signal.signal(sig, request_stop)
        bar = None
        if self.progress:
            total = s.stop_tokens or s.max_tokens or s.max_steps
            bar = tqdm(
                total=total,
                initial=st.tokens if s.max_tokens else st.step,
                unit="tok" if s.max_tokens else "step",
                unit_scale=True,
                dynamic_ncols=True,
                leave=False,
                desc=self.model_name,
            )
        started = time.perf_counter()
        reason = None
        window_tokens, window_start = 0, time.perf_counter()
        try:
            while True:
                reason = self._should_stop(started)
                if reason:
                    break
                if self._stop_requested or (stop_at_step is not None and st.step >= stop_at_step):
                    reason = "interrupted"
                    break
                order = epoch_order(len(self.batches), self.seed, st.epoch)
                loss, ntok = self.train_step(self.batches[order[st.batch_index]])
                st.step += 1
                st.tokens += ntok
                st.batch_index += 1
                if st.batch_index >= len(self.batches):
                    st.epoch, st.batch_index = st.epoch + 1, 0
                window_tokens += ntok
                if not math.isfinite(loss):
                    raise BenchError(f"training diverged at step {st.step} (loss {loss}); lower the learning rate")
                entry = None
                if st.step % s.log_every == 0:
                    now = time.perf_counter()
                    entry = {
                        "step": st.step,
                        "tokens": st.tokens,
                        "wall_s": round(st.wall_s + now - started, 2),
                        "train_loss": round(loss, 4),
                        "lr": learning_rate(s, st.step - 1, st.tokens - ntok, st.warmup_tokens),
                        "tokens_per_s": round(window_tokens / max(now - window_start, 1e-9), 1),
                        "valid_nll": None,
                    }
                    window_tokens, window_start = 0, now
                if st.step % s.valid_every == 0:
                    st.valid_nll = self.validate(s.valid_sentences)
                    entry = entry or {
                        "step": st.step,
                        "tokens": st.tokens,
                        "wall_s": round(st.wall_s + time.perf_counter() - started, 2),
                        "train_loss": round(loss, 4),
                        "lr": None,
                        "tokens_per_s": None,
                    }
                    entry["valid_nll"] = round(st.valid_nll, 4)
                if entry:
                    self._log(entry)
                if bar is not None:
                    bar.update(ntok if s.max_tokens else 1)
                    bar.set_postfix(
                        loss=f"{loss:.3f}",
                        lr=f"{learning_rate(s, st.step, st.tokens, st.warmup_tokens):.2e}",
                        valid=f"{st.valid_nll:.3f}" if st.valid_nll is not None else "-",
                    )
                if st.step % s.checkpoint_every == 0:
                    st.wall_s += time.perf_counter() - started
                    started = time.perf_counter()
                    self.save()
        finally:
            if bar is not None:
                bar.close()
            if self.rank == 0 and threading_is_main():
                for sig, handler in old_handlers.items():
                    signal.signal(sig, handler)
        st.wall_s += time.perf_counter() - started
        final_sample = None
        if reason != "interrupted":
            st.valid_nll = self.validate(None)
            # the in-training sample once more, so that the drift rule compares like with like
            final_sample = st.valid_nll if s.valid_sentences is None else self.validate(s.valid_sentences)
            self._log({"step": st.step, "tokens": st.tokens, "wall_s": round(st.wall_s, 2), "train_loss": None,
                       "lr": None, "tokens_per_s": None, "valid_nll": round(st.valid_nll, 4), "final": True})
        self.save()
        in_training = [e["valid_nll"] for e in read_curve(self.out_dir) if e.get("valid_nll") is not None
                       and not e.get("final")]
        summary = {
            "stop": reason,
            "train_steps": st.step,
            "train_tokens": st.tokens,
            "train_wall_s": round(st.wall_s, 2),
            "tokens_per_s": round(st.tokens / max(st.wall_s, 1e-9), 1),
            "valid_nll": st.valid_nll,
            "epochs": st.epoch + st.batch_index / max(len(self.batches), 1),
            "best_valid_nll": min(in_training) if in_training else None,  # in-training subset (valid_sentences)
            "final_sample_valid_nll": final_sample,  # the end weights on that same subset
            "unigram_entropy": unigram_entropy(self.data.train, self.pad),  # the plateau of a run that fails
            "schedule": s.name,
            "schedule_config": s.to_dict(),  # every key of the schedule this run trained with
            "precision": s.precision,
            "seed": self.seed,
            "world_size": self.world,
            **({"resumed_from_steps": list(self.resumed_from_steps)} if self.resumed_from_steps else {}),
        }
        if self.data.vocab_note:
            summary["vocab_size"], summary["vocab_note"] = self.data.tokenizer.vocab_size, self.data.vocab_note
        if self.rank == 0 and reason != "interrupted":
            atomic_write_text(self.out_dir / "train.json", json.dumps(summary, indent=2))
        return summary


def threading_is_main() -> bool:
    return threading.current_thread() is threading.main_thread()


def read_curve(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "train.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def init_distributed(device: str) -> None:
    """Join the process group torchrun describes (WORLD_SIZE > 1); gloo on CPU, nccl on GPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
        if device == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
