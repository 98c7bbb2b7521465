"""The periodic ALiBi causal bias and its per-sample batch form (FaceFormer's faceformer.py)."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_modules.dualtalker.motion import (
    alibi_slopes,
    periodic_alibi_bias,
    self_attention_bias,
)


def faceformer_biased_mask(n_head: int, max_seq_len: int, period: int) -> torch.Tensor:
    """FaceFormer's ``init_biased_mask`` (faceformer.py), transcribed line by line."""

    def get_slopes(n):
        def get_slopes_power_of_2(n):
            start = 2 ** (-(2 ** -(math.log2(n) - 3)))
            ratio = start
            return [start * ratio**i for i in range(n)]

        if math.log2(n).is_integer():
            return get_slopes_power_of_2(n)
        closest_power_of_2 = 2 ** math.floor(math.log2(n))
        return (
            get_slopes_power_of_2(closest_power_of_2)
            + get_slopes(2 * closest_power_of_2)[0::2][: n - closest_power_of_2]
        )

    slopes = torch.Tensor(get_slopes(n_head))
    bias = (
        torch.arange(start=0, end=max_seq_len, step=period).unsqueeze(1).repeat(1, period).view(-1)
        // period
    )
    bias = -torch.flip(bias, dims=[0])
    alibi = torch.zeros(max_seq_len, max_seq_len)
    for i in range(max_seq_len):
        alibi[i, : i + 1] = bias[-(i + 1) :]
    alibi = slopes.unsqueeze(1).unsqueeze(1) * alibi.unsqueeze(0)
    mask = (torch.triu(torch.ones(max_seq_len, max_seq_len)) == 1).transpose(0, 1)
    mask = mask.float().masked_fill(mask == 0, float("-inf")).masked_fill(mask == 1, 0.0)
    return mask.unsqueeze(0) + alibi


def hand_built(num_heads: int, length: int, period: int, slopes: list[float]) -> torch.Tensor:
    bias = torch.empty(num_heads, length, length)
    for h in range(num_heads):
        for i in range(length):
            for j in range(length):
                bias[h, i, j] = -slopes[h] * ((i - j) // period) if j <= i else float("-inf")
    return bias


def test_slopes_for_four_heads_are_faceformers() -> None:
    assert alibi_slopes(4) == [1 / 4, 1 / 16, 1 / 64, 1 / 256]
    assert alibi_slopes(8) == [2 ** -(i + 1) for i in range(8)]
    assert len(alibi_slopes(6)) == 6


@pytest.mark.parametrize("period", [30, 25, 4])
def test_bias_equals_the_hand_built_tensor(period: int) -> None:
    length = 70
    expected = hand_built(4, length, period, [1 / 4, 1 / 16, 1 / 64, 1 / 256])
    got = periodic_alibi_bias(4, length, period)
    assert got.shape == (4, length, length)
    assert torch.equal(torch.isinf(got), torch.isinf(expected))
    assert torch.equal(got, expected)
    # One period back costs slope_h, frames in the same period cost nothing.
    assert got[0, period, 0] == -0.25 and got[0, period - 1, 0] == 0.0


@pytest.mark.parametrize("heads,period", [(4, 30), (4, 25), (2, 25), (6, 30)])
def test_bias_equals_faceformers_mask_sliced(heads: int, period: int) -> None:
    reference = faceformer_biased_mask(heads, 600, period)
    for length in (1, 37, 150):
        assert torch.allclose(
            periodic_alibi_bias(heads, length, period), reference[:, :length, :length]
        )


def test_per_sample_bias_blocks_each_sequences_padding() -> None:
    lengths = [9, 5, 1]
    frame_mask = torch.arange(9)[None] < torch.tensor(lengths)[:, None]
    got = self_attention_bias(frame_mask, num_heads=4, period=3)
    assert got.shape == (3, 4, 9, 9)
    slopes = alibi_slopes(4)
    for b, n in enumerate(lengths):
        expected = hand_built(4, 9, 3, slopes)
        expected[:, :, n:] = float("-inf")
        assert torch.equal(got[b], expected)
        # Every query row keeps at least frame 0: no all -inf row (SDPA would give NaN).
        assert bool(torch.isfinite(got[b][:, :, 0]).all())


def test_symmetric_bias_for_the_lip_reader() -> None:
    got = periodic_alibi_bias(2, 12, 5, causal=False)
    slopes = alibi_slopes(2)
    for h in range(2):
        for i in range(12):
            for j in range(12):
                assert got[h, i, j] == pytest.approx(-slopes[h] * (abs(i - j) // 5))
