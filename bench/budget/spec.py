"""Budgets as data: budget files and specs parsed into a Budget (scaling rules, shared knobs, recipes).

A budget spec is ``100M``, ``500M``, ``1.2G``, ``750K`` (a file ``budgets/<spec>.yaml`` if there is one,
otherwise the 100M file's scaling rules with that target) or a path to a YAML file.

A latency budget (``6ms``, ``5.6ms``, or a file with ``target_latency_ms``) matches every family to one
measured p50 instead of one MAC count: bench.budget.latency_solve solves it, in the setting the budget names
(device, threads, workload, dtype, backend). Without a file of its own it takes the 100M file's scaling
rules, shared knobs and training recipe, and the peak rates the 100M tuning chose (``tuned_from``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.budget.keys import check_keys
from bench.budget.latency_target import parse_latency
from bench.budget.shape_plan import parse_shape_plan
from bench.budget.tune_plan import parse_tune_plan
from bench.cost.analytic import Protocol
from bench.errors import BenchError
from bench.infra.yaml_file import read_yaml
from bench.records.provenance import REPO
from bench.train.schedules import LONGER, SCHEDULES, file_keys
from bench.train.tasks import TASKS, model_task
from models import ConfigError, get_entry, supports

if TYPE_CHECKING:
    from bench.budget.latency_target import LatencyTarget
    from bench.budget.shape_plan import ShapePlan
    from bench.budget.tune_plan import TunePlan

BUDGET_DIR = REPO / "budgets"
TEMPLATE = "100M"
MAX_FINE_DEPARTURE = 2.0  # the fine knob stays within a factor 2 of the family's own rule (e.g. ffn = 4d)
_SUFFIX = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
# the keys a budget file may use, section by section (anything else is a typo, reported with these)
BUDGET_KEYS = ("name", "target_macs", "tolerance", "protocol", "models", "shared", "train", "variants",
               "target_latency_ms", "latency", "tuned_from", "tune", "shapes", "ablations")
ANCHOR_MACS = 100_000_000  # a latency budget's MAC anchor when its file names none: where the search starts
PROTOCOL_KEYS = ("batch", "src_tokens", "tgt_tokens", "counter", "sum")
TASK_PROTOCOL_KEYS = ("src_tokens", "tgt_tokens")  # a task's own token counts (protocol: sum:)
TASK_SECTIONS = ("sum",)  # tasks with their own `protocol:` token counts and `train:` adjustments
RULE_KEYS = ("fixed", "mt", "lm", "vary", "fine")
VARY_KEYS = ("key", "step", "min", "max")
FINE_KEYS = ("key", "step")
_SPEC = re.compile(r"^\s*([+-]?[0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([KMGT]?)\s*$", re.IGNORECASE)
_MS = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*ms\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class ScalingRule:
    fixed: dict[str, Any]
    task_fixed: dict[str, dict[str, Any]]
    vary_key: str
    step: int
    low: int
    high: int
    fine_key: str
    fine_step: int
    ffn_ratio: float | None = None  # shape search: ffn_dim = ratio * width before the fine knob (None: the family's)

    def base(self, task: str) -> dict[str, Any]:
        return {**self.fixed, **self.task_fixed.get(task, {})}


@dataclass(frozen=True)
class Variant:
    """An extra row of a comparison: a family of the budget with some knobs set otherwise (e.g. the paper's
    post-norm), solved by the family's own rule and trained under the same protocol."""

    key: str  # its name on the command line and in run folders, e.g. transformer-postnorm
    model: str  # the family it varies
    label: str  # the row name in tables and figures, e.g. "transformer (post-norm, paper)"
    sets: dict[str, Any]
    tasks: tuple[str, ...] = TASKS  # the tasks whose sweeps include the row (`tasks:`, default every task)
    # ``shape: searched``: the row takes the shape the budget's shape search chose for its family
    # (bench.train.searched_shapes fills ``sets`` and ``ffn_ratio`` from <results>/shapes/chosen.json); until then
    # the variant waits in Budget.searched, never in a sweep
    shape: str | None = None
    ffn_ratio: float | None = None  # ffn_dim = ratio * d_model on the solver's width grid, in place of the family's
    # an ablation (``ablations:``): what it changes, in words; recipe keys it sets (``train:``, e.g. warmup_steps);
    # ``wall_time_of``: train for that family's measured training time instead of the recipe's tokens
    what: str = ""
    train: dict[str, Any] = field(default_factory=dict)
    wall_time_of: str | None = None


