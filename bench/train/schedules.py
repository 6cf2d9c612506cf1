"""Training schedules as named presets, identical for every model in a comparison.

Only the architecture and its own dropout differ between the models of one budget: the data, tokenizer,
token budget (target tokens seen), optimizer recipe, precision, seed and evaluation are these.

How ``short`` was tuned (results/README.md, "Recipe history"): on the Transformer at 100M, LibreOffice en-de,
2 CPU cores, seed 1, by the validation NLL after the same 2M target tokens: batch size (1k / 2k target
tokens), warm-up (300 / 500 / 600 / 1000 steps), decay (inverse square root / cosine to ``min_lr`` over the
token budget) and precision (fp32 / bf16 autocast); then frozen for every family. The post-norm Transformer
stays on the unigram plateau (6.3-6.5 nats) unless it gets both many updates (1k-token batches) and a
1000-step warm-up (5.20 nats); bf16 and the decay shape barely matter there, bf16 trains 1.7x faster.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from bench.errors import BenchError


@dataclass(frozen=True)
class Schedule:
    name: str
    max_tokens: int | None  # target tokens seen (the budget that is equal for every model)
    max_steps: int | None = None
    max_time: float | None = None  # seconds; a safety stop, not the comparison's budget
    batch_tokens: int = 2048  # target tokens per update (per process)
    lr: float = 1e-3
    warmup_steps: int = 300
    decay: str = "cosine"  # "cosine" (to min_lr at max_tokens, from the end of warm-up) | "inverse_sqrt"
    min_lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    weight_decay: float = 0.0
    label_smoothing: float = 0.1
    clip_norm: float = 1.0
    precision: str = "bf16"  # "fp32" | "bf16" (autocast)
    max_len: int = 128  # training pairs longer than this (subwords, either side) are skipped
    lm_block: int = 128  # language models: tokens per training sequence
    valid_every: int = 200  # steps between validation passes
    valid_sentences: int | None = 400  # validation subset during training (the final one uses all)
    valid_seed: int | None = 0  # that subset: a fixed random draw with this seed (None: the first sentences)
    checkpoint_every: int = 200  # steps
    log_every: int = 20
    eval_beam: int = 4
    eval_length_penalty: float = 1.0
    eval_sentences: int | None = None  # None: the whole test split
    eval_batch: int = 32
    # a truncated run (a tuning trial): stop after this many target tokens while the rate follows the schedule
    # over max_tokens; left out of to_dict when unset, so that every other run's record and hash stay as they were
    stop_tokens: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["stop_tokens"] is None:
            del d["stop_tokens"]
        return d

    def with_overrides(self, **kw: Any) -> Schedule:
        keys = asdict(self)
        unknown = [k for k in kw if k not in keys or k == "name"]
        if unknown:
            raise BenchError(f"unknown schedule key(s) {', '.join(unknown)}; valid: {', '.join(keys)}")
        return replace(self, **{k: _coerce(k, v, "schedule") for k, v in kw.items()})

    def check(self) -> None:
        for key in ("max_tokens", "max_steps", "max_time"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise BenchError(f"--{key.replace('_', '-')} must be positive, got {value}")
        if self.max_tokens is None and self.max_steps is None and self.max_time is None:
            raise BenchError("a schedule needs a stop: max_tokens, max_steps or max_time")
        if self.stop_tokens is not None and not (self.max_tokens and 0 < self.stop_tokens <= self.max_tokens):
            raise BenchError(f"stop_tokens={self.stop_tokens} must be positive and at most max_tokens "
                             f"({self.max_tokens})")
        if self.decay not in ("cosine", "inverse_sqrt"):
            raise BenchError(f"decay={self.decay!r} is not valid; valid: cosine, inverse_sqrt")
        if self.precision not in ("fp32", "bf16"):
            raise BenchError(f"precision={self.precision!r} is not valid; valid: fp32, bf16")
        # every other key: a value that would train silently wrong (or crash mid-run) is refused before
        # anything is written; the comparisons are written so that NaN fails them too
        def bad(key: str, wants: str) -> BenchError:
            return BenchError(f"schedule {key}={getattr(self, key)!r} must be {wants}")

        def whole(key: str, low: int, optional: bool = False) -> None:
            value = getattr(self, key)
            if optional and value is None:
                return
            if isinstance(value, bool) or not isinstance(value, int) or not value >= low:
                raise bad(key, f"an integer >= {low}" + (" (or none)" if optional else ""))

        def real(key: str) -> float:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise bad(key, "a finite number")
            return float(value)

        if not real("lr") > 0:
            raise bad("lr", "positive")
        if not 0 <= real("min_lr") <= self.lr:
            raise bad("min_lr", f"between 0 and lr={self.lr:g}")
        whole("warmup_steps", 0)
        if self.decay == "inverse_sqrt" and self.warmup_steps < 1:
            raise bad("warmup_steps", "at least 1 with decay=inverse_sqrt (the rate is lr * sqrt(warmup_steps / "
                                      "step): 0 trains at rate 0)")
        if not 0 <= real("label_smoothing") < 1:
            raise bad("label_smoothing", "in [0, 1)")
        if not real("clip_norm") >= 0:
            raise bad("clip_norm", ">= 0 (0: no clipping)")
        if not real("weight_decay") >= 0:
            raise bad("weight_decay", ">= 0")
        if not real("eps") > 0:
            raise bad("eps", "positive")
        betas = self.betas
        if not (isinstance(betas, tuple) and len(betas) == 2
                and all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)):
            raise bad("betas", "two numbers in [0, 1)")
        for key in ("batch_tokens", "max_len", "lm_block", "valid_every", "checkpoint_every", "log_every",
                    "eval_beam", "eval_batch"):
            whole(key, 1)
        whole("valid_sentences", 1, optional=True)
        whole("eval_sentences", 1, optional=True)
        whole("valid_seed", 0, optional=True)
        if not real("eval_length_penalty") >= 0:
            raise bad("eval_length_penalty", ">= 0")
        if self.batch_tokens < self.max_len:
            raise BenchError(f"batch_tokens={self.batch_tokens} must be at least max_len={self.max_len}")


_HINTS = {f.name: str(f.type) for f in fields(Schedule)}

# the default: a whole 100M comparison of three models within the bench's 60-minute bound on 2 cores
# (1k-token batches, 1000 warm-up steps, peak 1e-3, inverse square root, bf16; 2M target tokens ~ 2100 updates)
_SHORT = Schedule(name="short", max_tokens=2_000_000, batch_tokens=1024, warmup_steps=1000, lr=1e-3,
                  decay="inverse_sqrt")

# Longer schedules of the length study: name -> (the schedule they lengthen, the factor on its target tokens).
# They take that schedule's budget-file keys and its tuned peak rates: one recipe, only longer.
LONGER: dict[str, tuple[str, int]] = {"x4": ("short", 4), "x10": ("short", 10), "x16": ("short", 16)}

SCHEDULES: dict[str, Schedule] = {
    # a smoke run for CI: a few dozen updates, a slice of the test set, greedy decoding
    "quick": Schedule(
        name="quick", max_tokens=40_000, max_steps=40, batch_tokens=1024, warmup_steps=10, valid_every=20,
        valid_sentences=100, checkpoint_every=20, log_every=5, eval_beam=1, eval_sentences=60, max_len=64,
        lm_block=64,
    ),
    "short": _SHORT,
    # the plain recipe the short schedule was measured against (the first prototype's): 4k-token batches,
    # 1000 warm-up steps, peak lr 1e-3, inverse-sqrt decay, fp32; give it --max-time
    "plain": Schedule(
        name="plain", max_tokens=None, max_time=1200.0, batch_tokens=4096, warmup_steps=1000, lr=1e-3,
        decay="inverse_sqrt", precision="fp32",
    ),
    # the length study: the budget's own ``short`` recipe (every key its budget file sets, its tuned peak rates)
    # with LONGER[name] times its target tokens (Budget.schedule_overrides); the warm-up stays at the recipe's
    # updates (it is there to stabilise the first updates, which do not change with the schedule's length), and
    # the cosine reaches 0 at the longer token budget
    "x4": replace(_SHORT, name="x4", max_tokens=4 * _SHORT.max_tokens),
    "x10": replace(_SHORT, name="x10", max_tokens=10 * _SHORT.max_tokens),  # summarization's length pilot
    "x16": replace(_SHORT, name="x16", max_tokens=16 * _SHORT.max_tokens),
    # paper-like, for a GPU: ~60 epochs of the default corpus
    "full": Schedule(
        name="full", max_tokens=40_000_000, batch_tokens=8192, warmup_steps=2000, lr=1e-3, decay="inverse_sqrt",
        valid_every=1000, valid_sentences=None, checkpoint_every=1000, log_every=100, precision="bf16",
    ),
}


def _coerce(key: str, value: Any, where: str) -> Any:
    """``value`` as the type of schedule key ``key`` (from its annotation); strings are parsed (``1e-3``,
    ``2e6`` for an int, ``none`` for an optional key, ``0.9,0.98`` for betas). One clear line otherwise."""
    hint = _HINTS[key]
    try:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
            if "None" not in hint:
                raise ValueError
            return None
        if hint.startswith("tuple"):
            items = value.strip("()[] ").split(",") if isinstance(value, str) else list(value)
            if len(items) != 2:
                raise ValueError
            return tuple(float(v) for v in items)
        if hint.startswith(("int", "float")):
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
            if hint.startswith("float"):
                return number
            if not number.is_integer():
                raise ValueError
            return int(number)
        if not isinstance(value, str):
            raise ValueError
        return value.strip()
    except (TypeError, ValueError):
        raise BenchError(f"{where} {key}={value!r}: expected {hint}") from None


def parse_schedule_sets(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` strings (``--schedule-set batch_tokens=1024``) as typed schedule overrides."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or key not in _HINTS or key == "name":
            valid = ", ".join(k for k in _HINTS if k != "name")
            raise BenchError(f"--schedule-set wants KEY=VALUE with a schedule key, got {item!r}; valid keys: {valid}")
        out[key] = _coerce(key, text, "--schedule-set")
    return out


def file_keys(train: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    """A budget file's ``train:`` keys for schedule ``name``. A longer schedule of the length study (``x4``,
    ``x16``) is the schedule it lengthens, every key the file sets for that one, with its target tokens times
    the factor, and then any key the file sets for the longer schedule itself."""
    if name in LONGER:  # the file's own keys for it, if any, on top
        base, factor = LONGER[name]
        keys = file_keys(train, base)
        tokens = factor * int(keys.get("max_tokens") or SCHEDULES[base].max_tokens)
        return {**keys, "max_tokens": tokens, **train.get(name, {})}
    return dict(train.get(name, {}))


def get_schedule(name: str, **overrides: Any) -> Schedule:
    if name not in SCHEDULES:
        raise BenchError(f"unknown schedule {name!r}; valid: {', '.join(SCHEDULES)}")
    sched = SCHEDULES[name].with_overrides(**overrides)
    sched.check()
    return sched
