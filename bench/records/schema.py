"""The run records: one typed dataclass per stage, one writer, one reader (docs/records.md).

A sweep writes one JSON file per stage of every model configuration,
``<results>/runs/<model>-<config_hash>/<stage>[-<detail>].json``: ``profile.json``,
``latency-<device>-t<threads>-<workload>[-<dtype>].json``, ``train-s<seed>.json``, ``eval-s<seed>.json`` and
``compress-s<seed>-<tag>.json``; the paired latency of all of a sweep's models,
``runs/_compare-<hash>/latency_compare-<device>-t<threads>-<workload>.json``. Every record carries the common
part of :class:`StageRecord` (what was run: model, family, budget, config and its hash, schedule, corpus; where
and when: env, command, created, wall_s, and from this runner on started, finished, lock_mode, lock_wait_s)
and ``version``; each stage's class adds the fields that identify and define it (typed and checked on read)
and keeps the rest of its measurements in ``values``, written flat beside them.

:func:`write_record` writes atomically (bench.infra.atomic, mode 0644); :func:`read_record` reads any version:
records written before ``version`` existed (version 1) are converted on read, so a sweep started by older
code resumes, and the report reads old and new records alike. A record that does not parse or lacks what its
stage needs raises BenchError with one line naming the file.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from bench.errors import BenchError
from bench.infra.atomic import write_json

VERSION = 2
STAGES = ("profile", "latency", "train", "eval", "compress", "latency_compare")


@dataclass(kw_only=True)
class StageRecord:
    """The common part of every record; a stage this schema does not know is read as a bare StageRecord."""

    stage: str
    model: str
    family: str | None = None
    budget: str | None = None
    target_macs: int | None = None
    task: str | None = None
    config_hash: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    schedule: str | None = None
    corpus: str | None = None
    values: dict[str, Any] = field(default_factory=dict)  # the stage's other measurements, written flat
    env: dict[str, Any] = field(default_factory=dict)
    command: str | None = None
    created: str | None = None  # UTC ISO time the record was written: the stage's end
    wall_s: float | None = None
    # when the stage ran (UTC ISO times, ms) and how it held the machine lock (bench.latency.lock); absent from
    # records of older code
    started: str | None = None
    finished: str | None = None
    lock_mode: str | None = None
    lock_wait_s: float | None = None
    version: int = VERSION

    # the stage's own fields: name -> whether it must be a number (checked on read)
    REQUIRED: ClassVar[dict[str, bool]] = {}
    _HEAD: ClassVar[tuple[str, ...]] = (
        "stage", "model", "family", "budget", "target_macs", "task", "config_hash", "config", "schedule", "corpus",
    )
    _TAIL: ClassVar[tuple[str, ...]] = ("env", "command", "created", "wall_s")
    _SPAN: ClassVar[tuple[str, ...]] = ("started", "finished", "lock_mode", "lock_wait_s")

    def own_fields(self) -> list[str]:
        """The fields a stage class adds to the common part."""
        common = {f.name for f in fields(StageRecord)}
        return [f.name for f in fields(self) if f.name not in common]

    def to_dict(self) -> dict[str, Any]:
        """The JSON layout: ``version``, the common head, the stage's fields and values (flat), env and provenance."""
        out: dict[str, Any] = {"version": self.version}
        out.update({k: getattr(self, k) for k in self._HEAD})
        out.update({k: getattr(self, k) for k in self.own_fields()})
        out.update(self.values)
        out.update({k: getattr(self, k) for k in self._TAIL})
        out.update({k: getattr(self, k) for k in self._SPAN if getattr(self, k) is not None})
        return out

    def get(self, key: str, default: Any = None) -> Any:
        """A field or a value by its record key."""
        if key in self.values:
            return self.values[key]
        return getattr(self, key, default) if key in {f.name for f in fields(self)} else default


@dataclass(kw_only=True)
class ProfileStage(StageRecord):
    stage: str = "profile"
    params: int
    macs: int
    REQUIRED: ClassVar[dict[str, bool]] = {"params": True, "macs": True}


@dataclass(kw_only=True)
class LatencyStage(StageRecord):
    stage: str = "latency"
    workload: str
    device: str
    threads: int
    dtype: str = "fp32"
    p50_ms: float
    REQUIRED: ClassVar[dict[str, bool]] = {"workload": False, "device": False, "threads": True, "p50_ms": True}


@dataclass(kw_only=True)
class TrainStage(StageRecord):
    stage: str = "train"
    seed: int
    REQUIRED: ClassVar[dict[str, bool]] = {"seed": True}


