"""A batch sampler whose batches are a pure function of the step: exact resume, no skipping."""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class StepBatchSampler(Sampler):
    """Yields batches of ``(epoch, index)`` pairs, forever, starting at micro-batch ``start``.

    Epoch ``e`` visits the dataset in the order of a permutation seeded by ``(seed, e)``; with
    several processes, rank ``r`` takes the ``r``-th slice of every global batch. Datasets take
    the ``(epoch, index)`` pair so items do not depend on which worker builds them.
    """

    def __init__(self, length: int, batch_size: int, seed: int = 0, start: int = 0, rank: int = 0, world_size: int = 1):
        self.length, self.batch_size, self.seed = length, batch_size, seed
        self.start, self.rank, self.world_size = start, rank, world_size
        self.global_batch = batch_size * world_size
        if length < self.global_batch:
            raise ValueError(f"dataset has {length} items, fewer than one global batch of {self.global_batch}")
        self.batches_per_epoch = length // self.global_batch

    def order(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.length, generator=gen)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start
        while True:
            epoch, pos = divmod(step, self.batches_per_epoch)
            order = self.order(epoch)
            while pos < self.batches_per_epoch:
                first = pos * self.global_batch + self.rank * self.batch_size
                yield [(epoch, int(i)) for i in order[first:first + self.batch_size]]
                pos += 1
                step += 1

    def __len__(self) -> int:  # one epoch; iteration itself is endless
        return self.batches_per_epoch
