"""Training speed side by side: what "trained for another family's training time" means, measured once and kept.

An ablation with ``wall_time_of: <other>`` (bench.budget.spec ``ablations:``) trains its family for the time the
other family's row trains, not for the recipe's target tokens. The wall times in the comparison's own train
records do not say that time: runs train two at a time on a shared machine, and the same configuration's seeds
differ by up to two times with what ran beside them. So the two families' training speed is measured here side
by side, like paired latency (bench.latency.compare): both rows' configurations (the comparison's current ones,
seed 0 weights, the recipe's optimiser, precision and 1k-token batches of the training data), in one process,
with the comparison's training threads, under the exclusive machine lock. In round r each family runs ``steps``
training updates on the same batches (the recipe's batch order, seed 1, block r), the order of the two families
alternating by round; one warm-up block each is not timed. A family's speed is target tokens per second over its
timed updates; the ratio is the geometric mean over rounds of (model's tokens/s over the other's in the same
round) with the percentile-bootstrap interval over rounds (bench.latency.compare.paired_ratios). Updates only: the
in-training validation every 200 updates is left out (a cost both rows pay alike per update, not per token).

The ablation's target tokens are then the recipe's tokens times the ratio: the tokens its family trains in the
time the other family takes for the recipe's tokens. The measurement is kept in ``<comparison>/ablations/
train_speed.json`` with the configurations, threads and machine it was taken with; a later sweep reads it back
(so the ablation's tokens, and its run's hash, do not move with the machine of the day) and measures again only
when a row's configuration, the recipe's batch or precision, or the threads have changed.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.errors import BenchError
from bench.infra.atomic import write_text
from bench.latency.compare import paired_ratios
from bench.latency.lock import EXCLUSIVE, hold
from bench.latency.machine import device_name
from bench.records.provenance import environment, utc_now
from bench.train.schedules import Schedule

RECORD = "train_speed.json"
ROUNDS, STEPS = 8, 20


def speed_key(configs: dict[str, dict[str, Any]], schedule: Schedule, threads: int, device: str) -> dict[str, Any]:
    """What a measurement is valid for: each family's config, the recipe's batch and precision, threads, device.

    Args:
        configs: family -> its row's config.
        schedule: the recipe.
        threads: the training threads.
        device: cpu or cuda.
    """
    return {"configs": {k: configs[k] for k in sorted(configs)}, "batch_tokens": schedule.batch_tokens,
            "precision": schedule.precision, "threads": int(threads), "device": str(device)}


def measure(trainers: dict[str, Any], rounds: int = ROUNDS, steps: int = STEPS, seed: int = 1,
            clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Alternating blocks of ``steps`` training updates of each trainer (bench.train.trainer.Trainer) on the same
    batches; per family tokens/s, and each family's ratio to the first named (the reference).

    Args:
        trainers: family -> a Trainer of it; every one over the same data and batches.
        rounds: timed rounds (one warm-up block first, untimed).
        steps: updates per family per round.
        seed: the batch order's seed (bench.train.batching.epoch_order).
        clock: seconds (tests give a fake).
    """
    from bench.train.batching import epoch_order

    names = list(trainers)
    if len(names) < 2 or rounds < 2 or steps < 1:
        raise BenchError("a paired training speed needs two families, two rounds and one update per turn")
    first = trainers[names[0]]
    n = len(first.batches)
    if any(len(t.batches) != n for t in trainers.values()):
        raise BenchError("the families' trainers do not share their batches")
    order = epoch_order(n, seed, 0)
    block = lambda r: [first.batches[order[(r * steps + i) % n]] for i in range(steps)]  # noqa: E731
    seconds = np.zeros((rounds, len(names)))
    tokens = np.zeros((rounds, len(names)))
    for r in range(-1, rounds):  # round -1: the warm-up block
        batches = block(r + 1)
        turn = names if r % 2 == 0 else names[::-1]
        for name in turn:
            trainer = trainers[name]
            start, seen = clock(), 0
            for idx in batches:
                loss, ntok = trainer.train_step(idx)
                if not math.isfinite(loss):
                    raise BenchError(f"{name} diverged while its training speed was measured (loss {loss})")
                seen += ntok
            if r >= 0:
                seconds[r, names.index(name)] = clock() - start
                tokens[r, names.index(name)] = seen
    per_s = tokens / seconds
    ratios = paired_ratios(1.0 / per_s)  # seconds per token: the reference's over each, its speed ratio inverted
    out = {}
    for j, name in enumerate(names):
        lo, hi = ratios[j]["ci95"]
        out[name] = {"tokens_per_s": float(np.median(per_s[:, j])), "updates": rounds * steps,
                     "tokens": int(tokens[:, j].sum()), "seconds": float(seconds[:, j].sum()),
                     # tokens/s relative to the reference: the inverse of the time ratio
                     "speed_vs_" + names[0]: 1.0 / ratios[j]["ratio"], "ci95": [1.0 / hi, 1.0 / lo]}
    return {"reference": names[0], "rounds": rounds, "steps": steps, "families": out,
            "round_tokens_per_s": per_s.round(1).tolist()}


