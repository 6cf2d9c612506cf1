"""Parameter counts in the paper's convention."""

from __future__ import annotations

from torch import nn


def count_params(model: nn.Module) -> dict[str, int]:
    """``params``: every parameter except embedding tables (the paper's convention: a tied output projection
    adds nothing, an untied one counts); ``params_total``: every distinct parameter tensor, embeddings included.
    Shared tensors are counted once."""
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    seen: set[int] = set()
    params = total = 0
    for p in model.parameters():  # parameters() already yields a shared tensor once
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if id(p) not in embedding_ids:
            params += p.numel()
    return {"params": params, "params_total": total}
