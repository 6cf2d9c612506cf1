"""Where a record comes from: the repository, the config hash that names a run folder, the commit, the machine
and the time. Every record of the suite takes these from here."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]  # the repository: bench/records/provenance.py -> ../../..


def config_hash(payload: dict[str, Any]) -> str:
    """The 10-hex-digit name of a config: sha1 of its JSON with sorted keys (a run folder's suffix)."""
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:10]


def git_commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        # dirty: code or budgets differ from the commit (a README edit changes no result)
        paths = ["bench", "models", "budgets", "pyproject.toml"]
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *paths], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (sha or "unknown") + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment() -> dict[str, Any]:
    import torch  # torch: loaded only when a record is written

    from bench.latency.machine import cpu_model_name  # torch and the CPU probe: loaded when a record is written

    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device_model": cpu_model_name(),
        "cpus": os.cpu_count(),
        "git_commit": git_commit(),
        "hostname": platform.node(),
    }


def utc_now() -> str:
    """UTC ISO time to the millisecond: the start and end of a stage."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
