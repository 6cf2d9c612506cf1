"""The protocol's workloads: the call one latency sample times, built once with its inputs on the device.

- "forward":   translation: one teacher-forced pass over 30 source + 30 target tokens (the MAC pass);
               language model: one pass over 30 tokens.
- "translate": translation: encode 30 source tokens, then exactly 30 greedy incremental decoder steps with
               caches (no early stop); language model: exactly 30 greedy incremental steps from BOS (the same
               decoder work, no encoder).
Eval mode, ``torch.inference_mode``; dtype "fp32", or "bf16" = ``torch.autocast`` to bfloat16 (weights stay
fp32), on CPU and CUDA. ``backend`` (:mod:`.backends`): what executes the workload, eager PyTorch by default,
torch.compile or ONNX Runtime, checked against eager on the same inputs before it is timed.

The token counts are the translation protocol's (30 + 30, 30 steps) unless :func:`workload_shape` says
otherwise: summarization times its own shapes (the budget file's ``protocol: sum:``, e.g. 70 source + 10
target tokens and 10 decoding steps).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from bench.errors import BenchError
from bench.latency.backends import backend_version, check_backend, prepare

WORKLOADS = ("forward", "translate")
DTYPES = ("fp32", "bf16")
SRC_LEN = 30  # source tokens (translation) or tokens (language model) of the forward workload
TGT_LEN = 30  # teacher-forced target tokens of the forward workload
DECODE_STEPS = 30  # greedy incremental steps of the translate workload


@dataclass(frozen=True)
class Shape:
    """The token counts of the workloads: source (LM: tokens) and teacher-forced target tokens of "forward",
    incremental decoding steps of "translate"."""

    src_len: int = SRC_LEN
    tgt_len: int = TGT_LEN
    decode_steps: int = DECODE_STEPS


_SHAPES = [Shape()]  # the innermost workload_shape in force (the protocol's by default)


@contextmanager
def workload_shape(src_len: int = SRC_LEN, tgt_len: int = TGT_LEN, decode_steps: int | None = None) -> Iterator[Shape]:
    """Within the block, :func:`make_workload` builds workloads of these token counts (``decode_steps``
    defaults to ``tgt_len``: a summary of the protocol's length is decoded).

    Args:
        src_len: source tokens (translation) or tokens (language model) of "forward".
        tgt_len: teacher-forced target tokens of "forward".
        decode_steps: greedy steps of "translate"; None: ``tgt_len``.
    """
    shape = Shape(int(src_len), int(tgt_len), int(tgt_len if decode_steps is None else decode_steps))
    if min(shape.src_len, shape.tgt_len, shape.decode_steps) < 1:
        raise BenchError(f"workload token counts must be positive, got {shape}")
    _SHAPES.append(shape)
    try:
        yield shape
    finally:
        _SHAPES.remove(shape)


def check_choice(what: str, value: str, valid: Sequence[str]) -> str:
    """``value`` when it is one of ``valid``; otherwise a BenchError naming them.

    Args:
        what: what the value is, named in the error.
        value: the value given.
        valid: the values allowed.
    """
    if value not in valid:
        raise BenchError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    return value


def autocast(device: torch.device, dtype: str) -> AbstractContextManager:
    """The context a call runs under: nothing for fp32, ``torch.autocast(..., bfloat16)`` for bf16."""
    if check_choice("dtype", dtype, DTYPES) == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _token_range(cfg: Any) -> tuple[int, int]:
    """Ids that are no special symbol (so no padding mask appears): [max special + 1, vocab)."""
    low = max(cfg.bos_id, cfg.pad_id, cfg.eos_id, cfg.unk_id) + 1
    return low, cfg.vocab_size


@dataclass(frozen=True)
class Workload:
    """The call one latency sample times (calling the workload runs it once) on its backend, with what the
    record says of that backend, and the eager call it was checked against: MACs are counted on that one,
    since a compiled or exported graph hides its ops from the dispatcher's counter."""

    run: Callable[[], Any]
    reference: Callable[[], Any]
    backend: str = "eager"
    backend_version: str = field(default_factory=lambda: backend_version("eager"))
    agreement: dict[str, Any] | None = None  # the check against eager (.backends); None for eager itself

    def __call__(self) -> Any:
        return self.run()


def make_workload(
    model: nn.Module,
    workload: str = "forward",
    *,
    batch: int = 1,
    device: str | torch.device = "cpu",
    dtype: str = "fp32",
    seed: int = 0,
    backend: str = "eager",
    threads: int | None = None,
) -> Workload:
    """The call one sample times (see the module docstring), inputs built once on ``device``. A non-eager
    ``backend`` compiles or exports the workload here and checks it against eager (BenchError when they
    disagree); ``threads``: ONNX Runtime's intra-op threads (default: torch's current number).

    Args:
        model: a registry model.
        workload: "forward" or "translate".
        batch: sequences per call.
        device: where the inputs are built.
        dtype: "fp32" or "bf16".
        seed: the random inputs' seed.
        backend: "eager", "compile" or "onnxruntime".
        threads: ONNX Runtime's intra-op threads; None: torch's current number.
    """
    check_choice("workload", workload, WORKLOADS)
    check_backend(backend)
    dev = torch.device(device)
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    low, high = _token_range(cfg)
    shape = _SHAPES[-1]
    if cfg.task == "mt":
        src = torch.randint(low, high, (batch, shape.src_len), generator=g).to(dev)
        tgt_high = min(high, cfg.target_vocab)
        tgt = torch.randint(low, tgt_high, (batch, shape.tgt_len), generator=g).to(dev)
        tgt[:, 0] = cfg.bos_id  # prev_output_tokens starts with BOS
        inputs = (src, tgt) if workload == "forward" else (src,)

        def body() -> Tensor:
            if workload == "forward":
                return model(src, tgt)
            return model.generate(src, shape.decode_steps, beam=1, early_stop=False)

    else:
        tokens = torch.randint(low, high, (batch, shape.src_len), generator=g).to(dev)
        bos = torch.full((batch, 1), cfg.bos_id, dtype=torch.long, device=dev)
        inputs = (tokens,) if workload == "forward" else (bos,)

        def body() -> Tensor:
            if workload == "forward":
                return model(tokens)
            return model.generate(bos, shape.decode_steps, early_stop=False)

    def call() -> Tensor:
        with torch.inference_mode(), autocast(dev, dtype):
            return body()

    if backend == "eager":
        return Workload(call, call)
    run, agreement = prepare(backend, model, workload, inputs, call, steps=shape.decode_steps,
                             threads=torch.get_num_threads() if threads is None else threads, dtype=dtype)
    return Workload(run, call, backend, backend_version(backend), agreement)


def count_workload_macs(fn: Callable[[], Any]) -> int:
    """MACs one call of ``fn`` executes, counted at the dispatcher (``torch.utils.flop_counter``, flops / 2),
    with the formulas bench.cost.counting adds for what the counter lacks (CPU scaled-dot-product attention), so
    an SDPA path is not counted as zero."""
    from bench.cost.counting import CUSTOM_FLOPS  # the model registry: loaded only when MACs are counted

    with FlopCounterMode(display=False, custom_mapping=dict(CUSTOM_FLOPS)) as counter:
        fn()
    return int(counter.get_total_flops()) // 2
