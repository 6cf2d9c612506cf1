"""MACs by several counters, in the paper's convention, cross-checked against each other.

Counters (``macs_by_counter`` keys):
- ``flop_counter``: dispatch level, ``torch.utils.flop_counter.FlopCounterMode`` (the primary counter), with
  formulas added for ops it lacks on CPU (SDPA); every aten op it does not count and that is not known to do
  zero MACs is reported in ``unsupported_ops``, never silently dropped.
- ``fvcore``: TorchScript trace with fvcore's per-op handles; LayerNorm handles removed (not MACs by
  convention), SDPA and baddbmm handles added.
- ``thop``: module hooks (ultralytics-thop, which also counts functional matmul/linear); rules added for our
  depthwise/lightweight convolutions (run as functional conv1d), norms and embeddings set to zero.
- ``analytic``: the hand formula of bench.cost.analytic.
FlopCounterMode reports FLOPs = 2 x MACs; we always report MACs. A cross-check counter that fails (fvcore's
TorchScript tracing, say) is reported in ``warnings`` and left out of ``macs_by_counter``; the primary
counter and the analytic formula still decide.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from bench.cost.analytic import Protocol, analytic_macs, has_formula
from models.layers.convolution import DepthwiseConv, DynamicConv

COUNTERS = ("flop_counter", "fvcore", "thop", "analytic")
PRIMARY = "flop_counter"
AGREEMENT = 0.01  # warn when two counters differ by more than 1%

aten = torch.ops.aten


# ----------------------------------------------------------------------------------------------- inputs
class _Pass(nn.Module):
    """The measured pass as a module (counters that trace or hook need one): encoder + decoder, teacher
    forced; ``with_output`` adds the vocabulary projection."""

    def __init__(self, model: nn.Module, with_output: bool, find_padding: bool = True) -> None:
        super().__init__()
        self.model, self.with_output, self.find_padding = model, with_output, find_padding

    def forward(self, *tokens: Tensor) -> Tensor:
        m = self.model
        if m.config.task == "mt":
            src, tgt = tokens
            # the protocol's inputs hold no padding: not looking for it skips a data-dependent branch (a pass on
            # the meta device has no data) and changes no count
            feats = m.decode_features(tgt, m.encode(src) if self.find_padding else m.encode(src, find_padding=False))
        else:
            feats = m.decode_features(tokens[0])
        return m.output(feats) if self.with_output else feats


def protocol_inputs(model: nn.Module, protocol: Protocol = Protocol()) -> tuple[Tensor, ...]:
    """Token ids for the counting pass: no padding, BOS first on the target side."""
    cfg = model.config
    g = torch.Generator().manual_seed(0)
    first = 4  # past the special ids
    tgt = torch.randint(first, cfg.target_vocab, (protocol.batch, protocol.tgt_tokens), generator=g)
    tgt[:, 0] = cfg.bos_id
    if cfg.task == "lm":
        return (tgt,)
    src = torch.randint(first, cfg.vocab_size, (protocol.batch, protocol.src_tokens), generator=g)
    return src, tgt


# ------------------------------------------------------------------------------------- dispatch counter
def _sdpa_cpu_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    """aten._scaled_dot_product_flash_attention_for_cpu: Q K^T and A V, 2 FLOPs per MAC. FlopCounterMode
    hands custom formulas the argument shapes, not the tensors."""
    b, h, t, e = query
    s, ev = key[-2], value[-1]
    return 2 * b * h * t * s * (e + ev)


CUSTOM_FLOPS: dict[Any, Callable[..., int]] = {}
for _name in ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_attention_math"):
    if hasattr(aten, _name):
        CUSTOM_FLOPS[getattr(aten, _name)] = _sdpa_cpu_flops

# aten ops that do no multiply-accumulate work by the paper's convention (views, copies, element-wise,
# reductions, norms, softmax, embeddings, indexing). Anything else that the counter does not count is reported.
_ZERO_MAC = re.compile(
    r"^(_?(view|reshape|unsafe_view|alias|expand|permute|transpose|t|squeeze|unsqueeze|slice|select|split|"
    r"chunk|narrow|unfold|as_strided|clone|contiguous|copy|_to_copy|to|detach|lift_fresh|cat|stack|pad|"
    r"constant_pad_nd|index|index_select|gather|scatter|embedding|masked_fill|where|fill|zero|zeros|ones|full|"
    r"empty|new_empty|new_zeros|new_ones|new_full|arange|scalar_tensor|add|sub|rsub|mul|div|neg|exp|log|"
    r"sigmoid|relu|silu|gelu|glu|tanh|pow|sqrt|rsqrt|clamp|eq|ne|lt|le|gt|ge|logical_\w+|bitwise_\w+|"
    r"cumsum|sum|mean|any|all|max|min|argmax|topk|sort|softmax|_softmax|log_softmax|_log_softmax|"
    r"native_layer_norm|layer_norm|dropout|native_dropout|bernoulli|triu|tril|repeat|repeat_interleave|"
    r"local_scalar_dense|item|masked_select|nonzero|flip|roll|abs|sign|type_as|_reshape_alias|split_with_sizes|"
    r"unbind|empty_like|zeros_like|ones_like|full_like|resize|set|expand_as|view_as|maximum|minimum|"
    r"_safe_softmax|isinf|isnan|rand|randn|randint|uniform|normal|floor_divide|remainder|fmod|"
    r"logical_not|sym_size|sym_stride|sym_numel|is_same_size|_has_compatible_shallow_copy_type)(_|\.|$))"
)


class _OpRecorder(TorchDispatchMode):
    """Records every aten op packet a pass dispatches."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()
        self.packets: set[Any] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func.overloadpacket)] += 1
        self.packets.add(func.overloadpacket)
        return func(*args, **(kwargs or {}))


