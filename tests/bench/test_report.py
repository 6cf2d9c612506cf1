"""bench.report: run records -> leaderboard (CSV/MD/TeX) and Pareto figures, on synthetic records."""

from __future__ import annotations

import argparse
import itertools
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.cli import build_parser
from bench.cli.sweep import cmd_report as run
from bench.errors import BenchError
from bench.report.combined import write_combined_figure
from bench.report.figures import FIGURES, pareto_front, write_figures
from bench.report.leaderboard import build_leaderboard, display_name
from bench.report.records import load_records
from bench.report.render import write_leaderboard

COUNTERS = ("flop_counter", "fvcore", "thop", "analytic")
SEEDS = (1, 2)
# model -> (d_model, ffn_dim, enc, dec, params, macs, fwd ms at 1 thread, BLEU per seed, valid NLL per seed)
MODELS = {
    "transformer": (136, 560, 6, 6, 3_185_856, 99_192_960, 4.0, (20.1, 21.3), (2.10, 2.04)),
    "lite_transformer": (200, 200, 6, 6, 2_900_000, 100_800_000, 5.5, (22.0, 22.9), (1.95, 1.90)),
    "evolved_transformer": (176, 704, 3, 4, 3_000_000, 98_500_000, 6.5, None, None),  # not trained yet
}


def _common(model: str, budget: str, task: str, target: float, h: str) -> dict:
    d, ffn, enc, dec = MODELS[model][:4]
    return {
        "model": model,
        "family": model,
        "budget": budget,
        "target_macs": int(target),
        "task": task,
        "config_hash": h,
        "config": {
            "d_model": d,
            "ffn_dim": ffn,
            "encoder_layers": 0 if task == "lm" else enc,
            "decoder_layers": dec,
            "heads": 8,
            "kernel_sizes": [3, 7],
        },
        "env": {
            "torch": "2.13.0",
            "python": "3.11.9",
            "device_model": "Test CPU 9000",
            "git_commit": "abc1234",
            "hostname": "box",
        },
        "command": "python -m bench run",
        "created": "2025-01-02T03:04:05+00:00",
        "wall_s": 1.0,
    }


def _write(path: Path, rec: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))


def make_results(root: Path, name: str = "100M", task: str = "mt", scale: float = 1.0, h: str = "c0ffee") -> Path:
    """3 models x 2 seeds: transformer and lite fully run, evolved profiled and timed only; one compress record."""
    budget = name.removesuffix("-lm")
    target = 100e6 * scale
    out = root / name
    for model, (_d, _f, _e, _dec, params, macs, fwd, bleus, nlls) in MODELS.items():
        run_dir = out / "runs" / f"{model}-{h}"
        base = _common(model, budget, task, target, h)
        macs = int(macs * scale)
        _write(
            run_dir / "profile.json",
            {
                **base,
                "stage": "profile",
                "params": params,
                "params_total": params + 1000,
                "macs": macs,
                "macs_with_output": macs + 30_000_000,
                "macs_by_counter": {c: macs for c in COUNTERS},
            },
        )
        for threads, workload in itertools.product((1, 2), ("forward", "translate")):
            if model == "evolved_transformer" and (threads, workload) != (1, "forward"):
                continue
            p50 = fwd * scale * (8 if workload == "translate" else 1) / threads
            _write(
                run_dir / f"latency-cpu-t{threads}-{workload}.json",
                {
                    **base,
                    "stage": "latency",
                    "workload": workload,
                    "device": "cpu",
                    "device_model": "Test CPU 9000",
                    "threads": threads,
                    "dtype": "fp32",
                    "p50_ms": p50,
                    "p90_ms": p50 * 1.1,
                    "mean_ms": p50,
                    "iqr_ms": 0.1,
                    "cv": 0.01,
                    "n": 30,
                    "samples_ms": [p50] * 30,
                    "peak_rss_mb": 300.0 + threads,
                    "model_size_mb": params * 4 / 1e6,
                    "gemm_gmacs": 50.0 * threads,
                    "achieved_gmacs": macs / (p50 / 1e3) / 1e9,
                    "efficiency": macs / (p50 / 1e3) / 1e9 / (50.0 * threads),
                },
            )
        if bleus is None:
            continue
        for seed, bleu, nll in zip(SEEDS, bleus, nlls):
            _write(
                run_dir / f"train-s{seed}.json",
                {
                    **base,
                    "stage": "train",
                    "seed": seed,
                    "schedule": "short",
                    "precision": "fp32",
                    "train_tokens": 1_000_000,
                    "train_steps": 500,
                    "train_wall_s": 600.0 + seed,
                    "tokens_per_s": 1666.0,
                    "valid_nll": nll + 0.01,  # training's last value; the evaluation's must win
                    "curve": [
                        {"step": 0, "tokens": 0, "wall_s": 0.0, "train_loss": 9.0, "valid_nll": None, "lr": 0.0},
                        {"step": 250, "tokens": 500_000, "wall_s": 300.0, "valid_nll": nll + 1.0},
                        {"step": 500, "tokens": 1_000_000, "wall_s": 600.0, "valid_nll": nll, "final": True},
                    ],
                },
            )
            if task == "lm":
                ppl = math.exp(nll + 0.05)
                ev = {"valid_nll": nll, "test_nll": nll + 0.05, "ppl": ppl, "ppl_word": 2 * ppl, "test_tokens": 92_672}
            else:
                ev = {
                    "beam": 4,
                    "length_penalty": 1.0,
                    "valid_nll": nll,
                    "test": {
                        "bleu": bleu,
                        "chrf": bleu + 25,
                        "bleu_signature": "nrefs:1|tok:13a|version:2.4.0",
                        "chrf_signature": "chrF2|version:2.4.0",
                        "n": 500,
                    },
                    "test_clean": {
                        "bleu": bleu + 1,
                        "chrf": bleu + 26,
                        "bleu_signature": "nrefs:1|tok:13a",
                        "chrf_signature": "chrF2",
                        "n": 480,
                    },
                }
            _write(run_dir / f"eval-s{seed}.json", {**base, "stage": "eval", "seed": seed, **ev})
        if model == "lite_transformer":
            quality = {"ppl": 7.5} if task == "lm" else {"bleu": 21.7, "chrf": 46.5}
            _write(
                run_dir / "compress-s1-int8.json",
                {
                    **base,
                    "stage": "compress",
                    "seed": 1,
                    "compression": "int8",
                    "size_mb_disk": 3.1,
                    **quality,
                    "valid_nll": 1.97,
                    "p50_ms_t1": 3.3,
                    "p50_ms_t2": 1.9,
                    "size_mb_sparse": 2.5,
                },
            )
    return out


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return make_results(tmp_path)


