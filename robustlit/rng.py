"""Per-sample random streams, so noise does not depend on batch size or order.

Each sample draws from its own ``torch.Generator`` seeded from ``(seed, sample_id, stream)``:
sample 17 gets the same noise whether it sits in a batch of 8 or of 512.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

_MIX = 0x9E3779B97F4A7C15  # 64-bit golden-ratio constant: spreads nearby ids over the seed space
_MASK = (1 << 63) - 1


def sample_seeds(seed: int, sample_ids: Tensor | Sequence[int], stream: int = 0) -> list[int]:
    """Derive one 63-bit seed per sample from a run seed, sample ids and a stream number.

    Args:
        seed: Run-level seed.
        sample_ids: Stable ids of the samples (for example their index in the test set).
        stream: Separates independent uses (restarts, noise kinds) for the same sample.

    Returns:
        One integer seed per sample.

    Example:
        >>> sample_seeds(0, [3, 4]) == sample_seeds(0, [3, 4])
        True
        >>> sample_seeds(0, [3])[0] != sample_seeds(1, [3])[0]
        True
    """
    ids = sample_ids.tolist() if isinstance(sample_ids, Tensor) else list(sample_ids)
    base = (seed * _MIX + stream * 0xBF58476D1CE4E5B9) & _MASK
    return [(base ^ ((int(i) + 1) * _MIX)) & _MASK for i in ids]


def per_sample_rand(
    seeds: Sequence[int],
    shape: Sequence[int],
    *,
    normal: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Draw ``len(seeds)`` tensors of ``shape``, each from its own seeded generator.

    Args:
        seeds: One seed per sample, e.g. from :func:`sample_seeds`.
        shape: Shape of one sample's noise.
        normal: Standard normal noise if true, else uniform on [0, 1).
        device: Device of the result (noise is drawn on CPU so it matches across devices).
        dtype: Floating dtype of the result.

    Returns:
        A tensor of shape ``(len(seeds), *shape)``.

    Example:
        >>> a = per_sample_rand([1, 2], (3,))
        >>> b = per_sample_rand([2], (3,))
        >>> torch.equal(a[1], b[0])
        True
    """
    draw = torch.randn if normal else torch.rand
    generator = torch.Generator()
    rows = []
    for seed in seeds:
        generator.manual_seed(int(seed))
        rows.append(draw(tuple(shape), generator=generator))
    if not rows:
        return torch.empty((0, *shape), dtype=dtype, device=device)
    return torch.stack(rows).to(device=device, dtype=dtype)
