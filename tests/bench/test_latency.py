"""Latency, memory and isolation: statistics against independent references, the workloads' exact work, the
setting really applied, the JSON record, bad input. Slow tests (``-m slow``) check the protocol's noise
targets on the 100M models and our Transformer against torch.nn.Transformer."""

from __future__ import annotations

import io
import json
import math
import os
import statistics
import time
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest
import torch

from bench import latency as L
from bench.budget.spec import load_budget
from bench.cost.memory import MB, measure_peak_memory, serialized_size_bytes
from bench.errors import BenchError
from bench.latency import record
from models import create_model
from models.layers.attention import IMPLS, MultiheadAttention, set_attention_impl
from tests.conftest import small_model
from tests.torch_reference import TorchTransformerReference, compare_with_torch_transformer

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device on this machine (torch.cuda.is_available() is False)")
TINY_SETS = [
    "d_model=32",
    "heads=4",
    "encoder_layers=1",
    "decoder_layers=1",
    "vocab_size=50",
    "encoder_attention_heads=4",
]
TINY = [word for kv in TINY_SETS for word in ("--set", kv)]
QUICK = dict(warmup=10, min_runs=30, min_time_s=0.05)


def tiny_transformer(**extra) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = dict(d_model=32, heads=4, encoder_attention_heads=4, encoder_layers=1, decoder_layers=1, vocab_size=50)
    return create_model("transformer", **{**cfg, **extra}).eval()


# ============================================================================================ statistics
FIXED = [5.2, 4.9, 5.0, 5.1, 7.3, 5.0, 4.8, 5.05, 5.15, 4.95, 5.3, 6.1]


def test_statistics_against_numpy_and_stdlib():
    m = L.Measurement(list(FIXED))
    x = np.array(FIXED)
    assert m.n == 12
    assert m.p50_ms == pytest.approx(np.median(x)) == pytest.approx(statistics.median(FIXED))
    assert m.p90_ms == pytest.approx(np.percentile(x, 90))
    q1, _, q3 = statistics.quantiles(FIXED, n=4, method="inclusive")  # the same linear rule, another library
    assert m.iqr_ms == pytest.approx(q3 - q1)
    assert m.mean_ms == pytest.approx(statistics.fmean(FIXED))
    assert m.cv == pytest.approx(statistics.stdev(FIXED) / statistics.fmean(FIXED))


def test_statistics_hand_values():
    m = L.Measurement([float(i) for i in range(1, 11)])  # 1..10
    assert (m.p50_ms, m.p90_ms, m.iqr_ms, m.mean_ms) == pytest.approx((5.5, 9.1, 4.5, 5.5))
    assert m.cv == pytest.approx(math.sqrt(55 / 6) / 5.5)  # sample variance of 1..10 is 55/6


def test_warning_when_spread_too_wide_or_minima_missed():
    tight = L.Measurement([10.0 + 0.01 * (i % 5) for i in range(40)], min_time_s=0.0)
    tight.samples_ms += [10.0] * 60  # 100 calls of ~10 ms: 1 s
    assert tight.warning is None
    wide = L.Measurement([10.0] * 50 + [30.0] * 50)
    assert "CV" in wide.warning and "IQR" in wide.warning
    few = L.Measurement([50.0] * 10)
    assert "minima" in few.warning


def test_time_callable_meets_protocol_minima():
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.002)

    m = L.time_callable(fn, warmup=10, min_runs=30, min_time_s=0.1)
    assert len(calls) == 10 + m.n
    assert m.n >= 30 and sum(m.samples_ms) >= 100.0
    assert all(s >= 2.0 for s in m.samples_ms)  # each sample is one whole call
    calls.clear()
    m = L.time_callable(fn, warmup=10, min_runs=30, min_time_s=0.01)
    assert m.n == 30 and len(calls) == 40  # here the count, not the time, is binding


