"""Latency backends: the same workload run by PyTorch eager, by torch.compile (inductor) or by ONNX Runtime.

Why: a deployed model rarely runs eager PyTorch, and what a graph compiler or runtime gains (fused element-wise
ops, no Python between ops) can differ between families: Lite's convolution branches are many small ops, a
Transformer's layers a few large GEMMs. A backend changes only what executes the model; the workload, its
inputs and the timing protocol stay those of :mod:`.workloads`.

- "eager": the model's own modules (the suite's figures before backends existed).
- "compile": ``torch.compile`` (inductor, ``fullgraph=True``) of what the workload calls: the teacher-forced
  pass ("forward"), or the encoder and the incremental decoder step that ``model.generate`` calls
  ("translate"; the step compiles three graphs: the first step with empty caches, the second with caches of
  one position, then one with the cache length dynamic for every later step). fullgraph turns a graph break
  or an exceeded recompile limit into an error, never a silent fall back to eager. Every graph is compiled
  while the workload is prepared (the agreement check, then one more call that must compile nothing new), so
  no warm-up or timed call pays for compilation.
- "onnxruntime": the pass exported by ``torch.onnx.export(..., dynamo=True)`` to a temporary file (deleted
  once loaded), run by an InferenceSession on the CPUExecutionProvider with ``intra_op_num_threads`` = the
  measurement's threads, one inter-op thread, sequential execution; inputs become numpy arrays once, so a
  call times ``session.run``. "translate" exports two graphs: the encoder with the first decoder step (the
  caches as outputs), and the decoder step with every cache as input and output (the self-attention caches'
  length dynamic); the greedy loop (the models' own ``next_token``) feeds one call's caches to the next.
  fp32 only.

Neither capture can trace the data-dependent branch of :func:`models.seq2seq.padding_mask`; the latency
workloads hold no padding (their ids are no special symbol), so both capture ``encode(src, find_padding=False)``.

Before any timing a non-eager backend's result is compared with eager's on the same inputs: "forward", the
largest absolute difference of the logits (in fp32) must stay below ``LIMIT`` (bf16: ``BF16_RELATIVE`` of the
largest absolute eager logit); "translate", the greedy ids must be identical. A failed check raises BenchError,
so the figure of a wrong program is never recorded; the check's result is the record's ``agreement``.
"""

from __future__ import annotations

import importlib
import logging
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bench.errors import BenchError

BACKENDS = ("eager", "compile", "onnxruntime")
LIMIT = 1e-3  # largest absolute logit difference (fp32) a backend may show against eager
# bf16 (autocast): eager and a compiled graph round at different points, and bf16 keeps 8 significant bits, so
# they differ by a step or two of the largest logits' rounding (0.03-0.04 on the 100M models, whose logits
# reach 5-6); the limit is 4 such steps: 2**-5 of the largest absolute eager logit
BF16_RELATIVE = 2**-5
ONNX_PACKAGES = ("onnxruntime", "onnx", "onnxscript")
INSTALL = "run `make setup`, or `pip install onnxruntime onnx onnxscript`"

Call = Callable[[], Any]
CacheKey = tuple[str, str | None]  # (module's cache key, "k"/"v" of an attention cache, or None for a tensor)


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise BenchError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    return backend


def backend_version(backend: str) -> str:
    """What executes the workload, with versions: the record's ``backend_version``."""
    if check_backend(backend) != "onnxruntime":
        return f"torch {torch.__version__} {'inductor' if backend == 'compile' else 'eager'}"
    ort, onnx, onnxscript = _onnx_modules()
    return (f"onnxruntime {ort.__version__} (CPU; torch.onnx dynamo export, onnx {onnx.__version__}, "
            f"onnxscript {onnxscript.__version__})")


def prepare(backend: str, model: nn.Module, workload: str, inputs: Sequence[Tensor], reference: Call, *,
            steps: int, threads: int, dtype: str) -> tuple[Call, dict[str, Any] | None]:
    """The call to time on ``backend`` and its agreement with eager (None for eager itself).

    Args:
        backend: "eager", "compile" or "onnxruntime".
        model: the model.
        workload: "forward" or "translate".
        inputs: the workload's token tensors (translation "forward": source and teacher-forced target;
            "translate": source; language model: the tokens, or the BOS prompt).
        reference: the eager call of the same workload on them.
        steps: greedy steps of "translate".
        threads: ONNX Runtime's intra-op threads.
        dtype: "fp32" or "bf16".
    """
    check_backend(backend)
    if backend == "eager":
        return reference, None
    if backend == "compile":
        before = _graph_count()
        call, graphs = _compiled_call(model, workload, reference)
    else:
        call, graphs = _onnxruntime_call(model, workload, inputs, steps, threads, dtype)
    with torch.inference_mode():
        expected, got = reference(), call()
    check = _agreement(backend, model, workload, expected, got, dtype)
    if backend == "compile":
        graphs = _steady_graphs(call, before, model, pieces=graphs)
    return call, {"backend": backend, "backend_version": backend_version(backend), **check, "graphs": graphs}


