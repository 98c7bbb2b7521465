"""Config composition: defaults, YAML, presets, overrides, errors with suggestions."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from experiments.config import (
    PRECISIONS,
    ConfigError,
    RunConfig,
    compose,
    parse_override,
    suggest_key,
    to_container,
    to_yaml,
    valid_keys,
)
from experiments.registry import (
    SystemSpec,
    experiment_yaml,
    get_system,
    list_experiments,
)

BASE = {"experiment": "exp", "system": "sys"}


@dataclass
class DataConfig:
    root: str = "data"
    batch_size: int = 32


@dataclass
class MyConfig(RunConfig):
    data: DataConfig = field(default_factory=DataConfig)


def _compose(overrides=(), files=(), schema=MyConfig, base=BASE):
    return compose(schema, list(files), list(overrides), base=base)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults():
    cfg = _compose()
    assert cfg.experiment == "exp" and cfg.seed == 1234 and cfg.output_dir == "outputs"
    assert cfg.trainer.max_epochs == 10 and cfg.trainer.precision == "32-true"
    assert cfg.trainer.devices == 1 and cfg.trainer.gradient_clip_val is None
    assert cfg.logger.wandb.mode == "auto" and cfg.logger.wandb.project == "nas-suite"
    assert cfg.checkpoint.monitor == "val/loss" and cfg.checkpoint.save_last is True
    assert cfg.data.batch_size == 32
    assert to_container(cfg)["trainer"]["accelerator"] == "auto"
    assert "max_epochs: 10" in to_yaml(cfg)


def test_yaml_files_merge_in_order(tmp_path):
    a = _write(
        tmp_path / "a.yaml",
        "trainer:\n  max_epochs: 3\n  precision: bf16-mixed\ndata:\n  root: /x\n",
    )
    b = _write(
        tmp_path / "b.yaml", "trainer:\n  max_epochs: 5\nlogger:\n  wandb:\n    tags: [t1]\n"
    )
    cfg = _compose(files=[a, b])
    assert cfg.trainer.max_epochs == 5
    assert cfg.trainer.precision == "bf16-mixed"  # untouched by b
    assert cfg.data.root == "/x" and cfg.data.batch_size == 32
    assert list(cfg.logger.wandb.tags) == ["t1"]
    cfg = _compose(["trainer.max_epochs=7"], files=[a, b])
    assert cfg.trainer.max_epochs == 7


def test_yaml_defaults_presets_then_own_keys(tmp_path):
    exp = _write(tmp_path / "e.yaml", "defaults: [trainer/gpu]\ntrainer:\n  precision: 16-mixed\n")
    cfg = _compose(files=[exp])
    assert cfg.trainer.accelerator == "gpu"  # from the preset
    assert cfg.trainer.precision == "16-mixed"  # the file's own key wins


def test_preset_override_after_yaml_before_key_values(tmp_path):
    exp = _write(tmp_path / "e.yaml", "trainer:\n  accelerator: gpu\n  strategy: ddp_spawn\n")
    cfg = _compose(["trainer.devices=2", "preset=trainer/cpu,trainer/ddp"], files=[exp])
    assert cfg.trainer.accelerator == "cpu"  # preset beats YAML
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.sync_batchnorm is True
    assert cfg.trainer.devices == 2  # key=value beats preset, whatever the order on the line


def test_presets_from_suite_config_path(tmp_path, monkeypatch):
    _write(
        tmp_path / "presets" / "debug" / "tiny.yaml",
        "defaults: [trainer/cpu]\ndata:\n  batch_size: 2\n",
    )
    monkeypatch.setenv("SUITE_CONFIG_PATH", str(tmp_path))
    cfg = _compose(["preset=debug/tiny"])
    assert cfg.data.batch_size == 2 and cfg.trainer.accelerator == "cpu"
    with pytest.raises(
        ConfigError, match=r"unknown preset 'debug/tinny'; did you mean 'debug/tiny'\?"
    ):
        _compose(["preset=debug/tinny"])


@pytest.mark.parametrize(
    ("override", "key", "expected"),
    [
        ("seed=7", "seed", 7),
        ("trainer.gradient_clip_val=0.5", "trainer.gradient_clip_val", 0.5),
        ("trainer.gradient_clip_val=1e-3", "trainer.gradient_clip_val", 1e-3),
        ("trainer.gradient_clip_val=2", "trainer.gradient_clip_val", 2),
        ("trainer.deterministic=true", "trainer.deterministic", True),
        ("trainer.benchmark=False", "trainer.benchmark", False),
        ("logger.wandb.tags=[a, b]", "logger.wandb.tags", ["a", "b"]),
        ("trainer.devices=[0,1]", "trainer.devices", [0, 1]),
        ("trainer.devices=0,1", "trainer.devices", "0,1"),
        ("checkpoint.monitor=null", "checkpoint.monitor", None),
        ("trainer.limit_train_batches=1", "trainer.limit_train_batches", 1),
        ("trainer.limit_train_batches=0.25", "trainer.limit_train_batches", 0.25),
        ("data.root=/a=b", "data.root", "/a=b"),
        ("description=", "description", ""),
    ],
)
def test_override_values_parsed_as_yaml(override, key, expected):
    value = _compose([override])
    for part in key.split("."):
        value = value[part]
    if hasattr(value, "__iter__") and not isinstance(value, str):
        value = list(value)
    assert value == expected and type(value) is type(expected)


def test_int_limit_stays_int():
    """1 batch (int) and 100 % (float 1.0) differ in Lightning: the type must survive."""
    assert isinstance(_compose(["trainer.limit_val_batches=1"]).trainer.limit_val_batches, int)
    assert isinstance(_compose(["trainer.limit_val_batches=1.0"]).trainer.limit_val_batches, float)


def test_typo_in_section_suggests_key():
    with pytest.raises(ConfigError) as info:
        _compose(["trainer.max_epochz=3"])
    assert (
        str(info.value)
        == "unknown config key 'trainer.max_epochz'; did you mean 'trainer.max_epochs'?"
    )


@pytest.mark.parametrize(
    ("override", "suggestion"),
    [
        ("sed=3", "seed"),
        ("max_epochs=3", "trainer.max_epochs"),  # forgot the section
        ("trainr.max_epochs=3", "trainer.max_epochs"),
        ("data.batchsize=3", "data.batch_size"),
        ("logger.wandb.projct=x", "logger.wandb.project"),
    ],
)
def test_typos_suggest_closest_key(override, suggestion):
    with pytest.raises(ConfigError, match=rf"did you mean '{suggestion}'\?"):
        _compose([override])


def test_unknown_key_without_close_match_lists_section():
    with pytest.raises(
        ConfigError, match=r"unknown config key 'data.zzz'; valid keys in 'data': root, batch_size"
    ):
        _compose(["data.zzz=1"])


def test_typo_in_yaml_names_the_file(tmp_path):
    exp = _write(tmp_path / "e.yaml", "trainer:\n  max_epochz: 3\n")
    with pytest.raises(ConfigError, match=r"did you mean 'trainer.max_epochs'\? \(in .*e.yaml\)"):
        _compose(files=[exp])


def test_wrong_type_message():
    with pytest.raises(ConfigError) as info:
        _compose(["trainer.max_epochs=ten"])
    assert str(info.value) == "trainer.max_epochs: expected int or null, got 'ten'"
    with pytest.raises(
        ConfigError, match=r"^trainer.gradient_clip_val: expected int or float or null, got 'x'$"
    ):
        _compose(["trainer.gradient_clip_val=x"])
    with pytest.raises(ConfigError, match=r"^logger.wandb.tags: expected list of str, got null$"):
        _compose(["logger.wandb.tags=null"])
    with pytest.raises(ConfigError, match=r"^trainer: is a config section"):
        _compose(["trainer=3"])


def test_missing_required_is_named():
    with pytest.raises(ConfigError, match=r"missing required config value\(s\): system"):
        _compose(base={"experiment": "exp"})


def test_malformed_overrides():
    with pytest.raises(ConfigError, match="must look like key=value"):
        parse_override("trainer.max_epochs")
    with pytest.raises(ConfigError, match="cannot parse value"):
        parse_override("logger.wandb.tags=[a,")
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])


@pytest.mark.parametrize("precision", PRECISIONS)
def test_valid_precisions(precision):
    assert _compose([f"trainer.precision={precision}"]).trainer.precision == precision


@pytest.mark.parametrize("precision", ["16", "fp16", "bf16", "mixed"])
def test_invalid_precision_lists_allowed(precision):
    with pytest.raises(ConfigError, match=r"trainer.precision: .*32-true, 16-mixed, bf16-mixed"):
        _compose([f"trainer.precision={precision}"])


@pytest.mark.parametrize("devices", ["x", "[a]", "-2", "1.5"])
def test_invalid_devices(devices):
    with pytest.raises(ConfigError, match="trainer.devices"):
        _compose([f"trainer.devices={devices}"])


def test_value_checks():
    with pytest.raises(ConfigError, match="logger.wandb.mode: expected one of auto, online"):
        _compose(["logger.wandb.mode=on"])
    with pytest.raises(ConfigError, match="checkpoint.mode"):
        _compose(["checkpoint.mode=lowest"])
    with pytest.raises(ConfigError, match="trainer.limit_val_batches"):
        _compose(["trainer.limit_val_batches=1.5"])


def test_valid_keys_and_suggest_key():
    keys = valid_keys(MyConfig)
    assert {"trainer", "trainer.max_epochs", "logger.wandb.mode", "data.root"} <= set(keys)
    assert "trainer" not in valid_keys(MyConfig, leaves_only=True)
    assert suggest_key("checkpoint.monitr", keys) == "checkpoint.monitor"
    assert suggest_key("qqqqqq", keys) is None


# ---------------------------------------------------------------------- experiments registry


def test_unknown_experiment_lists_valid_ones(tmp_path, monkeypatch):
    _write(tmp_path / "alpha_small.yaml", "system: toy\ndescription: first\n")
    _write(tmp_path / "beta.yaml", "system: toy\n")
    _write(tmp_path / "presets" / "trainer" / "x.yaml", "trainer: {}\n")
    monkeypatch.setenv("SUITE_CONFIG_PATH", str(tmp_path))
    names = [e.name for e in list_experiments()]
    assert "alpha_small" in names and "beta" in names and "x" not in names
    info = next(e for e in list_experiments() if e.name == "alpha_small")
    assert info.system == "toy" and info.description == "first"
    assert experiment_yaml("beta") == tmp_path / "beta.yaml"
    with pytest.raises(
        ConfigError, match=r"unknown experiment 'alpha_smal'; did you mean 'alpha_small'\?.*beta"
    ):
        experiment_yaml("alpha_smal")
    with pytest.raises(
        ConfigError,
        match=r"unknown experiment 'zzz'; valid experiments: (.*, )?alpha_small, (.*, )?beta",
    ):
        experiment_yaml("zzz")


def test_unknown_system():
    with pytest.raises(ConfigError, match="unknown system 'nope'"):
        get_system("nope")
    with pytest.raises(ConfigError, match="module 'no_such_pkg.sys' not found"):
        get_system("no_such_pkg.sys:SPEC")


def test_system_spec_needs_run_config():
    with pytest.raises(TypeError, match="RunConfig"):
        SystemSpec(name="bad", config_cls=DataConfig, build=lambda cfg, ckpt: (None, None))  # type: ignore[arg-type]