@dataclass(kw_only=True)
class EvalStage(StageRecord):
    stage: str = "eval"
    seed: int
    REQUIRED: ClassVar[dict[str, bool]] = {"seed": True}


@dataclass(kw_only=True)
class CompressStage(StageRecord):
    stage: str = "compress"
    seed: int
    compression: str
    REQUIRED: ClassVar[dict[str, bool]] = {"seed": True, "compression": False}


@dataclass(kw_only=True)
class CompareStage(StageRecord):
    """Paired latency of a sweep's models (bench.latency.compare), in ``runs/_compare-<hash>/``: ``model``
    joins the members' names with "+", ``members`` gives each one's name and config hash."""

    stage: str = "latency_compare"
    workload: str
    device: str
    threads: int
    dtype: str = "fp32"
    reference: str
    ratios: dict[str, Any]
    REQUIRED: ClassVar[dict[str, bool]] = {"workload": False, "device": False, "threads": True, "reference": False,
                                           "ratios": False}


CLASSES: dict[str, type[StageRecord]] = {
    "profile": ProfileStage,
    "latency": LatencyStage,
    "train": TrainStage,
    "eval": EvalStage,
    "compress": CompressStage,
    "latency_compare": CompareStage,
}


# ------------------------------------------------------------------------------------------------ values
@dataclass(frozen=True)
class Value:
    """The type and range of one record value: ``kind`` is int, number, str, dict, list or bool; numbers are
    finite, at least ``low`` (above it with ``above``) and at most ``high``. An int may be written as an
    integral float (1593.0)."""

    kind: str
    low: float | None = None
    high: float | None = None
    above: bool = False

    def wants(self) -> str:
        if self.kind not in ("int", "number"):
            return f"a {self.kind}"
        what = "an integer" if self.kind == "int" else "a finite number"
        if self.low is not None and self.high is not None:
            return f"{what} in [{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f"{what} {'>' if self.above else '>='} {self.low:g}"
        return what

    def fits(self, value: Any) -> bool:
        if self.kind in ("str", "dict", "list", "bool"):
            return isinstance(value, {"str": str, "dict": dict, "list": list, "bool": bool}[self.kind])
        if not _is_number(value) or not math.isfinite(value):
            return False
        if self.kind == "int" and not float(value).is_integer():
            return False
        if self.low is not None and (value <= self.low if self.above else value < self.low):
            return False
        return self.high is None or value <= self.high


_STR, _DICT, _LIST, _BOOL = Value("str"), Value("dict"), Value("list"), Value("bool")
_INT0, _INT1, _NUM, _NUM0 = Value("int", 0), Value("int", 1), Value("number"), Value("number", 0)
_POS, _PCT, _FRAC, _PPL = Value("number", 0, above=True), Value("number", 0, 100), Value("number", 0, 1), \
    Value("number", 1)