def agreement_text(agreement: dict[str, Any]) -> str:
    """A backend's check against eager in words (the summaries' line)."""
    if agreement["check"] == "greedy_identical":
        return f"greedy ids identical ({agreement['tokens']} tokens), {agreement['graphs']} graph(s)"
    return (f"max abs logit difference {agreement['value']:.2g} (limit {agreement['limit']:.3g}), "
            f"{agreement['graphs']} graph(s)")


def _agreement(backend: str, model: nn.Module, workload: str, expected: Any, got: Any,
               dtype: str) -> dict[str, Any]:
    """The check of ``got`` (the backend's) against ``expected`` (eager's); BenchError when it fails."""
    exp, out = torch.as_tensor(expected), torch.as_tensor(got)
    what = f"backend {backend} disagrees with eager on {model.config.family} {workload} ({dtype})"
    if workload == "forward":
        exp, out = exp.float(), out.float()
        limit = LIMIT if dtype == "fp32" else BF16_RELATIVE * float(exp.abs().max())
        value = float((out - exp).abs().max()) if out.shape == exp.shape else float("inf")
        if not value < limit:  # NaN fails too
            raise BenchError(f"{what}: max abs logit difference {value:.3g} (limit {limit:.3g}); not timed")
        return {"check": "max_abs_logit_diff", "value": value, "limit": limit, "ok": True}
    differ = int(out.ne(exp).sum()) if out.shape == exp.shape else exp.numel()
    if differ:
        raise BenchError(f"{what}: {differ} of {exp.numel()} greedy token ids differ (limit 0); not timed")
    return {"check": "greedy_identical", "value": differ, "limit": 0, "ok": True, "tokens": exp.numel()}


# ============================================================================================ compile
def _compiled_call(model: nn.Module, workload: str, reference: Call) -> tuple[Call, int]:
    """The eager workload with the model's methods it calls replaced by compiled ones (see the module
    docstring), and how many pieces were compiled."""
    if workload == "forward":
        pieces = {"forward": _compile(_teacher_forced(model), dynamic=False)}
    else:
        pieces = {"decode": _compile(model.decode, dynamic=None)}  # automatic dynamic: the caches grow
        if model.config.task == "mt":
            encode = model.encode
            pieces["encode"] = _compile(lambda src: encode(src, find_padding=False), dynamic=False)

    def call() -> Any:
        with _shadowed(model, pieces):
            return reference()

    return call, len(pieces)


def _compile(fn: Callable[..., Any], dynamic: bool | None) -> Callable[..., Any]:
    # isolate_recompiles: the pieces of several models (a --compare) share code objects, not recompile limits
    return torch.compile(fn, backend="inductor", fullgraph=True, dynamic=dynamic, isolate_recompiles=True)


@contextmanager
def _shadowed(model: nn.Module, methods: dict[str, Callable[..., Any]]) -> Iterator[None]:
    """Within the block ``model.<name>`` is ``methods[name]`` (an instance attribute shadows the class's
    method), so the workload's own code (``model(...)``, ``model.generate``) runs the compiled pieces; the
    model is left as it was afterwards."""
    for name, fn in methods.items():
        setattr(model, name, fn)
    try:
        yield
    finally:
        for name in methods:
            delattr(model, name)


def _graph_count() -> int:
    """Graphs dynamo has compiled in this process."""
    from torch._dynamo.utils import counters  # torch._dynamo: loaded only for the compile backend

    return counters["stats"]["unique_graphs"]


def _steady_graphs(call: Call, before: int, model: nn.Module, pieces: int) -> int:
    """Graphs compiled since ``before`` (by the check call); one more call must compile none (else timed
    calls would recompile), and every piece must have compiled (else something ran eager)."""
    compiled = _graph_count() - before
    with torch.inference_mode():
        call()
    again = _graph_count() - before - compiled
    if again or compiled < pieces:
        raise BenchError(f"backend compile: {model.config.family} compiled {compiled} graph(s) for {pieces} "
                         f"piece(s) and {again} more on a second call; it would not time a compiled program")
    return compiled


