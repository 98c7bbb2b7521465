"""Batch samplers for variable-length text that shard themselves across ranks.

The Trainer runs with ``use_distributed_sampler=False``: these samplers take ``rank`` and
``world_size`` directly. They never draw from the global RNG; the training order depends only
on ``(seed, epoch)``, so a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler


def _check(batch_size: int, rank: int, world_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")


class BucketBatchSampler(Sampler[list[int]]):
    """Training batches of examples of similar length, reshuffled every epoch.

    Per epoch: shuffle all indices with ``random.Random(f"{seed}:{epoch}")``, sort them by
    length within chunks of ``bucket_factor * batch_size`` (so batches need little padding but
    still mix), cut into batches, shuffle the batch order. Without ``shuffle`` the order is
    fixed: chunks in index order, sorted by length.

    Under ``world_size > 1`` rank ``r`` takes batches ``r::world_size``. To give every rank the
    same number of batches: with ``drop_last=False`` the batch list is *wrapped* (its first
    batches repeated at the end, as ``DistributedSampler`` pads), so no example is lost and at
    most ``world_size - 1`` batches appear twice per epoch; with ``drop_last=True`` the last
    incomplete batch and the extra batches are dropped, so shares are strictly disjoint.

    Lightning calls ``set_epoch`` at the start of every epoch: it looks for it on
    ``dataloader.batch_sampler.sampler``, which is why :attr:`sampler` returns the sampler
    itself.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        bucket_factor: int = 50,
    ) -> None:
        _check(batch_size, rank, world_size)
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.bucket_size = max(1, bucket_factor) * batch_size
        self.epoch = 0

    @property
    def sampler(self) -> BucketBatchSampler:
        """Itself: the object on which Lightning's ``_set_sampler_epoch`` calls ``set_epoch``."""
        return self

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` for the next iteration."""
        self.epoch = epoch

    def global_batches(self) -> list[list[int]]:
        """All batches of the current epoch, before the split across ranks."""
        rng = random.Random(f"{self.seed}:{self.epoch}")
        order = list(range(len(self.lengths)))
        if self.shuffle:
            rng.shuffle(order)
        bucketed: list[int] = []
        for start in range(0, len(order), self.bucket_size):
            bucketed.extend(sorted(order[start : start + self.bucket_size], key=self._length))
        batches = [
            bucketed[i : i + self.batch_size] for i in range(0, len(bucketed), self.batch_size)
        ]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def _length(self, index: int) -> int:
        return self.lengths[index]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.global_batches()
        if self.world_size > 1 and batches:
            if self.drop_last:
                batches = batches[: len(batches) - len(batches) % self.world_size]
            else:
                extra = -len(batches) % self.world_size
                repeats = math.ceil(extra / len(batches)) if extra else 0
                batches = batches + (batches * repeats)[:extra]
        yield from batches[self.rank :: self.world_size]

    def __len__(self) -> int:
        n = len(self.lengths)
        batches = n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        if self.drop_last:
            return batches // self.world_size
        return math.ceil(batches / self.world_size)


class ShardedEvalBatchSampler(Sampler[list[int]]):
    """Validation/test batches: rank ``r`` takes examples ``r::world_size``, longest first.

    No padding and no duplicates, so metrics synchronised across ranks (torchmetrics) equal
    the single-process value exactly. Ranks may get one batch more or less than each other:
    log per-step values without ``sync_dist``. Within a rank, examples are sorted by length
    (longest first, ties by index) and cut into batches, a fixed order.

    There is deliberately no ``drop_last`` attribute: for prediction Lightning then keeps this
    sampler (wrapping it to record indices) instead of trying to rebuild it.
    """

    def __init__(
        self, lengths: Sequence[int], batch_size: int, rank: int = 0, world_size: int = 1
    ) -> None:
        _check(batch_size, rank, world_size)
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        mine = sorted(range(rank, len(lengths), world_size), key=lambda i: (-lengths[i], i))
        self.batches = [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            yield list(batch)

    def __len__(self) -> int:
        return len(self.batches)
