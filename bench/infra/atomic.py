"""The one way the suite writes a file: all of it or nothing, readable by others.

Every writer fills a temporary file in the target's own folder (``.<name>.<random>.tmp``: hidden, so no
reader takes it for a record), sets its mode to 0644 and moves it into place with ``os.replace``. A reader
never sees half a file; on an error the temporary files are removed and the targets are left as they were.
:func:`write_files` does the same for several files at once (all are written before any is moved).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

FILE_MODE = 0o644


def write_files(files: Mapping[Path, Callable[[Path], None]]) -> list[Path]:
    """Write several files all-or-nothing: each writer fills a temporary file in its target's folder; only
    when every one succeeded are they moved into place. Returns the targets."""
    temps: dict[Path, Path] = {}
    try:
        for target, writer in files.items():
            target = Path(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            os.close(fd)
            temps[target] = Path(tmp)
            writer(Path(tmp))
            os.chmod(tmp, FILE_MODE)
        for target, tmp in temps.items():
            os.replace(tmp, target)
    finally:
        for tmp in temps.values():
            if tmp.exists():
                tmp.unlink()
    return [Path(t) for t in files]


def write_with(path: Path, writer: Callable[[Path], None]) -> Path:
    """``writer(temporary path)`` fills the file; then it is moved to ``path``."""
    return write_files({Path(path): writer})[0]


def write_text(path: Path, text: str) -> Path:
    return write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: Path, obj: Any, indent: int | None = 2) -> Path:
    """``obj`` as JSON (values JSON does not know are written as their ``str``).

    Args:
        path: the file, replaced atomically.
        obj: the value written.
        indent: JSON indentation; None: one line.
    """
    return write_text(path, json.dumps(obj, indent=indent, default=str))


def save_torch(obj: Any, path: Path) -> Path:
    """``torch.save(obj)`` to ``path``."""
    import torch  # torch: loaded only when a checkpoint is saved

    return write_with(path, lambda tmp: torch.save(obj, tmp))
