"""The machine-wide measurement lock between processes: a measurement waits while a shared holder computes,
compute waits while a measurement holds it, a waiting measurement goes before new compute; re-entrant within a
process, a shared holder that measures takes it exclusively and back, a child is told what its parent holds.
No timed assertion: each test checks the order of events (who waited for whom) through markers and the lock's
own "waiting" message."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import bench.latency.lock as ml
from bench.errors import BenchError
from bench.infra.launcher import call_in_child
from bench.latency import measure_latency
from tests.conftest import small_model

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 120  # only a bound on a test that would otherwise hang; nothing is asserted about durations

# holds the lock in argv[1] mode; writes <marker>.in once it holds it, waits for <release> (if given), writes
# <marker> while still holding, then lets go
HOLDER = """
import pathlib, sys, time
from bench.latency.lock import hold
mode, marker, release = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]
with hold(mode, what="test " + mode):
    pathlib.Path(str(marker) + ".in").write_text("in")
    while release and not pathlib.Path(release).exists():
        time.sleep(0.02)
    marker.write_text("done")
"""
# tries the lock file in argv[1] mode without waiting: prints "free" or "taken"
PROBE = """
import fcntl, os, sys
os.makedirs(os.environ["LITEBENCH_LOCK_DIR"], exist_ok=True)
fd = os.open(os.path.join(os.environ["LITEBENCH_LOCK_DIR"], "machine.lock"), os.O_RDWR | os.O_CREAT)
try:
    fcntl.flock(fd, (fcntl.LOCK_EX if sys.argv[1] == "exclusive" else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    print("free")
except BlockingIOError:
    print("taken")
"""


@pytest.fixture(autouse=True)
def own_lock(tmp_path, monkeypatch):
    monkeypatch.setenv(ml.DIR_ENV, str(tmp_path / "locks"))
    monkeypatch.delenv(ml.TIMEOUT_ENV, raising=False)
    monkeypatch.delenv(ml.HELD_ENV, raising=False)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def holder(mode: str, marker: Path, release: Path | None, stderr: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLDER, mode, str(marker), str(release or "")], cwd=ROOT,
                            env=_env(), stdout=subprocess.DEVNULL, stderr=open(stderr, "w"))  # noqa: SIM115


def probe(mode: str) -> str:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env=_env(), capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


def wait_for(condition, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert proc is None or proc.poll() is None, f"the child ended before {what}"
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.02)


def test_a_measurement_waits_while_a_shared_holder_computes(tmp_path, monkeypatch):
    """A child process holds the lock shared (as training does); a latency measurement here must wait until
    it lets go, and its record says it waited."""
    marker, release = tmp_path / "training", tmp_path / "release"
    child = holder("shared", marker, release, tmp_path / "child.err")
    said: list[str] = []
    monkeypatch.setattr(ml, "_stderr", said.append)
    try:
        wait_for(lambda: Path(f"{marker}.in").exists(), "the child take the lock", child)
        result = {}
        model = small_model("transformer")
        t = threading.Thread(target=lambda: result.update(rec=measure_latency(
            model, threads=1, gemm=False, memory=False, warmup=1, min_runs=3, min_time_s=0)))
        t.start()
        wait_for(lambda: any("waiting for the machine lock" in line for line in said) or not t.is_alive(),
                 "the measurement ask for the lock")
        assert t.is_alive() and not marker.exists(), "the measurement ran while training held the lock shared"
        release.write_text("go")
        t.join(DEADLINE_S)
        assert marker.read_text() == "done"  # written by the child before it let go
        iso = result["rec"].isolation
        assert iso.lock_mode == "exclusive" and iso.lock_wait_s > 0
        assert result["rec"].to_dict()["lock_wait_s"] == iso.lock_wait_s
    finally:
        release.write_text("go")
        assert child.wait(timeout=DEADLINE_S) == 0


def test_compute_waits_while_a_measurement_holds_the_lock(tmp_path):
    marker, err = tmp_path / "training", tmp_path / "child.err"
    with ml.hold(ml.EXCLUSIVE, what="test measurement"):
        child = holder("shared", marker, None, err)
        wait_for(lambda: "waiting for the machine lock" in err.read_text(), "the child wait", child)
        assert not Path(f"{marker}.in").exists()
    assert child.wait(timeout=DEADLINE_S) == 0 and marker.read_text() == "done"


def test_a_waiting_measurement_goes_before_new_compute(tmp_path):
    """A holds the lock shared; B asks for it exclusively and waits; new compute (C, here) must then wait for
    B to have measured, not slip in beside A."""
    a_marker, a_release = tmp_path / "a", tmp_path / "a-release"
    b_marker, b_err = tmp_path / "b", tmp_path / "b.err"
    a = holder("shared", a_marker, a_release, tmp_path / "a.err")
    b = None
    try:
        wait_for(lambda: Path(f"{a_marker}.in").exists(), "A take the lock", a)
        b = holder("exclusive", b_marker, None, b_err)
        wait_for(lambda: "waiting for the machine lock" in b_err.read_text(), "B wait", b)
        said: list[str] = []
        seen: dict[str, bool] = {}

        def compute() -> None:
            with ml.hold(ml.SHARED, what="test compute", log=said.append):
                seen["b done"] = b_marker.exists()

        c = threading.Thread(target=compute)
        c.start()
        wait_for(lambda: said or not c.is_alive(), "C ask for the lock")
        assert c.is_alive() and said, "new compute slipped in while a measurement waited"
        a_release.write_text("go")
        c.join(DEADLINE_S)
        assert seen == {"b done": True}
    finally:
        a_release.write_text("go")
        assert a.wait(timeout=DEADLINE_S) == 0
        assert b is None or b.wait(timeout=DEADLINE_S) == 0


def test_reentrant_and_a_shared_holder_that_measures():
    assert ml.held() is None and probe("exclusive") == "free"
    with ml.hold(ml.SHARED) as outer:
        with ml.hold(ml.SHARED) as inner:
            assert inner.wait_s == 0 and ml.held() == "shared"
            assert probe("shared") == "free" and probe("exclusive") == "taken"
        with ml.hold(ml.EXCLUSIVE) as measuring:  # compression timing a stage
            assert measuring.mode == "exclusive" and ml.held() == "exclusive"
            assert probe("shared") == "taken"
            with ml.hold(ml.SHARED) as nested:
                assert nested.mode == "exclusive" and nested.wait_s == 0
        assert ml.held() == "shared" and outer.mode == "shared"
        assert probe("shared") == "free" and probe("exclusive") == "taken"
    assert ml.held() is None and probe("exclusive") == "free"


def test_a_child_is_told_what_its_parent_holds(monkeypatch):
    assert call_in_child("bench.latency.lock:held", {}, what="probe") is None
    with ml.hold(ml.EXCLUSIVE):
        assert call_in_child("bench.latency.lock:held", {}, what="probe") == "exclusive"
    monkeypatch.setenv(ml.HELD_ENV, "shared")
    with ml.hold(ml.SHARED) as h:
        assert h.holder == "parent process" and h.wait_s == 0
    with pytest.raises(BenchError, match="parent process holds it shared"):
        with ml.hold(ml.EXCLUSIVE):
            pass


def test_a_bounded_wait_gives_up_and_bad_values_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(BenchError, match="mode must be one of shared, exclusive"):
        with ml.hold("both"):
            pass
    monkeypatch.setenv(ml.TIMEOUT_ENV, "soon")
    with pytest.raises(BenchError, match="LITEBENCH_LOCK_TIMEOUT must be a number"):
        with ml.hold(ml.SHARED):
            pass
    monkeypatch.delenv(ml.TIMEOUT_ENV)
    marker, release = tmp_path / "m", tmp_path / "r"
    child = holder("exclusive", marker, release, tmp_path / "c.err")
    try:
        wait_for(lambda: Path(f"{marker}.in").exists(), "the child take the lock", child)
        monkeypatch.setenv(ml.TIMEOUT_ENV, "0.2")
        with pytest.raises(BenchError, match="gave up waiting for the machine lock"):
            with ml.hold(ml.SHARED, log=lambda line: None):
                pass
        assert ml.held() is None
    finally:
        release.write_text("go")
        assert child.wait(timeout=DEADLINE_S) == 0


def test_the_lock_folder_is_shared_by_every_user(tmp_path):
    with ml.hold(ml.SHARED):
        pass
    folder = tmp_path / "locks"
    assert oct(folder.stat().st_mode & 0o7777) == oct(0o1777)
    assert {p.name for p in folder.iterdir()} == {"machine.lock", "machine.gate"}