def speed_ratio(folder: Path, model: str, other: str, configs: dict[str, dict[str, Any]], schedule: Schedule,
                data_loader: Callable[[], Any], trainer_factory: Callable[[str, Any, Path], Any], threads: int,
                device: str, command: str = "", log: Callable[[str], None] = print) -> float:
    """``model``'s training speed over ``other``'s (target tokens per second), from ``folder``/train_speed.json
    when it was measured for these configurations, threads and device; else measured now and written there.

    Args:
        folder: the ablations' folder.
        model: the family whose tokens the ablation sets.
        other: the family whose training time it takes.
        configs: family -> its current row's config.
        schedule: the recipe (its batch and precision; its rate does not change the speed).
        data_loader: returns the task's data (bench.train.trainer.load_task_data).
        trainer_factory: (family, data, out_dir) -> a Trainer of that family's config.
        threads: the comparison's training threads.
        device: cpu or cuda.
        command: the command line, recorded.
        log: progress messages.
    """
    key = speed_key({f: configs[f] for f in (model, other)}, schedule, threads, device)
    path = Path(folder) / RECORD
    rec = _read(path)
    if rec is None or rec.get("key") != key:
        why = "none yet" if rec is None else "its configurations, batch, threads or device changed"
        log(f"  training speed of {model} and {other}: measuring side by side ({why}; {path})")
        rec = _measure(path, key, other, model, data_loader, trainer_factory, threads, device, command)
    fam = rec["result"]["families"]
    ref = rec["result"]["reference"]
    if {model, other} - set(fam) or ref not in (model, other):
        raise BenchError(f"{path} does not hold {model} and {other}; delete it to measure again")
    speed = {f: fam[f][f"speed_vs_{ref}"] for f in (model, other)}
    return speed[model] / speed[other]


def _read(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BenchError(f"{path} is not a training-speed record ({exc}); delete it to measure again") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("result"), dict):
        raise BenchError(f"{path} is not a training-speed record; delete it to measure again")
    return rec


def _measure(path: Path, key: dict[str, Any], reference: str, model: str, data_loader: Callable[[], Any],
             trainer_factory: Callable[[str, Any, Path], Any], threads: int, device: str,
             command: str) -> dict[str, Any]:
    data = data_loader()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory(prefix="litebench-speed-") as tmp:
            trainers = {f: trainer_factory(f, data, Path(tmp) / f) for f in (reference, model)}
            with hold(EXCLUSIVE, what="training speed") as lock:
                started = utc_now()
                result = measure(trainers)
                span = {"started": started, "finished": utc_now(), **lock.record()}
    finally:
        torch.set_num_threads(before)
    rec = {"what": "training speed side by side (bench.sweep.train_speed)", "key": key, "result": result,
           "device_model": device_name(device), "command": command, **span, **environment()}
    write_text(path, json.dumps(rec, indent=2) + "\n")
    return rec
