"""Reading checkpoints: safely, and back into a run (config, system, module, datamodule).

Checkpoints hold tensors and plain Python values only, and are read with
``torch.load(weights_only=True)``: a file from elsewhere that needs anything more (arbitrary
pickled objects, which can run code while they load) is refused with one message.

:func:`load_run` is the one way to turn a checkpoint into a run: ``eval``, ``derive`` and the
commands to come (``sample``, ``render``) all call it.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig

from experiments.config import ConfigError, compose
from experiments.registry import SystemSpec, get_system

if TYPE_CHECKING:
    import lightning as L


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint on CPU (memory-mapped when possible), tensors and plain values only.

    ConfigError if it is missing, unreadable or needs more than ``weights_only`` unpickling.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"checkpoint not found: {path}")
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "zip" not in str(e).lower() and "mmap" not in str(e).lower():
                raise
            return torch.load(path, map_location="cpu", weights_only=True)  # legacy format
    except pickle.UnpicklingError as e:
        if "unsupported global" not in str(e).lower():  # not a pickled object: a damaged file
            raise ConfigError(f"cannot read checkpoint {path}: {str(e).splitlines()[0]}") from e
        what = str(e).split("WeightsUnpickler error:")[-1].strip().splitlines()[0]
        raise ConfigError(
            f"checkpoint {path} holds objects other than tensors and plain values ({what}); "
            "refusing to unpickle it, since that can run arbitrary code. Suite checkpoints "
            "never need this: was the file written by another program?"
        ) from e
    except Exception as e:  # noqa: BLE001 - any unreadable file is one user-facing message
        raise ConfigError(f"cannot read checkpoint {path}: {str(e).splitlines()[0]}") from e


def suite_meta(
    checkpoint: dict[str, Any], path: Path, experiment: str | None = None
) -> dict[str, Any]:
    """``checkpoint["suite"]`` (experiment, system, config, run folder), checked."""
    meta = checkpoint.get("suite")
    if not isinstance(meta, dict) or "experiment" not in meta:
        raise ConfigError(
            f"checkpoint {path} has no suite metadata (it was not written by `python -m experiments train`)"
        )
    if experiment is not None and meta["experiment"] != experiment:
        raise ConfigError(
            f"checkpoint {path} was written by experiment '{meta['experiment']}', not '{experiment}'"
        )
    return meta


def stored_config(
    spec: SystemSpec,
    meta: dict[str, Any],
    path: Path,
    overrides: Sequence[str] = (),
    **values: Any,
) -> DictConfig:
    """Schema defaults <- the config stored in the checkpoint <- ``values`` <- ``overrides``."""
    stored = dict(meta.get("config") or {})
    stored.update(values)
    cfg = compose(
        spec.config_cls, [], list(overrides), base=stored, base_origin=f"config stored in {path}"
    )
    if spec.validate is not None:
        spec.validate(cfg)
    return cfg


@dataclass
class LoadedRun:
    """A checkpoint turned back into its run; the module holds the checkpoint's weights."""

    path: Path
    cfg: DictConfig
    spec: SystemSpec
    module: L.LightningModule
    datamodule: L.LightningDataModule
    checkpoint: dict[str, Any]


def load_run(
    path: str | Path,
    experiment: str | None = None,
    overrides: Sequence[str] = (),
    system: str | None = None,
    **values: Any,
) -> LoadedRun:
    """Rebuild the run that wrote checkpoint ``path``.

    The config is: schema defaults <- the config stored in the checkpoint <- ``values``
    (e.g. ``output_dir``) <- ``overrides``. ``experiment``/``system``, when given, must be
    the checkpoint's. The module gets the checkpoint's weights and its own checkpoint state
    (``on_load_checkpoint``); the datamodule is built from the checkpoint (e.g. its vocabulary).
    """
    path = Path(path).expanduser()
    checkpoint = load_checkpoint(path)
    meta = suite_meta(checkpoint, path, experiment)
    if system is not None and meta.get("system") != system:
        raise ConfigError(
            f"checkpoint {path} was written by system '{meta.get('system')}', not '{system}'"
        )
    spec = get_system(str(meta["system"]))
    values = {"experiment": str(meta["experiment"]), "resume": None, "ckpt": str(path), **values}
    cfg = stored_config(spec, meta, path, overrides, **values)
    module, datamodule = spec.build(cfg, checkpoint)
    check_state_fits(module, checkpoint, path)
    module.load_state_dict(checkpoint["state_dict"])
    module.on_load_checkpoint(checkpoint)
    return LoadedRun(path, cfg, spec, module, datamodule, checkpoint)


def check_state_fits(module: L.LightningModule, checkpoint: dict, path: object) -> None:
    """A checkpoint whose weights do not fit the module built from the config is a user error
    (e.g. a changed model size on resume), caught before any run folder is touched."""
    stored = checkpoint.get("state_dict", {})
    for name, tensor in module.state_dict().items():
        if name not in stored:
            raise ConfigError(f"checkpoint {path} does not fit this config: it has no '{name}'")
        if tuple(stored[name].shape) != tuple(tensor.shape):
            raise ConfigError(
                f"checkpoint {path} does not fit this config: '{name}' has shape "
                f"{tuple(stored[name].shape)} there and {tuple(tensor.shape)} here "
                "(was a model size changed?)"
            )
