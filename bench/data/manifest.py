"""Write a corpus folder atomically with a ``manifest.json``, and tell whether a cached one is current.

A corpus folder holds plain-text files (one sentence per line, UTF-8, ``\\n`` line ends) and
``manifest.json``: ``config`` (everything that determines the content: name, languages, sources, rules),
``files`` (sha256, lines and bytes of each file), plus counts, sources and build date. The cache is current
when the stored ``config`` equals the requested one and every listed file has its recorded sha256.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

MANIFEST = "manifest.json"
# Built corpora and tokenizers live here, whatever the working directory: the repository's .cache/data
# (git-ignored), or the folder named by LITEBENCH_DATA.
DEFAULT_CACHE = Path(os.environ.get("LITEBENCH_DATA") or Path(__file__).resolve().parents[2] / ".cache" / "data")


@contextlib.contextmanager
def build_lock(target: Path) -> Iterator[None]:
    """Hold an exclusive lock while ``target`` (a corpus folder or a tokenizer file) is checked and built.

    Two processes that need the same missing corpus (two shells, a sweep next to ``bench train``) would
    otherwise build it at once and replace each other's folders mid-way; with the lock the second waits and
    then finds the first one's result current. The lock file, ``.<name>.lock`` beside ``target``, stays.
    Where locking is not possible (a read-only folder) it builds without one.
    """
    from filelock import FileLock  # filelock: loaded only when a corpus or tokenizer is fetched

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(target.parent / f".{target.name}.lock")
        lock.acquire()
    except OSError:
        yield
        return
    try:
        yield
    finally:
        lock.release()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _jsonable(obj: object) -> object:
    """What ``obj`` reads back as after a JSON round trip (tuples become lists...)."""
    return json.loads(json.dumps(obj))


def read_manifest(folder: Path) -> dict | None:
    """The folder's manifest, or None when it is missing or unreadable."""
    try:
        return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_current(folder: Path, config: Mapping) -> bool:
    """Whether ``folder`` holds a finished build of ``config`` whose files are intact."""
    manifest = read_manifest(folder)
    if manifest is None or manifest.get("config") != _jsonable(config):
        return False
    files = manifest.get("files") or {}
    return bool(files) and all(
        (folder / name).is_file() and sha256_file(folder / name) == meta.get("sha256")
        for name, meta in files.items()
    )


def write_corpus(dest: Path, texts: Mapping[str, Sequence[str]], manifest: dict) -> dict:
    """Write ``texts`` ({file name: lines}) and the manifest into ``dest``, replacing it atomically.

    Files are written into a temporary folder beside ``dest`` which is then renamed, so readers see either
    the old complete folder or the new complete one. ``manifest`` gains ``files``; the final manifest is
    returned.

    Args:
        dest: the corpus folder, replaced.
        texts: file name -> lines (no line breaks inside a line).
        manifest: the manifest, without ``files``.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; a cache is readable like any other folder
    try:
        files = {}
        for name, lines in texts.items():
            for i, line in enumerate(lines):
                if "\n" in line or "\r" in line:
                    raise ValueError(f"{name} line {i + 1} contains a line break")
            path = tmp / name
            with open(path, "w", encoding="utf-8", newline="\n") as f:
                f.writelines(line + "\n" for line in lines)
            files[name] = {"sha256": sha256_file(path), "lines": len(lines), "bytes": path.stat().st_size}
        manifest = {**manifest, "files": files}
        (tmp / MANIFEST).write_text(
            json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        _replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _replace_dir(new: Path, dest: Path) -> None:
    if not dest.exists():
        os.replace(new, dest)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old.", dir=dest.parent))
    os.replace(dest, old / dest.name)
    os.replace(new, dest)
    shutil.rmtree(old, ignore_errors=True)
