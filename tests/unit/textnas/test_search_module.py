"""The TextNAS search module: manual-optimization rhythm, no test split, sparse child updates,
logged REINFORCE terms, checkpoint round trip, random strategy, op subsets, derive and plots."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from lightning_modules.figures import save_figure
from lightning_modules.textnas.derive import derive, evaluate_architecture, write_derived
from lightning_modules.textnas.plots import architecture_figure, op_frequency_figure
from lightning_modules.textnas.search import TextNASSearchModule
from search_spaces.text import OP_NAMES, Architecture

VOCAB = 30
TINY_NET = dict(width=8, embed_dim=8)


pytestmark = pytest.mark.usefixtures("one_thread")


def _examples(n: int, seed: int) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(3, 9, (1,), generator=g))
        ids = torch.randint(2, VOCAB, (length,), generator=g)
        out.append({"ids": ids, "label": int(ids[0] % 2)})
    return out


def _collate(items: list[dict]) -> dict[str, torch.Tensor]:
    length = max(len(it["ids"]) for it in items)
    ids = torch.zeros(len(items), length, dtype=torch.long)
    for row, it in enumerate(items):
        ids[row, : len(it["ids"])] = it["ids"]
    return {"ids": ids, "mask": ids != 0, "label": torch.tensor([it["label"] for it in items])}


class TinyData(L.LightningDataModule):
    """Random token sequences; the label is the parity of the first token. ``test`` raises."""

    def __init__(self, n_train: int = 64, n_val: int = 24, batch_size: int = 8) -> None:
        super().__init__()
        self.train_set, self.val_set = _examples(n_train, 0), _examples(n_val, 1)
        self.batch_size = batch_size
        self.val_loader_calls = 0

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_set,
            self.batch_size,
            shuffle=True,
            collate_fn=_collate,
            generator=torch.Generator().manual_seed(0),
        )

    def val_dataloader(self) -> DataLoader:
        self.val_loader_calls += 1
        return DataLoader(self.val_set, self.batch_size, collate_fn=_collate)

    def test_dataloader(self) -> DataLoader:
        raise AssertionError("the search must never read the test split")

    predict_dataloader = test_dataloader


def _module(strategy: str = "enas", seed: int = 0, **search) -> TextNASSearchModule:
    torch.manual_seed(seed)
    return TextNASSearchModule(
        vocab_size=VOCAB,
        num_classes=2,
        supernet={**TINY_NET, "num_layers": 4, "k": 2},
        search={
            "strategy": strategy,
            "controller_every": 2,
            "controller_steps": 3,
            "plots": False,
            **search,
        },
        seed=seed,
    )


def _trainer(tmp_path: Path, batches: int = 4, epochs: int = 1, **kw) -> L.Trainer:
    kw.setdefault("limit_val_batches", 2)
    kw.setdefault("enable_checkpointing", False)
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        limit_train_batches=batches,
        num_sanity_val_steps=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        **kw,
    )


class StepRecorder(L.Callback):
    def __init__(self) -> None:
        self.rows: list[tuple[int, int, int]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.rows.append(
            (int(pl_module.child_step), int(pl_module.controller_step), trainer.global_step)
        )


def test_controller_phase_every_n_child_steps_and_own_counters(tmp_path):
    module, data, rec = _module(), TinyData(), StepRecorder()
    ctrl_before = {k: v.clone() for k, v in module.controller.state_dict().items()}
    _trainer(tmp_path, batches=6, callbacks=[rec]).fit(module, datamodule=data)
    # controller_every=2, controller_steps=3: after child steps 2, 4, 6
    assert [r[:2] for r in rec.rows] == [(1, 0), (2, 3), (3, 3), (4, 6), (5, 6), (6, 9)]
    # global_step counts the steps of both optimizers (Lightning issue #17958)
    assert [r[2] for r in rec.rows] == [1, 5, 6, 10, 11, 15]
    assert int(module.val_cursor) == 9
    changed = [
        k for k, v in module.controller.state_dict().items() if not torch.equal(v, ctrl_before[k])
    ]
    assert "soft.weight" in changed


def test_controller_every_zero_means_end_of_epoch(tmp_path):
    module, data, rec = _module(controller_every=0, controller_steps=2), TinyData(), StepRecorder()
    _trainer(tmp_path, batches=3, epochs=2, callbacks=[rec]).fit(module, datamodule=data)
    assert [r[:2] for r in rec.rows] == [(1, 0), (2, 0), (3, 2), (4, 2), (5, 2), (6, 4)]


def test_test_split_is_never_touched_and_validation_is_used(tmp_path):
    data = TinyData()
    module = _module()
    _trainer(tmp_path, batches=4).fit(module, datamodule=data)  # test_dataloader would raise
    assert data.val_loader_calls >= 2  # Lightning's validation loop + the controller's cycle
    results = derive(module.supernet, module.controller, data.val_dataloader(), num_samples=2)
    assert results


def test_reward_baseline_and_search_metrics_are_logged(tmp_path):
    module = _module()
    trainer = _trainer(tmp_path, batches=4)
    trainer.fit(module, datamodule=TinyData())
    logged = trainer.callback_metrics
    for key in (
        "train/loss",
        "search/child_step",
        "search/controller_step",
        "search/reward",
        "search/baseline",
        "search/entropy",
        "search/skip_rate",
        "search/sample_val_acc",
        "val/acc",
        "val/loss",
    ):
        assert key in logged, key
    # per-epoch means; b starts at 0 and moves 1 % toward each reward (all rewards in [0, 1])
    assert 0.0 < float(logged["search/baseline"]) < 0.06 and 0.0 < float(module.baseline) < 0.06
    assert 0.0 <= float(logged["search/sample_val_acc"]) <= 1.0
    assert float(module.baseline) != 0.0
    assert int(logged["search/controller_step"]) == 6
    assert {"baseline", "child_step", "controller_step"} <= {
        k.split(".")[-1] for k in module.state_dict()
    }


def test_shared_weights_change_only_along_the_sampled_path(tmp_path):
    module = _module(controller_steps=0)
    sampled: list[Architecture] = []
    original = module.sample_architecture

    def recording() -> Architecture:
        arch = original()
        sampled.append(arch)
        return arch

    module.sample_architecture = recording  # type: ignore[method-assign]
    before = {k: v.clone() for k, v in module.supernet.state_dict().items()}
    _trainer(tmp_path, batches=1, limit_val_batches=0).fit(module, datamodule=TinyData())
    assert len(sampled) == 1
    arch = sampled[0]
    after = module.supernet.state_dict()
    for i, spec in enumerate(arch.layers):
        for op in module.ops:
            keys = [k for k in before if k.startswith(f"layers.{i}.ops.{op}.")]
            moved = [k for k in keys if not torch.equal(before[k], after[k])]
            if op != spec.op:
                assert not moved, (i, op, moved)
            elif any(k.endswith("weight") for k in keys):
                assert moved, (i, op)
    assert not torch.equal(before["head.weight"], after["head.weight"])


def test_state_round_trip_gives_the_same_next_architecture(tmp_path):
    a = _module(seed=0)
    _trainer(tmp_path, batches=4).fit(a, datamodule=TinyData())
    checkpoint: dict = {}
    a.on_save_checkpoint(checkpoint)
    state = {k: v.clone() for k, v in a.state_dict().items()}
    b = _module(seed=5)  # other weights, other generator seed
    b.load_state_dict(state)
    b.on_load_checkpoint(checkpoint)
    assert float(b.baseline) == float(a.baseline)
    assert int(b.child_step) == int(a.child_step) and int(b.controller_step) == int(
        a.controller_step
    )
    assert [b.sample_architecture() for _ in range(3)] == [
        a.sample_architecture() for _ in range(3)
    ]
    ga, gb = a.arch_generator, b.arch_generator
    assert a.controller.sample(ga).architecture == b.controller.sample(gb).architecture
    assert a.controller.argmax() == b.controller.argmax()


def test_random_strategy_has_one_optimizer_and_no_controller(tmp_path):
    module = _module(strategy="random")
    trainer = _trainer(tmp_path, batches=3)
    trainer.fit(module, datamodule=TinyData())
    assert module.controller is None and int(module.controller_step) == 0
    assert int(module.child_step) == 3 and trainer.global_step == 3
    assert "val/acc" in trainer.callback_metrics


def test_op_subset_samples_only_those_ops(tmp_path):
    torch.manual_seed(0)
    module = TextNASSearchModule(
        vocab_size=VOCAB,
        num_classes=2,
        supernet={**TINY_NET, "num_layers": 4, "k": 2, "ops": ["max_pool", "conv3"]},
        search={"controller_every": 2, "controller_steps": 2, "plots": False},
    )
    assert module.ops == ("conv3", "max_pool") and module.controller.num_ops == 2
    _trainer(tmp_path, batches=2).fit(module, datamodule=TinyData())
    archs = [module.sample_architecture() for _ in range(10)] + [module.current_architecture()]
    assert {spec.op for arch in archs for spec in arch.layers} <= {"conv3", "max_pool"}


def test_derive_ranks_on_the_full_validation_set(tmp_path):
    module, data = _module(), TinyData()
    _trainer(tmp_path, batches=2).fit(module, datamodule=data)
    loader = data.val_dataloader()
    results = derive(
        module.supernet,
        module.controller,
        loader,
        num_samples=4,
        generator=torch.Generator().manual_seed(3),
    )
    scores = [acc for _, acc in results]
    assert scores == sorted(scores, reverse=True)
    assert "argmax" in [arch.source for arch, _ in results]
    assert len({arch for arch, _ in results}) == len(results)  # no duplicates
    best, acc = results[0]
    assert acc == evaluate_architecture(module.supernet, best, loader)  # every batch, deterministic
    n_val = len(data.val_set)
    assert all(round(a * n_val) == pytest.approx(a * n_val) for _, a in results)
    path = write_derived(results, tmp_path / "out")
    assert Architecture.load(path) == best
    assert (tmp_path / "out" / "candidates.yaml").is_file()
    assert (tmp_path / "out" / "architecture.png").stat().st_size > 0


def test_per_epoch_plots_are_written(tmp_path):
    module = _module(plots=True)
    _trainer(tmp_path, batches=2, epochs=2).fit(module, datamodule=TinyData())
    names = sorted(p.name for p in (tmp_path / "search").iterdir())
    assert names == [
        "epoch_000_arch.png",
        "epoch_000_ops.png",
        "epoch_001_arch.png",
        "epoch_001_ops.png",
    ]


def test_plot_functions_return_figures(tmp_path):
    arch = Architecture.released()
    fig = architecture_figure(arch)
    assert fig.axes and save_figure(fig, tmp_path / "a.png").stat().st_size > 0
    counts = [[i + j for j in range(len(OP_NAMES))] for i in range(3)]
    assert save_figure(op_frequency_figure(counts), tmp_path / "o.png").stat().st_size > 0
    with pytest.raises(ValueError):
        op_frequency_figure([[1, 2]])


def test_bad_strategy_is_rejected():
    with pytest.raises(ValueError, match="enas, random"):
        _module(strategy="darts")


def test_controller_batches_cycle_over_validation(tmp_path):
    """More controller steps than validation batches: the iterator wraps around."""
    data = TinyData(n_val=16, batch_size=8)  # 2 validation batches
    module = _module(controller_steps=5)
    _trainer(tmp_path, batches=2, limit_val_batches=0).fit(module, datamodule=data)
    assert int(module.controller_step) == 5 and int(module.val_cursor) == 5


NO_DROPOUT = dict(embed_keep=1.0, cnn_keep=1.0, rnn_keep=1.0, attention_keep=1.0, final_keep=1.0)


class ArchRecorder(L.Callback):
    def __init__(self) -> None:
        self.archs: list[Architecture] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # peek at the next child architecture without consuming the generator
        state = pl_module.arch_generator.get_state()
        self.archs.append(pl_module.sample_architecture())
        pl_module.arch_generator.set_state(state)


class StopAfterFirstEpoch(L.Callback):
    """An interrupted run: max_epochs=2 (so the cosine's T_max is 2) but only epoch 0 runs."""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        trainer.should_stop = True


def _deterministic_module() -> TextNASSearchModule:
    torch.manual_seed(0)
    return TextNASSearchModule(
        vocab_size=VOCAB,
        num_classes=2,
        supernet={**TINY_NET, **NO_DROPOUT, "num_layers": 4, "k": 2},
        search={"controller_every": 0, "controller_steps": 3, "plots": False},
    )


def test_resume_from_a_checkpoint_continues_exactly(tmp_path):
    """1 epoch + resume for the 2nd = 2 epochs in one go: same architectures, same weights,
    same controller and baseline (no dropout, unshuffled data: only the search's own state)."""

    class Unshuffled(TinyData):
        def train_dataloader(self) -> DataLoader:
            return DataLoader(self.train_set, self.batch_size, collate_fn=_collate)

    straight, rec_a = _deterministic_module(), ArchRecorder()
    _trainer(tmp_path / "a", batches=3, epochs=2, callbacks=[rec_a]).fit(
        straight, datamodule=Unshuffled()
    )

    first = _deterministic_module()
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor=None, save_last=True)
    _trainer(
        tmp_path / "b",
        batches=3,
        epochs=2,
        callbacks=[saver, StopAfterFirstEpoch()],
        enable_checkpointing=True,
    ).fit(first, datamodule=Unshuffled())
    ckpt = tmp_path / "ckpt" / "epoch=0-step=6.ckpt"
    assert "textnas_search" in torch.load(ckpt, weights_only=True)

    resumed, rec_b = _deterministic_module(), ArchRecorder()
    _trainer(tmp_path / "c", batches=3, epochs=2, callbacks=[rec_b]).fit(
        resumed, datamodule=Unshuffled(), ckpt_path=str(ckpt)
    )
    assert rec_b.archs == rec_a.archs[3:]
    assert int(resumed.controller_step) == int(straight.controller_step) == 6
    a, b = straight.state_dict(), resumed.state_dict()
    diff = {
        k: float((b[k].double() - a[k].double()).abs().max())
        for k in a
        if not torch.equal(a[k], b[k])
    }
    assert not diff, diff