def _teacher_forced(model: nn.Module) -> Callable[..., Tensor]:
    """The forward workload's pass as a function of its token tensors; translation skips the padding search
    (see the module docstring). The model's methods are bound here, so shadowing them later recurses nowhere."""
    if model.config.task == "mt":
        encode, decode = model.encode, model.decode
        return lambda src, prev: decode(prev, encode(src, find_padding=False))
    return model.forward


# ============================================================================================ onnxruntime
def _onnx_modules() -> list[Any]:
    """onnxruntime, onnx, onnxscript (the exporter needs the last two); BenchError naming the install."""
    out = []
    for name in ONNX_PACKAGES:
        try:
            out.append(importlib.import_module(name))
        except ImportError:
            raise BenchError(f"--backend onnxruntime needs {', '.join(ONNX_PACKAGES)}; {name} is not installed: "
                             f"{INSTALL}") from None
    return out


class _Graph(nn.Module):
    """``fn`` as the module torch.onnx exports; ``model`` is registered so that its weights export as weights."""

    def __init__(self, model: nn.Module, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.model, self.fn = model, fn
        self.training = False  # the export's mode; the model's own is left alone

    def forward(self, *args: Tensor) -> Any:
        return self.fn(*args)


def _onnxruntime_call(model: nn.Module, workload: str, inputs: Sequence[Tensor], steps: int, threads: int,
                      dtype: str) -> tuple[Call, int]:
    """The session call(s) of the exported workload, and how many graphs were exported."""
    if dtype != "fp32":
        raise BenchError(f"--backend onnxruntime measures fp32 only (the exported graph has no autocast), "
                         f"not {dtype}")
    if any(t.device.type != "cpu" for t in inputs):
        raise BenchError("--backend onnxruntime runs on the CPU (CPUExecutionProvider); use --device cpu")
    ort = _onnx_modules()[0]
    with tempfile.TemporaryDirectory(prefix="litebench-onnx-") as tmp:
        if workload == "forward":
            names = [f"tokens{i}" for i in range(len(inputs))]
            _export(_Graph(model, _teacher_forced(model)), tuple(inputs), Path(tmp, "forward.onnx"), names,
                    ["logits"])
            session = _session(ort, Path(tmp, "forward.onnx"), threads)
            feed = {n: t.numpy() for n, t in zip(names, inputs)}
            return lambda: session.run(None, feed)[0], 1
        first, step = _export_decoder(model, inputs, Path(tmp))
        sessions = _session(ort, first, threads), _session(ort, step, threads)
    return _greedy_onnx(model, inputs, steps, *sessions), 2


def _session(ort: Any, path: Path, threads: int) -> Any:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3  # errors only: its warnings would interleave with the summary
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _export(module: nn.Module, args: tuple[Tensor, ...], path: Path, inputs: list[str], outputs: list[str],
            dynamic: Any = None) -> None:
    """torch.onnx's dynamo exporter, without its warnings (optional torchvision ops, pytree deprecations):
    a latency command prints one record or summary."""
    quiet = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, str(path), dynamo=True, verbose=False, input_names=inputs,
                              output_names=outputs, dynamic_shapes=dynamic)
    finally:
        quiet.setLevel(level)


def _cache_keys(state: dict[str, Any]) -> list[CacheKey]:
    return [(k, s) for k in sorted(state) for s in (sorted(state[k]) if isinstance(state[k], dict) else [None])]


def _flatten(state: dict[str, Any], keys: list[CacheKey]) -> list[Tensor]:
    return [state[k] if s is None else state[k][s] for k, s in keys]


def _unflatten(keys: list[CacheKey], tensors: Sequence[Tensor]) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for (k, s), t in zip(keys, tensors):
        if s is None:
            state[k] = t
        else:
            state.setdefault(k, {})[s] = t
    return state