def row(df: pd.DataFrame, model: str, compression: str = "none") -> pd.Series:
    sel = df[(df["model"] == model) & (df["compression"] == compression)]
    assert len(sel) == 1, (model, compression, len(sel))
    return sel.iloc[0]


# ------------------------------------------------------------------------------------------------ records
def test_load_records_one_row_per_file_with_dotted_keys(results: Path) -> None:
    df = load_records(results)
    files = list((results / "runs").glob("*/*.json"))
    assert len(df) == len(files) == 3 + 4 + 4 + 1 + 4 + 4 + 1  # profiles, latencies, train+eval, compress
    for col in ("macs_by_counter.fvcore", "test.bleu", "test_clean.chrf", "env.torch", "config.d_model", "path"):
        assert col in df.columns, col
    assert set(df["stage"]) == {"profile", "latency", "train", "eval", "compress"}
    evolved = df[df["model"] == "evolved_transformer"]
    assert set(evolved["stage"]) == {"profile", "latency"}  # missing stages are fine
    assert isinstance(df[df["stage"] == "latency"]["samples_ms"].iloc[0], list)


def test_temporary_and_hidden_files_are_not_records(results: Path) -> None:
    run_dir = results / "runs" / "transformer-c0ffee"
    (run_dir / ".train-s3.json.x.tmp").write_text("{half")
    (run_dir / "train-s3.json.tmp").write_text("{half")
    assert len(load_records(results)) == 21


