"""``trainer.*`` is every ``lightning.Trainer`` argument (read from its source, checked here
against ``inspect.signature``), passed through as given; the suite's own keys ``compile`` and
``float32_matmul_precision``; the arguments the suite owns are refused with the key to use."""

from __future__ import annotations

import inspect

import lightning as L
import pytest
import torch
import torchmetrics
from lightning.pytorch.profilers import SimpleProfiler

from experiments.callbacks import CompileNetworks
from experiments.config import ConfigError
from experiments.run import compose_experiment
from experiments.trainer import build_trainer
from experiments.trainer_config import OWNED, SUITE_DEFAULTS, TrainerConfig, lightning_signature


def test_the_schema_is_the_trainers_signature():
    real = {
        name: p.default
        for name, p in inspect.signature(L.Trainer.__init__).parameters.items()
        if name != "self"
    }
    parsed = lightning_signature()
    assert list(parsed) == list(real)
    assert {k: d for k, (_, d) in parsed.items()} == real
    fields = TrainerConfig.__dataclass_fields__
    assert set(real) <= set(fields)
    for name, default in real.items():
        expected = None if name in OWNED else SUITE_DEFAULTS.get(name, default)
        assert fields[name].default == expected, name


def _trainer(tmp_path, *overrides):
    spec, cfg = compose_experiment(
        "textnas_train_sst2",
        ["logger.wandb.mode=disabled", "trainer.enable_progress_bar=false", *overrides],
    )
    module = L.LightningModule()
    return build_trainer(cfg, tmp_path, module, spec)


def test_keys_not_copied_by_hand_reach_the_trainer(tmp_path):
    trainer = _trainer(
        tmp_path,
        "trainer.max_time=00:00:01:30",
        "trainer.profiler=simple",
        "trainer.overfit_batches=2",
        "trainer.min_epochs=2",
    )
    assert isinstance(trainer.profiler, SimpleProfiler)
    timer = next(c for c in trainer.callbacks if type(c).__name__ == "Timer")
    assert timer._duration == 90.0
    assert trainer.overfit_batches == 2 and trainer.fit_loop.min_epochs == 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_tiem=10", "did you mean 'trainer.max_time'"),
        ("trainer.logger=false", "trainer.logger is set by the suite; use the logger.* keys"),
        ("trainer.default_root_dir=/tmp", "use output_dir"),
        ("trainer.float32_matmul_precision=low", "trainer.float32_matmul_precision"),
        ("trainer.compile=[1]", "trainer.compile: expected true, false or a torch.compile"),
        ("trainer.num_nodes=two", "trainer.num_nodes: expected int"),
    ],
)
def test_bad_trainer_keys(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("*", r"\*")):
        _trainer(tmp_path, override)


def test_float32_matmul_precision(tmp_path):
    before = torch.get_float32_matmul_precision()
    try:
        _trainer(tmp_path, "trainer.accelerator=cpu")
        assert torch.get_float32_matmul_precision() == before  # unset: left alone off CUDA
        _trainer(tmp_path, "trainer.float32_matmul_precision=medium")
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(before)


class _Toy(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)
        )
        self.acc = torchmetrics.MeanMetric()
        self.act = torch.nn.ReLU()  # no parameters: left alone


def test_compile_compiles_each_network_in_place():
    toy = _Toy()
    keys = list(toy.state_dict())
    x = torch.randn(3, 4)
    expected = toy.net(x)
    CompileNetworks("eager").setup(None, toy, "fit")
    assert toy.net._compiled_call_impl is not None
    assert getattr(toy.acc, "_compiled_call_impl", None) is None
    assert getattr(toy.act, "_compiled_call_impl", None) is None
    assert list(toy.state_dict()) == keys  # checkpoints unchanged
    torch.testing.assert_close(toy.net(x), expected)


def test_compile_key_adds_the_callback(tmp_path):
    trainer = _trainer(tmp_path, "trainer.compile=eager")
    assert [c.backend for c in trainer.callbacks if isinstance(c, CompileNetworks)] == ["eager"]
    trainer = _trainer(tmp_path)
    assert not any(isinstance(c, CompileNetworks) for c in trainer.callbacks)
