"""The on-disk encoding of compressed models (bench.compress.packing): each layout by hand, exact round trips,
int8 embedding rows by hand, the file's payload equal to the counted sparse int8 size, and what the file
loads back as."""

from __future__ import annotations

import copy
import os

import pytest
import torch

from bench.compress import (
    decode,
    encode,
    encoded_bytes,
    load_compressed,
    pack_model,
    prune_model,
    quantize_int8,
    save_compressed,
    sparse_int8_size,
    unpack_into,
)
from bench.compress.packing import payload_bytes
from bench.compress.quantization import rows_int8
from bench.errors import BenchError
from bench.infra.atomic import save_torch
from models import create_model

SMALL = dict(d_model=32, ffn_dim=64, encoder_layers=1, decoder_layers=1, heads=4, vocab_size=60)
FAMILIES = {"transformer": {}, "evolved_transformer": {}, "lite_transformer": {"kernel_sizes": [3]}}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def build(name: str):
    return create_model(name, **SMALL, **FAMILIES[name]).eval()


def test_layouts_by_hand():
    # int8, n=20, non-zeros at 0, 3, 19: dense 20 B, bitmap 3 + 3 = 6 B, relative 3 x 3 = 9 B -> bitmap
    t = torch.zeros(4, 5, dtype=torch.int8)
    t.view(-1)[[0, 3, 19]] = torch.tensor([5, -7, 1], dtype=torch.int8)
    assert encoded_bytes(t) == (6, "bitmap")
    e = encode(t)
    # bits, most significant first: positions 0 and 3 -> 0b10010000; 16 -> none; 19 -> 0b00010000
    assert e["bitmap"].tolist() == [0b10010000, 0, 0b00010000] and e["values"].tolist() == [5, -7, 1]
    assert torch.equal(decode(e), t) and payload_bytes(e) == 6
    # fp32 costs 4 bytes a value: dense 80, bitmap 3 + 12, relative 3 x 6
    assert encoded_bytes(t.float()) == (15, "bitmap")
    # far apart: 300000 positions, 3 non-zeros; gaps 6, 149995 (2 x 65536 + 18923), 149999 (2 x 65536 + 18927):
    # 2 + 2 fillers, 7 entries
    far = torch.zeros(300_000)
    far[[5, 150_000, 299_999]] = torch.tensor([1.0, -2.0, 3.0])
    assert encoded_bytes(far) == (7 * 6, "relative16")
    e = encode(far)
    assert e["gaps"].dtype == torch.uint16 and e["gaps"].numel() == 7
    assert e["gaps"].tolist() == [5, 65535, 65535, 18922, 65535, 65535, 18926]  # gap - 1
    assert e["values"].tolist() == [1.0, 0.0, 0.0, -2.0, 0.0, 0.0, 3.0]
    assert torch.equal(decode(e), far)
    # no zero: dense; all zero: nothing but the shape; integer tensors: dense
    assert encode(torch.ones(3, 2))["layout"] == "dense"
    zero = encode(torch.zeros(7))
    assert payload_bytes(zero) == 0 and torch.equal(decode(zero), torch.zeros(7))
    ints = torch.tensor([0, 0, 0, 4])
    assert encode(ints)["layout"] == "dense" and torch.equal(decode(encode(ints)), ints)


@pytest.mark.parametrize("density", [0.0, 0.01, 0.3, 0.9, 1.0])
def test_random_round_trips_are_exact(density):
    g = torch.Generator().manual_seed(int(density * 100))
    for shape in [(1,), (9,), (130, 7), (3, 200_001)]:
        t = torch.randn(*shape, generator=g) * (torch.rand(*shape, generator=g) < density)
        for x in (t, torch.clamp(t * 40, -127, 127).to(torch.int8)):
            e = encode(x)
            assert torch.equal(decode(e), x), (shape, density, e["layout"])
            assert payload_bytes(e) == encoded_bytes(x)[0]


