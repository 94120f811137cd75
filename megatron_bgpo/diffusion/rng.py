"""Counter-based hash RNG: random numbers as a pure function of integer keys.

Every draw is ``f(seed, stream, key_1, ..., key_k)``, so a value does not depend on batch layout,
device, vocab split or the order in which values are produced. The sampler keys Gumbel noise by
(seed, row id, position, step, vocab id): a TP rank computes only its own vocab slice yet gets the
same numbers as a single process. Masks of the ELBO estimator are keyed by a per-item seed, so the same
(t, mask) can be rebuilt later under another policy.

The mixer is ``lowbias32`` (C. Wellons' hash-prospector) on 32-bit words held in int64 tensors; the
multiplication is split into 16-bit halves so no int64 product overflows (pure, defined arithmetic on
CPU and GPU). Two independently salted 32-bit words give a 52-bit float64 uniform in (0, 1).
Not cryptographic; good avalanche, enough for sampling.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["Stream", "gumbel", "key_words", "mix32", "uniform"]

_M32 = 0xFFFFFFFF
_SALTS1 = (0x9E3779B9, 0x85EBCA6B, 0xC2B2AE35, 0x27D4EB2F, 0x165667B1, 0xD3A2646C, 0xFD7046C5, 0xB55A4F09)
_SALTS2 = (0x7F4A7C15, 0xF39CC060, 0x5CEDC834, 0x1B873593, 0xCC9E2D51, 0xE6546B64, 0x2545F491, 0x61C88647)


class Stream:
    """Stream ids (first key) that keep the uses of the RNG independent of each other."""

    GUMBEL = 1  # sampler: Gumbel noise per (row, position, step, vocab id)
    REMASK = 2  # sampler: `random` remasking confidence per (row, position, step)
    MASK_LEVEL = 3  # masking: t (or l) per item
    MASK_POS = 4  # masking: per (item, response position)
    SEED = 5  # deriving per-item seeds


def _mul32(x: Tensor, c: int) -> Tensor:
    """(x * c) mod 2**32 for x in [0, 2**32) without int64 overflow."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _M32


def mix32(x: Tensor) -> Tensor:
    """lowbias32 bijection on 32-bit words stored in int64 (values in [0, 2**32))."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _device_of(*xs: Tensor | int) -> torch.device:
    for x in xs:
        if isinstance(x, Tensor):
            return x.device
    return torch.device("cpu")


def key_words(
    seed: Tensor | int, *keys: Tensor | int, device: torch.device | None = None
) -> tuple[Tensor, Tensor]:
    """Two independent 32-bit hashes of ``(seed, *keys)``, broadcast over the key shapes.

    ``seed`` may be any int64 (both halves are used); keys must be in [0, 2**32). Put the largest key
    last: each key is hashed on its own shape, so only the final combine runs at the full shape.
    """
    device = device if device is not None else _device_of(seed, *keys)
    s = torch.as_tensor(seed, dtype=torch.int64, device=device)
    lo, hi = s & _M32, (s >> 32) & _M32
    w1 = mix32((mix32(lo ^ _SALTS1[0]) + mix32(hi ^ _SALTS1[1])) & _M32)
    w2 = mix32((mix32(lo ^ _SALTS2[0]) + mix32(hi ^ _SALTS2[1])) & _M32)
    for i, k in enumerate(keys):
        kt = torch.as_tensor(k, dtype=torch.int64, device=device) & _M32
        salt1, salt2 = _SALTS1[(i + 2) % 8], _SALTS2[(i + 2) % 8]
        w1 = mix32((w1 + mix32(kt ^ salt1)) & _M32)
        w2 = mix32((w2 + mix32(kt ^ salt2)) & _M32)
    return w1, w2


def uniform(seed: Tensor | int, *keys: Tensor | int, device: torch.device | None = None) -> Tensor:
    """float64 uniform in the open interval (0, 1) (52 random bits), shape = broadcast of the keys."""
    w1, w2 = key_words(seed, *keys, device=device)
    k = ((w1 >> 6) << 26) | (w2 >> 6)  # 26 + 26 bits < 2**52: k + 0.5 is exact in float64
    return (k.to(torch.float64) + 0.5) * 2.0**-52


def gumbel(seed: Tensor | int, *keys: Tensor | int, device: torch.device | None = None) -> Tensor:
    """Standard Gumbel noise -log(-log u) in float64, keyed like :func:`uniform`."""
    return -torch.log(-torch.log(uniform(seed, *keys, device=device)))
