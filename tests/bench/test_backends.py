"""Latency backends (bench.latency.backends): torch.compile and ONNX Runtime agree with eager on every family,
a backend that disagrees is never timed, a missing package and an unknown backend are one line each, the CLI
records the backend and its agreement, and the default (eager) is what it always was."""

from __future__ import annotations

import io
import json
import sys
import tempfile
from contextlib import redirect_stderr, redirect_stdout

import pytest
import torch

from bench import latency as L
from bench.cli import main
from bench.errors import BenchError
from bench.latency import backends, record
from bench.latency.compare import compare_latency
from models import create_model, families

FAMILIES = tuple(families())  # every registered family, a new one included
TINY = dict(d_model=32, ffn_dim=64, encoder_layers=1, decoder_layers=1, heads=2, encoder_attention_heads=2,
            vocab_size=64)
TINY_SETS = [w for k, v in TINY.items() for w in ("--set", f"{k}={v}")]
QUICK = dict(warmup=2, min_runs=5, min_time_s=0.01, gemm=False, memory=False)


def tiny(family: str = "transformer", task: str = "mt") -> torch.nn.Module:
    torch.manual_seed(0)
    kw = dict(TINY) if task == "mt" else {k: v for k, v in TINY.items() if "encoder" not in k}
    return create_model(family, task=task, **kw).eval()


def cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["latency", *argv])
    return code, out.getvalue(), err.getvalue()


# ============================================================================================ agreement
@pytest.mark.parametrize("backend", ["compile", "onnxruntime"])
@pytest.mark.parametrize("family", FAMILIES)
def test_backends_agree_with_eager_on_forward(family: str, backend: str) -> None:
    model = tiny(family)
    work = L.make_workload(model, "forward", backend=backend, threads=1)
    a = work.agreement
    assert (work.backend, a["backend"], a["check"], a["ok"]) == (backend, backend, "max_abs_logit_diff", True)
    assert a["value"] < a["limit"] == backends.LIMIT and a["graphs"] == 1
    assert work.backend_version == a["backend_version"] == backends.backend_version(backend)
    out = torch.as_tensor(work())  # the timed call gives the logits eager gives
    assert (out - work.reference()).abs().max() < 1e-3
    assert "forward" not in vars(model)  # the compiled pieces shadow the model's methods only while a call runs


@pytest.mark.parametrize("family", FAMILIES)
def test_onnxruntime_translates_like_eager(family: str) -> None:
    work = L.make_workload(tiny(family), "translate", backend="onnxruntime", threads=1)
    a = work.agreement
    assert (a["check"], a["value"], a["tokens"], a["graphs"]) == ("greedy_identical", 0, 30, 2)
    assert torch.equal(work(), work.reference())


@pytest.mark.parametrize("backend", ["compile", "onnxruntime"])
def test_language_model_translate_on_each_backend(backend: str) -> None:
    work = L.make_workload(tiny("lite_transformer", task="lm"), "translate", backend=backend, threads=1)
    assert work.agreement["check"] == "greedy_identical" and torch.equal(work(), work.reference())


def test_compile_translate_compiles_the_encoder_and_the_decoder_step() -> None:
    model = tiny("transformer")
    work = L.make_workload(model, "translate", backend="compile")
    # encoder + first step (empty caches) + second step + the step with a dynamic cache length
    assert work.agreement["graphs"] >= 2 and work.agreement["value"] == 0
    assert torch.equal(work(), work.reference()) and not {"encode", "decode"} & set(vars(model))


