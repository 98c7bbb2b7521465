"""The TextNAS search experiments end to end on generated data (CPU, tiny settings).

A tiny ``textnas_search_synthetic`` run ends with the derived architecture, its candidates, its
drawing and the per-epoch figures in the run folder; the derived architecture retrains with
``textnas_train_synthetic``; the ``derive`` command redoes the derive from the checkpoint into a
new folder; configuration mistakes are one-line ``ConfigError``s.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from experiments.config import ConfigError
from experiments.registry import list_experiments
from experiments.run import resolve, run_command, train
from search_spaces.text import Architecture
from tests.e2e.conftest import cli_env, python, tree_hashes

pytestmark = pytest.mark.usefixtures("one_thread")

SEARCH_EXPERIMENTS = sorted(i.name for i in list_experiments() if i.system == "textnas_search")

#: A search that takes a few seconds on a CPU.
TINY_SEARCH = [
    "supernet.num_layers=4",
    "supernet.k=2",
    "supernet.width=8",
    "supernet.embed_dim=16",
    "data.batch_size=16",
    "data.generate=false",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
    "trainer.num_sanity_val_steps=0",
    "trainer.enable_progress_bar=false",
    "logger.wandb.mode=disabled",
    "search.controller_steps=2",
    "search.derive_samples=3",
]


def _search_overrides(out: Path, data: Path, *extra: str) -> list[str]:
    return [*TINY_SEARCH, f"output_dir={out}", f"data.root={data}", *extra]


@pytest.fixture(scope="module")
def search_run(sst_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("search-out")
    return train("textnas_search_synthetic", _search_overrides(out, sst_dir))


def test_search_experiments_are_found():
    assert {"textnas_search_synthetic", "textnas_search_sst5", "textnas_search_sst2"} <= set(
        SEARCH_EXPERIMENTS
    )


@pytest.mark.parametrize("experiment", SEARCH_EXPERIMENTS)
def test_every_search_config_resolves(experiment):
    _, cfg = resolve(experiment)
    assert cfg.trainer.gradient_clip_val is None and cfg.trainer.use_distributed_sampler is False
    assert cfg.supernet.k <= cfg.supernet.num_layers


def test_search_run_folder_holds_the_derived_architecture(search_run):
    run_dir = search_run.run_dir
    for rel in (
        "config.yaml",
        "checkpoints/last.ckpt",
        "metrics.json",
        "architecture.yaml",
        "candidates.yaml",
        "architecture.png",
    ):
        assert (run_dir / rel).is_file(), rel
    pngs = sorted(p.name for p in (run_dir / "search").glob("*.png"))
    assert pngs == [
        "epoch_000_arch.png",
        "epoch_000_ops.png",
        "epoch_001_arch.png",
        "epoch_001_ops.png",
    ]
    arch = Architecture.load(run_dir / "architecture.yaml")
    assert arch.num_layers == 4 and arch.k == 2
    listing = yaml.safe_load((run_dir / "candidates.yaml").read_text())
    accs = [c["val_acc"] for c in listing["candidates"]]
    assert accs == sorted(accs, reverse=True) and len(accs) >= 2
    assert Architecture.from_dict(listing["candidates"][0]["architecture"]) == arch
    fit = search_run.metrics["fit"]
    for key in (
        "val/acc",
        "search/reward",
        "search/baseline",
        "search/controller_step",
        "search/child_step",
    ):
        assert key in fit, key
    assert fit["search/child_step"] == 6 and fit["search/controller_step"] == 4
    last = torch.load(run_dir / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 1 and int(last["state_dict"]["child_step"]) == 6  # the final state


def test_derived_architecture_retrains(search_run, sst_dir, tmp_path):
    arch_path = search_run.run_dir / "architecture.yaml"
    result = train(
        "textnas_train_synthetic",
        [
            f"model.architecture={arch_path}",
            "model.width=8",
            "model.embed_dim=16",
            "data.batch_size=16",
            "data.generate=false",
            f"data.root={sst_dir}",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=2",
            "trainer.num_sanity_val_steps=0",
            "trainer.enable_progress_bar=false",
            "logger.wandb.mode=disabled",
            f"output_dir={tmp_path}",
        ],
    )
    assert Architecture.load(result.run_dir / "architecture.yaml") == Architecture.load(arch_path)
    assert "val/acc" in result.metrics["fit"]


def test_derive_command_writes_a_new_folder(search_run, tmp_path):
    run_dir = search_run.run_dir
    before = tree_hashes(run_dir)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    code = run_command(
        "derive",
        "textnas_search_synthetic",
        [f"ckpt={ckpt}", f"output_dir={tmp_path}", "search.derive_samples=2"],
        [],
    )
    assert code == 0
    assert tree_hashes(run_dir) == before  # the search folder is untouched
    (derived,) = (tmp_path / "textnas_search_synthetic").iterdir()
    assert derived.name.endswith("-derive")
    for name in ("architecture.yaml", "candidates.yaml", "architecture.png", "config.yaml"):
        assert (derived / name).is_file(), name
    listing = yaml.safe_load((derived / "candidates.yaml").read_text())
    assert len(listing["candidates"]) <= 3  # argmax + 2 samples
    # same checkpoint, same controller: the argmax architecture scores the same
    first = yaml.safe_load((run_dir / "candidates.yaml").read_text())
    argmax = {c["source"]: c["val_acc"] for c in first["candidates"]}["argmax"]
    assert {c["source"]: c["val_acc"] for c in listing["candidates"]}["argmax"] == pytest.approx(
        argmax
    )


def test_derive_refuses_another_experiments_checkpoint(search_run, sst_dir, tmp_path):
    ckpt = search_run.run_dir / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError, match="textnas_search_synthetic"):
        run_command("derive", "textnas_search_sst2", [f"ckpt={ckpt}", f"output_dir={tmp_path}"], [])
    with pytest.raises(ConfigError, match="ckpt=PATH"):
        run_command("derive", "textnas_search_synthetic", [f"output_dir={tmp_path}"], [])
    assert not (tmp_path / "textnas_search_sst2").exists()


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("supernet.k=20", ["supernet.k=20", "supernet.num_layers=4"]),
        ("supernet.ops=[conv3,conv9]", ["conv9", "conv1", "attention"]),
        ("search.strategy=darts", ["darts", "enas", "random"]),
        ("trainer.gradient_clip_val=1.0", ["gradient_clip_val", "manual optimization"]),
    ],
)
def test_config_errors(override, words, sst_dir, tmp_path):
    with pytest.raises(ConfigError) as info:
        train("textnas_search_synthetic", _search_overrides(tmp_path, sst_dir, override))
    for word in words:
        assert word in str(info.value), str(info.value)
    assert not (tmp_path / "textnas_search_synthetic").exists() or not any(
        (tmp_path / "textnas_search_synthetic").iterdir()
    )


def test_plain_ddp_runs_with_unused_parameter_search():
    """Plain ddp (preset=trainer/ddp) is accepted: the system declares that each backward
    leaves the unsampled ops without gradient, and the Trainer gets the strategy that allows it."""
    from tests.e2e.backbone.test_backbone import ddp_arguments

    spec, cfg = resolve(
        "textnas_search_synthetic",
        ["preset=trainer/ddp", "trainer.devices=2", "trainer.accelerator=cpu"],
    )
    assert cfg.trainer.strategy == "ddp" and spec.find_unused_parameters
    assert ddp_arguments(cfg, spec)["find_unused_parameters"] is True


def test_cli_k_too_large_is_one_error_line(sst_dir, tmp_path):
    proc = subprocess.run(
        [
            python(),
            "-m",
            "experiments",
            "train",
            "textnas_search_synthetic",
            *_search_overrides(tmp_path / "out", sst_dir, "supernet.k=20"),
        ],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "supernet.k=20" in errors[0], proc.stderr


def test_fast_dev_run_without_loggers(sst_dir, tmp_path):
    result = train(
        "textnas_search_synthetic", _search_overrides(tmp_path, sst_dir, "trainer.fast_dev_run=2")
    )
    assert (result.run_dir / "architecture.yaml").is_file()
    assert sorted(p.name for p in (result.run_dir / "search").iterdir()) == [
        "epoch_000_arch.png",
        "epoch_000_ops.png",
    ]


def _retrain_overrides(arch_path: Path, sst_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"model.architecture={arch_path}",
        "model.width=8",
        "model.embed_dim=16",
        "data.batch_size=16",
        "data.generate=false",
        f"data.root={sst_dir}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=2",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false",
        "logger.wandb.mode=disabled",
        f"output_dir={out}",
        *extra,
    ]


def test_retrain_starts_from_the_inherited_shared_weights(search_run, sst_dir, tmp_path):
    """model.init_from: the derived architecture's weights and vocabulary come from the search."""
    from experiments.systems.textnas.retrain import build
    from lightning_modules.textnas.config import SupernetConfig
    from search_spaces.text import TextNASSupernet

    ckpt_path = search_run.run_dir / "checkpoints/last.ckpt"
    arch_path = search_run.run_dir / "architecture.yaml"
    arch = Architecture.load(arch_path)
    _, cfg = resolve(
        "textnas_train_synthetic",
        _retrain_overrides(arch_path, sst_dir, tmp_path, f"model.init_from={ckpt_path}"),
    )
    module, dm = build(cfg, None)

    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    hp = ckpt["hyper_parameters"]
    space = SupernetConfig(**hp["supernet"])
    supernet = TextNASSupernet(
        hp["vocab_size"],
        num_layers=space.num_layers,
        k=space.k,
        options=space.options(),
        num_classes=hp["num_classes"],
    )
    supernet.load_state_dict(
        {k[9:]: v for k, v in ckpt["state_dict"].items() if k.startswith("supernet.")}
    )
    expected = supernet.fixed_encoder_state_dict(arch)
    got = module.net.encoder.state_dict()
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    assert (
        dm.vocab.to_list()
        == next(v for k, v in ckpt.items() if k.endswith("GlueDataModule"))["vocab"]
    )
    # and it trains from there
    result = train(
        "textnas_train_synthetic",
        _retrain_overrides(arch_path, sst_dir, tmp_path, f"model.init_from={ckpt_path}"),
    )
    assert "val/acc" in result.metrics["fit"]