@pytest.mark.parametrize(
    "text, says",
    [
        ('{"stage": "profile", "model": "transformer", "params": 1', "not a valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"stage": "profile", "model": "transformer", "macs": 5}', "'params'"),
        ('{"stage": "profile", "model": "transformer", "macs": "lots", "params": 5}', "expected a number"),
        ('{"model": "transformer"}', "'stage'"),
    ],
)
def test_bad_record_is_one_line_naming_the_file(results: Path, text: str, says: str) -> None:
    bad = results / "runs" / "transformer-c0ffee" / "profile.json"
    bad.write_text(text)
    with pytest.raises(BenchError) as info:
        load_records(results)
    msg = str(info.value)
    assert str(bad) in msg and says in msg and "\n" not in msg


def test_missing_folder_or_no_records(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="no results folder"):
        load_records(tmp_path / "nope")
    (tmp_path / "empty" / "runs").mkdir(parents=True)
    with pytest.raises(BenchError, match="no run records"):
        build_leaderboard(tmp_path / "empty")


# ------------------------------------------------------------------------------------------------ leaderboard
REQUIRED = [
    "model",
    "family",
    "budget",
    "config_hash",
    "d_model",
    "ffn_dim",
    "layers",
    "params",
    "params_total",
    "macs",
    "macs_with_output",
    *(f"macs_{c}" for c in COUNTERS),
    "forward_p50_ms_t1",
    "forward_p90_ms_t1",
    "translate_p50_ms_t1",
    "translate_p90_ms_t1",
    "forward_p50_ms_t2",
    "translate_p90_ms_t2",
    "peak_rss_mb",
    "model_size_mb",
    "efficiency",
    "schedule",
    "precision",
    "train_tokens",
    "train_wall_s",
    "tokens_per_s",
    "valid_nll",
    "valid_nll_std",
    "bleu_test",
    "bleu_test_std",
    "chrf_test",
    "bleu_test_clean",
    "chrf_test_clean",
    "bleu_signature",
    "ppl",
    "seeds",
    "n_seeds",
    "torch",
    "device_model",
    "git_commit",
    "compression",
]


def test_leaderboard_columns_and_rows(results: Path) -> None:
    df = build_leaderboard(results)
    missing = [c for c in REQUIRED if c not in df.columns]
    assert not missing, missing
    assert sorted(zip(df["model"], df["compression"])) == [
        ("evolved_transformer", "none"),
        ("lite_transformer", "int8"),
        ("lite_transformer", "none"),
        ("transformer", "none"),
    ]
    t = row(df, "transformer")
    assert t["layers"] == "6+6" and row(df, "evolved_transformer")["layers"] == "3+4"
    assert t["d_model"] == 136 and t["params"] == 3_185_856 and t["macs_fvcore"] == 99_192_960
    assert t["macs_rel_budget"] == pytest.approx(99_192_960 / 100e6 - 1)
    assert t["torch"] == "2.13.0" and t["device_model"] == "Test CPU 9000" and t["git_commit"] == "abc1234"
    assert t["schedule"] == "short" and t["precision"] == "fp32" and t["seeds"] == "1 2" and t["n_seeds"] == 2
    assert t["bleu_signature"] == "nrefs:1|tok:13a|version:2.4.0"


def test_leaderboard_numbers_against_numpy(results: Path) -> None:
    df = build_leaderboard(results)
    for model in ("transformer", "lite_transformer"):
        r = row(df, model)
        _d, _f, _e, _dec, params, macs, fwd, bleus, nlls = MODELS[model]
        b, n = np.array(bleus), np.array(nlls)
        assert r["bleu_test"] == pytest.approx(b.mean())
        assert r["bleu_test_std"] == pytest.approx(np.std(b, ddof=1))
        assert r["chrf_test"] == pytest.approx((b + 25).mean())
        assert r["bleu_test_clean"] == pytest.approx((b + 1).mean())
        assert r["valid_nll"] == pytest.approx(n.mean())  # the evaluation's, not training's (+0.01)
        assert r["valid_nll_std"] == pytest.approx(np.std(n, ddof=1))
        assert r["train_wall_s"] == pytest.approx(np.mean([601.0, 602.0]))
        assert r["forward_p50_ms_t1"] == pytest.approx(fwd)
        assert r["forward_p90_ms_t1"] == pytest.approx(fwd * 1.1)
        assert r["translate_p50_ms_t2"] == pytest.approx(fwd * 8 / 2)
        assert r["peak_rss_mb"] == pytest.approx(302.0)  # the largest over the CPU records
        assert r["model_size_mb"] == pytest.approx(params * 4 / 1e6)
        assert r["efficiency"] == pytest.approx(macs / (fwd / 1e3) / 1e9 / 50.0)
        assert r["threads_max"] == 2 and r["n_eval"] == 2
    ev = row(df, "evolved_transformer")  # profiled and timed, not trained: empty quality, still a row
    assert ev["forward_p50_ms_t1"] == pytest.approx(6.5)
    assert pd.isna(ev["bleu_test"]) and pd.isna(ev["valid_nll"]) and pd.isna(ev["translate_p50_ms_t1"])
    assert ev["n_seeds"] == 0


def test_compressed_row_keeps_shape_not_fp32_measurements(results: Path) -> None:
    df = build_leaderboard(results)
    c, base = row(df, "lite_transformer", "int8"), row(df, "lite_transformer")
    assert c["params"] == base["params"] and c["macs"] == base["macs"] and c["d_model"] == 200
    assert c["bleu_test"] == pytest.approx(21.7) and c["chrf_test"] == pytest.approx(46.5)
    assert c["model_size_mb"] == pytest.approx(3.1) and c["size_mb_sparse"] == pytest.approx(2.5)
    assert c["forward_p50_ms_t1"] == pytest.approx(3.3) and c["forward_p50_ms_t2"] == pytest.approx(1.9)
    assert pd.isna(c["translate_p50_ms_t1"]) and pd.isna(c["peak_rss_mb"]) and pd.isna(c["bleu_test_std"])
    assert c["seeds"] == "1"


def test_single_seed_has_no_spread(results: Path) -> None:
    for f in (results / "runs" / "transformer-c0ffee").glob("*-s2.json"):
        f.unlink()
    r = row(build_leaderboard(results), "transformer")
    assert r["bleu_test"] == pytest.approx(20.1) and pd.isna(r["bleu_test_std"]) and r["seeds"] == "1"


def test_only_the_latest_config_of_a_model_is_reported(results: Path) -> None:
    old = results / "runs" / "transformer-0ld"
    rec = json.loads((results / "runs" / "transformer-c0ffee" / "profile.json").read_text())
    _write(old / "profile.json", {**rec, "config_hash": "0ld", "created": "2020-01-01T00:00:00+00:00", "macs": 1})
    df = build_leaderboard(results)
    assert row(df, "transformer")["config_hash"] == "c0ffee"
    assert any("0ld" in n for n in df.attrs["notes"])


def test_write_leaderboard_csv_md_tex(results: Path) -> None:
    paths = write_leaderboard(results)
    assert set(paths) == {"csv", "md", "tex"} and all(p.parent == results for p in paths.values())
    csv = pd.read_csv(paths["csv"])
    df = build_leaderboard(results)
    assert list(csv.columns) == list(df.columns) and len(csv) == len(df)
    assert csv["bleu_test"].dropna().tolist() == pytest.approx(df["bleu_test"].dropna().astype(float).tolist())
    md = paths["md"].read_text()
    for head in (
        "MACs (M, 30+30 tok)",
        "fwd p50 ms (1 thr)",
        "fwd p50 ms (2 thr)",
        "BLEU (test)",
        "valid NLL (nats/tok)",
        "params (M, no emb.)",
        "compression",
    ):
        assert head in md, head
    assert "20.70 ± 0.85" in md  # transformer: mean ± sample std of 20.1, 21.3
    assert sum(line.startswith("| ") for line in md.splitlines()) == len(df) + 1  # header + one per row
    tex = paths["tex"].read_text()
    for part in (
        "\\toprule",
        "\\midrule",
        "\\bottomrule",
        "\\begin{tabular}",
        "Lite Transformer",
        "20.70$\\pm$0.85",
        "\\label{tab:litebench-100m-mt}",
    ):
        assert part in tex, part
    body = tex.split("\\midrule")[1].split("\\bottomrule")[0]
    assert body.count("\\\\") == len(df)
    assert not list(results.glob(".*.tmp"))


def test_no_partial_files_after_an_error(results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.infra.atomic
    import bench.report.render as lb

    (results / "leaderboard.csv").write_text("old\n")

    def boom(df: pd.DataFrame) -> str:
        raise RuntimeError("disk full")

    monkeypatch.setattr(lb, "render_latex", boom)
    with pytest.raises(RuntimeError):
        write_leaderboard(results)
    assert (results / "leaderboard.csv").read_text() == "old\n"  # untouched
    assert not (results / "leaderboard.md").exists() and not (results / "leaderboard.tex").exists()
    monkeypatch.undo()

    # a writer failing half-way: the temporary files go, nothing moves into place
    def half(path: Path) -> None:
        path.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        bench.infra.atomic.write_files({results / "a.txt": lambda p: p.write_text("a"), results / "b.txt": half})
    assert not (results / "a.txt").exists() and not (results / "b.txt").exists()
    assert not [p for p in results.iterdir() if p.name.startswith(".")]

    # a corrupt record: one clear error, no new output files
    (results / "runs" / "transformer-c0ffee" / "eval-s1.json").write_text("{")
    with pytest.raises(BenchError, match="eval-s1.json"):
        write_leaderboard(results)
    assert sorted(p.name for p in results.iterdir()) == ["leaderboard.csv", "runs"]


# ------------------------------------------------------------------------------------------------ Pareto
def brute_force_front(points: np.ndarray, minimize_x: bool, maximize_y: bool) -> set[int]:
    def better_eq(a: np.ndarray, b: np.ndarray) -> tuple[bool, bool]:
        dx = b[0] - a[0] if minimize_x else a[0] - b[0]  # >= 0 when a is at least as good in x
        dy = a[1] - b[1] if maximize_y else b[1] - a[1]
        return dx >= 0 and dy >= 0, dx > 0 or dy > 0

    front = set()
    for i, p in enumerate(points):
        if not np.isfinite(p).all():
            continue
        dominated = False
        for j, q in enumerate(points):
            if j != i and np.isfinite(q).all():
                ge, strict = better_eq(q, p)
                dominated |= ge and strict
        if not dominated:
            front.add(i)
    return front


@pytest.mark.parametrize("minimize_x, maximize_y", list(itertools.product([True, False], repeat=2)))
def test_pareto_front_against_brute_force(minimize_x: bool, maximize_y: bool) -> None:
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(1, 12))
        pts = rng.integers(0, 5, size=(n, 2)).astype(float)  # small ints: many ties and duplicates
        if trial % 7 == 0:
            pts[0, 1] = np.nan
        got = pareto_front(pts, minimize_x=minimize_x, maximize_y=maximize_y)
        assert set(got.tolist()) == brute_force_front(pts, minimize_x, maximize_y), pts
        assert list(pts[got, 0]) == sorted(pts[got, 0])
    assert pareto_front([(1, 5), (2, 7), (3, 6), (0.5, 1)]).tolist() == [3, 0, 1]
    assert pareto_front([(1, 5), (2, 7), (3, 6)], maximize_y=False).tolist() == [0]
    assert pareto_front(np.empty((0, 2))).tolist() == []


# ------------------------------------------------------------------------------------------------ figures
def _check_images(paths: list[Path]) -> None:
    for p in paths:
        data = p.read_bytes()
        assert len(data) > 1000, p
        assert data[:8] == b"\x89PNG\r\n\x1a\n" if p.suffix == ".png" else data[:5] == b"%PDF-", p


def test_figures_before_training_skip_quality_and_remove_stale(results: Path) -> None:
    (results / "figures").mkdir()
    for name in ("quality_vs_macs.png", "quality_vs_latency.pdf", "keep.txt"):  # from an earlier report
        (results / "figures" / name).write_text("stale")
    for f in (results / "runs").glob("*/*-s*.json"):
        f.unlink()
    notes: list[str] = []
    paths = write_figures(results, notes)
    assert sorted(p.name for p in paths) == ["latency_vs_macs.pdf", "latency_vs_macs.png"]
    left = sorted(p.name for p in (results / "figures").iterdir())
    assert left == ["keep.txt", "latency_vs_macs.pdf", "latency_vs_macs.png"]  # only our own names removed
    assert len(notes) == 4 and all("skipped" in n for n in notes)  # three quality figures, learning curves


def test_combined_figure_over_budgets(tmp_path: Path) -> None:
    a, b = make_results(tmp_path, "100M"), make_results(tmp_path, "500M", scale=5.0)
    paths = write_combined_figure([a, b], tmp_path / "combined" / "quality_vs_macs.png")
    assert sorted(p.name for p in paths) == ["quality_vs_macs.pdf", "quality_vs_macs.png"]
    _check_images(paths)


def test_language_model_quality_is_perplexity(tmp_path: Path) -> None:
    res = make_results(tmp_path, "100M-lm", task="lm")
    df = build_leaderboard(res)
    r = row(df, "transformer")
    assert r["layers"] == "6" and pd.isna(r["bleu_test"])
    assert r["ppl"] == pytest.approx(np.mean([math.exp(2.15), math.exp(2.09)]))
    md = write_leaderboard(res)["md"].read_text()
    assert "ppl (test, per token)" in md and "ppl (test, per word)" in md and "MACs (M, 30 tok)" in md
    assert "BLEU" not in md and f"| {r['ppl_word']:.1f} ± {r['ppl_word_std']:.1f} |" in md
    assert r["ppl_word"] == pytest.approx(2 * r["ppl"])
    from bench.report.figures import fig_quality_vs_macs, quality_spec

    q = quality_spec(df)
    assert q is not None and q["col"] == "ppl" and q["maximize"] is False
    fig, _ = fig_quality_vs_macs(df[df["compression"] == "none"])
    assert fig is not None and "perplexity" in fig.axes[0].get_ylabel()
    assert "30 tokens" in fig.axes[0].get_xlabel()


# ------------------------------------------------------------------------------------------------ CLI
def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(["report", *argv])


def test_cli_rebuilds_tables_figures_and_combined(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_results(tmp_path, "100M")
    make_results(tmp_path, "500M", scale=5.0)
    assert run(_parse(["--budget", "100M", "--results", str(tmp_path)])) == 0
    captured = capsys.readouterr()
    figures = [f"100M/figures/{n}.{ext}" for n in FIGURES for ext in ("png", "pdf")]
    combined = ["combined/quality_vs_macs.png", "combined/quality_vs_macs.pdf"]
    tables = ["100M/leaderboard.csv", "100M/leaderboard.md", "100M/leaderboard.tex"]
    for name in tables + figures + combined:
        assert (tmp_path / name).stat().st_size > 0, name
        assert f"wrote {tmp_path / name}" in captured.out, name
    assert "note:" not in captured.err  # every figure could be drawn
    _check_images([tmp_path / n for n in figures + combined])
    assert not [p for p in tmp_path.rglob(".*")]  # no temporary files left
    assert not (tmp_path / "500M" / "leaderboard.csv").exists()

    # --results may also name the budget folder itself; --combine with no value draws no combined figure
    import bench.report.figures as figs

    monkeypatch.setattr(figs, "write_figures", lambda results_dir, notes=None: [])  # drawn above already
    import bench.report.combined as comb

    monkeypatch.setattr(comb, "write_combined_figure", lambda *a: pytest.fail("combined figure not asked for"))
    assert run(_parse(["--results", str(tmp_path / "500M"), "--combine"])) == 0
    assert (tmp_path / "500M" / "leaderboard.csv").exists()


def test_a_combined_table_that_no_longer_follows_from_the_records_is_removed(tmp_path, capsys,
                                                                             monkeypatch) -> None:
    """A budget's records moved aside for a re-run (500M to superseded/): the table and figure across budgets
    were drawn from them, so the next report of the other budget removes them, and says so; another task's stay."""
    import bench.report.figures as figs

    monkeypatch.setattr(figs, "write_figures", lambda results_dir, notes=None: [])  # each folder's own: not asked
    make_results(tmp_path, "100M")
    make_results(tmp_path, "500M", scale=5.0)
    assert run(_parse(["--budget", "100M", "--results", str(tmp_path)])) == 0
    combined = [tmp_path / "combined" / n for n in ("combined.md", "quality_vs_macs.png", "quality_vs_macs.pdf")]
    assert all(p.exists() for p in combined)
    other = tmp_path / "combined-lm" / "combined.md"
    other.parent.mkdir()
    other.write_text("language modelling's\n")
    capsys.readouterr()
    shutil.move(tmp_path / "500M" / "runs", tmp_path / "500M" / "superseded" / "runs")
    assert run(_parse(["--budget", "100M", "--results", str(tmp_path)])) == 0
    assert not any(p.exists() for p in combined) and other.exists()
    assert "combined table: removed" in capsys.readouterr().err
    assert run(_parse(["--budget", "100M", "--results", str(tmp_path)])) == 0  # nothing left to remove
    assert "combined table" not in capsys.readouterr().err


@pytest.mark.parametrize("folder", ["100M-x4", "5.4ms", "100M-quick", "100M-sum"])
def test_a_report_of_another_folder_keeps_a_combined_table_that_holds(tmp_path, folder, capsys,
                                                                      monkeypatch) -> None:
    """A longer schedule's, a latency budget's, a smoke run's or another task's report is not a budget folder of
    translation: it neither redraws nor removes translation's table across budgets, which its records still give."""
    import bench.report.figures as figs

    monkeypatch.setattr(figs, "write_figures", lambda results_dir, notes=None: [])  # each folder's own: not asked
    make_results(tmp_path, "100M")
    make_results(tmp_path, "500M", scale=5.0)
    assert run(_parse(["--budget", "100M", "--results", str(tmp_path)])) == 0
    combined = [tmp_path / "combined" / n for n in ("combined.md", "quality_vs_macs.png", "quality_vs_macs.pdf")]
    before = [p.read_bytes() for p in combined]
    shutil.copytree(tmp_path / "100M", tmp_path / folder)
    capsys.readouterr()
    assert run(_parse(["--results", str(tmp_path / folder)])) == 0
    assert [p.read_bytes() for p in combined] == before
    assert "combined table: removed" not in capsys.readouterr().err


def test_cli_missing_folder_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="no results folder") as info:
        run(_parse(["--budget", "100M", "--task", "lm", "--results", str(tmp_path)]))
    assert "100M-lm" in str(info.value) and "\n" not in str(info.value)
    (tmp_path / "100M" / "runs").mkdir(parents=True)
    with pytest.raises(BenchError, match="no run records"):
        run(_parse(["--budget", "100M", "--results", str(tmp_path)]))
    assert list((tmp_path / "100M").iterdir()) == [tmp_path / "100M" / "runs"]


def test_cli_combine_with_a_missing_budget_writes_nothing(tmp_path: Path) -> None:
    make_results(tmp_path, "100M")
    with pytest.raises(BenchError, match="--combine: no run records") as info:
        run(_parse(["--budget", "100M", "--results", str(tmp_path), "--combine", "100M", "9G"]))
    assert "9G" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["100M"]
    assert sorted(p.name for p in (tmp_path / "100M").iterdir()) == ["runs"]


# ------------------------------------------------------------------------------------------ failed runs
def test_a_failed_run_is_named_hollow_and_off_every_front(results: Path) -> None:
    from bench.report.figures import fig_quality_vs_macs
    from bench.report.quality import default_pairs as _pairs
    from bench.report.render import render_markdown

    path = results / "runs" / "transformer-c0ffee" / "train-s2.json"
    rec = json.loads(path.read_text())
    rec["unigram_entropy"] = 2.0  # its final validation (eval: 2.04) is above the plateau
    path.write_text(json.dumps(rec))
    df = build_leaderboard(results)
    assert row(df, "transformer")["status"] == "failed" and row(df, "lite_transformer")["status"] == "ok"
    reason = row(df, "transformer")["status_reason"]
    assert "seed 2: final validation NLL 2.04 is above the unigram entropy 2.00" in reason
    assert row(df, "lite_transformer", "int8")["status"] == "ok"  # a compressed row keeps its model's status
    assert pd.isna(row(df, "evolved_transformer")["status"])  # not trained: nothing to judge
    md = render_markdown(df)
    assert "### Failed runs" in md and "- Transformer: seed 2: final validation NLL 2.04" in md
    base = df[df["compression"] == "none"]
    fig, _ = fig_quality_vs_macs(base)
    (front,) = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "Pareto front"]
    assert 99.19296 not in [round(x, 5) for x in front.get_xdata()]  # the Transformer would be on it otherwise
    assert "failed run (hollow)" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    # the pairwise table compares families' primary rows, then a variant with its family
    extra = pd.DataFrame([{"model": "transformer (post-norm, paper)", "family": "transformer", "compression": "none",
                           "status": "ok"}])
    assert _pairs(pd.concat([base, extra])) == [("lite_transformer", "transformer"),
                                                ("transformer (post-norm, paper)", "transformer")]