def test_plots_go_to_a_wandb_logger_and_tolerate_none(tmp_path):
    from unittest import mock

    from lightning.pytorch.loggers import WandbLogger

    module = _module(plots=True)
    trainer = _trainer(tmp_path, batches=1)
    trainer.fit(module, datamodule=TinyData())  # logger=False: plots written, nothing logged
    wandb = mock.create_autospec(WandbLogger, instance=True)
    with mock.patch.object(type(trainer), "loggers", new_callable=mock.PropertyMock) as loggers:
        loggers.return_value = [wandb]
        module._write_plots()
    keys = [call.kwargs["key"] for call in wandb.log_image.call_args_list]
    assert keys == ["search/op_frequency", "search/architecture"]


def test_reward_batches_come_in_a_seeded_random_order(tmp_path):
    """The controller's reward batches: every pass over the validation batches is a fresh
    permutation (the loader's own order is length-sorted in real data), drawn from the arch
    seed alone, so every rank and a resumed run read the same sequence."""
    data = TinyData(n_val=48, batch_size=8)  # 6 validation batches
    loader_order = [b["ids"] for b in data.val_dataloader()]

    def drawn_order(seed: int) -> list[int]:
        module = _module(controller_steps=12, controller_every=0, seed=seed)
        seen: list[int] = []
        original = module._next_val_batch

        def record():
            batch = original()
            seen.append(
                next(i for i, ids in enumerate(loader_order) if torch.equal(ids, batch["ids"]))
            )
            return batch

        module._next_val_batch = record
        _trainer(tmp_path, batches=2, limit_val_batches=0).fit(module, datamodule=data)
        return seen

    order = drawn_order(seed=0)
    first, second = order[:6], order[6:]
    assert sorted(first) == list(range(6)) and sorted(second) == list(range(6))
    assert first != list(range(6)), "reward batches must not follow the loader's order"
    assert first != second, "each pass over the batches is a new permutation"
    assert drawn_order(seed=0) == order  # seeded: the same on every rank and on resume
    assert drawn_order(seed=1) != order
