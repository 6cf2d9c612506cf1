"""A training run folder (bench.train.trainer.Trainer): what says a checkpoint is this run's, the lock of the process
that trains into it, and a fresh start.

A run continues from its folder's checkpoint only when the checkpoint's spec agrees on every key of
:data:`SAME_RUN`, among them the content of the corpus files (:func:`corpus_digest`: a folder at the same path
may hold other sentences) and the tokenizer (:func:`tokenizer_digest`). A checkpoint written before the digests
existed lacks them and is not checked for them. One process trains into a folder at a time
(:func:`folder_lock`, ``.train.lock`` by filelock, like the sweep's per-stage locks); a second is refused with
one line. :func:`start_afresh` removes the run a folder holds (``bench train --fresh``) and says what went.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from bench.data.manifest import sha256_file
from bench.errors import BenchError
from bench.infra.atomic import write_text

LOCK = ".train.lock"
# what a run folder holds of its run: the trainer's files, then bench.evaluation.evaluate's
RUN_FILES = ("checkpoint.pt", "run.json", "train.jsonl", "train.json", "eval.json")
RUN_FILE_PATTERNS = ("hyp.*", "ref.*")
# the spec keys a continued run must share with its checkpoint, and how a refusal names them
SAME_RUN = {"model": "model", "config": "config", "task": "task", "corpus": "corpus",
            "corpus_sha256": "corpus content", "tokenizer_sha256": "tokenizer", "vocab_size": "vocab_size",
            "schedule": "schedule", "seed": "seed", "world_size": "world_size"}


def corpus_digest(paths: dict[str, tuple[Path, ...]]) -> str:
    """SHA-256 over every split file's split, name and SHA-256: the corpus's content, wherever it lies."""
    h = hashlib.sha256()
    for split in sorted(paths):
        for path in paths[split]:
            h.update(f"{split}\0{Path(path).name}\0{sha256_file(Path(path))}\n".encode())
    return h.hexdigest()


def tokenizer_digest(tok: Any) -> str | None:
    """SHA-256 of the tokenizer's model file (None when it has none)."""
    path = getattr(tok, "path", None)
    return sha256_file(Path(path)) if path and Path(path).is_file() else None


def differences(old: Any, new: dict[str, Any]) -> list[str]:
    """What differs between a checkpoint's spec ``old`` and this run's ``new``, as a refusal names it; empty when
    the checkpoint is this run's. Keys the checkpoint lacks, and digests either side does not know, are not
    compared, but a spec without this run's model and seed is another run's ("model/seed")."""
    old = old if isinstance(old, dict) else {}
    differ = [label for key, label in SAME_RUN.items()
              if key in old and old.get(key) != new.get(key)
              and not (key.endswith("_sha256") and (old.get(key) is None or new.get(key) is None))]
    if not differ and (old.get("model") != new.get("model") or old.get("seed") != new.get("seed")):
        return ["model/seed"]
    return differ


@contextlib.contextmanager
def folder_lock(out_dir: Path, rank: int = 0, fresh: bool = False) -> Iterator[None]:
    """``out_dir``, created, and locked while the block runs (by rank 0 of a distributed run): another process
    training into it at the same time is refused with one line, not interleaved. ``fresh``: once locked, the
    run it holds is removed (:func:`start_afresh`).

    Args:
        out_dir: the run folder, created.
        rank: this process's rank; only rank 0 locks.
        fresh: remove the run the folder holds, once locked.
    """
    from filelock import FileLock, Timeout  # filelock: loaded only when a run folder is locked

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if rank != 0:
        yield
        return
    lock = FileLock(out_dir / LOCK, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise BenchError(f"run folder {out_dir} is in use: another process is training into it; wait for it to "
                         "finish, or use another --out") from None
    try:
        if fresh:
            start_afresh(out_dir)
        yield
    finally:
        lock.release()


def start_afresh(out_dir: Path, log: Callable[[str], None] | None = None) -> list[Path]:
    """Remove the run ``out_dir`` holds (RUN_FILES, RUN_FILE_PATTERNS), saying on ``log`` (default: stderr) what
    went and where its checkpoint was; the files removed."""
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    out_dir = Path(out_dir)
    gone = [out_dir / name for name in RUN_FILES if (out_dir / name).is_file()]
    gone += sorted(p for pattern in RUN_FILE_PATTERNS for p in out_dir.glob(pattern) if p.is_file())
    if not gone:
        return []
    step = None
    if (out_dir / RUN_FILES[0]).is_file():
        with contextlib.suppress(BenchError, KeyError, TypeError):
            step = load_checkpoint(out_dir / RUN_FILES[0])["state"]["step"]
    for path in gone:
        path.unlink(missing_ok=True)
    at = f" (checkpoint at update {step})" if step is not None else ""
    log(f"note: started {out_dir} afresh: removed the run it held{at}: {', '.join(p.name for p in gone)}")
    return gone


def trim_log(out_dir: Path, step: int) -> None:
    """Drop the training log's lines past ``step``, written after the checkpoint a run resumes from (a run
    killed between checkpoints repeats those steps; their lines would otherwise appear twice)."""
    log = Path(out_dir) / "train.jsonl"
    if not log.exists():
        return
    lines = log.read_text(encoding="utf-8").splitlines()
    keep = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:  # a line cut short by the kill
            continue
        if entry.get("step", 0) <= step and not entry.get("final"):
            keep.append(line)
    if len(keep) != len(lines):
        write_text(log, "".join(f"{line}\n" for line in keep))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint, loaded with ``weights_only=True``; a corrupt file is one clear line."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BenchError(f"no checkpoint at {path}") from None
    except Exception as exc:  # unpickling errors come in many types
        raise BenchError(f"checkpoint {path} is corrupt or not a litebench checkpoint ({type(exc).__name__})") from None
