"""The search epoch is driven by the module's own counters: epochs cut short still close with the
worst-case and α phases, the Trainer's batch limit is the user's, counters are host integers
kept in the state dict, TF32 is set from the config; and a search epoch on CUDA in bf16."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from tests.helpers.alphagan import fit, tiny_module

# tiny_module: inner 3 (+2 = 5 weight batches), worst 2 (+2), arch 2; TinyImages: 8 batches


class _StopAt(L.Callback):
    """Sets ``trainer.should_stop`` after weight batch ``n`` (as a stop signal or max_time)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx + 1 == self.n:
            trainer.should_stop = True


@pytest.mark.parametrize(
    "trainer_args",
    [
        {"max_steps": 3},  # D + G at batch 0, D at batch 1: the run ends inside the epoch
        {"callbacks": [_StopAt(2)]},  # a stop signal / max_time after batch 2
    ],
    ids=["max_steps", "should_stop"],
)
def test_an_epoch_cut_short_still_runs_the_worst_case_and_alpha_phases(
    tmp_path, trainer_args
) -> None:
    module = tiny_module()
    alphas0 = [a.detach().clone() for a in module.generator.alphas()]
    fit(module, tmp_path, epochs=3, **trainer_args)
    assert module.d_step == 2
    assert module.arch_step == 2 and module.epoch_batches == 0  # the phases ran, epoch closed
    assert any(not torch.equal(a, b) for a, b in zip(module.generator.alphas(), alphas0))


@pytest.mark.parametrize(
    ("limit", "d_steps"),
    [(0.25, 2), (7, 5), (3, 3)],  # 5 weight batches unless the Lightning epoch is shorter
)
def test_the_trainer_batch_limit_is_respected_and_left_alone(tmp_path, limit, d_steps) -> None:
    module = tiny_module(worst_steps=0, arch_steps=1)
    trainer = fit(module, tmp_path, epochs=1, limit_train_batches=limit)
    assert trainer.limit_train_batches == limit
    assert module.d_step == d_steps and module.arch_step == 1 and module.epoch_batches == 0


def test_counters_are_host_integers_kept_in_the_state_dict() -> None:
    module = tiny_module()
    module.d_step, module.g_step, module.arch_step, module.arch_pass, module.arch_cursor = (
        11,
        3,
        7,
        2,
        5,
    )
    state = module.state_dict()
    assert [int(state[k]) for k in ("d_step", "g_step", "arch_step", "arch_pass")] == [11, 3, 7, 2]
    assert state["arch_cursor"].dtype == torch.long
    other = tiny_module()
    # a checkpoint from before the scoring package also holds the stand-in's random weights
    other.load_state_dict({**state, "feature_distance.inception.net.0.weight": torch.zeros(3)})
    assert (other.d_step, other.g_step, other.arch_step, other.arch_cursor) == (11, 3, 7, 5)
    assert all(isinstance(v, int) for v in (other.d_step, other.arch_pass))
    del state["g_step"]
    with pytest.raises(RuntimeError, match="Missing key.*g_step"):
        other.load_state_dict(state)


def test_tf32_is_set_from_the_config(tmp_path) -> None:
    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        for tf32 in (True, False):
            module = tiny_module(worst_steps=0, arch_steps=0)
            module.model_cfg.tf32 = tf32
            fit(module, tmp_path, epochs=1, limit_train_batches=1)
            assert torch.backends.cudnn.allow_tf32 is tf32
            assert torch.backends.cuda.matmul.allow_tf32 is tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_search_epoch_on_cuda_in_bf16_mixed(tmp_path) -> None:
    """One whole search epoch on the GPU under bf16-mixed: α moved, stayed fp32 and finite."""
    module = tiny_module()
    alphas0 = [a.detach().clone() for a in module.generator.alphas()]
    fit(module, tmp_path, epochs=1, accelerator="cuda", precision="bf16-mixed")
    alphas = [a.detach().cpu() for a in module.generator.alphas()]
    assert module.arch_step == 2 and module.d_step == 5
    assert any(not torch.equal(a, b) for a, b in zip(alphas, alphas0, strict=True))
    assert all(torch.isfinite(a).all() and a.dtype == torch.float32 for a in alphas)
