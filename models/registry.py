"""The model registry, in timm's style.

@register_model(TransformerConfig, description="...")
def transformer(cfg: TransformerConfig) -> nn.Module: ...

create_model("transformer", task="mt", d_model=256)
list_models("*lite*")
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from .config import TASKS, ConfigError, ModelConfig


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    tasks: tuple[str, ...]
    description: str
    config_cls: type[ModelConfig]
    builder: Callable[[ModelConfig], nn.Module]


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    config_cls: type[ModelConfig], description: str, tasks: tuple[str, ...] = TASKS
) -> Callable[[Callable[[Any], nn.Module]], Callable[[Any], nn.Module]]:
    """Register ``fn(cfg) -> nn.Module`` under its function name."""

    def wrap(fn: Callable[[Any], nn.Module]) -> Callable[[Any], nn.Module]:
        name = fn.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, config_cls.family, tasks, description, config_cls, fn)
        return fn

    return wrap


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell pattern, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def unregister_model(name: str) -> None:
    """Remove a registered model (a test's probe family, a plugin reloaded); unknown names are an error."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    del _REGISTRY[name]


def families() -> list[str]:
    """Every registered name in the order of registration: the paper's three first (Transformer, Evolved
    Transformer, Lite Transformer), then the others as their files were found. The suite's one family order
    (colours, table rows, pairs)."""
    return list(_REGISTRY)


def supports(name: str, task: str) -> bool:
    """Whether ``name`` is registered for the model task ``task`` (``"mt"`` or ``"lm"``)."""
    return task in get_entry(name).tasks


def get_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    return _REGISTRY[name]


def resolve_config(name: str, task: str = "mt", **overrides: Any) -> ModelConfig:
    """The full, validated config ``create_model(name, task, **overrides)`` would build."""
    entry = get_entry(name)
    if task not in entry.tasks:
        raise ConfigError(f"model {name!r} supports tasks {', '.join(entry.tasks)}, not {task!r}")
    return entry.config_cls.create(task=task, **overrides)


def create_model(name: str, task: str = "mt", **overrides: Any) -> nn.Module:
    """Build a registered model. ``task="mt"`` gives an encoder-decoder, ``task="lm"`` a decoder-only LM.

    The resolved config is attached as ``model.config``; ``create_model(name, **model.config.to_dict())``
    rebuilds the same architecture.
    """
    cfg = resolve_config(name, task, **overrides)
    model = get_entry(name).builder(cfg)
    model.config = cfg
    return model
