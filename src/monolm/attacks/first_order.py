"""HotFlip's first-order estimate of how much the loss changes when a token is replaced.

Replacing the token at position i (embedding e_i) by v changes the loss by about
`(e_v - e_i) . g_i`, g_i being the loss gradient w.r.t. the input embedding at i. The `- e_i . g_i`
term is constant per position, so it does not change a ranking within one position, but it
matters when candidates at different positions are ranked together (HotFlip does that; the earlier
pipeline dropped it).
"""

from __future__ import annotations

import torch

BLOCKED = float("-inf")


def first_order_scores(
    grads: torch.Tensor, ids: torch.Tensor, embeddings: torch.Tensor
) -> torch.Tensor:
    """[positions, rows] estimated loss increase of putting row v at each position.

    grads: [positions, dim]; ids: [positions] current tokens; embeddings: [rows, dim].
    """
    weights = embeddings.detach().float()
    grads = grads.float()
    current = (weights[ids] * grads).sum(-1, keepdim=True)
    return grads @ weights.T - current


def blocked(
    scores: torch.Tensor,
    allowed_rows: torch.Tensor,
    ids: torch.Tensor,
    allowed_positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """`scores` with every disallowed (position, row) and every no-op replacement at -inf."""
    out = scores.masked_fill(~allowed_rows.to(scores.device)[None, :], BLOCKED)
    out[torch.arange(len(ids), device=out.device), ids.to(out.device)] = BLOCKED
    if allowed_positions is not None:
        out[~allowed_positions.to(out.device)] = BLOCKED
    return out