# every value the report reads, by stage (dotted keys reach into a dict value: test.bleu); a key may be absent
# or null (records of older code lack many), one that is there must fit. Checked on read (read_record).
_COMMON_VALUES: dict[str, Value] = {
    "family": _STR, "budget": _STR, "target_macs": _INT1, "target_latency_ms": _POS, "task": _STR,
    "config_hash": _STR, "config": _DICT, "schedule": _STR, "corpus": _STR, "variant": _STR, "env": _DICT,
    "command": _STR, "created": _STR, "wall_s": _NUM0, "started": _STR, "finished": _STR, "lock_mode": _STR,
    "lock_wait_s": _NUM0,
}
_QUALITY_VALUES: dict[str, Value] = {
    f"{split}.{key}": value
    for split in ("test", "test_clean")
    for key, value in {"bleu": _PCT, "chrf": _PCT, "rouge1": _PCT, "rouge2": _PCT, "rougeL": _PCT, "n": _INT0,
                       "bleu_signature": _STR, "chrf_signature": _STR, "rouge_settings": _STR, "hypotheses": _LIST,
                       "bleu_stats": _LIST, "rouge_sentences": _LIST}.items()
}
_EVAL_VALUES: dict[str, Value] = {
    "seed": _INT0, "valid_nll": _NUM0, "beam": _INT1, "length_penalty": _NUM, "test": _DICT, "test_clean": _DICT,
    **_QUALITY_VALUES, "valid_sentence_nll": _LIST, "valid_sentence_tokens": _LIST, "test_nll": _NUM0, "ppl": _PPL,
    "ppl_word": _PPL, "test_tokens": _INT0,
}
_LATENCY_SETTING: dict[str, Value] = {
    "workload": _STR, "device": _STR, "device_model": _STR, "threads": _INT1, "dtype": _STR, "batch": _INT1,
    "backend": _STR, "backend_version": _STR, "src_len": _INT1, "tgt_len": _INT1, "decode_steps": _INT1,
    "cores": _INT1, "loadavg_1m": _NUM0, "warmup": _INT0, "quiet_wait_s": _NUM0, "machine_quiet": _BOOL,
    "processes": _INT1,
}
VALUES: dict[str, dict[str, Value]] = {
    "profile": {"params": _INT0, "params_total": _INT0, "macs": _INT0, "macs_with_output": _INT0,
                "macs_by_counter": _DICT, "macs_with_output_by_counter": _DICT, "warnings": _LIST, "protocol": _STR},
    "latency": {**_LATENCY_SETTING, "p50_ms": _POS, "p90_ms": _POS, "mean_ms": _POS, "iqr_ms": _NUM0, "cv": _NUM0,
                "n": _INT1, "min_runs": _INT1, "min_time_s": _NUM0, "samples_ms": _LIST, "peak_rss_mb": _NUM0,
                "peak_gpu_mb": _NUM0, "model_size_bytes": _INT0, "model_size_mb": _NUM0, "params": _INT0,
                "params_total": _INT0, "macs": _INT0, "macs_with_output": _INT0, "workload_macs": _INT0,
                "gemm_gmacs": _POS, "achieved_gmacs": _NUM0, "efficiency": _NUM0, "latency_status": _STR,
                "tries": _INT1, "chosen_attempt": _INT1, "attempts": _LIST, "process_p50_ms": _LIST,
                "interleaved_with": _LIST},
    "latency_compare": {**_LATENCY_SETTING, "reference": _STR, "ratios": _DICT, "p50_ms": _DICT, "cv": _DICT,
                        "rounds": _INT1, "members": _LIST, "models": _LIST, "round_ms": _DICT},
    "train": {"seed": _INT0, "stop": _STR, "train_steps": _INT0, "train_tokens": _INT0, "train_wall_s": _NUM0,
              "tokens_per_s": _NUM0, "valid_nll": _NUM0, "best_valid_nll": _NUM0, "final_sample_valid_nll": _NUM0,
              "unigram_entropy": _NUM0, "epochs": _NUM0, "precision": _STR, "world_size": _INT1, "device": _STR,
              "device_model": _STR, "run_dir": _STR, "curve": _LIST, "schedule_config": _DICT, "vocab_size": _INT1,
              "vocab_note": _STR, "resumed_from_step": _INT0, "resumed_from_steps": _LIST},
    "eval": _EVAL_VALUES,
    "compress": {**_EVAL_VALUES, "compression": _STR, "quantize": _STR, "qscheme": _STR, "prune_target": _FRAC,
                 "prune_scope": _STR, "finetune_tokens": _INT0, "sparsity": _FRAC, "size_bytes_disk": _INT0,
                 "size_mb_disk": _NUM0, "size_mb_sparse_int8": _NUM0, "compression_ratio": _POS},
}
# a compress record's latency: <workload>_<p50|p90>_ms_t<threads>
_COMPRESS_LATENCY = re.compile(r"(forward|translate)_p(50|90)_ms_t\d+")


def _lookup(rec: dict[str, Any], key: str) -> Any:
    """``rec[key]``, a dotted key reaching into dict values; None when absent."""
    value: Any = rec
    for part in key.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def check_values(rec: dict[str, Any], where: str) -> None:
    """Every value of a record (the current layout) that the schema knows has its type and range (VALUES);
    BenchError naming ``where`` (the file) and the first value that does not."""
    stage = rec.get("stage")
    schema = {**_COMMON_VALUES, **VALUES.get(stage, {})}
    if stage == "compress":
        schema.update({k: _POS for k in rec if _COMPRESS_LATENCY.fullmatch(k)})
    for key, value in schema.items():
        got = _lookup(rec, key)
        if got is not None and not value.fits(got):
            text = repr(got)
            text = text if len(text) <= 60 else text[:57] + "..."
            raise BenchError(f"{where}: {stage} record's {key!r} is {text}, expected {value.wants()}; "
                             "the record is damaged: delete it and re-run its stage")


# ------------------------------------------------------------------------------------------------ building
def make_record(stage: str, common: dict[str, Any], measured: dict[str, Any], **provenance: Any) -> StageRecord:
    """A record of ``stage`` from the run's common part, what the stage measured, and ``env``, ``command``,
    ``created``, ``wall_s``. Raises BenchError when the stage's own fields are missing.

    Args:
        stage: the stage's name (profile, latency, train, eval, compress, ...).
        common: the run's common part (model, config, budget, ...).
        measured: what the stage measured.
    """
    return from_dict({"stage": stage, **common, **measured, **provenance, "version": VERSION}, where=f"{stage} record")