@dataclass(frozen=True)
class Budget:
    name: str
    target_macs: int
    tolerance: float
    protocol: Protocol
    counter: str
    models: dict[str, ScalingRule]
    task: str = "mt"
    source: str = ""
    # schedule adjustments for every model of this budget alike: {schedule name: {schedule key: value}}
    train: dict[str, dict[str, Any]] = field(default_factory=dict)
    # model knobs every family of this budget shares (norm placement, dropouts), applied after the family's
    # fixed knobs; a key a family does not have (weight_dropout without a convolution) does not apply to it
    shared: dict[str, Any] = field(default_factory=dict)
    schedule_shared: dict[str, dict[str, Any]] = field(default_factory=dict)  # shared: {mt: {x16: {...}}}
    variants: dict[str, Variant] = field(default_factory=dict)
    latency: LatencyTarget | None = None  # a latency budget (target_macs is then only the search's anchor)
    tuned_from: str | None = None  # read the peak rates another budget's tuning chose (results/<it>/tuning)
    tune: TunePlan | None = None  # the tuning search's grid and trial size (``tune:``; bench.train.tune's defaults)
    shapes: ShapePlan | None = None  # the equal-budget shape search's candidates (``shapes:``; bench.train.shapes)
    # families of the file that this task leaves out, each with the reason (registered for other tasks only), and
    # searched-shape rows without a search to take their shape from
    skipped: dict[str, str] = field(default_factory=dict)
    # variants with ``shape: searched`` not yet given their shape (bench.train.searched_shapes.with_searched_shapes)
    searched: dict[str, Variant] = field(default_factory=dict)
    # ``ablations:``: one-knob departures from a family's row that say where a gap comes from (bench run --ablations;
    # never rows of the comparison)
    ablations: dict[str, Variant] = field(default_factory=dict)

    def rows(self) -> list[str]:
        """Everything a sweep of this budget trains by default: the families, then the variants."""
        return [*self.models, *self.variants]

    def family_of(self, name: str) -> str:
        return self.variants[name].model if name in self.variants else name

    def label(self, name: str) -> str:
        return self.variants[name].label if name in self.variants else name

    def for_schedule(self, schedule: str) -> Budget:
        """This budget as a sweep on ``schedule`` trains it: a longer schedule's shared knobs on top."""
        return replace(self, shared={**self.shared, **self.schedule_shared[schedule]}) \
            if schedule in self.schedule_shared else self

    def shared_for(self, model: str) -> dict[str, Any]:
        keys = get_entry(model).config_cls.keys()
        return {k: v for k, v in self.shared.items() if k in keys}

    def base_config(self, name: str) -> dict[str, Any]:
        """The knobs of row ``name`` before solving: the family's fixed knobs, the shared ones, the variant's."""
        model = self.family_of(name)
        base = {**self.models[model].base(model_task(self.task)), **self.shared_for(model)}
        if name in self.variants:
            base.update(self.variants[name].sets)
        return base

    def schedule_overrides(self, schedule: str) -> dict[str, Any]:
        """The budget file's keys for ``schedule`` (a longer schedule's: bench.train.schedules.file_keys)."""
        return file_keys(self.train, schedule)

    @property
    def low(self) -> float:
        return self.target_macs * (1 - self.tolerance)

    @property
    def high(self) -> float:
        return self.target_macs * (1 + self.tolerance)

    def results_name(self, schedule: str = "short") -> str:
        """The results folder: 100M, 100M-lm, 100M-sum; a schedule other than short adds its name (100M-full,
        100M-quick), so that a run on another schedule never mixes with, or overwrites, the short one's."""
        name = self.name if self.task == "mt" else f"{self.name}-{self.task}"
        return name if schedule == "short" else f"{name}-{schedule}"


