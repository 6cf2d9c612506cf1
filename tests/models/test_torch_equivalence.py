"""Our ``transformer`` against an independent implementation: ``torch.nn.Transformer`` with the same weights.

The encoder-decoder stacks (attention, FFN, residuals, norm placement, final norms, causal and padding masks)
must give the same hidden states as PyTorch's own modules, pre-norm (``norm_first=True``, a final LayerNorm per
stack) and post-norm (no final norm). The embeddings are ours on both sides: only the layers are compared.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models import create_model

D, HEADS, FFN, LAYERS, VOCAB, PAD = 32, 4, 56, 2, 40, 1


def copy_attention(ours, theirs: nn.MultiheadAttention) -> None:
    theirs.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
    theirs.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
    theirs.out_proj.weight.copy_(ours.out_proj.weight)
    theirs.out_proj.bias.copy_(ours.out_proj.bias)


def copy_norm(ours: nn.LayerNorm, theirs: nn.LayerNorm) -> None:
    theirs.weight.copy_(ours.weight)
    theirs.bias.copy_(ours.bias)


def copy_ffn(ours, theirs) -> None:
    for mine, their in ((ours.fc1, theirs.linear1), (ours.fc2, theirs.linear2)):
        their.weight.copy_(mine.weight)
        their.bias.copy_(mine.bias)


def torch_twin(model, pre_norm: bool) -> tuple[nn.TransformerEncoder, nn.TransformerDecoder]:
    """nn.TransformerEncoder/Decoder of the same shape, carrying ``model``'s layer weights."""
    kw = dict(d_model=D, nhead=HEADS, dim_feedforward=FFN, dropout=0.0, batch_first=True, norm_first=pre_norm)
    enc_layer, dec_layer = nn.TransformerEncoderLayer(**kw), nn.TransformerDecoderLayer(**kw)
    encoder = nn.TransformerEncoder(
        enc_layer, LAYERS, norm=nn.LayerNorm(D) if pre_norm else None, enable_nested_tensor=False
    )
    decoder = nn.TransformerDecoder(dec_layer, LAYERS, norm=nn.LayerNorm(D) if pre_norm else None)
    with torch.no_grad():
        for ours, theirs in zip(model.encoder.layers, encoder.layers, strict=True):
            copy_attention(ours.self_attn, theirs.self_attn)
            copy_ffn(ours.ffn, theirs)
            copy_norm(ours.res_attn.norm, theirs.norm1)
            copy_norm(ours.res_ffn.norm, theirs.norm2)
        for ours, theirs in zip(model.decoder.layers, decoder.layers, strict=True):
            copy_attention(ours.self_attn, theirs.self_attn)
            copy_attention(ours.cross_attn, theirs.multihead_attn)
            copy_ffn(ours.ffn, theirs)
            copy_norm(ours.res_self.norm, theirs.norm1)
            copy_norm(ours.res_cross.norm, theirs.norm2)
            copy_norm(ours.res_ffn.norm, theirs.norm3)
        if pre_norm:
            copy_norm(model.encoder.norm, encoder.norm)
            copy_norm(model.decoder.norm, decoder.norm)
    return encoder.eval(), decoder.eval()


@pytest.mark.parametrize("pre_norm", [True, False], ids=["pre-norm", "post-norm"])
def test_transformer_layers_equal_torch_nn_transformer(pre_norm):
    torch.manual_seed(0)
    model = create_model(
        "transformer",
        d_model=D,
        heads=HEADS,
        encoder_attention_heads=HEADS,
        ffn_dim=FFN,
        encoder_layers=LAYERS,
        decoder_layers=LAYERS,
        vocab_size=VOCAB,
        normalize_before=pre_norm,
        dropout=0.0,
    ).eval()
    with torch.no_grad():  # LayerNorms away from their identity init, so that a swapped norm would show
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    encoder, decoder = torch_twin(model, pre_norm)
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, VOCAB, (3, 9), generator=g)
    src[0, 6:] = PAD  # one padded source sentence
    tgt = torch.randint(4, VOCAB, (3, 7), generator=g)
    with torch.no_grad():
        enc = model.encode(src)
        ours = model.decode_features(tgt, enc)
        pad = src.eq(PAD)
        mem = encoder(model.encoder.embed(src), src_key_padding_mask=pad)
        causal = nn.Transformer.generate_square_subsequent_mask(tgt.size(1))
        theirs = decoder(model.decoder.embed(tgt), mem, tgt_mask=causal, memory_key_padding_mask=pad)
    real = ~pad
    assert enc.padding_mask is not None and torch.equal(enc.padding_mask, pad)
    torch.testing.assert_close(enc.out[real], mem[real], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=1e-4)
    # and the logits are the tied projection of those features
    torch.testing.assert_close(model(src, tgt), theirs @ model.decoder.embed.embed.weight.T, atol=2e-5, rtol=1e-4)