def test_the_training_line_names_whose_peak_rate_is_whose(results: Path) -> None:
    """One peak rate for every family: stated once; tuned apart: each with its family's name."""
    from bench.report.render import render_markdown

    df = build_leaderboard(results)
    trained = df["status"].map(lambda v: isinstance(v, str))
    assert set(df.loc[trained, "family"]) == {"lite_transformer", "transformer"}
    df.loc[trained, "peak_lr"] = 0.004
    line = next(ln for ln in render_markdown(df).splitlines() if ln.startswith("Training:"))
    assert line.rstrip(" .").endswith("peak lr 0.004")
    df.loc[trained & (df["family"] == "lite_transformer"), "peak_lr"] = 0.002
    line = next(ln for ln in render_markdown(df).splitlines() if ln.startswith("Training:"))
    assert line.rstrip(" .").endswith("peak lr Lite Transformer 0.002; Transformer 0.004")


def test_the_combined_legend_names_each_budgets_recipe() -> None:
    """Budgets trained under different recipes are labelled so (norm placement, dropout, peak rate of the
    families' own rows; a variant row such as post-norm does not make a budget's recipe mixed)."""
    from bench.report.combined import _recipe

    rows = pd.DataFrame({"model": ["transformer", "lite_transformer", "transformer (post-norm, paper)"],
                         "family": ["transformer", "lite_transformer", "transformer"],
                         "status": ["ok", "ok", "failed"], "normalize_before": [True, True, False],
                         "dropout": [0.1, 0.1, 0.1], "peak_lr": [0.004, 0.004, 0.004]})
    assert _recipe(rows) == " (pre-norm; dropout 0.1; peak lr 0.004)"
    old = rows.iloc[:2].assign(normalize_before=[False, True], peak_lr=[None, None])
    assert _recipe(old) == " (mixed norms; dropout 0.1)"
    assert _recipe(rows.assign(status=[None, None, None])) == ""  # nothing trained: nothing to say