def _unsupported(recorder: _OpRecorder, counted: set[Any]) -> list[str]:
    out = []
    for packet in recorder.packets:
        name = str(packet).split("aten.")[-1]
        if packet in counted or _ZERO_MAC.match(name):
            continue
        out.append(name)
    return sorted(out)


def count_flop_counter(pass_module: nn.Module, inputs: tuple[Tensor, ...]) -> tuple[int, list[str]]:
    """(MACs, unsupported ops) by FlopCounterMode extended with CUSTOM_FLOPS."""
    fc = FlopCounterMode(display=False, custom_mapping=dict(CUSTOM_FLOPS))
    recorder = _OpRecorder()
    with torch.no_grad(), fc, recorder:
        pass_module(*inputs)
    counted = set(fc.flop_registry)
    return fc.get_total_flops() // 2, _unsupported(recorder, counted)


def search_macs(build: Callable[[], nn.Module], protocol: Protocol = Protocol()) -> int:
    """The primary counter's MACs (paper convention, no output projection) of the model ``build()`` makes, in one
    pass without the op recorder: what a solver needs from each of the many models it tries; count_macs, with
    every check and counter, is for the model it keeps. The model is built and run on the meta device (shapes
    only: no weights allocated, no arithmetic done, so a candidate 4096 wide costs what a small one does); the
    counter's formulas read only shapes, so the count is the real model's. A family whose construction or pass
    needs real data (an ``.item()``, an op without a meta kernel) is built and counted for real instead.

    Args:
        build: makes the model (called under ``torch.device("meta")`` first).
        protocol: the inputs counted: batch, source and target tokens.
    """
    try:
        with torch.device("meta"):
            model = build()
        return _primary_pass(model, protocol, on_meta=True)
    except Exception:  # noqa: BLE001 -- the same count from the real model; its own errors are raised there
        return _primary_pass(build(), protocol, on_meta=False)


def _primary_pass(model: nn.Module, protocol: Protocol, on_meta: bool) -> int:
    was_training = model.training
    model.eval()
    inputs = protocol_inputs(model, protocol)
    if on_meta:
        inputs = tuple(t.to("meta") for t in inputs)
    fc = FlopCounterMode(display=False, custom_mapping=dict(CUSTOM_FLOPS))
    try:
        with torch.no_grad(), fc:
            _Pass(model, with_output=False, find_padding=not on_meta)(*inputs)
    finally:
        model.train(was_training)
    return fc.get_total_flops() // 2


# ---------------------------------------------------------------------------------------------- fvcore
def _fvcore_sdpa(inputs: list[Any], outputs: list[Any]) -> int:
    from fvcore.nn.jit_handles import get_shape  # fvcore: loaded only when the fvcore counter runs

    q, k, v = (get_shape(x) for x in inputs[:3])
    return math.prod(q[:-1]) * k[-2] * (q[-1] + v[-1])


def _fvcore_baddbmm(inputs: list[Any], outputs: list[Any]) -> int:
    from fvcore.nn.jit_handles import get_shape  # fvcore: loaded only when the fvcore counter runs

    a, b = get_shape(inputs[1]), get_shape(inputs[2])
    return a[0] * a[1] * a[2] * b[2]


def _fvcore_zero(inputs: list[Any], outputs: list[Any]) -> int:
    return 0


def count_fvcore(pass_module: nn.Module, inputs: tuple[Tensor, ...]) -> tuple[int, list[str]]:
    """(MACs, ops fvcore skipped that may do MAC work) by fvcore's FlopCountAnalysis (which counts MACs)."""
    from fvcore.nn import FlopCountAnalysis  # fvcore: loaded only when the fvcore counter runs

    fca = FlopCountAnalysis(pass_module, inputs)
    fca.set_op_handle(
        **{
            # element-wise by convention; a None handle would leave fvcore's own norm handle in place
            "aten::layer_norm": _fvcore_zero,
            "aten::batch_norm": _fvcore_zero,
            "aten::group_norm": _fvcore_zero,
            "aten::scaled_dot_product_attention": _fvcore_sdpa,
            "aten::baddbmm": _fvcore_baddbmm,
        }
    )
    fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        total = int(fca.total())
        skipped = fca.unsupported_ops()
    risky = sorted(op.split("::")[-1] for op in skipped if not _ZERO_MAC.match(op.split("::")[-1]))
    return total, risky


