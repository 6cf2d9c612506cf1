"""Shared fixtures: small configurations of every family, fast enough for 2 CPU cores."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest
import torch

from models import create_model

# The suite stays off the machine's measurement lock (its own lock folder: a sweep running beside the tests
# neither waits for them nor they for it), does not wait for a quiet machine and times each figure once; the
# tests of those mechanisms set their own values.
_LOCKS = tempfile.mkdtemp(prefix="litebench-test-locks-")
atexit.register(shutil.rmtree, _LOCKS, ignore_errors=True)
os.environ.update(LITEBENCH_LOCK_DIR=_LOCKS, LITEBENCH_QUIET_WAIT="0", LITEBENCH_QUIET_WINDOW="0.01",
                  LITEBENCH_LATENCY_TRIES="1")
os.environ.pop("LITEBENCH_LOCK_HELD", None)

# (id, registered name, overrides) — each a small member of a family, covering both Lite variants
SMALL = {
    "transformer": ("transformer", dict(d_model=32, heads=4, encoder_layers=2, decoder_layers=2)),
    "evolved": ("evolved_transformer", dict(d_model=32, heads=4, encoder_layers=1, decoder_layers=2)),
    "lite_dynamic_glu": (
        "lite_transformer",
        dict(d_model=32, encoder_layers=2, decoder_layers=2, kernel_sizes=[3, 7], conv="dynamic", glu=True),
    ),
    # pre-norm with a final LayerNorm per stack: the budgets' shared norm placement for every family
    "transformer_prenorm": ("transformer", dict(d_model=32, heads=4, encoder_layers=2, decoder_layers=2,
                                                normalize_before=True)),
    "lite_prenorm": (
        "lite_transformer",
        dict(d_model=32, encoder_layers=2, decoder_layers=2, kernel_sizes=[3, 7], conv="dynamic", glu=True,
             normalize_before=True),
    ),
    "lite_light_iwslt": (
        "lite_transformer",
        dict(
            d_model=32,
            encoder_layers=2,
            decoder_layers=2,
            kernel_sizes=[5, 3],
            conv="lightweight",
            glu=False,
            encoder_attention_heads=4,
            share_embeddings=False,
            tgt_vocab_size=45,
        ),
    ),
}
VOCAB = 50


def small_model(key: str, task: str = "mt", seed: int = 0, **extra) -> torch.nn.Module:
    name, overrides = SMALL[key]
    overrides = {**overrides, "vocab_size": VOCAB, **extra}
    if task == "lm":
        overrides.pop("encoder_layers")
        overrides.pop("share_embeddings", None)
        overrides.pop("tgt_vocab_size", None)
    torch.manual_seed(seed)
    return create_model(name, task=task, **overrides).eval()


def random_tokens(batch: int, length: int, vocab: int = VOCAB, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, vocab, (batch, length), generator=g)


@pytest.fixture
def one_thread():
    """torch at 1 thread for the test (modules ask for it with ``pytestmark``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(params=list(SMALL))
def family_key(request) -> str:
    return request.param
