"""The record schema: typed stage records, old records converted on read, one writer, and a sweep started by
older code resumed by this one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.records.schema import (
    VERSION,
    CompressStage,
    LatencyStage,
    ProfileStage,
    StageRecord,
    make_record,
    read_record,
    upgrade,
    write_record,
)

ROOT = Path(__file__).resolve().parents[2]
# a whole model's records as the code wrote them before the schema had a version (a 100M sweep of 2026-11-29)
OLD = ROOT / "tests" / "fixtures" / "records-v1"


def test_every_record_of_older_code_loads_and_converts():
    files = sorted(OLD.glob("*.json"))
    assert len(files) == 7
    for path in files:
        raw = json.loads(path.read_text())
        assert "version" not in raw  # written before the schema had one
        rec = read_record(path)
        assert rec.version == VERSION and path.name.startswith(rec.stage)
        d = rec.to_dict()
        if rec.stage == "latency":
            assert isinstance(rec, LatencyStage) and d["device_model"] == raw["device_name"]
            assert "device_name" not in d and d["peak_gpu_mb"] is None
        for key, value in raw.items():  # every quantity kept, under the current name
            if key not in ("device_name", "peak_cuda_allocated_mb"):
                assert d[key] == value, (path, key)


def test_write_and_read_round_trip(tmp_path):
    rec = make_record("profile", {"model": "transformer", "config": {"d_model": 8}}, {"params": 3, "macs": 7,
                      "macs_by_counter": {"flop_counter": 7}}, env={"torch": "x"}, command="c", created="t", wall_s=1.0)
    assert isinstance(rec, ProfileStage) and rec.params == 3 and rec.values == {"macs_by_counter": {"flop_counter": 7}}
    path = write_record(tmp_path / "profile.json", rec)
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    again = read_record(path)
    assert again == rec and json.loads(path.read_text())["version"] == VERSION
    with pytest.raises(BenchError, match="profile record has no 'macs'"):
        make_record("profile", {"model": "transformer"}, {"params": 3})


def test_a_record_says_when_its_stage_began_and_ended(tmp_path):
    common = {"model": "transformer"}
    rec = make_record("profile", common, {"params": 3, "macs": 7, "job_id": "12_3"},
                      started="2026-01-01T10:00:00+00:00", created="2026-01-01T10:05:00+00:00", wall_s=300.0)
    d = rec.to_dict()
    assert list(d)[-5:] == ["env", "command", "created", "wall_s", "started"] and d["job_id"] == "12_3"
    again = read_record(write_record(tmp_path / "profile.json", rec))
    assert again.started == "2026-01-01T10:00:00+00:00" and again.get("job_id") == "12_3"
    assert "started" not in make_record("profile", common, {"params": 3, "macs": 7}).to_dict()  # older records


def test_old_compress_records_take_the_evaluators_layout():
    old = {"stage": "compress", "model": "lite", "seed": 1, "compression": "int8", "bleu": 21.7, "chrf": 46.5,
           "bleu_signature": "sig", "chrf_signature": "csig", "test_n": 500, "bleu_test_clean": 22.0,
           "chrf_test_clean": None, "test_clean_n": 480, "valid_nll": 1.9}
    new = upgrade(old)
    assert new["test"] == {"bleu": 21.7, "chrf": 46.5, "bleu_signature": "sig", "chrf_signature": "csig", "n": 500}
    assert new["test_clean"] == {"bleu": 22.0, "n": 480} and new["valid_nll"] == 1.9 and new["version"] == VERSION
    assert "bleu" not in new and "test_n" not in new
    assert isinstance(read_dict(old), CompressStage)


def read_dict(raw: dict) -> StageRecord:
    from bench.records.schema import from_dict

    return from_dict(raw)


@pytest.mark.parametrize(
    "raw, says",
    [
        ({"stage": "profile", "model": "t", "params": 1, "macs": 2, "version": VERSION + 1}, "version"),
        ({"stage": "latency", "model": "t", "workload": "forward", "device": "cpu", "threads": "one",
          "p50_ms": 1.0}, "'threads' is 'one', expected a number"),
        ({"model": "t"}, "no 'stage'"),
    ],
)
def test_bad_records_are_one_line(tmp_path, raw, says):
    path = tmp_path / f"{raw.get('stage', 'profile')}.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(BenchError, match=says) as info:
        read_record(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_sweep_of_older_code_resumes_with_every_stage_done(tmp_path):
    """Records an older version of the code wrote (no schema version, older key names) count as finished: a
    sweep that finds them in its run folder runs nothing again."""
    from bench.sweep.runner import Sweep, SweepOptions

    logs: list[str] = []
    opts = SweepOptions(budget="100M", models=["transformer"], threads=[1, 2], results_root=tmp_path,
                        log=logs.append, stages=("profile", "latency", "train", "evaluate"))
    sweep = Sweep(opts)
    run = sweep.plan("transformer")
    run.folder.mkdir(parents=True)
    for path in OLD.glob("*.json"):
        shutil.copy(path, run.folder / path.name)
    sweep.run_model("transformer")
    stages = [line for line in logs if line.startswith("  ") and "solved" not in line]
    assert len(stages) == 7 and all("done before, skipped" in line for line in stages), logs


def test_old_and_new_compress_records_give_the_same_leaderboard_row(tmp_path):
    """A compress record written before the evaluator's layout (flat bleu/chrf) and the same record written
    now (test.bleu, ...) end up as the same leaderboard row."""
    import pandas as pd

    from bench.report.leaderboard import build_leaderboard
    from tests.bench.test_report import make_results

    rows = []
    for name, upgrade_first in (("old", False), ("new", True)):
        results = make_results(tmp_path / name)
        path = results / "runs" / "lite_transformer-c0ffee" / "compress-s1-int8.json"
        raw = json.loads(path.read_text())
        raw.update(bleu_signature="sig", test_n=500, test_clean_n=480, bleu_test_clean=22.5)
        if upgrade_first:
            raw = upgrade(raw)
            assert raw["test"]["bleu"] == 21.7 and "bleu" not in raw
        path.write_text(json.dumps(raw))
        df = build_leaderboard(results)
        rows.append(df[df["compression"] == "int8"].iloc[0])
    pd.testing.assert_series_equal(rows[0], rows[1])
    assert rows[1]["bleu_test"] == 21.7 and rows[1]["bleu_signature"] == "sig" and rows[1]["test_clean_n"] == 480
