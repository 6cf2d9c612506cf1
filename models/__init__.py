"""The model registry and the architecture families (Transformer, Evolved Transformer, Lite Transformer, and
any family added in a file of its own).

    from models import create_model, list_models
    model = create_model("lite_transformer", d_model=496)          # WMT-style, dynamic conv + GLU
    lm = create_model("transformer", task="lm", d_model=256)

A family registers itself with ``@register_model`` in its own file: every module of this package is imported
here (the paper's three first, in the paper's order, then the rest by name), so a new family is one new file.
Families kept outside the package (your own code, a test's probe) join through ``LITEBENCH_MODELS``: a
comma-separated list of importable modules, imported here too, so that every process of the suite (latency and
training run in fresh processes) sees the same registry.

``models`` knows nothing about benchmarking; ``bench`` reaches models only through this registry.
"""

import importlib
import os
import pkgutil

from .config import ConfigError, ModelConfig
from .registry import (
    create_model,
    families,
    get_entry,
    list_models,
    register_model,
    resolve_config,
    supports,
    unregister_model,
)

PAPER_ORDER = ("transformer", "evolved", "lite")  # imported first: the suite's family order starts with them
_NOT_FAMILIES = {"config", "registry", "seq2seq", "lm", "layers"}


def _discover() -> None:
    """Import every other module of this package (a new family's file), then LITEBENCH_MODELS' modules."""
    found = sorted(m.name for m in pkgutil.iter_modules(__path__))
    for name in [*PAPER_ORDER, *(n for n in found if n not in PAPER_ORDER)]:
        if name not in _NOT_FAMILIES and not name.startswith("_"):
            importlib.import_module(f"{__name__}.{name}")
    for name in filter(None, (m.strip() for m in os.environ.get("LITEBENCH_MODELS", "").split(","))):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"LITEBENCH_MODELS names {name!r}, which cannot be imported ({exc})") from None


_discover()

__all__ = [
    "ConfigError",
    "ModelConfig",
    "create_model",
    "families",
    "get_entry",
    "list_models",
    "register_model",
    "resolve_config",
    "supports",
    "unregister_model",
]