def write_record(path: Path, record: StageRecord) -> Path:
    """Write ``record`` to ``path`` atomically (mode 0644)."""
    return write_json(Path(path), record.to_dict())


# ------------------------------------------------------------------------------------------------ reading
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# version 1 spelled a few quantities otherwise: the latency measurement's own names, and the compress
# stage's flat quality keys (now bench.evaluation.evaluate's layout: test.bleu, test_clean.chrf, ...)
_V1_RENAMES = {"device_name": "device_model", "peak_cuda_allocated_mb": "peak_gpu_mb"}
_V1_COMPRESS_QUALITY = {
    "bleu": ("test", "bleu"),
    "chrf": ("test", "chrf"),
    "bleu_signature": ("test", "bleu_signature"),
    "chrf_signature": ("test", "chrf_signature"),
    "test_n": ("test", "n"),
    "bleu_test_clean": ("test_clean", "bleu"),
    "chrf_test_clean": ("test_clean", "chrf"),
    "bleu_clean": ("test_clean", "bleu"),
    "chrf_clean": ("test_clean", "chrf"),
    "test_clean_n": ("test_clean", "n"),
}


def upgrade(raw: dict[str, Any]) -> dict[str, Any]:
    """A record dict of any version -> the current layout."""
    rec = dict(raw)
    version = rec.get("version", 1)
    if version == 1:
        for old, new in _V1_RENAMES.items():
            if old in rec:
                value = rec.pop(old)
                rec.setdefault(new, value)
        if rec.get("stage") == "compress":
            for old, (part, key) in _V1_COMPRESS_QUALITY.items():
                if old in rec and not isinstance(rec[old], dict):
                    value = rec.pop(old)
                    if value is not None:
                        rec[part] = {**(rec.get(part) or {}), key: value}
        rec["version"] = VERSION
    return rec


def from_dict(raw: Any, where: str = "record") -> StageRecord:
    """The dataclass of a record dict (any version). ``where`` names it in error messages."""
    if not isinstance(raw, dict):
        raise BenchError(f"{where}: run record must be a JSON object, got {type(raw).__name__}")
    for key in ("stage", "model"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise BenchError(f"{where}: run record has no {key!r} (a non-empty string)")
    version = raw.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= VERSION:
        raise BenchError(f"{where}: run record version {version!r} is not one this code reads (1..{VERSION})")
    rec = upgrade(raw)
    stage = rec["stage"]
    cls = CLASSES.get(stage, StageRecord)
    for key, numeric in cls.REQUIRED.items():
        value = rec.get(key)
        if value is None:
            raise BenchError(f"{where}: {stage} record has no {key!r}")
        if numeric and (not _is_number(value) or (isinstance(value, float) and math.isnan(value))):
            raise BenchError(f"{where}: {stage} record's {key!r} is {value!r}, expected a number")
    if stage in ("latency", "latency_compare"):
        rec["device"] = str(rec["device"]).split(":")[0]  # "cuda:0" -> "cuda"
        rec["dtype"] = rec.get("dtype") or "fp32"
    names = {f.name for f in fields(cls)} - {"values"}
    kwargs = {k: rec.pop(k) for k in list(rec) if k in names}
    return cls(**kwargs, values=rec)


def is_record_file(path: Path) -> bool:
    """A ``*.json`` file that is not hidden and not a temporary file of an atomic write."""
    name = path.name
    return path.is_file() and name.endswith(".json") and not name.startswith(".") and ".tmp" not in name


def read_record(path: Path) -> StageRecord:
    """One record file -> its dataclass, converted to the current version and checked for its stage. Raises
    BenchError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchError(f"{path}: cannot read run record ({exc})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BenchError(
            f"{path}: not a valid JSON run record ({exc.msg} at line {exc.lineno}); delete it and re-run its stage"
        ) from None
    rec = from_dict(raw, where=str(path))
    if rec.stage in STAGES and not path.name.startswith(rec.stage):
        raise BenchError(f"{path}: record says stage {rec.stage!r} but the file name says otherwise")
    check_values(rec.to_dict(), str(path))
    return rec


def finished_record(path: Path) -> StageRecord | None:
    """The record of a stage that has run (of any record version), or None when it has not (or its record
    is unreadable, so that the stage runs again)."""
    if not path.exists():
        return None
    try:
        return read_record(path)
    except BenchError:
        return None
