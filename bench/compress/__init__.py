"""Compression of a trained run: magnitude pruning, fine-tuning with the mask held, 8-bit weights; each stage
measured for size, quality and latency with the suite's own protocols (docs/protocol.md, Compression).

- :mod:`.pruning`: the pruning set, exact magnitude masks (global or per layer), fine-tuning with the mask held.
- :mod:`.quantization`: dynamic int8 of every ``nn.Linear``, int8 embedding tables.
- :mod:`.packing`: the on-disk encoding (each weight dense, as a bitmap or with 16-bit relative indices).
- :mod:`.sizes`: the stage's file, its sparse int8 size, the ratio to the Transformer base.
- :mod:`.pipeline`: ``compress_run`` (fp32 -> int8 -> pruned stages, each a leaderboard row) and
  ``choose_sparsity`` (on the validation split).

Stages are tagged "fp32", "int8", "int8+prune0.30", "prune0.30-layer", "int8+prune0.30+ft50k", ...; a stage's
record carries bench.evaluation.evaluate's keys (``valid_nll``, ``test.bleu``, ``test_clean.chrf``, ...), its sizes,
sparsity and latency (``<workload>_<p50|p90>_ms_t<threads>``).
"""

from bench.compress.packing import decode, encode, encoded_bytes, pack_model, relative_index_entries, unpack_into
from bench.compress.pipeline import (
    DEFAULT_CANDIDATES,
    choose_sparsity,
    compress_run,
    measure_stage_latency,
    valid_bleu,
)
from bench.compress.pruning import (
    FINETUNE_LR_FACTOR,
    PRUNE_SCOPES,
    MaskedTrainer,
    apply_masks,
    check_scope,
    check_sparsity,
    check_tokens,
    finetune_masked,
    finetune_schedule,
    magnitude_masks,
    measure_sparsity,
    prunable_weights,
    prune_model,
    run_schedule,
    stored_weights,
)
from bench.compress.quantization import QSCHEMES, QUANTIZE, check_quantize, quantize_int8
from bench.compress.sizes import (
    BASE_SHAPE,
    FORMAT,
    MB,
    compression_ratio,
    load_compressed,
    save_compressed,
    sparse_int8_size,
    sparse_int8_tensor_bytes,
    transformer_base_size,
)
from bench.compress.tags import stage_tag

__all__ = [
    "BASE_SHAPE",
    "DEFAULT_CANDIDATES",
    "FINETUNE_LR_FACTOR",
    "FORMAT",
    "MB",
    "PRUNE_SCOPES",
    "QSCHEMES",
    "QUANTIZE",
    "MaskedTrainer",
    "apply_masks",
    "check_quantize",
    "check_scope",
    "check_sparsity",
    "check_tokens",
    "choose_sparsity",
    "compress_run",
    "compression_ratio",
    "decode",
    "encode",
    "encoded_bytes",
    "finetune_masked",
    "finetune_schedule",
    "load_compressed",
    "magnitude_masks",
    "measure_sparsity",
    "measure_stage_latency",
    "pack_model",
    "prunable_weights",
    "prune_model",
    "quantize_int8",
    "relative_index_entries",
    "run_schedule",
    "save_compressed",
    "sparse_int8_size",
    "sparse_int8_tensor_bytes",
    "stage_tag",
    "stored_weights",
    "transformer_base_size",
    "unpack_into",
    "valid_bleu",
]