def test_the_exported_file_is_deleted(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    L.make_workload(tiny(), "forward", backend="onnxruntime", threads=1)
    assert list(tmp_path.iterdir()) == []


def test_without_padding_search_encoding_is_unchanged() -> None:
    model = tiny()
    src = torch.randint(4, 64, (2, 9))
    with torch.inference_mode():
        assert torch.equal(model.encode(src).out, model.encode(src, find_padding=False).out)
        src[0, -2:] = model.config.pad_id  # padding: the default still finds and masks it
        assert model.encode(src).padding_mask is not None
        assert model.encode(src, find_padding=False).padding_mask is None


# ============================================================================================ failures
def test_an_altered_exported_model_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    export = backends._export

    def export_then_alter(module, *args, **kwargs):  # the model eager runs moves away from the exported one
        export(module, *args, **kwargs)
        with torch.no_grad():
            module.model.decoder.layers[0].ffn.fc1.weight.mul_(1.5)

    monkeypatch.setattr(backends, "_export", export_then_alter)
    with pytest.raises(BenchError, match=r"backend onnxruntime disagrees with eager on transformer forward \(fp32\): "
                                         r"max abs logit difference .* \(limit 0.001\); not timed") as exc:
        L.measure_latency(tiny(), "forward", backend="onnxruntime", **QUICK)
    assert "\n" not in str(exc.value)


def test_a_compiled_call_off_by_a_hundredth_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled = backends._compiled_call

    def off(model, workload, reference):
        call, pieces = compiled(model, workload, reference)
        return (lambda: call() + 1e-2), pieces

    monkeypatch.setattr(backends, "_compiled_call", off)
    with pytest.raises(BenchError, match=r"backend compile disagrees with eager on lite_transformer forward .*"
                                         r"difference 0.01 \(limit 0.001\)"):
        L.make_workload(tiny("lite_transformer"), "forward", backend="compile")


def test_a_different_greedy_token_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    run = backends._onnxruntime_call

    def one_token_off(*args):
        call, graphs = run(*args)

        def altered():
            ids = call().clone()
            ids[0, 5] = 3 if ids[0, 5] != 3 else 4
            return ids

        return altered, graphs

    monkeypatch.setattr(backends, "_onnxruntime_call", one_token_off)
    with pytest.raises(BenchError, match="1 of 30 greedy token ids differ"):
        L.make_workload(tiny(), "translate", backend="onnxruntime")


@pytest.mark.parametrize("missing", backends.ONNX_PACKAGES)
def test_a_missing_package_says_how_to_install_it(missing: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # import fails as for a package that is not installed
    with pytest.raises(BenchError) as exc:
        L.make_workload(tiny(), "forward", backend="onnxruntime")
    msg = str(exc.value)
    assert f"{missing} is not installed" in msg and "make setup" in msg and "\n" not in msg
    assert "pip install onnxruntime onnx onnxscript" in msg


def test_unknown_backend_and_onnxruntime_in_bf16_are_errors() -> None:
    message = "unknown backend 'tensorrt'; valid: eager, compile, onnxruntime"
    for call in (lambda: L.make_workload(tiny(), backend="tensorrt"),
                 lambda: L.measure_latency(tiny(), backend="tensorrt", **QUICK),
                 lambda: L.measure_in_subprocess("transformer", dict(TINY), backend="tensorrt"),
                 lambda: compare_latency([("a", "transformer", TINY), ("b", "lite_transformer", TINY)],
                                         backend="tensorrt")):
        with pytest.raises(BenchError, match=message):
            call()
    with pytest.raises(BenchError, match="onnxruntime measures fp32 only"):
        L.make_workload(tiny(), backend="onnxruntime", dtype="bf16")


# ============================================================================================ records, CLI
def test_eager_is_the_default_and_says_so() -> None:
    work = L.make_workload(tiny())
    assert (work.backend, work.agreement, work.run) == ("eager", None, work.reference)
    rec = L.measure_latency(tiny(), **QUICK).to_dict()
    assert (rec["backend"], rec["agreement"]) == ("eager", None)
    assert rec["backend_version"] == f"torch {torch.__version__} eager"


def test_cli_records_the_backend_and_its_agreement(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(record, "measure_gemm_rate", lambda threads, device: L.GemmRate("cpu", threads, 1, 1.0, 50.0))
    code, out, err = cli(["transformer", *TINY_SETS, "--backend", "onnxruntime", "--json", "--warmup", "2",
                          "--min-runs", "5", "--min-time", "0.01"])
    assert code == 0, err
    rec = json.loads(out)
    assert rec["p50_ms"] > 0 and rec["backend"] == "onnxruntime"
    assert rec["backend_version"].startswith("onnxruntime ") and rec["agreement"]["ok"] is True
    assert rec["agreement"]["value"] < 1e-3 and rec["workload_macs"] > 0  # counted on the eager workload

    code, out, err = cli(["transformer", *TINY_SETS, "--backend", "onnxruntime", "--warmup", "2", "--min-runs",
                          "5", "--min-time", "0.01"])
    assert code == 0, err
    assert "fp32, onnxruntime [onnxruntime " in out and "agrees with eager: max abs logit difference" in out


def test_cli_bad_backend_is_one_line_and_exit_2() -> None:
    code, out, err = cli(["transformer", "--backend", "tensorrt"])
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "unknown backend 'tensorrt'; valid: eager, compile, onnxruntime" in err


def test_compare_runs_every_member_on_the_backend() -> None:
    members = [("t", "transformer", TINY), ("l", "lite_transformer", TINY)]
    res = compare_latency(members, backend="onnxruntime", rounds=2, warmup=1, min_calls=1, turn_s=0.0,
                          resamples=10)
    assert res["backend"] == "onnxruntime" and res["backend_version"] == backends.backend_version("onnxruntime")
    assert set(res["agreement"]) == {"t", "l"} and all(a["ok"] for a in res["agreement"].values())
    assert res["p50_ms"]["t"] > 0 and res["p50_ms"]["l"] > 0