def _export_decoder(model: nn.Module, inputs: Sequence[Tensor], tmp: Path) -> tuple[Path, Path]:
    """The two graphs of greedy decoding: "first" (translation: source and BOS -> logits, encoder output and
    caches; LM: BOS -> logits and caches) and "step" (the tokens so far, the encoder output, every cache ->
    logits and the new caches). Two eager steps give the caches' structure and which of their dimensions grow;
    the step is exported at the third (caches of two positions: a length of 1 would be specialised)."""
    from models.seq2seq import EncoderOut, next_token  # the model registry: loaded only for the onnxruntime backend

    cfg, mt = model.config, model.config.task == "mt"
    src, bos = (inputs[0], _bos(inputs[0], cfg)) if mt else (None, inputs[0])
    with torch.no_grad():
        enc = model.encode(src, find_padding=False) if mt else None
        tokens, state, shapes = bos, {}, []
        for _ in range(2):
            logits = (model.decode(tokens, enc, state) if mt else model.decode(tokens, state))[:, -1]
            keys = _cache_keys(state)
            shapes.append([tuple(t.shape) for t in _flatten(state, keys)])
            tokens = torch.cat([tokens, next_token(logits, cfg)[:, None]], dim=1)
    caches = _flatten(state, keys)
    names = [f"cache{i}" for i in range(len(keys))]
    grows = tuple({d: torch.export.Dim.DYNAMIC for d, (a, b) in enumerate(zip(s1, s2)) if a != b} or None
                  for s1, s2 in zip(*shapes))

    if mt:
        def first(src: Tensor, bos: Tensor) -> tuple[Tensor, ...]:
            enc, new = model.encode(src, find_padding=False), {}
            return (model.decode(bos, enc, new)[:, -1], enc.out, *_flatten(new, keys))

        def step(tokens: Tensor, enc_out: Tensor, *caches: Tensor) -> tuple[Tensor, ...]:
            new = _unflatten(keys, caches)
            return (model.decode(tokens, EncoderOut(enc_out, None), new)[:, -1], *_flatten(new, keys))

        first_args, first_in, context = (src, bos), ["src", "bos"], ["enc"]
        step_args = (tokens, enc.out, *caches)
    else:
        def first(bos: Tensor) -> tuple[Tensor, ...]:
            new: dict[str, Any] = {}
            return (model.decode(bos, new)[:, -1], *_flatten(new, keys))

        def step(tokens: Tensor, *caches: Tensor) -> tuple[Tensor, ...]:
            new = _unflatten(keys, caches)
            return (model.decode(tokens, new)[:, -1], *_flatten(new, keys))

        first_args, first_in, context = (bos,), ["bos"], []
        step_args = (tokens, *caches)
    _export(_Graph(model, first), first_args, tmp / "first.onnx", first_in, ["logits", *context, *names])
    _export(_Graph(model, step), step_args, tmp / "step.onnx", ["tokens", *context, *names],
            ["logits", *[f"new_{n}" for n in names]],
            {"args": ({1: torch.export.Dim.DYNAMIC}, *[None] * len(context), *grows)})
    return tmp / "first.onnx", tmp / "step.onnx"


def _bos(src: Tensor, cfg: Any) -> Tensor:
    return torch.full((src.size(0), 1), cfg.bos_id, dtype=torch.long)


def _greedy_onnx(model: nn.Module, inputs: Sequence[Tensor], steps: int, first: Any, step: Any) -> Call:
    """Greedy decoding of exactly ``steps`` steps on the two sessions, by the rule of the models' ``generate``
    (``next_token``; a finished row continues with padding), caches passed from one call to the next."""
    from models.seq2seq import next_token  # the model registry: loaded only for the onnxruntime backend

    cfg, mt = model.config, model.config.task == "mt"
    bos = _bos(inputs[0], cfg) if mt else inputs[0]
    first_feed = {"src": inputs[0].numpy(), "bos": bos.numpy()} if mt else {"bos": bos.numpy()}
    cache_names = [i.name for i in step.get_inputs()][2 if mt else 1:]

    def call() -> Tensor:
        with torch.inference_mode():
            out = first.run(None, first_feed)
            logits, context = out[0], ({"enc": out[1]} if mt else {})
            caches = out[2:] if mt else out[1:]
            tokens, finished = bos, torch.zeros(bos.size(0), dtype=torch.bool)
            for i in range(steps):
                if i:
                    logits, *caches = step.run(None, {"tokens": tokens.numpy(), **context,
                                                      **dict(zip(cache_names, caches))})
                nxt = next_token(torch.from_numpy(logits), cfg).masked_fill(finished, cfg.pad_id)
                tokens = torch.cat([tokens, nxt[:, None]], dim=1)
                finished |= nxt.eq(cfg.eos_id)
            return tokens[:, 1:]

    return call
