"""Right-padded rows at the attention kernel, whatever the padding of the canvas.

The project's canvases are left-padded (prompts of different lengths end at the same column, so the
sampler's blocks are columns). Transformer Engine's cuDNN fused attention turns a ``padding`` mask into
per-row sequence lengths and assumes the real tokens come first (right padding), so a left-padded row
would silently attend to its pad keys and drop its last real ones.

`right_padded(kernel)` subclasses a megatron core-attention class (``TEDotProductAttention`` or the local
``DotProductAttention``; same parameters, same state-dict keys) so that the kernel only ever sees
right-padded rows. Before the kernel, each row's positions are stably permuted so its real tokens come
first, in order. After it, the output is permuted back. Attention is permutation-equivariant over
positions once the mask is permuted with them, and RoPE is already applied to q and k, so the result is
the same for any padding pattern; only the pad queries' outputs may differ (no loss reads them). The cost
is a gather of q, k, v and the output per layer. The cached extend path (prefix_cache.py) runs its own
SDPA with an explicit mask and does not go through this.

Only the self-attention key-padding mask [b, 1, 1, s] is handled (sq == sk, the un-cached forward and a
cache prefill); any other mask raises.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import torch
from torch import Tensor


def right_padding_order(masked_out: Tensor) -> Tensor:
    """[b, s] bool (True = pad key) -> [b, s] long: per row, the real positions in order, then the pads."""
    return torch.argsort(masked_out.to(torch.int8), dim=1, stable=True)


def _permute_seq(x: Tensor, order: Tensor) -> Tensor:
    """x [s, b, ...] with per-row positions ``order`` [b, s]: out[i, r] = x[order[r, i], r]."""
    index = order.t().reshape(order.shape[1], order.shape[0], *([1] * (x.dim() - 2)))
    return x.gather(0, index.expand_as(x))


@cache
def right_padded(kernel: type) -> type:
    """A subclass of the core-attention class ``kernel`` whose ``forward`` hands the kernel right-padded
    rows: q [s, b, heads, d], k/v [s, b, groups, d], attention_mask [b, 1, 1, s] (True = pad key)."""

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        attention_mask: Tensor | None,
        *args: Any,
        **kwargs: Any,
    ) -> Tensor:
        if attention_mask is None:
            return kernel.forward(self, query, key, value, attention_mask, *args, **kwargs)
        b, s = query.shape[1], query.shape[0]
        if attention_mask.shape != (b, 1, 1, s) or key.shape[0] != s:
            raise ValueError(
                f"right-padded attention takes a self-attention key-padding mask [b, 1, 1, s] = "
                f"{(b, 1, 1, s)}, got mask {tuple(attention_mask.shape)} with {key.shape[0]} keys"
            )
        if getattr(self.config, "context_parallel_size", 1) > 1:
            raise NotImplementedError("padding masks under context parallelism are not supported")
        order = right_padding_order(attention_mask[:, 0, 0, :])
        mask = attention_mask.gather(3, order[:, None, None, :])
        q, k, v = (_permute_seq(t, order) for t in (query, key, value))
        out = kernel.forward(self, q, k, v, mask, *args, **kwargs)
        return _permute_seq(out, torch.argsort(order, dim=1))

    doc = f"{kernel.__name__} that hands its kernel right-padded rows (megatron_bgpo.models.llada.padding)."
    return type(
        f"RightPadded{kernel.__name__}",
        (kernel,),
        {"forward": forward, "__module__": __name__, "__doc__": doc},
    )
