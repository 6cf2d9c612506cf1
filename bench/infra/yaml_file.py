"""YAML files the suite reads (budget files): safe loading only, and every way a file can be unreadable as one
line that names it (bench.errors.BenchError: exit 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bench.errors import BenchError


def read_yaml(path: Path | str, what: str = "budget file") -> Any:
    """The parsed content of ``path`` (``yaml.safe_load``: no tags that build Python objects)."""
    try:
        return yaml.safe_load(Path(path).read_bytes().decode("utf-8"))
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        at = f" (line {line + 1})" if line is not None else ""
        raise BenchError(f"{what} {path} does not parse as YAML{at}") from None
    except UnicodeDecodeError as exc:  # binary junk, or another encoding than UTF-8
        raise BenchError(f"{what} {path} is not UTF-8 text (offset {exc.start}); it must be YAML") from None
    except (ValueError, RecursionError) as exc:  # a scalar YAML cannot build (2024-13-45), nesting too deep
        raise BenchError(f"{what} {path} does not parse as YAML ({type(exc).__name__}: "
                         f"{(str(exc).splitlines() or ['no detail'])[0]})") from None
    except OSError as exc:
        raise BenchError(f"cannot read {what} {path}: {exc.strerror}") from None
