"""The model registry and the three architecture families (Transformer, Evolved Transformer, Lite Transformer).

    from models import create_model, list_models
    model = create_model("lite_transformer", d_model=496)          # WMT-style, dynamic conv + GLU
    lm = create_model("transformer", task="lm", d_model=256)

``models`` knows nothing about benchmarking; ``bench`` reaches models only through this registry.
"""

from . import evolved, lite, transformer  # noqa: F401  (registers the families)
from .config import ConfigError, ModelConfig
from .registry import create_model, get_entry, list_models, register_model, resolve_config

__all__ = [
    "ConfigError",
    "ModelConfig",
    "create_model",
    "get_entry",
    "list_models",
    "register_model",
    "resolve_config",
]