def test_embedding_rows_by_hand():
    w = torch.tensor([[0.5, -1.27, 0.0], [0.0, 0.0, 0.0], [2.54, 1.0, -0.01]])
    q, scales = rows_int8(w)
    assert scales.tolist() == pytest.approx([0.01, 1.0, 0.02])
    assert q.tolist() == [[50, -127, 0], [0, 0, 0], [127, 50, 0]]  # -0.01 / 0.02 = -0.5 rounds to 0 (even)
    m = build("transformer")
    before = m.encoder.embed.embed.weight.detach().clone()
    qm = quantize_int8(m)
    assert torch.equal(m.encoder.embed.embed.weight, before)  # the fp32 model is left alone
    table = qm.encoder.embed.embed.weight
    q, scales = rows_int8(before)
    assert torch.allclose(table, q.float() * scales[:, None])
    assert (table - before).abs().max() <= scales.max() / 2 + 1e-7


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_payload_is_the_counted_size_and_round_trips(name, tmp_path):
    torch.manual_seed(0)
    fp32 = build(name)
    pruned = copy.deepcopy(fp32)
    prune_model(pruned, 0.5, "global")
    src, prev = torch.randint(4, 60, (2, 7)), torch.randint(4, 60, (2, 5))
    for tag, model, quantized in [("fp32", fp32, False), ("int8", quantize_int8(fp32), True),
                                  ("int8+prune", quantize_int8(pruned), True), ("prune", pruned, False)]:
        packed = pack_model(model, int8_embeddings=quantized)
        if quantized:  # the counted sparse int8 size is exactly what the file stores
            assert payload_bytes(packed) == sparse_int8_size(model)["bytes"], tag
        fresh = quantize_int8(build(name)) if quantized else build(name)
        unpack_into(fresh, packed)
        assert torch.equal(fresh(src, prev), model(src, prev)), tag
        meta = {"quantize": "int8" if quantized else None, "qscheme": "per_channel", "tag": tag}
        spec = {"model": name, "config": {**SMALL, **FAMILIES[name]}}
        path = tmp_path / f"{tag}.pt"
        disk = save_compressed(model, path, spec, meta)
        assert disk == os.path.getsize(path)
        assert payload_bytes(packed) < disk < payload_bytes(packed) + 600 * (len(packed["tensors"])
                                                                            + 4 * len(packed["qlinear"])) + 4000
        loaded, info = load_compressed(path)
        assert info["compression"]["tag"] == tag and torch.equal(loaded(src, prev), model(src, prev))


def test_files_of_a_mid_sized_model_are_their_payload_and_shrink_in_order(tmp_path):
    """At d=128 and an 8000-token vocabulary the container's framing (its index) is under 2% of a file: the pruned int8
    file is smaller than the int8 one, which is more than 3.5x smaller than fp32."""
    torch.manual_seed(0)
    cfg = dict(SMALL, d_model=128, ffn_dim=512, encoder_layers=2, decoder_layers=2, vocab_size=8000)
    fp32 = create_model("transformer", **cfg).eval()
    pruned = copy.deepcopy(fp32)
    prune_model(pruned, 0.5, "global")
    spec = {"model": "transformer", "config": cfg}
    sizes, payloads = {}, {}
    for tag, model, quantized in [("fp32", fp32, False), ("int8", quantize_int8(fp32), True),
                                  ("int8+prune", quantize_int8(pruned), True)]:
        meta = {"quantize": "int8" if quantized else None, "qscheme": "per_channel", "tag": tag}
        sizes[tag] = save_compressed(model, tmp_path / f"{tag}.pt", spec, meta)
        payloads[tag] = payload_bytes(pack_model(model, int8_embeddings=quantized))
        assert payloads[tag] < sizes[tag] < 1.02 * payloads[tag], tag
    assert sizes["int8+prune"] < sizes["int8"] < sizes["fp32"] / 3.5


def test_a_file_that_does_not_match_its_spec_or_an_old_format_is_one_clear_line(tmp_path):
    m = quantize_int8(build("transformer"))
    packed = pack_model(m, int8_embeddings=True)
    other = quantize_int8(create_model("transformer", **{**SMALL, "encoder_layers": 2}))
    with pytest.raises(BenchError, match="does not match its spec"):
        unpack_into(other, packed)
    save_torch({"format": "litebench-compressed-1", "spec": {}, "compression": {}, "model": {}}, tmp_path / "old.pt")
    with pytest.raises(BenchError, match="older litebench"):
        load_compressed(tmp_path / "old.pt")