def test_combined_table_compares_each_family_across_budgets(tmp_path: Path) -> None:
    """Each family's row at every budget, and its validation NLL against its smallest budget's, by hand."""
    from bench.report.combined import combined_leaderboard, combined_table

    a, b = make_results(tmp_path, "100M"), make_results(tmp_path, "500M", scale=5.0)
    small, large = build_leaderboard(a), build_leaderboard(b)
    md = combined_table(combined_leaderboard([a, b]))
    for fam in ("transformer", "lite_transformer"):
        s, big = row(small, fam), row(large, fam)
        delta = big["valid_nll"] - s["valid_nll"]
        line = next(x for x in md.splitlines() if x.startswith(f"| {display_name(fam)} | 500M |"))
        assert f"| {big['valid_nll']:.3f}" in line and f"| {delta:+.3f} |" in line
        first = next(x for x in md.splitlines() if x.startswith(f"| {display_name(fam)} | 100M |"))
        assert "| +0.000 |" in first
    assert run(_parse(["--budget", "100M", "--results", str(tmp_path)])) == 0
    assert (tmp_path / "combined" / "combined.md").read_text().startswith(md)  # then the budget step


def _per_sentence(folder: Path, shift: float, dropout: float = 0.0) -> dict[str, dict[int, list[float]]]:
    """Every eval record of ``folder`` carries per-sentence validation NLL (one token each; its mean is the
    record's); every record's config the dropout. Returns family -> seed -> sentence NLLs."""
    out: dict[str, dict[int, list[float]]] = {}
    for path in sorted(folder.glob("runs/*/*.json")):
        rec = json.loads(path.read_text())
        rec["config"]["dropout"] = dropout
        rec["config"]["normalize_before"] = True
        if rec["stage"] == "eval":
            nll = [rec["valid_nll"] + shift + 0.1 * ((i * 7 + rec["seed"]) % 5 - 2) for i in range(40)]
            rec.update(valid_sentence_nll=nll, valid_sentence_tokens=[1] * 40, valid_nll=float(np.mean(nll)))
            out.setdefault(rec["family"], {})[rec["seed"]] = nll
        path.write_text(json.dumps(rec))
    return out


