"""A budget file's shape-search plan (``shapes:``), read by bench.budget, and the candidate shapes it names,
used by bench.train.shapes (which documents the search and its fairness rules).

``shapes: {trials_per_family: 8, tokens_per_trial: 666_666, models: {transformer: {layers: [[6, 6], [3, 3]],
heads: [8, 4], ffn_ratio: [4, 2]}, lite_transformer: [{layers: 3}, {ffn_ratio: 2}]}}``: per family a grid (every
combination of the values) or a list of moves from the paper's shape. A task may have its own plan under its name
(``shapes: {..., lm: {...}}``), else the top level's. The knobs:

- ``layers``: both stacks, ``[encoder, decoder]`` or one number for both (a language model: its decoder);
  ``encoder_layers`` / ``decoder_layers`` one stack each (the Evolved Transformer's are its cells);
- ``heads``: every head count of the family keeps its paper ratio to it (``TIED_HEADS``: the encoder-decoder
  heads, the Evolved Transformer's parallel attention, Lite's convolution heads);
- ``ffn_ratio``: ffn_dim = ratio * d_model on the solver's width grid, in place of the family's rule (4d, or
  Lite's flattened d), before the fine knob adjusts it.

Lite's ``kernel_sizes`` follow its depth: the paper's list, its first n entries for n layers, or extended with
its last value when deeper (a shape as deep as the paper's keeps the list as written). The candidates: the
paper's shape first, then the others by the fewest knobs moved from it (``layers`` counts as one), ties in the
order written (a grid's combinations with its first knob changing fastest), the first ``trials_per_family``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from bench.budget.keys import check_keys
from bench.errors import BenchError
from bench.train.tasks import TASKS, model_task

if TYPE_CHECKING:
    from bench.budget.spec import Budget

# head counts that keep their paper ratio to ``heads`` when the search moves it
TIED_HEADS = ("encoder_attention_heads", "parallel_heads", "conv_heads")
SHAPE_KEYS = ("trials_per_family", "tokens_per_trial", "models")
# layers: both stacks ([enc, dec], or one number for both; a language model's decoder); heads: every head count
# of the family in its paper ratio to ``heads``; ffn_ratio: ffn_dim = ratio * d_model before the fine knob
SHAPE_KNOBS = ("layers", "encoder_layers", "decoder_layers", "heads", "ffn_ratio")


@dataclass(frozen=True)
class ShapePlan:
    """A budget file's ``shapes:`` section for one task (bench.train.shapes): the trials every family gets, the target
    tokens of each, and per family the knobs the search moves, either a grid (``{knob: [values]}``, every
    combination) or a list of moves from the paper's shape (``[{knob: value, ...}, ...]``). Values as written,
    a ``layers`` pair as a tuple."""

    trials_per_family: int
    tokens_per_trial: int
    models: dict[str, dict[str, tuple[Any, ...]] | tuple[dict[str, Any], ...]]


def parse_shape_plan(raw: Any, models: list[str], where: str, task: str) -> ShapePlan | None:
    """The ``shapes:`` section for ``task``: its own subsection (``shapes: {..., lm: {...}}``) when the file has
    one, else the top level (None: no section). The form is checked here (families of the budget, known knobs,
    non-empty lists of positive values); bench.train.shapes checks each family's candidates against the budget before
    any training.

    Args:
        raw: the file's ``shapes:`` value; None when the file has none.
        models: the budget's families: a family the section names must be one of them.
        where: the file, named in errors.
        task: the task whose subsection is read: mt, lm or sum.
    """
    if raw is None:
        return None
    own = tuple(t for t in TASKS if t != "mt")
    if not isinstance(raw, dict):
        raise BenchError(f"{where}: 'shapes' must be a mapping with {', '.join(SHAPE_KEYS)}")
    check_keys(raw, (*SHAPE_KEYS, *own), where, "'shapes'")
    section = "shapes"
    if task in own and task in raw:
        raw, section = raw[task], f"shapes: {task}"
        if not isinstance(raw, dict):
            raise BenchError(f"{where}: '{section}' must be a mapping with {', '.join(SHAPE_KEYS)}")
        check_keys(raw, SHAPE_KEYS, where, f"'{section}'")
    missing = [k for k in SHAPE_KEYS if k not in raw]
    if missing:
        raise BenchError(f"{where}: '{section}' needs {', '.join(missing)}")
    for key in ("trials_per_family", "tokens_per_trial"):
        if isinstance(raw[key], bool) or not isinstance(raw[key], int) or raw[key] < 1:
            raise BenchError(f"{where}: '{section}: {key}' must be a positive integer, got {raw[key]!r}")
    if not isinstance(raw["models"], dict) or not raw["models"]:
        raise BenchError(f"{where}: '{section}: models' must map families to their knobs' values")

    def value(at: str, knob: str, v: Any) -> Any:
        if knob == "layers" and isinstance(v, list) and len(v) == 2:
            return tuple(value(at, "encoder_layers" if i == 0 else "decoder_layers", x) for i, x in enumerate(v))
        number = (int, float) if knob == "ffn_ratio" else int
        if isinstance(v, bool) or not isinstance(v, number) or not 0 < v < math.inf:
            kind = "a positive number" if knob == "ffn_ratio" else "a positive integer"
            kind += " or a pair [encoder, decoder] of them" if knob == "layers" else ""
            raise BenchError(f"{at}: {knob} must be {kind}, got {v!r}")
        return v

    def knobs(at: str, mapping: dict[str, Any]) -> None:
        unknown = [str(k) for k in mapping if k not in SHAPE_KNOBS]
        if unknown:
            raise BenchError(f"{at}: unknown knob(s) {', '.join(unknown)}; valid: {', '.join(SHAPE_KNOBS)}")
        if "layers" in mapping and ("encoder_layers" in mapping or "decoder_layers" in mapping):
            raise BenchError(f"{at}: layers sets both stacks; give it or encoder_layers/decoder_layers, not both")

    out: dict[str, Any] = {}
    for family, spec in raw["models"].items():
        at = f"{where}: '{section}: models: {family}'"
        if family not in models:
            raise BenchError(f"{at}: not a family of this budget; its families: {', '.join(models)}")
        if isinstance(spec, dict) and spec:  # a grid: every combination of the values
            knobs(at, spec)
            for knob, values in spec.items():
                if not isinstance(values, list) or not values:
                    raise BenchError(f"{at}: {knob} needs a non-empty list of values, got {values!r}")
            out[family] = {k: tuple(value(at, k, v) for v in vs) for k, vs in spec.items()}
        elif isinstance(spec, list) and spec:  # a list of moves from the paper's shape
            if not all(isinstance(m, dict) for m in spec):
                raise BenchError(f"{at}: a list of candidates must hold mappings of knob: value")
            for move in spec:
                knobs(at, move)
            out[family] = tuple({k: value(at, k, v) for k, v in m.items()} for m in spec)
        else:
            raise BenchError(f"{at}: needs a grid ({{knob: [values]}}) or a non-empty list of moves "
                             f"([{{knob: value}}]), got {spec!r}")
    return ShapePlan(raw["trials_per_family"], raw["tokens_per_trial"], out)


# ------------------------------------------------------------------------------------------------ shapes
@dataclass(frozen=True)
class Shape:
    encoder_layers: int  # 0: a language model (no encoder)
    decoder_layers: int
    heads: int
    ffn_ratio: float

    @property
    def slug(self) -> str:
        """``L6x6-h8-f4`` (a language model: ``L12-h8-f4``)."""
        layers = f"{self.encoder_layers}x{self.decoder_layers}" if self.encoder_layers else f"{self.decoder_layers}"
        return f"L{layers}-h{self.heads}-f{self.ffn_ratio:g}"

    def moved(self, paper: Shape) -> int:
        """How many knobs differ from ``paper`` (both stacks' depth count as one, ``layers``)."""
        return (((self.encoder_layers, self.decoder_layers) != (paper.encoder_layers, paper.decoder_layers))
                + (self.heads != paper.heads) + (self.ffn_ratio != paper.ffn_ratio))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paper_config(budget: Budget, family: str) -> dict[str, Any]:
    """The family's paper knobs (the budget file's fixed ones, the shared ones, the family's FFN rule) resolved at
    the first valid width of its grid."""
    from models import ConfigError, resolve_config  # the model registry (torch): loaded only when a shape is resolved

    rule, task = budget.models[family], model_task(budget.task)
    for d in range(rule.low, rule.high + 1, rule.step):
        try:
            return resolve_config(family, task, **{**budget.base_config(family), rule.vary_key: d}).to_dict()
        except ConfigError:
            continue
    raise BenchError(f"shapes: no valid {family} config on its grid {rule.vary_key}={rule.low}..{rule.high}")


def paper_shape(cfg: dict[str, Any]) -> Shape:
    return Shape(cfg["encoder_layers"] if cfg["task"] == "mt" else 0, cfg["decoder_layers"], cfg["heads"],
                 cfg["ffn_dim"] / cfg["d_model"])


def _apply(paper: Shape, move: dict[str, Any], family: str, seq2seq: bool) -> Shape:
    values = paper.to_dict()
    for knob, v in move.items():
        if knob == "layers":
            if not seq2seq and isinstance(v, tuple):
                raise BenchError(f"shapes: {family}: layers {list(v)}: a language model has one stack; give one "
                                 "number")
            if seq2seq:
                values["encoder_layers"], values["decoder_layers"] = v if isinstance(v, tuple) else (v, v)
            else:
                values["decoder_layers"] = v
        elif knob == "encoder_layers" and not seq2seq:
            raise BenchError(f"shapes: {family}: encoder_layers is not a knob of a language model (no encoder)")
        else:
            values[knob] = v
    values["ffn_ratio"] = float(values["ffn_ratio"])
    return Shape(**values)


def candidates(budget: Budget, family: str) -> list[Shape]:
    """The family's candidates, in the order the search ranks ties: the paper's shape first, then by the fewest
    knobs moved, ties in the order written (a grid's combinations, its first knob changing fastest); the first
    ``trials_per_family``."""
    plan = budget.shapes
    if plan is None or family not in plan.models:
        raise BenchError(f"shapes: {family} has no candidates in {budget.source or budget.name}'s 'shapes:'")
    spec = plan.models[family]
    paper = paper_shape(paper_config(budget, family))
    seq2seq = model_task(budget.task) == "mt"
    if isinstance(spec, dict):
        knobs = list(spec)[::-1]  # itertools.product changes its last iterable fastest
        moves = [dict(zip(knobs, combo)) for combo in itertools.product(*(spec[k] for k in knobs))]
    else:
        moves = list(spec)
    shapes = list(dict.fromkeys([paper, *(_apply(paper, m, family, seq2seq) for m in moves)]))
    ranked = sorted(range(len(shapes)), key=lambda i: (shapes[i] != paper, shapes[i].moved(paper), i))
    return [shapes[i] for i in ranked][: plan.trials_per_family]


def shape_overrides(family: str, paper_cfg: dict[str, Any], shape: Shape) -> dict[str, Any]:
    """The config keys a shape sets: depth, heads and the head counts tied to them, Lite's kernel sizes.

    Args:
        family: the family, named in errors.
        paper_cfg: the family's paper config as a dict (:func:`paper_config`).
        shape: the candidate depth and heads.
    """
    over: dict[str, Any] = {"decoder_layers": shape.decoder_layers, "heads": shape.heads}
    if paper_cfg["task"] == "mt":
        over["encoder_layers"] = shape.encoder_layers
    for key in TIED_HEADS:
        if key in paper_cfg:
            tied = shape.heads * paper_cfg[key] / paper_cfg["heads"]
            if tied != int(tied) or tied < 1:
                raise BenchError(f"shapes: {family} heads={shape.heads}: {key} keeps its paper ratio "
                                 f"{paper_cfg[key]}:{paper_cfg['heads']} to heads and would be {tied:g}")
            over[key] = int(tied)
    if "kernel_sizes" in paper_cfg:
        ks = list(paper_cfg["kernel_sizes"])
        n = max(shape.encoder_layers, shape.decoder_layers)
        paper_n = max(paper_cfg["encoder_layers"] if paper_cfg["task"] == "mt" else 0, paper_cfg["decoder_layers"])
        over["kernel_sizes"] = ks if n == paper_n else ks[:n] + [ks[-1]] * max(0, n - len(ks))
    return over
