"""Length-bucketed training batches and sharded evaluation batches."""

from __future__ import annotations

import random

import pytest
import torch

from datamodules.samplers import BucketBatchSampler, ShardedEvalBatchSampler

LENGTHS = [random.Random(0).randint(1, 40) for _ in range(203)]


def flat(batches: list[list[int]]) -> list[int]:
    return [i for batch in batches for i in batch]


def test_covers_every_index_once_per_epoch() -> None:
    sampler = BucketBatchSampler(LENGTHS, batch_size=8, seed=1)
    batches = list(sampler)
    assert sorted(flat(batches)) == list(range(len(LENGTHS)))
    assert len(batches) == len(sampler) == 26
    assert sum(len(b) < 8 for b in batches) == 1


def test_batches_group_similar_lengths() -> None:
    sampler = BucketBatchSampler(LENGTHS, batch_size=8, seed=1, bucket_factor=50)
    spread = [max(LENGTHS[i] for i in b) - min(LENGTHS[i] for i in b) for b in sampler]
    assert sum(spread) / len(spread) < 5  # random batches of 8 would spread ~30


def test_deterministic_per_seed_and_epoch() -> None:
    state = torch.random.get_rng_state()
    a = BucketBatchSampler(LENGTHS, batch_size=8, seed=3)
    b = BucketBatchSampler(LENGTHS, batch_size=8, seed=3)
    torch.manual_seed(123)  # the global RNG plays no part
    random.seed(123)
    assert list(a) == list(b) == list(a)
    a.set_epoch(1)
    epoch1 = list(a)
    assert epoch1 != list(b)
    b.set_epoch(1)
    assert list(b) == epoch1
    assert list(BucketBatchSampler(LENGTHS, batch_size=8, seed=4)) != list(b)
    torch.random.set_rng_state(state)


def test_no_shuffle_is_fixed() -> None:
    sampler = BucketBatchSampler(LENGTHS, batch_size=8, shuffle=False)
    first = list(sampler)
    sampler.set_epoch(5)
    assert list(sampler) == first


def test_lightning_finds_set_epoch() -> None:
    sampler = BucketBatchSampler(LENGTHS, batch_size=8)
    assert sampler.sampler is sampler  # Lightning calls batch_sampler.sampler.set_epoch


@pytest.mark.parametrize("n", [200, 203, 16 * 3])
def test_two_ranks_disjoint_equal_and_covering(n: int) -> None:
    lengths = LENGTHS[:n]
    shards = [
        list(BucketBatchSampler(lengths, batch_size=8, seed=2, rank=r, world_size=2))
        for r in range(2)
    ]
    assert (
        len(shards[0])
        == len(shards[1])
        == len(BucketBatchSampler(lengths, batch_size=8, rank=1, world_size=2))
    )
    seen = flat(shards[0]) + flat(shards[1])
    assert set(seen) == set(range(n))  # nothing lost
    batches = sorted(map(tuple, shards[0] + shards[1]))
    total = len(BucketBatchSampler(lengths, batch_size=8))
    assert len(set(batches)) == total  # only wrapped batches repeat
    assert len(batches) - total == total % 2


def test_two_ranks_drop_last_strictly_disjoint() -> None:
    shards = [
        list(BucketBatchSampler(LENGTHS, 8, seed=2, drop_last=True, rank=r, world_size=2))
        for r in range(2)
    ]
    assert len(shards[0]) == len(shards[1]) == 12  # 25 full batches -> 24 shared
    assert not set(flat(shards[0])) & set(flat(shards[1]))
    assert all(len(b) == 8 for shard in shards for b in shard)


def test_eval_shards_have_no_duplicates() -> None:
    shards = [
        ShardedEvalBatchSampler(LENGTHS, batch_size=16, rank=r, world_size=3) for r in range(3)
    ]
    indices = [flat(list(s)) for s in shards]
    assert sorted(sum(indices, [])) == list(range(len(LENGTHS)))
    assert indices[1] and all(i % 3 == 1 for i in indices[1])
    lengths = [LENGTHS[i] for i in indices[0]]
    assert lengths == sorted(lengths, reverse=True)  # longest first, fixed order
    assert list(ShardedEvalBatchSampler(LENGTHS, 16, 0, 3)) == list(shards[0])
    single = ShardedEvalBatchSampler(LENGTHS, batch_size=16)
    assert len(single) == 13 and sorted(flat(list(single))) == list(range(len(LENGTHS)))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        BucketBatchSampler(LENGTHS, batch_size=0)
    with pytest.raises(ValueError, match="rank"):
        ShardedEvalBatchSampler(LENGTHS, 4, rank=2, world_size=2)