def test_the_budget_step_is_paired_under_one_recipe_and_refused_across_two(tmp_path: Path, capsys) -> None:
    """The combined table's budget step: each family's larger budget minus its smallest, the seed means'
    difference by hand, with an interval; budgets of two recipes share no figure and no step."""
    from bench.report.combined import combined_leaderboard, fig_combined

    a, b = make_results(tmp_path, "100M"), make_results(tmp_path, "500M", scale=5.0)
    small, large = _per_sentence(a, 0.0), _per_sentence(b, -0.2)
    assert run(_parse(["--budget", "100M", "--results", str(tmp_path)])) == 0
    md = (tmp_path / "combined" / "combined.md").read_text()
    assert "## The budget step" in md and "One recipe: pre-norm; dropout 0." in md
    for fam in small:
        want = np.mean([np.mean(v) for v in large[fam].values()]) - np.mean([np.mean(v) for v in small[fam].values()])
        head = f"| {display_name(fam)} @ 500M | {display_name(fam)} @ 100M |"
        line = next(x for x in md.splitlines() if x.startswith(head))
        assert f"| 2/2 | {want:+.3f} | [" in line
        assert f"{display_name(fam)} 500M - 100M: {want:+.3f} [" in md and f"{want:+.3f} [" in md
    # every family 0.2 nats lower at 500M, per sentence: each step significant, and the bar met
    assert md.count("(lower)") == len(small) and "So every family's larger budget is at or below its smaller" in md
    assert (tmp_path / "combined" / "quality_vs_macs.png").exists()

    _per_sentence(b, -0.2, dropout=0.1)  # 500M now under another recipe
    fig, why = fig_combined(combined_leaderboard([a, b]))
    assert fig is None and why == ("budgets trained under different recipes: 100M (pre-norm; dropout 0), "
                                   "500M (pre-norm; dropout 0.1)")
    capsys.readouterr()
    assert run(_parse(["--budget", "100M", "--results", str(tmp_path)])) == 0
    assert "combined figure: skipped, cannot draw the combined figure: budgets trained under different recipes" \
        in capsys.readouterr().err
    assert not (tmp_path / "combined" / "quality_vs_macs.png").exists()  # the older figure no longer holds
    md = (tmp_path / "combined" / "combined.md").read_text()
    assert "Not one comparison: budgets trained under different recipes" in md and " @ 500M |" not in md
    assert "Transformer 500M: trained under another recipe than 100M (pre-norm; dropout 0), not compared" in md
    with pytest.raises(BenchError, match="--combine: budgets trained under different recipes"):
        run(_parse(["--budget", "100M", "--results", str(tmp_path), "--combine", "100M", "500M"]))
    import shutil

    shutil.copytree(a, tmp_path / "100M-copy")  # two folders of one budget would pool their rows: refused
    with pytest.raises(BenchError, match="100M and 100M-copy both hold budget 100M: combine one of them"):
        combined_leaderboard([a, tmp_path / "100M-copy"])


