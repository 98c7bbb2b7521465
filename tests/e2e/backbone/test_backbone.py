"""The system-neutral backbone: the ``data`` and ``demo`` commands, validation that does not
change the config, and what a SystemSpec asks of the Trainer (DDP strategy, layer sync,
its own callbacks, the media logger)."""

from __future__ import annotations

import collections
import json

import pytest
from lightning.pytorch.callbacks import Callback

from experiments import registry
from experiments.__main__ import cli
from experiments.config import ConfigError, to_yaml
from experiments.demo import closing_table, run_demos
from experiments.registry import DemoResult, SystemSpec, list_experiments
from experiments.run import compose_experiment, resolve
from experiments.trainer import build_callbacks, fit_ddp_to_system, trainer_kwargs
from lightning_modules.callbacks import MediaLogger
from lightning_modules.layer_sync import SyncBatchNormLayers
from tests.e2e.conftest import tree_hashes


def test_data_command_reads_the_data_as_training_does(sst_dir, tmp_path, capsys):
    out, before = tmp_path / "out", tree_hashes(sst_dir)
    assert (
        cli(
            [
                "data",
                "textnas_train_synthetic",
                f"data.root={sst_dir}",
                f"output_dir={out}",
                "data.max_length=6",
                "logger.wandb.mode=disabled",
            ]
        )
        == 0
    )
    stdout = capsys.readouterr().out
    summary = json.loads(stdout.strip().splitlines()[-1])
    # label counts worked out from the files themselves (SST-2 TSVs: sentence \t label)
    for split, file in (("train", "train.tsv"), ("dev", "dev.tsv")):
        labels = [line.rsplit("\t", 1)[1] for line in (sst_dir / file).read_text().splitlines()[1:]]
        counts = collections.Counter(labels)
        assert summary["splits"][split]["size"] == len(labels)
        assert summary["splits"][split]["labels"] == {
            "negative": counts["0"],
            "positive": counts["1"],
        }
        assert any(line.split()[:2] == [split, str(len(labels))] for line in stdout.splitlines())
    (run,) = (out / "textnas_train_synthetic").iterdir()
    assert run.name.endswith("-data") and (run / "config.yaml").is_file()
    preview = (run / "preview.md").read_text()
    assert "positive" in preview and "truncated" in preview  # max_length=6 cuts sentences
    assert tree_hashes(sst_dir) == before and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_data_command_bad_input_is_one_line(tmp_path, capsys):
    assert (
        cli(
            [
                "data",
                "textnas_train_synthetic",
                f"data.root={tmp_path / 'nowhere'}",
                "data.generate=false",
                f"output_dir={tmp_path / 'out'}",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        err[-1].startswith("error: ") and "nowhere" in err[-1] and "Traceback" not in "".join(err)
    )
    assert not any((tmp_path / "out").rglob("*"))


def test_demo_runs_the_named_parts_and_prints_one_table(monkeypatch, capsys):
    calls = []

    def part(name):
        def demo(overrides):
            calls.append((name, overrides))
            return DemoResult(
                name, rows=[(f"{name} model", "acc 0.9")], outputs=[("run", f"/runs/{name}")]
            )

        return demo

    monkeypatch.setattr(registry, "DEMOS", {"a": part("a"), "b": part("b")})
    assert cli(["demo", "b", "output_dir=/tmp/x"]) == 0
    assert calls == [("b", ["output_dir=/tmp/x"])]
    out = capsys.readouterr().out
    assert "b model" in out and "acc 0.9" in out and "/runs/b" in out and "a model" not in out
    assert [r.system for r in run_demos([], [])] == ["a", "b"]  # no name: every part
    table = closing_table([DemoResult("a", [("x", "1")], [("y", "/p")], 3.0)])
    assert table.splitlines()[1].split() == ["system", "trained", "figures"]
    assert cli(["demo", "bb"]) == 2  # unknown name: error before anything runs
    assert "did you mean 'b'" in capsys.readouterr().err and len(calls) == 3


@pytest.mark.parametrize(
    "info", [i for i in list_experiments() if i.system.startswith("textnas")], ids=lambda i: i.name
)
def test_validation_does_not_change_the_config(info):
    _, composed = compose_experiment(info.name, ["output_dir=/tmp/never-written"])
    _, validated = resolve(info.name, ["output_dir=/tmp/never-written"])
    assert to_yaml(validated) == to_yaml(composed)


def _spec(**kw) -> SystemSpec:
    from experiments.systems.textnas.retrain import SPEC

    return SystemSpec(
        SPEC.name, SPEC.config_cls, SPEC.build, checkpoint_monitor=SPEC.checkpoint_monitor, **kw
    )


def ddp_arguments(cfg, spec: SystemSpec) -> dict | None:
    """What the Trainer built from ``cfg`` passes to DistributedDataParallel (None: no DDP)."""
    import lightning as L
    from lightning.pytorch.strategies import DDPStrategy

    trainer = L.Trainer(**trainer_kwargs(cfg, spec), logger=False, enable_checkpointing=False)
    fit_ddp_to_system(trainer.strategy, spec)
    strategy = trainer.strategy
    return dict(strategy._ddp_kwargs) if isinstance(strategy, DDPStrategy) else None


def test_what_a_system_asks_of_the_trainer(tmp_path):
    _, cfg = resolve(
        "textnas_train_synthetic",
        ["preset=trainer/ddp", "trainer.devices=2", "trainer.accelerator=cpu"],
    )
    plain = trainer_kwargs(cfg, _spec())
    assert plain["strategy"] == "ddp" and isinstance(plain["plugins"][0], SyncBatchNormLayers)
    assert "find_unused_parameters" not in ddp_arguments(cfg, _spec())
    unused = _spec(find_unused_parameters=True)
    assert ddp_arguments(cfg, unused)["find_unused_parameters"] is True
    cfg.trainer.strategy, cfg.trainer.sync_batchnorm = "ddp_spawn", False
    assert "plugins" not in trainer_kwargs(cfg, unused)
    assert ddp_arguments(cfg, unused) == {"find_unused_parameters": True}
    cfg.trainer.strategy = "auto"  # several devices: Lightning picks plain ddp
    assert ddp_arguments(cfg, unused) == {"find_unused_parameters": True}
    cfg.trainer.devices = 1
    assert ddp_arguments(cfg, unused) is None
    cfg.trainer.strategy, cfg.trainer.devices = "ddp_find_unused_parameters_false", 2
    with pytest.raises(ConfigError, match="use trainer.strategy=ddp$"):
        trainer_kwargs(cfg, unused)

    class Mine(Callback):
        pass

    callbacks = build_callbacks(
        cfg, tmp_path, with_logger=False, spec=_spec(callbacks=lambda c: [Mine()])
    )
    kinds = [type(cb) for cb in callbacks]
    assert Mine in kinds and MediaLogger in kinds
    best = next(cb for cb in callbacks if getattr(cb, "monitor", None))
    assert best.monitor == "val/acc"  # checkpoint.monitor=auto, resolved by the system


def test_paper_recipe_without_glove_warns_once(capsys):
    from experiments.systems.textnas.retrain import warn_if_not_comparable

    paper = [
        i.name
        for i in list_experiments()
        if i.system.startswith("textnas") and resolve(i.name)[1].paper_recipe
    ]
    assert {"textnas_search_sst5", "textnas_train_sst5", "textnas_train_sst2_trees"} <= set(paper)
    assert "textnas_train_synthetic" not in paper
    _, cfg = resolve("textnas_train_sst5")
    warn_if_not_comparable(cfg)
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and err[0].startswith("warning: textnas_train_sst5")
        and "not comparable" in err[0]
    )
    _, cfg = resolve("textnas_train_sst5", ["data.glove=/data/glove.840B.300d.txt"])
    warn_if_not_comparable(cfg)
    _, cfg = resolve("textnas_train_synthetic")
    warn_if_not_comparable(cfg)
    assert capsys.readouterr().err == ""
