"""Child processes: the one way the suite runs a piece of itself in a fresh interpreter.

``call_in_child("bench.latency.record:measure_model", {...})`` starts ``python -m bench.infra.launcher`` from the
repository root, hands it the target and its keyword arguments as JSON on stdin, and returns what the target
returned (JSON-serialisable), read from a result file the child writes. The child imports only the target's
module, so no measurement pays for modules it does not use; it receives values that are already decided (a
solved config, never a budget to solve again). ``threads`` sets ``OMP_NUM_THREADS`` and
``torch.set_num_threads`` in the child. A failure raises BenchError with the child's last error line.

Used for latency isolation (one process per model and setting; one process for a paired comparison), the
recipe study's training runs, and any study that runs trials side by side. A child started while this process
holds the machine lock (bench.latency.lock) is told so and does not wait for it. Cluster jobs go through
submitit (:func:`submitit_executor`, driven by bench.infra.cluster).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.infra.atomic import write_json
from bench.records.provenance import REPO

EXECUTORS = ("local", "slurm", "submitit-local")


def child_env(threads: int | None = None) -> dict[str, str]:
    """This process's environment, with the repository on PYTHONPATH (and OMP_NUM_THREADS when given), and
    the machine lock's mode when this process holds it for the child (bench.latency.lock)."""
    from bench.latency import lock as machine_lock  # torch (bench.latency): the launcher starts without it

    env = dict(os.environ)
    env.pop(machine_lock.HELD_ENV, None)
    env.update(machine_lock.child_env())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def call_in_child(target: str, kwargs: dict[str, Any], *, what: str, threads: int | None = None,
                  timeout_s: float | None = None) -> Any:
    """Run ``target`` ("bench.module:function") with ``kwargs`` in a fresh process; return its result.
    ``what`` names the work in error messages ("latency of transformer").

    Args:
        target: "bench.module:function".
        kwargs: its keyword arguments (sent as JSON).
        what: names the work in errors.
        threads: the child's thread count (OMP_NUM_THREADS and torch); None: left as it is.
        timeout_s: seconds before the child is given up; None: no limit.
    """
    with tempfile.TemporaryDirectory(prefix="litebench-child-") as tmp:
        result = Path(tmp) / "result.json"
        payload = {"target": target, "kwargs": kwargs, "threads": threads, "result": str(result)}
        try:
            proc = subprocess.run([sys.executable, "-m", "bench.infra.launcher"],
                                  input=json.dumps(payload, default=str), capture_output=True, text=True, cwd=REPO,
                                  env=child_env(threads), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{what} did not finish within {timeout_s:g} s") from None
        if proc.returncode != 0:
            lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
            last = lines[-1] if lines else "(no message)"
            last = last[len("error: "):] if last.startswith("error: ") else last
            raise BenchError(f"{what} failed in its own process (exit {proc.returncode}): {last}")
        try:
            return json.loads(result.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            raise BenchError(f"{what}: the child process wrote no result") from None


def _resolve(target: str) -> Any:
    module, _, name = target.partition(":")
    if not module.startswith("bench.") or not name:
        raise BenchError(f"launcher: target must be 'bench.<module>:<function>', got {target!r}")
    return getattr(importlib.import_module(module), name)


def main() -> int:
    """The child's side: read the payload from stdin, run the target, write its result."""
    from models import ConfigError  # the model registry (torch): loaded only in the child

    try:
        payload = json.loads(sys.stdin.read())
        if payload.get("threads") is not None:
            import torch  # torch: loaded only in the child

            torch.set_num_threads(int(payload["threads"]))
        result = _resolve(payload["target"])(**payload["kwargs"])
        write_json(Path(payload["result"]), result, indent=None)
        return 0
    except (BenchError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # one line for the parent to pass on; the traceback on request
        if os.environ.get("LITEBENCH_DEBUG"):
            raise
        print(f"error: internal failure: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def submitit_executor(kind: str, folder: Path, *, partition: str | None = None, time_min: int = 240,
                      cpus: int | None = None, gpus: int = 0, exclusive: bool = False,
                      name: str = "litebench") -> Any:
    """A submitit executor for one job array: "slurm" (``exclusive``: each job holds a whole node, what latency
    jobs need; else ``cpus`` per job) or "submitit-local" (processes on this machine). Logs and submitit's
    files go to ``folder``.

    Args:
        kind: "slurm" or "submitit-local".
        folder: where the logs and submitit's files go.
        partition: the Slurm partition; None: the cluster's default.
        time_min: each job's time limit in minutes.
        cpus: CPUs per job when not exclusive; None: 1.
        gpus: GPUs per node (Slurm).
        exclusive: each job holds a whole node (Slurm).
        name: the job name.
    """
    if kind not in EXECUTORS[1:]:
        raise BenchError(f"unknown executor {kind!r}; valid: {', '.join(EXECUTORS)}")
    try:
        import submitit  # submitit (optional): loaded only for a cluster executor
    except ImportError:
        raise BenchError("the submitit executor needs `pip install submitit` (the `cluster` extra)") from None
    if kind == "slurm":
        ex = submitit.SlurmExecutor(folder=str(folder))
        params: dict[str, Any] = {"job_name": name, "time": time_min, "partition": partition,
                                  "gpus_per_node": gpus or None}
        if exclusive:
            params["exclusive"] = True
        else:
            params["cpus_per_task"] = cpus or 1
        ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    else:
        ex = submitit.LocalExecutor(folder=str(folder))
        ex.update_parameters(timeout_min=time_min)
    return ex


if __name__ == "__main__":
    raise SystemExit(main())
