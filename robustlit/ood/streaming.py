"""Memory-bounded statistics whose results do not depend on how the data was chunked."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from robustlit.rng import sample_seeds, uniform


class FixedBlocks:
    """Regroup incoming rows into blocks of ``block_size`` before handing them to ``consume``.

    Floating-point sums depend on the order of additions; feeding an accumulator the same blocks
    whatever the loader's batch size makes one-pass and chunked fits bit-for-bit identical. At most
    ``block_size - 1`` rows wait in memory.

    Example:
        >>> sizes = []
        >>> blocks = FixedBlocks(4, lambda x: sizes.append(len(x)))
        >>> blocks.add(torch.zeros(3, 2)); blocks.add(torch.zeros(6, 2)); blocks.flush()
        >>> sizes
        [4, 4, 1]
    """

    def __init__(self, block_size: int, consume: Callable[..., None]) -> None:
        if block_size < 1:
            raise ValueError(f"block_size must be at least 1, got {block_size}")
        self.block_size = block_size
        self.consume = consume
        self._pending: list[tuple[Tensor, ...]] = []
        self._rows = 0

    def add(self, *columns: Tensor) -> None:
        """Queue rows (all ``columns`` share the first dimension) and consume every full block."""
        self._pending.append(columns)
        self._rows += columns[0].shape[0]
        if self._rows >= self.block_size:
            merged = [torch.cat(parts) for parts in zip(*self._pending, strict=True)]
            full = (self._rows // self.block_size) * self.block_size
            for start in range(0, full, self.block_size):
                self.consume(*(column[start : start + self.block_size] for column in merged))
            rest = tuple(column[full:] for column in merged)
            self._pending, self._rows = ([rest], self._rows - full) if self._rows > full else ([], 0)

    def flush(self) -> None:
        """Consume the last, partial block."""
        if self._rows:
            self.consume(*(torch.cat(parts) for parts in zip(*self._pending, strict=True)))
        self._pending, self._rows = [], 0


class Reservoir:
    """A seeded uniform subsample of at most ``max_size`` rows from a stream.

    Every row gets a random key from its position in the stream (a counter-based hash of ``seed`` and
    the position); the rows with the ``max_size`` smallest keys are kept, ordered by position. The kept
    set is therefore the same however the stream is chunked, and memory never exceeds
    ``max_size`` rows plus one chunk.

    Example:
        >>> a, b = Reservoir(3, seed=0), Reservoir(3, seed=0)
        >>> a.add(torch.arange(10.0)[:, None])
        >>> for chunk in torch.arange(10.0)[:, None].split(4):
        ...     b.add(chunk)
        >>> torch.equal(a.rows, b.rows), len(a.rows)
        (True, 3)
    """

    def __init__(self, max_size: int, seed: int = 0) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size}")
        self.max_size = max_size
        self.seed = seed
        self.seen = 0
        self._rows: Tensor | None = None
        self._keys = torch.empty(0, dtype=torch.float64)
        self._positions = torch.empty(0, dtype=torch.int64)

    def add(self, rows: Tensor) -> None:
        """Offer a chunk of rows ``(n, …)``."""
        positions = torch.arange(self.seen, self.seen + rows.shape[0], dtype=torch.int64)
        self.seen += rows.shape[0]
        seeds = sample_seeds(self.seed, positions, stream=7)
        keys = uniform(seeds, (), dtype=torch.float64) + uniform(seeds, (), counter=1, dtype=torch.float64) / 2**24
        rows = rows.detach().cpu()
        all_rows = rows if self._rows is None else torch.cat([self._rows, rows])
        all_keys = torch.cat([self._keys, keys])
        all_positions = torch.cat([self._positions, positions])
        if len(all_keys) > self.max_size:
            by_position = torch.argsort(all_positions)
            keep = by_position[torch.argsort(all_keys[by_position], stable=True)[: self.max_size]]
            keep = keep[torch.argsort(all_positions[keep])]
            all_rows, all_keys, all_positions = all_rows[keep], all_keys[keep], all_positions[keep]
        self._rows, self._keys, self._positions = all_rows, all_keys, all_positions

    @property
    def rows(self) -> Tensor:
        """The kept rows, in stream order."""
        if self._rows is None:
            raise ValueError("the reservoir is empty: fit on at least one sample")
        return self._rows