def test_the_budget_steps_verdict_by_hand() -> None:
    """The verdict reads each step's difference against its interval, and names a family whose larger budget is
    worse (the bar of a budget step), whatever the table's order."""
    from bench.report.combined import step_verdict

    rows = [{"a": "transformer @ 500M", "b": "transformer @ 100M", "valid_nll": {"diff": -0.07, "ci95": [-0.1, -0.04]}},
            {"a": "lite_transformer @ 500M", "b": "lite_transformer @ 100M",
             "valid_nll": {"diff": -0.006, "ci95": [-0.02, 0.01]}},
            {"a": "evolved_transformer @ 500M", "b": "evolved_transformer @ 100M",
             "valid_nll": {"diff": 0.03, "ci95": [0.01, 0.05]}}]
    text = step_verdict(rows)
    assert "Transformer 500M - 100M: -0.070 [-0.100, -0.040] (lower)" in text
    assert "Lite Transformer 500M - 100M: -0.006 [-0.020, +0.010] (lower, but its interval crosses 0)" in text
    assert "Evolved Transformer 500M - 100M: +0.030 [+0.010, +0.050] (higher)" in text
    assert text.endswith("not every family's larger budget is at or below its smaller budget's validation NLL: "
                         "Evolved Transformer at 500M is higher.")
    assert step_verdict(rows[:2]).endswith("So every family's larger budget is at or below its smaller budget's "
                                           "validation NLL.")
    assert step_verdict([{"a": "x @ 500M", "b": "x @ 100M"}]) == "No budget step has validation NLL on both sides."
    noisy = [{**rows[2], "valid_nll": {"diff": 0.01, "ci95": [-0.01, 0.03]}}]  # higher, within noise: still named
    assert "+0.010 [-0.010, +0.030] (higher, but its interval crosses 0)" in step_verdict(noisy)
    assert step_verdict(noisy).endswith("Evolved Transformer at 500M is higher.")


def test_the_combined_table_gives_each_row_its_own_peak_rate() -> None:
    """Tuning may choose a peak rate per family: a row's recipe names that family's rate, not the budget's
    list of every family's, while norm placement and dropout stay the budget's."""
    from bench.report.combined import combined_table

    df = pd.DataFrame({"model": ["transformer", "lite_transformer"], "family": ["transformer", "lite_transformer"],
                       "budget": ["500M", "500M"], "macs": [5.0e8, 4.99e8], "status": ["ok", "ok"],
                       "normalize_before": [True, True], "dropout": [0.1, 0.1], "peak_lr": ["0.001", 0.002],
                       "valid_nll": [3.4, 2.4], "n_eval": [3, 3]})
    md = combined_table(df).splitlines()
    assert "| Transformer | 500M | pre-norm; dropout 0.1; peak lr 0.001 |" in "\n".join(md)
    assert "| Lite Transformer | 500M | pre-norm; dropout 0.1; peak lr 0.002 |" in "\n".join(md)


