"""Model configuration: one dataclass per family, built and validated from keyword overrides.

A config is plain data. ``dataclasses.asdict(cfg)`` gives a dict ``d`` such that
``create_model(name, **d)`` rebuilds exactly the same model (``task`` is one of its keys).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

TASKS = ("mt", "lm")


class ConfigError(ValueError):
    """A bad model name, key or value. The message is one line that says what is valid."""


@dataclass
class ModelConfig:
    """Keys shared by every family. Sizes are in channels; dropouts are probabilities.

    Special ids follow fairseq: bos=0, pad=1, eos=2, unk=3. ``vocab_size`` is the joint (or source)
    vocabulary; ``tgt_vocab_size`` is used only with ``share_embeddings=False`` (IWSLT-style separate
    vocabularies and an untied output projection); ``None`` means "same as vocab_size".
    ``ffn_dim=None`` and ``normalize_before=None`` mean "the family's rule" and are resolved on creation.
    """

    task: str = "mt"
    d_model: int = 512
    ffn_dim: int | None = None
    encoder_layers: int = 6
    decoder_layers: int = 6
    heads: int = 8
    encoder_attention_heads: int = 8
    vocab_size: int = 8000
    tgt_vocab_size: int | None = None
    share_embeddings: bool = True
    normalize_before: bool | None = None
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    max_positions: int = 1024
    bos_id: int = 0
    pad_id: int = 1
    eos_id: int = 2
    unk_id: int = 3

    family: ClassVar[str] = "base"

    # ----------------------------------------------------------------- family hooks
    @classmethod
    def task_defaults(cls, task: str) -> dict[str, Any]:
        """Defaults that differ between translation and language modelling."""
        return {}

    def resolve(self) -> None:
        """Fill family-rule defaults (ffn_dim, normalize_before)."""

    def check(self) -> None:
        """Family-specific validation; raise ConfigError with a one-line message."""

    # ----------------------------------------------------------------- construction
    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def create(cls, task: str = "mt", **overrides: Any) -> ModelConfig:
        if task not in TASKS:
            raise ConfigError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
        valid = cls.keys()
        unknown = sorted(k for k in overrides if k not in valid)
        if unknown:
            raise ConfigError(
                f"unknown config key(s) {', '.join(unknown)} for {cls.family}; valid keys: {', '.join(valid)}"
            )
        values = {**cls.task_defaults(task), **overrides, "task": task}
        for name, value in values.items():
            values[name] = _check_type(cls, name, value)
        cfg = cls(**values)
        cfg.resolve()
        cfg._check_common()
        cfg.check()
        return cfg

    @classmethod
    def parse_value(cls, key: str, text: str) -> Any:
        """Parse a command-line ``KEY=VALUE`` string into the key's type (used by ``--set``)."""
        if key not in cls.keys():
            raise ConfigError(f"unknown config key {key!r} for {cls.family}; valid keys: {', '.join(cls.keys())}")
        hint = _hints(cls)[key]
        base, optional = _unwrap(hint)
        t = text.strip()
        if optional and t.lower() in ("none", "null"):
            return None
        try:
            if base is bool:
                if t.lower() in ("1", "true", "yes", "on"):
                    return True
                if t.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            if base is int:
                return int(t)
            if base is float:
                return float(t)
            if typing.get_origin(base) in (list, tuple):
                return [int(v) for v in t.strip("[]()").split(",") if v.strip()]
            return t
        except ValueError:
            raise ConfigError(f"{key}={text!r} is not a valid {_type_name(hint)}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # ----------------------------------------------------------------- validation
    def _check_common(self) -> None:
        positive = ["d_model", "ffn_dim", "heads", "encoder_attention_heads", "vocab_size", "max_positions"]
        for key in positive:
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key} must be positive, got {getattr(self, key)}")
        if self.decoder_layers <= 0:
            raise ConfigError(f"decoder_layers must be positive, got {self.decoder_layers}")
        if self.task == "mt" and self.encoder_layers <= 0:
            raise ConfigError(f"encoder_layers must be positive for translation, got {self.encoder_layers}")
        if self.tgt_vocab_size is not None and self.tgt_vocab_size <= 0:
            raise ConfigError(f"tgt_vocab_size must be positive, got {self.tgt_vocab_size}")
        for key in ("dropout", "attention_dropout", "activation_dropout"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ConfigError(f"{key} must be in [0, 1), got {getattr(self, key)}")
        ids = [self.bos_id, self.pad_id, self.eos_id, self.unk_id]
        if len(set(ids)) != 4 or min(ids) < 0 or max(ids) >= min(self.vocab_size, self.target_vocab):
            raise ConfigError("bos_id, pad_id, eos_id, unk_id must be distinct ids inside the vocabulary")

    def require_divisible(self, key: str, value: int, divisor: int, why: str) -> None:
        if value % divisor:
            raise ConfigError(f"{key}={value} must be divisible by {divisor} ({why})")

    @property
    def target_vocab(self) -> int:
        if self.share_embeddings or self.tgt_vocab_size is None:
            return self.vocab_size
        return self.tgt_vocab_size


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """A config class's resolved annotations (resolving them is slow, and a solver resolves thousands of configs)."""
    return typing.get_type_hints(cls)


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """(base type, optional?) for ``X | None`` annotations."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], True
    return hint, False


def _type_name(hint: Any) -> str:
    base, optional = _unwrap(hint)
    name = "list of ints" if typing.get_origin(base) in (list, tuple) else getattr(base, "__name__", str(base))
    return f"{name} (or none)" if optional else name


def _check_type(cls: type, key: str, value: Any) -> Any:
    hint = _hints(cls)[key]
    base, optional = _unwrap(hint)
    if value is None and optional:
        return None
    ok = False
    if base is bool:
        ok = isinstance(value, bool)
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif base is str:
        ok = isinstance(value, str)
    elif typing.get_origin(base) in (list, tuple):
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        value = list(value) if ok else value
    if not ok:
        raise ConfigError(f"{key}={value!r} is not a valid {_type_name(hint)}")
    return value


__all__ = ["ConfigError", "ModelConfig", "TASKS", "field"]
