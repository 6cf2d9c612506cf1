"""The registry, configs, the paper's parameter counts and clear errors on bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.cost.params import count_params
from models import ConfigError, create_model, families, list_models, resolve_config


def transformer_params(d: int, ffn: int, layers: int = 6) -> int:
    """Hand formula: non-embedding parameters of a post-norm encoder-decoder Transformer, tied output."""
    attn = 4 * (d * d + d)
    ffn_p = 2 * d * ffn + ffn + d
    ln = 2 * d
    enc = attn + ffn_p + 2 * ln
    dec = 2 * attn + ffn_p + 3 * ln
    return layers * (enc + dec)


# protocol.md, WMT-style configs (shared vocabulary, tied embeddings), params without embedding tables
PAPER = [
    ("transformer", dict(d_model=128), 2.78e6),
    ("transformer", dict(d_model=256), 11.06e6),
    ("transformer", dict(d_model=320), 17.26e6),
    ("lite_transformer", dict(d_model=200, conv="dynamic", glu=True), 2.9e6),
    ("lite_transformer", dict(d_model=408, conv="dynamic", glu=True), 11.7e6),
    ("lite_transformer", dict(d_model=496, conv="dynamic", glu=True), 17.3e6),
]


@pytest.mark.parametrize("name,overrides,expected", PAPER)
def test_paper_parameter_counts(name, overrides, expected):
    p = count_params(create_model(name, **overrides))
    assert abs(p["params"] - expected) / expected < 0.01, p
    assert p["params_total"] == p["params"] + 8000 * overrides["d_model"]  # one joint, tied table


@pytest.mark.parametrize("d", [128, 256, 320, 512])
def test_transformer_params_equal_hand_formula(d):
    assert count_params(create_model("transformer", d_model=d))["params"] == transformer_params(d, 4 * d)


def test_untied_output_projection_is_counted():
    m = create_model(
        "lite_transformer",
        d_model=160,
        conv="lightweight",
        glu=False,
        share_embeddings=False,
        vocab_size=6000,
        tgt_vocab_size=5000,
    )
    p = count_params(m)
    assert p["params_total"] - p["params"] == (6000 + 5000) * 160  # two embedding tables
    assert m.output.weight.numel() == 5000 * 160
    tied = count_params(create_model("lite_transformer", d_model=160, conv="lightweight", glu=False))
    assert p["params"] - tied["params"] == 5000 * 160


def test_list_models_filters_with_shell_patterns():
    assert list_models() == sorted(families())  # sorted, where families() keeps the registration order
    assert families()[:3] == ["transformer", "evolved_transformer", "lite_transformer"]  # the paper's first
    assert list_models("*lite*") == ["lite_transformer"]
    assert list_models("nothing*") == []


def test_config_round_trip_rebuilds_the_same_model():
    m = create_model("lite_transformer", d_model=408, kernel_sizes=[3, 5, 7, 9, 11, 13])
    cfg = m.config.to_dict()
    again = create_model("lite_transformer", **cfg)
    assert again.config == m.config
    assert [(n, p.shape) for n, p in m.named_parameters()] == [
        (n, p.shape) for n, p in again.named_parameters()
    ]
    lm = create_model("transformer", task="lm", d_model=64)
    assert create_model("transformer", **lm.config.to_dict()).config == lm.config


def test_family_rules_resolve():
    assert resolve_config("transformer", d_model=256).ffn_dim == 1024
    assert resolve_config("lite_transformer", d_model=496).ffn_dim == 496
    from models.lite import conv_path

    light = resolve_config("lite_transformer", conv="lightweight")
    assert light.conv_impl == "auto" and conv_path(light, 7) == "unfold" and conv_path(light, 31) == "conv1d"
    assert conv_path(resolve_config("lite_transformer"), 3) == "unfold"
    assert resolve_config("transformer").normalize_before is False
    assert resolve_config("transformer", task="lm").normalize_before is True
    lm = resolve_config("lite_transformer", task="lm")
    assert lm.decoder_layers == 12 and lm.kernel_sizes == [15, 15, 31, 31, 31, 31] + [63] * 6
    assert resolve_config("evolved_transformer").encoder_layers == 3


@pytest.mark.parametrize(
    "name,overrides,message",
    [
        (
            "transformr",
            {},
            f"unknown model 'transformr'; registered models: {', '.join(list_models())}",  # the registry's, all
        ),
        (
            "transformer",
            {"d_modle": 128},
            "unknown config key(s) d_modle for transformer; valid keys: task, d_model",
        ),
        ("transformer", {"d_model": "banana"}, "d_model='banana' is not a valid int"),
        ("transformer", {"d_model": 100}, "d_model=100 must be divisible by 8 (self-attention heads)"),
        ("lite_transformer", {"d_model": 202}, "d_model/2=101 must be divisible by 4"),
        ("lite_transformer", {"conv": "fft"}, "conv='fft' is not valid; valid: lightweight, dynamic"),
        ("lite_transformer", {"kernel_sizes": [3, 7]}, "kernel_sizes has 2 entries; the stacks need 6"),
        ("evolved_transformer", {"d_model": 120}, "d_model=120 must be divisible by 16"),
        ("transformer", {"dropout": 1.5}, "dropout must be in [0, 1)"),
    ],
)
def test_bad_input_gives_one_clear_line(name, overrides, message):
    with pytest.raises(ConfigError) as err:
        create_model(name, **overrides)
    text = str(err.value)
    assert "\n" not in text
    assert message in text


def test_unknown_task():
    with pytest.raises(ConfigError, match="supports tasks mt, lm, not 'asr'"):
        create_model("transformer", task="asr")


def test_cli_lists_models_and_rejects_bad_input():
    out = subprocess.run([sys.executable, "-m", "bench", "models", "--json"], capture_output=True, text=True)
    assert out.returncode == 0
    assert '"lite_transformer"' in out.stdout and '"tasks"' in out.stdout
    bad = subprocess.run([sys.executable, "-m", "bench", "modelz"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