def parse_target(spec: str) -> int:
    """``"100M"`` -> 100_000_000. Raises BenchError for anything that is not a positive MAC count."""
    m = _SPEC.match(str(spec))
    if not m:
        raise BenchError(f"budget {spec!r} is neither a MAC count like 100M, 500M, 1.2G, a latency like 6ms, "
                         "nor a budget file")
    value = float(m.group(1)) * _SUFFIX[m.group(2).upper()]
    if not value > 0 or not math.isfinite(value):
        raise BenchError(f"budget {spec!r} must be a positive number of MACs")
    return int(round(value))


def _rule(name: str, raw: Any, where: str) -> ScalingRule:
    try:
        get_entry(name)
    except ConfigError as exc:
        raise BenchError(f"{where}: {exc}") from None
    if not isinstance(raw, dict) or "vary" not in raw or "fine" not in raw:
        raise BenchError(f"{where}: model {name!r} needs 'vary' and 'fine' entries")
    vary, fine = raw["vary"], raw["fine"]
    check_keys(raw, RULE_KEYS, where, f"model {name!r}")
    check_keys(vary, VARY_KEYS, where, f"model {name!r} 'vary'")
    check_keys(fine, FINE_KEYS, where, f"model {name!r} 'fine'")
    try:
        return ScalingRule(
            fixed=dict(raw.get("fixed") or {}),
            task_fixed={t: dict(raw.get(t) or {}) for t in ("mt", "lm")},
            vary_key=str(vary["key"]),
            step=int(vary["step"]),
            low=int(vary.get("min", vary["step"])),
            high=int(vary["max"]),
            fine_key=str(fine["key"]),
            fine_step=int(fine["step"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BenchError(f"{where}: model {name!r} has a malformed scaling rule ({exc})") from None


def _from_mapping(raw: Any, where: str, task: str, name: str | None = None, target: int | None = None,
                  latency_ms: float | None = None, tuned_from: str | None = None) -> Budget:
    if not isinstance(raw, dict):
        raise BenchError(f"{where}: a budget file must be a YAML mapping")
    check_keys(raw, BUDGET_KEYS, where, "the budget file")
    latency = parse_latency(raw, where, latency_ms)
    for key in ("target_macs", "models"):
        if key not in raw and not (key == "target_macs" and latency is not None):
            raise BenchError(f"{where}: missing key {key!r}")
    try:
        if target is None:  # a number (100_000_000, 1e8) or a spec string ("100M")
            value = raw.get("target_macs", ANCHOR_MACS)
            target = int(value) if isinstance(value, (int, float)) else parse_target(str(value))
        tolerance = float(raw.get("tolerance", 0.02))
    except (TypeError, ValueError, BenchError):
        raise BenchError(f"{where}: target_macs and tolerance must be numbers") from None
    if target <= 0 or not 0 < tolerance < 1:
        raise BenchError(f"{where}: target_macs must be positive and tolerance in (0, 1)")
    proto = raw.get("protocol") or {}
    check_keys(proto, PROTOCOL_KEYS, where, "'protocol'")
    tokens = _task_tokens(proto, task, where)
    protocol = Protocol(
        batch=int(proto.get("batch", 1)),
        src_tokens=int(tokens.get("src_tokens", 30)),
        tgt_tokens=int(tokens.get("tgt_tokens", 30)),
    )
    if not isinstance(raw["models"], dict) or not raw["models"]:
        raise BenchError(f"{where}: 'models' must map model names to scaling rules")
    models = {m: _rule(m, r, where) for m, r in raw["models"].items()}
    train = raw.get("train") or {}
    if not isinstance(train, dict) or not all(isinstance(v, dict) or v is None for v in train.values()):
        raise BenchError(f"{where}: 'train' must map schedule names to mappings of schedule keys")
    check_keys(train, (*SCHEDULES, *TASK_SECTIONS), where, "'train' (schedule names)")
    sections = [(f"'train: {k}'", k, v) for k, v in train.items() if k in SCHEDULES]
    for t in TASK_SECTIONS:  # a task's adjustments: train: {sum: {short: {max_tokens: ...}}}
        check_keys(train.get(t), tuple(SCHEDULES), where, f"'train: {t}' (schedule names)")
        sections += [(f"'train: {t}: {k}'", k, v) for k, v in (train.get(t) or {}).items()]
    for what, sched, keys in sections:
        if not isinstance(keys, dict) and keys is not None:
            raise BenchError(f"{where}: {what} must map schedule keys to values")
        check_keys(keys, tuple(k for k in SCHEDULES[sched].to_dict() if k != "name"), where, what)
    own = (train.get(task) or {}) if task in TASK_SECTIONS else {}
    train = {k: {**(train.get(k) or {}), **(own.get(k) or {})} for k in SCHEDULES if k in train or k in own}
    shared, schedule_shared = _shared(raw.get("shared"), models, where, task)
    # the variants are rows of their own budget's table; a latency budget made from its template compares the
    # families alone; a variant names the tasks it belongs to (the paper's post-norm rows: translation)
    variants = _variants(raw.get("variants") or {}, models, where) if latency_ms is None else {}
    variants = {k: v for k, v in variants.items() if task in v.tasks}
    skipped = _unsupported(models, task)
    if len(skipped) == len(models):
        raise BenchError(f"{where}: no family of this budget is registered for task {task!r} "
                         f"({'; '.join(f'{m}: {r}' for m, r in skipped.items())})")
    variants = {k: v for k, v in variants.items() if v.model not in skipped}
    searched = {k: v for k, v in variants.items() if v.shape is not None}
    variants = {k: v for k, v in variants.items() if v.shape is None}
    return Budget(
        name=str(name or raw.get("name", target)),
        target_macs=target,
        tolerance=tolerance,
        protocol=protocol,
        counter=str(proto.get("counter", "flop_counter")),
        models={m: r for m, r in models.items() if m not in skipped},
        task=task,
        source=where,
        train={str(k): dict(v or {}) for k, v in train.items()},
        shared=dict(shared),
        schedule_shared=schedule_shared,
        variants=variants,
        latency=latency,
        tuned_from=str(raw["tuned_from"]) if raw.get("tuned_from") is not None else tuned_from,
        tune=parse_tune_plan(raw.get("tune"), where, task),
        shapes=parse_shape_plan(raw.get("shapes"), list(models), where, task),
        skipped=skipped,
        searched=searched,
        ablations={k: v for k, v in _ablations(raw.get("ablations"), models, where).items()
                   if task in v.tasks and v.model not in skipped} if latency_ms is None else {},
    )


def _unsupported(models: dict[str, ScalingRule], task: str) -> dict[str, str]:
    """The families registered for other tasks only, each with the registry's reason: a translation-only family
    is left out of a language-modelling budget (its sweeps, tables and searches) instead of failing them."""
    need = model_task(task)
    return {m: f"registered for task(s) {', '.join(get_entry(m).tasks)} only, not {task!r}"
            for m in models if not supports(m, need)}


def _shared(raw: Any, models: dict[str, ScalingRule], where: str, task: str) -> tuple[dict[str, Any], dict]:
    """The knobs every family shares for ``task`` (``shared: {dropout: 0.1, mt: {dropout: 0.0}}``: translation 0,
    the others 0.1), and a longer schedule's own in the task's subsection (``mt: {x16: {dropout: 0.1}}``)."""
    raw = raw or {}
    if not isinstance(raw, dict) or not all(isinstance(raw[t], dict) for t in TASKS if t in raw):
        raise BenchError(f"{where}: 'shared' must map model config keys to values (and a task, "
                         f"{', '.join(TASKS)}, to its own such mapping)")
    raw = {k: (dict(v) if k in TASKS else v) for k, v in raw.items()}
    longer = {t: {n: raw[t].pop(n) for n in LONGER if n in raw[t]} for t in TASKS if t in raw}
    if not all(isinstance(v, dict) for sub in longer.values() for v in sub.values()):
        raise BenchError(f"{where}: 'shared: <task>: <schedule>' must map model config keys to values")
    known = {k for m in models for k in get_entry(m).config_cls.keys()} - {"task", "d_model", "ffn_dim"}
    top = {k: v for k, v in raw.items() if k not in TASKS}
    for keys in (top, *(raw[t] for t in TASKS if t in raw), *(v for sub in longer.values() for v in sub.values())):
        bad = sorted(str(k) for k in keys if k not in known)
        if bad:
            raise BenchError(f"{where}: shared key(s) {', '.join(bad)} are not config keys a budget may share; "
                             f"valid: {', '.join(sorted(known))}")
    return {**top, **raw.get(task, {})}, longer.get(task, {})


def _task_tokens(proto: Any, task: str, where: str) -> dict[str, Any]:
    """The token counts of ``task``'s MAC protocol: ``protocol: sum: {src_tokens, tgt_tokens}`` for
    summarization (required: its inputs are not translation's 30 + 30), the top-level ones otherwise."""
    if not isinstance(proto, dict):
        raise BenchError(f"{where}: 'protocol' must be a mapping")
    if task not in TASK_SECTIONS:
        return proto
    own = proto.get(task)
    if not isinstance(own, dict) or not all(k in own for k in TASK_PROTOCOL_KEYS):
        raise BenchError(f"{where}: task {task} needs 'protocol: {task}: {{src_tokens: N, tgt_tokens: M}}' "
                         "(its MAC convention)")
    check_keys(own, TASK_PROTOCOL_KEYS, where, f"'protocol: {task}'")
    return own


VARIANT_KEYS = ("model", "label", "set", "tasks", "shape")
VARIANT_SHAPES = ("searched",)  # ``shape:`` values: the shape the budget's shape search chose for the family


def _variants(raw: Any, models: dict[str, ScalingRule], where: str) -> dict[str, Variant]:
    if not isinstance(raw, dict):
        raise BenchError(f"{where}: 'variants' must map row names to {{model, label, set}} mappings")
    out = {}
    for key, spec in raw.items():
        shape = spec.get("shape") if isinstance(spec, dict) else None
        sets = spec.get("set", {} if shape is not None else None) if isinstance(spec, dict) else None
        if not isinstance(spec, dict) or not isinstance(spec.get("model"), str) or spec["model"] not in models \
                or not isinstance(sets, dict):
            raise BenchError(
                f"{where}: variant {key!r} needs 'model' (one of {', '.join(models)}) and a 'set' mapping "
                "(or 'shape: searched')"
            )
        if key in models:
            raise BenchError(f"{where}: variant {key!r} has the name of a family")
        extra = sorted(set(spec) - set(VARIANT_KEYS))
        if extra:
            raise BenchError(
                f"{where}: variant {key!r} has unknown key(s) {', '.join(extra)}; valid: {', '.join(VARIANT_KEYS)}"
            )
        if shape is not None and (shape not in VARIANT_SHAPES or sets):
            raise BenchError(f"{where}: variant {key!r}: 'shape' must be {' or '.join(VARIANT_SHAPES)}, got "
                             f"{shape!r}, and a searched shape sets no other key ('set' empty)")
        tasks = spec.get("tasks", list(TASKS))
        if not isinstance(tasks, list) or not tasks or any(t not in TASKS for t in tasks):
            raise BenchError(f"{where}: variant {key!r}: 'tasks' must be a list of {', '.join(TASKS)}")
        keys = get_entry(spec["model"]).config_cls.keys()
        bad = sorted(k for k in sets if k not in keys)
        if bad:
            raise BenchError(f"{where}: variant {key!r} sets unknown {spec['model']} key(s) {', '.join(bad)}")
        out[str(key)] = Variant(str(key), spec["model"], str(spec.get("label") or key), dict(sets),
                                tuple(tasks), shape=shape)
    return out


ABLATION_KEYS = ("model", "what", "set", "ffn_ratio", "train", "wall_time_of", "tasks")


def _ablations(raw: Any, models: dict[str, ScalingRule], where: str) -> dict[str, Variant]:
    """``ablations: {name: {model, what, set: {config keys}, ffn_ratio: r, train: {recipe keys}, wall_time_of:
    family, tasks}}``: each changes one thing of a family's row (at least one of set, ffn_ratio, train,
    wall_time_of); ``ffn_ratio`` replaces the family's FFN rule by ffn_dim = r * d_model before the fine knob, as
    a shape-search candidate's does, so the MACs it saves or spends move the width."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BenchError(f"{where}: 'ablations' must map names to {{model, what, set, train}} mappings")
    out = {}
    for key, spec in raw.items():
        at = f"{where}: ablation {key!r}"
        if not isinstance(spec, dict) or not isinstance(spec.get("model"), str) or spec["model"] not in models:
            raise BenchError(f"{at} needs 'model' (one of {', '.join(models)})")
        check_keys(spec, ABLATION_KEYS, where, f"ablation {key!r}")
        if key in models:
            raise BenchError(f"{at} has the name of a family")
        sets, train, other = spec.get("set") or {}, spec.get("train") or {}, spec.get("wall_time_of")
        ratio = spec.get("ffn_ratio")
        if not isinstance(sets, dict) or not isinstance(train, dict):
            raise BenchError(f"{at}: 'set' maps config keys to values and 'train' recipe keys to values")
        if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float))
                                  or not 0 < ratio <= 64):
            raise BenchError(f"{at}: ffn_ratio must be a number in (0, 64] (ffn_dim = ratio * d_model), "
                             f"got {ratio!r}")
        if not (sets or ratio or train or other):
            raise BenchError(f"{at} changes nothing: give 'set', 'ffn_ratio', 'train' or 'wall_time_of'")
        if other is not None and (not isinstance(other, str) or other not in models or other == spec["model"]):
            raise BenchError(f"{at}: wall_time_of must be another family of the budget ({', '.join(models)}), "
                             f"got {other!r}")
        if other is not None and "max_tokens" in train:
            raise BenchError(f"{at}: wall_time_of sets the target tokens; 'train' may not set max_tokens too")
        keys = get_entry(spec["model"]).config_cls.keys()
        bad = sorted(str(k) for k in sets if k not in keys)
        if bad:
            raise BenchError(f"{at} sets unknown {spec['model']} key(s) {', '.join(bad)}")
        rule = models[spec["model"]]
        solved = sorted(str(k) for k in sets if k in (rule.vary_key, rule.fine_key))
        if solved:
            raise BenchError(f"{at} sets {', '.join(solved)}, which the solver chooses to meet the budget")
        check_keys(train, tuple(k for k in SCHEDULES["short"].to_dict() if k != "name"), where,
                   f"ablation {key!r}: 'train'")
        tasks = spec.get("tasks", ["mt"])
        if not isinstance(tasks, list) or not tasks or any(t not in TASKS for t in tasks):
            raise BenchError(f"{at}: 'tasks' must be a list of {', '.join(TASKS)}")
        for family in filter(None, (spec["model"], other)):
            missing = [t for t in tasks if t not in get_entry(family).tasks]
            if missing:
                raise BenchError(f"{at}: {family} is not registered for task(s) {', '.join(missing)}")
        out[str(key)] = Variant(str(key), spec["model"], str(key), dict(sets), tuple(tasks),
                                ffn_ratio=None if ratio is None else float(ratio),
                                what=str(spec.get("what") or key), train=dict(train),
                                wall_time_of=None if other is None else str(other))
    return out


def load_budget(spec: str | Path, task: str = "mt") -> Budget:
    """A budget from a spec (``100M``, ``1.2G``, a YAML path)."""
    if task not in TASKS:
        raise BenchError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    path = Path(spec)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise BenchError(f"budget file {path} does not exist")
        return _from_mapping(read_yaml(path), str(path), task)
    ms = _MS.match(str(spec))
    if ms:  # a latency budget: 6ms, 5.6ms
        value = float(ms.group(1))
        if not value > 0 or not math.isfinite(value):
            raise BenchError(f"latency budget {spec!r} must be a positive number of milliseconds")
        name = f"{value:g}ms"
        if (BUDGET_DIR / f"{name}.yaml").is_file():
            return _from_mapping(read_yaml(BUDGET_DIR / f"{name}.yaml"), str(BUDGET_DIR / f"{name}.yaml"), task)
        template = BUDGET_DIR / f"{TEMPLATE}.yaml"
        return _from_mapping(read_yaml(template), str(template), task, name=name, latency_ms=value,
                             tuned_from=TEMPLATE)
    target = parse_target(str(spec))
    named = BUDGET_DIR / f"{str(spec).strip().upper()}.yaml"
    if named.is_file():
        return _from_mapping(read_yaml(named), str(named), task)
    template = BUDGET_DIR / f"{TEMPLATE}.yaml"
    return _from_mapping(read_yaml(template), str(template), task, name=str(spec).strip().upper(), target=target)