# ------------------------------------------------------------------------------------------------ thop
def _thop_depthwise(m: DepthwiseConv, x: tuple[Tensor, ...], y: Tensor) -> None:
    m.total_ops += y.numel() * m.kernel_size  # (B, T, C) outputs, K taps each


def _thop_zero(m: nn.Module, x: tuple[Tensor, ...], y: Tensor) -> None:
    return None


def count_thop(pass_module: nn.Module, inputs: tuple[Tensor, ...]) -> tuple[int, list[str]]:
    """(MACs, []) by ultralytics-thop's module hooks + functional-product counting."""
    import thop  # thop: loaded only when the thop counter runs

    custom = {DepthwiseConv: _thop_depthwise, nn.LayerNorm: _thop_zero, nn.Embedding: _thop_zero}
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        macs, _ = thop.profile(pass_module, inputs=inputs, custom_ops=custom, verbose=False)
    return int(round(macs)), []


# DynamicConv needs no thop rule: its predictor is an nn.Linear and its product a functional matmul.
assert not issubclass(DynamicConv, DepthwiseConv)

RUNNERS: dict[str, Callable[[nn.Module, tuple[Tensor, ...]], tuple[int, list[str]]]] = {
    "flop_counter": count_flop_counter,
    "fvcore": count_fvcore,
    "thop": count_thop,
}


# ---------------------------------------------------------------------------------------------- public
@dataclass
class MacReport:
    macs: int  # primary counter, paper convention (no output projection)
    macs_with_output: int
    macs_by_counter: dict[str, int]
    macs_with_output_by_counter: dict[str, int]
    unsupported_ops: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    protocol: str = Protocol().describe()

    def to_dict(self) -> dict[str, Any]:
        return {
            "macs": self.macs,
            "macs_with_output": self.macs_with_output,
            "macs_by_counter": self.macs_by_counter,
            "macs_with_output_by_counter": self.macs_with_output_by_counter,
            "unsupported_ops": self.unsupported_ops,
            "warnings": self.warnings,
            "protocol": self.protocol,
        }


def count_macs(
    model: nn.Module, counters: tuple[str, ...] = COUNTERS, protocol: Protocol = Protocol()
) -> MacReport:
    """Count ``model``'s MACs by every counter in ``counters`` (the primary one always runs).

    Args:
        model: the model, counted in eval mode (its mode is restored).
        counters: the counters to run besides the primary one (COUNTERS: all of them).
        protocol: the inputs counted: batch, source and target tokens.
    """
    unknown = [c for c in counters if c not in COUNTERS]
    if unknown:
        raise ValueError(f"unknown counter(s) {', '.join(unknown)}; valid: {', '.join(COUNTERS)}")
    was_training = model.training
    model.eval()
    inputs = protocol_inputs(model, protocol)
    by: dict[str, int] = {}
    by_out: dict[str, int] = {}
    unsupported: dict[str, list[str]] = {}
    failed: dict[str, str] = {}
    try:
        for name in dict.fromkeys((PRIMARY, *counters)):
            if name == "analytic":
                if not has_formula(model.config):  # a new family without a hand formula yet: say so
                    unsupported[name] = [f"no formula for family {type(model.config).family!r}"]
                    continue
                a = analytic_macs(model.config, protocol)
                by[name], by_out[name] = a["macs"], a["macs_with_output"]
                continue
            runner = RUNNERS[name]
            try:
                by[name], skipped = runner(_Pass(model, with_output=False), inputs)
                by_out[name], skipped_out = runner(_Pass(model, with_output=True), inputs)
            except Exception as exc:  # a cross-check may fail (e.g. a deprecated tracer); the primary may not
                if name == PRIMARY:
                    raise
                by.pop(name, None)
                first = (str(exc).strip().splitlines() or [""])[0]
                failed[name] = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
                continue
            if skipped or skipped_out:
                unsupported[name] = sorted(set(skipped) | set(skipped_out))
    finally:
        model.train(was_training)
    report = MacReport(by[PRIMARY], by_out[PRIMARY], by, by_out, unsupported, protocol=protocol.describe())
    report.warnings = disagreements(by) + [
        f"{name} did not count ops: {', '.join(ops)}" for name, ops in unsupported.items()
    ] + [f"{name} failed ({why}); its count is left empty, {PRIMARY} and the analytic formula decide"
         for name, why in failed.items()]
    return report


def disagreements(by_counter: dict[str, int], tolerance: float = AGREEMENT) -> list[str]:
    """One line per pair of counters that differ by more than ``tolerance`` (relative to the larger)."""
    out = []
    names = list(by_counter)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            hi = max(by_counter[a], by_counter[b], 1)
            if abs(by_counter[a] - by_counter[b]) / hi > tolerance:
                out.append(
                    f"counters disagree by more than {tolerance:.0%}: {a}={by_counter[a]:,} vs {b}={by_counter[b]:,}"
                )
    return out
