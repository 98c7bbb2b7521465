"""Reading checkpoints: safely, and back into a run (config, system, module, datamodule).

Checkpoints hold tensors and plain Python values only, and are read with
``torch.load(weights_only=True)``: a file from elsewhere that needs anything more (arbitrary
pickled objects, which can run code while they load) is refused with one message.

:func:`load_run` is the one way to turn a checkpoint into a run: ``eval``, ``derive`` and the
commands to come (``sample``, ``render``) all call it.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig

from experiments.config import ConfigError, compose
from experiments.registry import SystemSpec, get_system
from experiments.trainer import check_writable, output_folder

if TYPE_CHECKING:
    import lightning as L


ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6 (a zip archive)
PICKLE_MAGIC = b"\x80"  # the legacy torch.save format starts with a pickle (protocol >= 2)


def _first_line(e: BaseException) -> str:
    """The first non-empty line of an exception's message (after torch's "WeightsUnpickler
    error:" preamble, if any), or its type's name."""
    text = str(e).split("WeightsUnpickler error:")[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


def load_checkpoint(path: str | Path, key: str | None = None) -> dict[str, Any]:
    """A checkpoint on CPU (memory-mapped when possible), tensors and plain values only.

    The one place checkpoints are read: a missing, empty, truncated or foreign file, or one that
    needs more than ``weights_only`` unpickling, is a ConfigError naming the file (and ``key``,
    the config key that gave the path, when there is one).
    """
    path = Path(path).expanduser()
    where = f"{key}: " if key else ""
    if path.is_dir():
        raise ConfigError(f"{where}{path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise ConfigError(f"{where}checkpoint not found: {path}")
    not_readable = f"{where}{path} is not a readable checkpoint"
    try:
        with path.open("rb") as f:
            head = f.read(len(ZIP_MAGIC))
    except OSError as e:
        raise ConfigError(f"{not_readable}: {e.strerror or _first_line(e)}") from e
    if not head:
        raise ConfigError(f"{not_readable}: the file is empty (0 bytes)")
    is_zip = ZIP_MAGIC.startswith(head) if len(head) < len(ZIP_MAGIC) else head == ZIP_MAGIC
    if not is_zip and not head.startswith(PICKLE_MAGIC):
        raise ConfigError(
            f"{not_readable}: it is not a PyTorch checkpoint (neither torch.save's zip archive "
            "nor a pickle)"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as e:
        if "unsupported global" in str(e).lower():
            what = _first_line(e).split(" was not an allowed global")[0]
            raise ConfigError(
                f"{where}checkpoint {path} holds objects other than tensors and plain values "
                f"({what}); refusing to unpickle it, since that can run arbitrary code. Suite "
                "checkpoints never need this: was the file written by another program?"
            ) from e
        error: Exception = e
    except Exception as e:  # noqa: BLE001 - any unreadable file is one user-facing message
        error = e
    else:
        if not isinstance(checkpoint, dict):
            raise ConfigError(
                f"{not_readable}: it holds a {type(checkpoint).__name__}, not a checkpoint's "
                "dictionary (state_dict, ...)"
            )
        return checkpoint
    if is_zip and not zipfile.is_zipfile(path):
        raise ConfigError(
            f"{not_readable}: it is truncated ({path.stat().st_size} bytes, the end of its zip "
            "archive is missing: was the save or a copy interrupted?)"
        ) from error
    kind = "zip archive" if is_zip else "pickle"
    raise ConfigError(
        f"{not_readable}: it is damaged or not a PyTorch checkpoint (a {kind} that "
        f"torch.load cannot read: {_first_line(error)})"
    ) from error


def suite_meta(
    checkpoint: dict[str, Any], path: Path, experiment: str | None = None
) -> dict[str, Any]:
    """``checkpoint["suite"]`` (experiment, system, config, run folder), checked."""
    meta = checkpoint.get("suite")
    if not isinstance(meta, dict) or "experiment" not in meta:
        raise ConfigError(
            f"checkpoint {path} has no suite metadata (it was not written by "
            "`python -m experiments train`)"
        )
    if experiment is not None and meta["experiment"] != experiment:
        raise ConfigError(
            f"checkpoint {path} was written by experiment '{meta['experiment']}', "
            f"not '{experiment}'"
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
    key: str | None = "ckpt",
    **values: Any,
) -> LoadedRun:
    """Rebuild the run that wrote checkpoint ``path``.

    The config is: schema defaults <- the config stored in the checkpoint <- ``values``
    (e.g. ``output_dir``) <- ``overrides``. ``experiment``/``system``, when given, must be
    the checkpoint's; ``key`` is the config key that named ``path`` (for the error messages).
    The config's output folder must be writable (every command that rebuilds a run writes
    there): checked before the system builds anything.
    The module gets the checkpoint's weights and its own checkpoint state
    (``on_load_checkpoint``); the datamodule is built from the checkpoint (e.g. its vocabulary).
    """
    path = Path(path).expanduser()
    checkpoint = load_checkpoint(path, key)
    meta = suite_meta(checkpoint, path, experiment)
    if system is not None and meta.get("system") != system:
        raise ConfigError(
            f"checkpoint {path} was written by system '{meta.get('system')}', not '{system}'"
        )
    spec = get_system(str(meta["system"]))
    values = {"experiment": str(meta["experiment"]), "resume": None, "ckpt": str(path), **values}
    cfg = stored_config(spec, meta, path, overrides, **values)
    check_writable(output_folder(cfg))  # the commands that rebuild a run write into it
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