def test_the_tuning_section_names_the_trial_kind_and_both_grid_edges(tmp_path):
    import pandas as pd

    from bench.report.render import _tuning_section

    (tmp_path / "tuning").mkdir()
    chosen = {"grid": [1e-3, 2e-3, 4e-3], "tokens_per_trial": 666_666, "recipe_tokens": 2_000_000,
              "trial_kind": "truncated", "cost_in_seeds": 1.0,
              "chosen": {"lite_transformer": {"lr": 1e-3, "valid_nll": 4.218},
                         "evolved_transformer": {"lr": 2e-3, "valid_nll": 4.485},
                         "transformer": {"lr": 4e-3, "valid_nll": 4.9}}}
    (tmp_path / "tuning" / "chosen.json").write_text(json.dumps(chosen))
    df = pd.DataFrame()
    df.attrs["results_dir"] = str(tmp_path)
    text = "\n".join(_tuning_section(df))
    assert "3 trials of 666,666 target tokens each (the recipe itself" in text and "over all 2,000,000 tokens" in text
    assert "Lite Transformer: 0.001 (the grid's smallest rate)" in text
    assert "Transformer: 0.004 (the grid's largest rate)" in text
    assert "Evolved Transformer: 0.002, validation" in text


def test_a_figure_names_a_variant_shortly_and_keeps_every_label_inside_its_axes() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.report.figures import _label_points, point_label

    assert point_label("lite_transformer") == "Lite Transformer"
    from bench.budget.shape_plan import Shape

    def searched(**shape):  # the label bench.train.searched_shapes gives a searched row
        return f"evolved_transformer (searched shape, {Shape(**shape).slug})"

    assert point_label(searched(encoder_layers=2, decoder_layers=2, heads=8, ffn_ratio=4.0)) == \
        "Evolved Transformer (searched 2+2)"
    assert point_label(searched(encoder_layers=3, decoder_layers=4, heads=4, ffn_ratio=1.5)) == \
        "Evolved Transformer (searched 3+4)"
    assert point_label(searched(encoder_layers=0, decoder_layers=12, heads=8, ffn_ratio=4.0)) == \
        "Evolved Transformer (searched 12 layers)"
    assert point_label("transformer (post-norm, paper)") == "Transformer (post-norm)"
    assert point_label("some_new_family") == "some_new_family"  # unknown names as they are
    fig, ax = plt.subplots(figsize=(5, 3))
    xs, ys = np.array([1.0, 5.0, 9.0]), np.array([1.0, 2.0, 3.0])
    ax.scatter(xs, ys)
    long = "a label far too long to fit on either side of its point"
    _label_points(ax, xs, ys, [long, long, long])
    fig.canvas.draw()
    box = ax.get_window_extent()
    for text in ax.texts:  # the old placement put the middle and left labels past the axes' left edge
        ext = text.get_window_extent()
        assert box.x0 - 1 <= ext.x0 and ext.x1 <= box.x1 + 1, (ext, box)
    plt.close(fig)


def test_latency_table_reads_each_models_current_configuration(tmp_path):
    """`bench table --latency` (results/README.md's latency table) takes each model's records of its current
    configuration, the one the leaderboard reports, never an older configuration's timing from another day,
    and names the day and commit each row was timed at."""
    from bench.cli.models import latency_table

    out = make_results(tmp_path)  # config c0ffee, timed 2025-01-02 at abc1234
    for new in sorted((out / "runs").iterdir()):
        old = new.with_name(new.name.replace("c0ffee", "01d0ff"))
        old.mkdir()
        for f in new.glob("*.json"):
            rec = json.loads(f.read_text())
            rec.update(config_hash="01d0ff", created="2024-06-01T00:00:00+00:00",
                       env={**rec["env"], "git_commit": "0ldc0de"})
            if rec["stage"] == "latency":
                rec["p50_ms"] *= 10
            _write(old / f.name, rec)
    lines = latency_table(["100M"], tmp_path)
    rows = {cells[1]: cells for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}
    assert set(rows) == set(MODELS)  # one row per model, none for the older configuration
    t = rows["transformer"]
    assert [t[2], t[3], t[4], t[5]] == ["4.00", "2.00", "32.00", "16.00"]  # fwd 1/2 thr, translate 1/2 thr
    assert t[-1] == "2025-01-02, abc1234"
    e = rows["evolved_transformer"]  # timed at 1 thread forward only: the rest says so
    assert e[2] == "6.50" and e[3] == e[4] == e[5] == "—"
    assert e[8] == "—"  # no workload memory in these records
    # a budget without records (re-running): left out with a note by default, an error when asked for by name
    assert latency_table(["100M", "500M"], tmp_path, strict=False) == lines
    with pytest.raises(BenchError, match="no latency records in .*500M"):
        latency_table(["100M", "500M"], tmp_path)
    with pytest.raises(BenchError, match="no latency records in .*500M"):
        latency_table(["500M"], tmp_path, strict=False)  # nothing left to tabulate
    # a re-run that has trained but not yet been timed: left out the same way, not a traceback nor a silent gap
    (tmp_path / "500M" / "runs").mkdir(parents=True)
    train = next((out / "runs").glob("*/train-s1.json"))
    (tmp_path / "500M" / "runs" / train.parent.name).mkdir()
    shutil.copy(train, tmp_path / "500M" / "runs" / train.parent.name / train.name)
    assert latency_table(["100M", "500M"], tmp_path, strict=False) == lines
    with pytest.raises(BenchError, match="no latency records in .*500M"):
        latency_table(["100M", "500M"], tmp_path)