# ============================================================================================ setting
def test_thread_count_really_applied():
    model = tiny_transformer()
    seen = []
    decode = model.decode

    def spy(*a, **k):
        seen.append(torch.get_num_threads())
        return decode(*a, **k)

    model.decode = spy
    before = torch.get_num_threads()
    n = min(2, L.all_cores())
    rec = L.measure_latency(model, threads=n, gemm=False, memory=False, **QUICK)
    assert rec.threads == n and set(seen) == {n}
    assert torch.get_num_threads() == before  # restored
    seen.clear()
    assert L.measure_latency(model, threads=1, gemm=False, memory=False, **QUICK).threads == 1
    assert set(seen) == {1}


def _cpu_ticks_by_thread() -> dict[str, int]:
    """utime + stime (clock ticks) of every OS thread of this process, from /proc/self/task/*/stat."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()  # fields from 3 (state) on
            out[tid] = int(rest[11]) + int(rest[12])  # fields 14 and 15
        except (OSError, IndexError, ValueError):
            pass
    return out


@pytest.mark.skipif(L.all_cores() < 2, reason="needs at least 2 cores")
@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc to see threads")
def test_threads_really_run_in_parallel():
    """Count the OS threads that burn CPU during large matmuls: 1 at threads=1, 2 at threads=2. (Counting
    busy threads, not CPU/wall time, so another process on the shared cores cannot fake or hide it.)"""
    a = torch.randn(1024, 1024)

    def busy_threads(threads: int) -> int:
        with L.num_threads(threads):
            torch.mm(a, a)
            before = _cpu_ticks_by_thread()
            t_end = time.perf_counter() + 0.6
            while time.perf_counter() < t_end:
                torch.mm(a, a)
            after = _cpu_ticks_by_thread()
        return sum(1 for tid, t in after.items() if t - before.get(tid, 0) >= 3)  # >= 30 ms of CPU

    assert busy_threads(1) == 1
    assert busy_threads(2) == 2


def test_threads_argument_checked():
    assert L.check_threads("all") == L.check_threads(None) == L.all_cores()
    assert L.check_threads("2") == 2
    for bad in (0, "0", -1, "1.5", "two", True):
        with pytest.raises(BenchError, match="--threads"):
            L.check_threads(bad)


def test_device_name_states_the_model():
    name = L.device_name("cpu")
    assert L.cpu_model_name() in name and "cores" in name


# ============================================================================================ workloads
def _count_calls(model):
    counts = {"decode": 0, "encode": 0}
    for attr in counts:
        if hasattr(model, attr):
            orig = getattr(model, attr)

            def spy(*a, _orig=orig, _attr=attr, **k):
                counts[_attr] += 1
                return _orig(*a, **k)

            setattr(model, attr, spy)
    return counts


def test_translate_runs_exactly_30_decoder_steps():
    model = small_model("lite_dynamic_glu")
    counts = _count_calls(model)
    out = L.make_workload(model, "translate")()
    assert counts == {"decode": 30, "encode": 1}
    assert out.shape == (1, 30)  # no early stop


def test_forward_is_one_teacher_forced_pass_of_30_plus_30():
    model = small_model("transformer")
    counts = _count_calls(model)
    logits = L.make_workload(model, "forward", batch=2)()
    assert counts == {"decode": 1, "encode": 1}
    assert logits.shape == (2, 30, model.config.target_vocab)


def test_language_model_workloads():
    model = small_model("evolved", task="lm")
    counts = _count_calls(model)
    assert L.make_workload(model, "forward")().shape == (1, 30, model.config.vocab_size)
    assert counts["decode"] == 1
    counts["decode"] = 0
    assert L.make_workload(model, "translate")().shape == (1, 30)
    assert counts["decode"] == 30  # 30 incremental steps from BOS, no prefill


def test_bf16_autocast_runs():
    model = small_model("lite_light_iwslt")
    with L.num_threads(1):  # tiny bf16 GEMMs on 2 threads stall for ms when another process holds a core
        out = L.make_workload(model, "forward", dtype="bf16")()
        assert out.dtype == torch.bfloat16
        assert L.make_workload(model, "translate", dtype="bf16")().shape == (1, 30)


def _hand_macs(d, f, V, S=30, T=30):
    """1 encoder + 1 decoder layer Transformer, output projection included, explicit attention."""
    enc = 4 * S * d * d + 2 * S * S * d + 2 * S * d * f
    fwd_dec = 4 * T * d * d + 2 * T * T * d + 2 * T * d * d + 2 * S * d * d + 2 * T * S * d + 2 * T * d * f
    forward = enc + fwd_dec + T * d * V
    steps = sum(4 * d * d + 2 * t * d + 2 * d * d + 2 * S * d + 2 * d * f + d * V for t in range(1, 31))
    translate = enc + 2 * S * d * d + steps  # encoder-decoder K/V projected once
    return forward, translate


@pytest.mark.parametrize("impl", IMPLS)
def test_workload_macs_against_hand_formula(impl):
    model = tiny_transformer()
    set_attention_impl(model, impl)
    forward, translate = _hand_macs(32, 128, 50)
    assert L.count_workload_macs(L.make_workload(model, "forward")) == forward
    assert L.count_workload_macs(L.make_workload(model, "translate")) == translate


def _hand_macs_lite(d, f, V, kernels, conv_heads=4, S=30, T=30):
    """Lite (dynamic conv + GLU), output projection included: LSRA = attention on c = d/2 channels beside
    Linear(c, 2c) + GLU -> kernel predictor (c*H*K) -> conv (c*K) -> Linear(c, c)."""
    c = d // 2

    def lsra(t, keys, k):  # t queries against ``keys`` keys
        return 4 * t * c * c + 2 * t * keys * c + t * 2 * c * c + t * c * conv_heads * k + t * c * k + t * c * c

    enc = sum(lsra(S, S, k) + 2 * S * d * f for k in kernels)
    cross = 2 * T * d * d + 2 * S * d * d + 2 * T * S * d
    forward = enc + sum(lsra(T, T, k) + cross + 2 * T * d * f for k in kernels) + T * d * V
    steps = sum(lsra(1, t, k) + 2 * d * d + 2 * S * d + 2 * d * f for t in range(1, 31) for k in kernels)
    translate = enc + len(kernels) * 2 * S * d * d + steps + 30 * d * V  # cross K/V projected once per layer
    return forward, translate


def test_lite_workload_macs_against_hand_formula():
    model = small_model("lite_dynamic_glu")  # d=32, 2+2 layers, kernels 3 and 7, flattened FFN (f = d)
    forward, translate = _hand_macs_lite(32, 32, 50, [3, 7])
    assert L.count_workload_macs(L.make_workload(model, "forward")) == forward
    assert L.count_workload_macs(L.make_workload(model, "translate")) == translate


# ============================================================================================ attention paths
@pytest.mark.parametrize("impl", ["sdpa", "auto"])
def test_attention_paths_agree_within_1e5(impl):
    torch.manual_seed(3)
    ref = MultiheadAttention(48, 6).eval()
    alt = MultiheadAttention(48, 6, impl=impl).eval()
    alt.load_state_dict(ref.state_dict())
    x, enc = torch.randn(2, 9, 48), torch.randn(2, 7, 48)
    pad = torch.tensor([[False] * 7, [False] * 5 + [True] * 2])
    with torch.inference_mode():
        for kw in ({}, {"causal": True}, {"key": enc, "key_padding_mask": pad}):
            torch.testing.assert_close(alt(x, **kw), ref(x, **kw), atol=1e-5, rtol=1e-5)
        for static, key, mask in ((False, None, None), (True, enc, pad)):  # incremental steps
            s_ref, s_alt = {}, {}
            for t in range(9):
                q = x[:, t : t + 1]
                a = ref(q, key, key_padding_mask=mask, causal=not static, state=s_ref, static_kv=static)
                b = alt(q, key, key_padding_mask=mask, causal=not static, state=s_alt, static_kv=static)
                torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="valid: matmul, sdpa, auto"):
        MultiheadAttention(8, 2, impl="flash")


# ============================================================================================ memory
def test_peak_memory_sees_a_workload_allocation():
    def workload():
        x = torch.ones(50 * 10**6 // 4)  # 50 MB, written so it is resident
        return float(x[-1])

    mem = measure_peak_memory(workload)
    assert mem.method == "VmHWM reset"
    assert 45 <= mem.workload_mb <= 80
    assert mem.peak_rss_mb >= mem.workload_mb
    assert measure_peak_memory(lambda: None).workload_mb < 5


def test_serialized_size_counts_tied_weights_once():
    tied = tiny_transformer(vocab_size=2000)
    untied = tiny_transformer(vocab_size=2000, share_embeddings=False)
    size = serialized_size_bytes(tied)
    tensors = sum(t.numel() * t.element_size() for t in tied.state_dict().values())  # 3 names, 1 embedding
    unique = sum(p.numel() * 4 for p in tied.parameters())  # parameters() yields a tied tensor once
    assert unique <= size <= unique + 64 * 1024
    assert size < tensors - 2 * 2000 * 32 * 4 + 64 * 1024
    extra = 2 * 2000 * 32 * 4  # untied: a target embedding and an output projection of their own
    assert serialized_size_bytes(untied) - size == pytest.approx(extra, abs=4096)


# ============================================================================================ GEMM limit
def test_gemm_rate_is_measured_once_per_setting():
    t0 = time.perf_counter()
    r = L.measure_gemm_rate(1, size=512)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert L.measure_gemm_rate(1, size=512) is r
    assert time.perf_counter() - t0 < first / 10
    assert r.gmacs == pytest.approx(512**3 / (r.p50_ms / 1e3) / 1e9)
    assert 0.5 < r.gmacs < 10_000
    assert L.measure_gemm_rate(1, size=256) is not r


# ============================================================================================ record and CLI
def _cli(argv):
    from bench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["latency", *argv])
    return code, out.getvalue(), err.getvalue()


REQUIRED_KEYS = set(
    "model config workload device threads dtype batch p50_ms p90_ms mean_ms iqr_ms cv n samples_ms device_model "
    "torch_version peak_rss_mb workload_memory_mb model_size_mb model_size_bytes gemm_gmacs achieved_gmacs "
    "efficiency workload_macs params params_total warning".split()
)


def test_json_record(monkeypatch):
    monkeypatch.setattr(record, "measure_gemm_rate", lambda threads, device: L.GemmRate("cpu", threads, 1, 1.0, 50.0))
    code, out, err = _cli(["transformer", *TINY, "--workload", "translate", "--json", "--min-time", "0.05"])
    assert code == 0, err
    rec = json.loads(out)
    assert REQUIRED_KEYS <= set(rec)
    setting = (rec["model"], rec["workload"], rec["device"], rec["threads"], rec["dtype"], rec["batch"])
    assert setting == ("transformer", "translate", "cpu", 1, "fp32", 1)
    assert rec["decode_steps"] == 30 and rec["torch_version"] == torch.__version__
    assert rec["n"] == len(rec["samples_ms"]) >= 30
    assert rec["p50_ms"] == pytest.approx(float(np.median(rec["samples_ms"])))
    assert rec["gemm_gmacs"] == 50.0
    assert rec["efficiency"] == pytest.approx(rec["workload_macs"] / (rec["p50_ms"] / 1e3) / 1e9 / 50.0)
    assert rec["model_size_mb"] == rec["model_size_bytes"] / MB
    rebuilt = create_model(rec["model"], **rec["config"])  # the config rebuilds exactly this model
    assert rebuilt.config.to_dict() == rec["config"]


def test_human_summary_names_units(monkeypatch):
    monkeypatch.setattr(record, "measure_gemm_rate", lambda threads, device: L.GemmRate("cpu", threads, 1, 1.0, 50.0))
    sets = ["d_model=32", "encoder_attention_heads=4", "vocab_size=50", "encoder_layers=1", "decoder_layers=1"]
    code, out, _ = _cli(["lite_transformer", *[w for kv in sets for w in ("--set", kv)], "--min-time", "0.05"])
    assert code == 0
    assert "p50" in out and " ms" in out and "MB" in out and "GMAC/s" in out and "1 thread" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["transformer", "--threads", "0"], "--threads must be a positive integer"),
        (["transformer", "--workload", "nonsense"], "unknown workload 'nonsense'; valid: forward, translate"),
        (["transformer", "--dtype", "fp16"], "unknown dtype 'fp16'; valid: fp32, bf16"),
        (["transformer", "--device", "tpu"], "unknown device 'tpu'; valid: cpu, cuda"),
        (["transformer", "--batch", "0"], "--batch must be an integer >= 1"),
        (["transformer", "--task", "asr"], "unknown task 'asr'"),
        (["no_such_model"], "unknown model 'no_such_model'"),
        (["transformer", "--set", "d_model"], "KEY=VALUE"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message):
    code, out, err = _cli(argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


@pytest.mark.skipif(CUDA, reason="a CUDA device is present, so --device cuda is valid here")
def test_cuda_without_gpu_is_bad_input():
    code, _, err = _cli(["transformer", "--device", "cuda"])
    assert code == 2 and err.count("\n") == 1 and "no CUDA device is available" in err
    with pytest.raises(BenchError, match="no CUDA device"):
        L.measure_latency(tiny_transformer(), device="cuda")


def test_python_api_rejects_bad_input():
    model = tiny_transformer()
    with pytest.raises(BenchError, match="workload"):
        L.measure_latency(model, "nonsense")
    with pytest.raises(BenchError, match="--threads"):
        L.measure_latency(model, threads=0)
    with pytest.raises(BenchError, match="--batch"):
        L.measure_latency(model, batch=0)


# ============================================================================================ isolation
def test_measure_in_subprocess_returns_the_child_record():
    cfg = tiny_transformer().config.to_dict()
    rec = L.measure_in_subprocess("transformer", cfg, workload="forward", min_time_s=0.05, paper_macs=(7, 8),
                                  timeout_s=300)
    assert rec["model"] == "transformer" and rec["config"] == cfg and rec["n"] >= 30
    assert (rec["macs"], rec["macs_with_output"]) == (7, 8)  # the caller's counts, not a count of its own
    with pytest.raises(BenchError, match="failed in its own process.*unknown workload"):
        L.measure_in_subprocess("transformer", cfg, workload="nonsense", timeout_s=300)


def test_latency_child_loads_no_evaluation_or_counting_modules(tmp_path):
    """The child's peak memory counts what a latency measurement needs: not sacreBLEU, sentencepiece, fvcore
    or pandas."""
    import subprocess
    import sys

    from bench.infra.launcher import child_env
    from bench.records.provenance import REPO

    code = (
        "import json, sys; from bench.latency.record import measure_model; "
        "measure_model('transformer', json.loads(sys.argv[1]), min_time_s=0.0, min_runs=2, warmup=1); "
        "print(json.dumps(sorted(m for m in ('sacrebleu', 'sentencepiece', 'fvcore', 'pandas', 'bench.cli') "
        "if m in sys.modules)))"
    )
    cfg = json.dumps(tiny_transformer().config.to_dict())
    proc = subprocess.run([sys.executable, "-c", code, cfg], capture_output=True, text=True, cwd=REPO,
                          env=child_env(1), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_torch_transformer_reference_runs_the_same_shape(monkeypatch):
    # the reference is made slower by a known 20 ms per call, so the ratio has a side it must fall on (ours
    # at d=32 takes well under 1 ms, so < 0.5 leaves a factor of > 10 for a loaded machine)
    forward = TorchTransformerReference.forward

    def slowed(self, *args):
        time.sleep(0.02)
        return forward(self, *args)

    monkeypatch.setattr(TorchTransformerReference, "forward", slowed)
    r = compare_with_torch_transformer(32, 1, layers=1, heads=4, vocab=50, warmup=2, min_runs=5, min_time_s=0.0)
    assert r["ours"]["n"] == r["torch"]["n"] >= 5 and r["threads"] == 1
    assert r["torch"]["p50_ms"] >= 20.0
    assert r["ratio"] == pytest.approx(r["ours"]["p50_ms"] / r["torch"]["p50_ms"])
    assert r["ratio"] < 0.5 and r["paired_ratio"] < 0.5
    ref = TorchTransformerReference(32, 4, 1, 128, 50)
    ours = tiny_transformer()
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # same weights up to nn.Transformer's two final LayerNorms (2 x 2d) and our sinusoids (no parameters)
    assert count(ref) == count(ours) + 4 * 32


# ============================================================================================ GPU
@pytest.mark.gpu
@needs_cuda
def test_cuda_latency_uses_events_and_reports_gpu_memory():
    rec = L.measure_latency(tiny_transformer(), "translate", device="cuda", **QUICK)
    d = rec.to_dict()
    assert d["timer"] == "cuda events" and d["device"].startswith("cuda")
    assert d["device_model"] == torch.cuda.get_device_name(0)
    assert d["peak_gpu_mb"] > 0 and rec.n >= 30 and d["efficiency"] > 0


@pytest.mark.gpu
@needs_cuda
def test_cuda_bf16_and_gemm_rate():
    rec = L.measure_latency(tiny_transformer(), "forward", device="cuda", dtype="bf16", **QUICK)
    assert rec.setting.dtype == "bf16" and rec.p50_ms > 0
    assert L.measure_gemm_rate(1, "cuda", size=4096).gmacs > 100


# ============================================================================================ slow: protocol targets
HUNDRED_M = list(load_budget("100M").models)  # solved at budgets/100M.yaml


def budget_model(name: str) -> torch.nn.Module:
    from bench.budget.resolve import resolve_model

    return create_model(name, **resolve_model(name, "mt", "100M").to_dict()).eval()


@pytest.mark.slow
@pytest.mark.parametrize("name", HUNDRED_M)
def test_forward_cv_under_5_percent_at_one_thread(name):
    torch.manual_seed(0)
    model = budget_model(name)
    cvs = [L.measure_latency(model, "forward", threads=1, gemm=False, memory=False).cv for _ in range(5)]
    assert statistics.median(cvs) < 0.05, f"{name}: CVs {[f'{c:.1%}' for c in cvs]}"


@pytest.mark.slow
@pytest.mark.parametrize("name", HUNDRED_M)
def test_p50_agrees_with_torch_utils_benchmark(name):
    from torch.utils import benchmark as tb

    torch.manual_seed(0)
    model = budget_model(name)
    fn = L.make_workload(model, "forward")
    ours, theirs = [], []
    for _ in range(3):  # alternate, so drift on a shared machine hits both
        ours.append(L.measure_latency(model, "forward", threads=1, gemm=False, memory=False).p50_ms)
        timer = tb.Timer("fn()", globals={"fn": fn}, num_threads=1)
        theirs.append(timer.blocked_autorange(min_run_time=1.0).median * 1e3)
    a, b = statistics.median(ours), statistics.median(theirs)
    assert abs(a / b - 1) < 0.10, f"{name}: ours {a:.3f} ms vs torch.utils.benchmark {b:.3f} ms"


@pytest.mark.slow
def test_ours_no_slower_than_torch_transformer_at_d512():
    r = compare_with_torch_transformer(512, 1, min_time_s=3.0)
    small = compare_with_torch_transformer(128, 1, min_time_s=2.0)
    print(
        f"ours / nn.Transformer at 1 thread: d=512 {r['ratio']:.3f} (paired {r['paired_ratio']:.3f}), "
        f"d=128 {small['ratio']:.3f} (paired {small['paired_ratio']:.3f})"
    )
    # "no slower", allowing 2% for the noise of a shared machine (the paired ratio cancels drift)
    assert r["paired_ratio"] <= 1.02, r