@pytest.mark.parametrize(
    "extra, words",
    [
        (["model.width=12"], "model.width=12 does not match the supernet"),
        (["model.architecture=released", "model.width=8", "model.embed_dim=16"], "24 layers"),
    ],
)
def test_init_from_a_mismatching_supernet_is_a_config_error(
    extra, words, search_run, sst_dir, tmp_path
):
    ckpt_path = search_run.run_dir / "checkpoints/last.ckpt"
    arch_path = search_run.run_dir / "architecture.yaml"
    overrides = _retrain_overrides(
        arch_path, sst_dir, tmp_path, f"model.init_from={ckpt_path}", *extra
    )
    with pytest.raises(ConfigError, match=words):
        train("textnas_train_synthetic", overrides)
    assert not any(tmp_path.iterdir())


def test_init_from_a_retrain_checkpoint_is_refused(sst_dir, tmp_path, search_run):
    arch_path = search_run.run_dir / "architecture.yaml"
    first = train("textnas_train_synthetic", _retrain_overrides(arch_path, sst_dir, tmp_path / "a"))
    with pytest.raises(ConfigError, match="is not a textnas_search checkpoint"):
        train(
            "textnas_train_synthetic",
            _retrain_overrides(
                arch_path,
                sst_dir,
                tmp_path / "b",
                f"model.init_from={first.run_dir / 'checkpoints/last.ckpt'}",
            ),
        )
