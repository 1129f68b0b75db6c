"""Counter-based per-sample random streams: noise that does not depend on batch size or order.

Every draw is a pure function of ``(sample seed, counter, element index)``, computed with a 32-bit
integer hash in vectorized torch code. Sample 17 gets the same noise whether it sits in a batch of
8 or of 512, on CPU or GPU, and an attack's iteration ``t`` can draw fresh noise by passing
``counter=t``, with no generator state to carry around or save.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

_M32 = 0xFFFFFFFF


def _mul32(x: Tensor, constant: int) -> Tensor:
    """``(x * constant) mod 2**32`` for int64 ``x`` in [0, 2**32), without int64 overflow."""
    low = (x & 0xFFFF) * constant
    high = (((x >> 16) * constant) & 0xFFFF) << 16
    return (low + high) & _M32


def hash32(x: Tensor) -> Tensor:
    """A 32-bit integer mixing function (the "lowbias32" constants) on int64 tensors.

    Example:
        >>> hash32(torch.tensor([0, 1])).tolist() != [0, 1]
        True
    """
    x = x & _M32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def sample_seeds(seed: int, sample_ids: Tensor | Sequence[int], stream: int = 0) -> Tensor:
    """One 32-bit seed per sample, derived from a run seed, the samples' ids and a stream number.

    Args:
        seed: Run-level seed.
        sample_ids: Stable ids of the samples (for example their index in the test set).
        stream: Separates independent uses (restarts, attacks) for the same sample.

    Returns:
        An int64 tensor of seeds in [0, 2**32), on the ids' device.

    Example:
        >>> torch.equal(sample_seeds(0, [3, 4]), sample_seeds(0, [3, 4]))
        True
        >>> bool(sample_seeds(0, [3])[0] != sample_seeds(1, [3])[0])
        True
    """
    ids = sample_ids if isinstance(sample_ids, Tensor) else torch.tensor(list(sample_ids), dtype=torch.int64)
    ids = ids.to(torch.int64)
    base = _hash_int(_hash_int(seed) + _hash_int(stream))
    return hash32(base ^ hash32(ids & _M32) ^ hash32((ids >> 32) & _M32))


def _hash_int(value: int) -> int:
    """:func:`hash32` of a Python integer of any size (its two 32-bit halves folded together)."""
    high = int(hash32(torch.tensor((value >> 32) & _M32)))
    return int(hash32(torch.tensor((value & _M32) ^ high)))


def _bits(seeds: Tensor, shape: Sequence[int], counter: int) -> Tensor:
    """Hash bits ``(N, *shape)`` in [0, 2**32) for each seed, counter and element index."""
    count = math.prod(shape)
    index = torch.arange(count, device=seeds.device, dtype=torch.int64)
    keyed = hash32(seeds.to(torch.int64)[:, None] ^ hash32(torch.tensor(counter & _M32, device=seeds.device)))
    return hash32(keyed + index[None, :]).reshape(len(seeds), *shape)


def uniform(
    seeds: Tensor, shape: Sequence[int], counter: int = 0, *, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Uniform noise on [0, 1) of shape ``(len(seeds), *shape)``, one stream per seed.

    Args:
        seeds: Per-sample seeds from :func:`sample_seeds`.
        shape: Shape of one sample's noise.
        counter: Draw number; different counters give independent noise.
        dtype: Floating dtype of the result (24 random bits, so no value rounds up to 1).

    Returns:
        A tensor on the seeds' device.

    Example:
        >>> seeds = sample_seeds(0, [5, 6])
        >>> torch.equal(uniform(seeds, (3,))[1], uniform(seeds[1:], (3,))[0])
        True
    """
    return ((_bits(seeds, shape, counter) >> 8).to(torch.float64) / 2**24).to(dtype)


def normal(seeds: Tensor, shape: Sequence[int], counter: int = 0, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """Standard normal noise (Box–Muller on two uniform draws), one stream per seed.

    Example:
        >>> z = normal(sample_seeds(0, range(2000)), (8,))
        >>> abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1) < 0.05
        True
    """
    u1 = uniform(seeds, shape, 2 * counter, dtype=torch.float64)
    u2 = uniform(seeds, shape, 2 * counter + 1, dtype=torch.float64)
    return (torch.sqrt(-2.0 * torch.log1p(-u1)) * torch.cos(2.0 * math.pi * u2)).to(dtype)


def randint(seeds: Tensor, high: int | Tensor, shape: Sequence[int] = (), counter: int = 0) -> Tensor:
    """Integers uniform on ``[0, high)`` (``high`` may differ per sample), one stream per seed.

    Example:
        >>> values = randint(sample_seeds(0, range(100)), 6)
        >>> int(values.min()) >= 0 and int(values.max()) < 6
        True
    """
    draws = uniform(seeds, shape, counter, dtype=torch.float64)
    bound = high if not isinstance(high, Tensor) else high.to(draws.device).view(-1, *([1] * len(shape)))
    return (draws * bound).floor().to(torch.int64)
