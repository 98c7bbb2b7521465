"""Callbacks shared by every system: the media logger and an EMA of a module's weights.

* :class:`MediaLogger` is the one way a module shows a person something: an image (an array, a
  tensor or a matplotlib figure), a video file (with its audio) or a table goes to the run folder
  and, when a W&B logger is attached, to W&B. Modules reach it through :func:`media_logger`,
  so none of them looks at the trainer's loggers itself.
* :class:`EMA` keeps an exponential moving average of one submodule's parameters (and a copy of
  its buffers), saved in and restored from checkpoints, so a resumed run's average is exactly
  the uninterrupted run's.

Both are plain Lightning callbacks and work without any logger (``fast_dev_run``).
"""

from __future__ import annotations

import contextlib
import csv
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from torch import nn

__all__ = ["EMA", "MediaLogger", "find_callback", "media_logger"]


def find_callback(trainer: L.Trainer, cls: type) -> Any | None:
    """The trainer's first callback of type ``cls``, or None."""
    return next((cb for cb in trainer.callbacks if isinstance(cb, cls)), None)


# --------------------------------------------------------------------------------------------
# Media
# --------------------------------------------------------------------------------------------


def _as_uint8_image(image: Any) -> np.ndarray:
    """(H, W) or (H, W, C) uint8 from an array or a (C, H, W) / (H, W) tensor in [0, 1] or
    0..255."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        if image.dim() == 3 and image.shape[0] in (1, 3, 4):
            image = image.permute(1, 2, 0)
        image = image.float().numpy() if image.dtype != torch.uint8 else image.numpy()
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"an image must be (H, W), (H, W, 3|4) or (C, H, W); got {array.shape}")
    if array.dtype != np.uint8:
        array = np.clip(np.nan_to_num(array.astype(np.float64)), 0.0, 1.0)
        array = np.round(array * 255.0).astype(np.uint8)
    return array


def _write_image(image: Any, path: Path) -> None:
    from matplotlib.figure import Figure

    if isinstance(image, Figure):
        image.savefig(path, format="png")
        image.clear()
        return
    from PIL import Image

    Image.fromarray(_as_uint8_image(image)).save(path, format="PNG")


class MediaLogger(Callback):
    """Images, videos and tables to ``<run folder>/<file>`` and to every attached W&B logger.

    Only global rank 0 writes; on other ranks every method returns None. ``file`` is relative
    to the run folder (the trainer's ``default_root_dir`` unless ``root`` is given) and
    defaults to ``<key>/step_<step>.<ext>``. The W&B step is the trainer's ``global_step``
    unless ``step`` is given.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else None
        self._trainer: L.Trainer | None = None
        self.written: list[Path] = []

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer
        if self.root is None:
            self.root = Path(trainer.default_root_dir)

    # ---------------------------------------------------------------- public API
    def log_image(
        self,
        key: str,
        image: Any,
        *,
        file: str | None = None,
        step: int | None = None,
        caption: str | None = None,
    ) -> Path | None:
        """An array, tensor or matplotlib figure as a PNG; returns its path."""
        path = self._path(key, file, step, ".png")
        if path is None:
            if hasattr(image, "clear") and not isinstance(image, (np.ndarray, torch.Tensor)):
                image.clear()  # a figure: free it on every rank
            return None
        _write_image(image, path)
        for logger in self._wandb_loggers():
            kwargs = {"caption": [caption]} if caption else {}
            logger.log_image(key=key, images=[str(path)], step=self._step(step), **kwargs)
        return path

    def log_video(
        self,
        key: str,
        video: str | Path,
        *,
        file: str | None = None,
        step: int | None = None,
        caption: str | None = None,
    ) -> Path | None:
        """A video file (mp4 with its audio track) copied into the run folder; returns its path."""
        source = Path(video)
        if not source.is_file():
            raise FileNotFoundError(source)
        path = self._path(key, file, step, source.suffix or ".mp4")
        if path is None:
            return None
        if source.resolve() != path.resolve():
            shutil.copyfile(source, path)
        for logger in self._wandb_loggers():
            kwargs = {"caption": [caption]} if caption else {}
            logger.log_video(key=key, videos=[str(path)], step=self._step(step), **kwargs)
        return path

    def log_table(
        self,
        key: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        file: str | None = None,
        step: int | None = None,
    ) -> Path | None:
        """Rows as a CSV file (and a W&B table); returns its path."""
        rows = [list(r) for r in rows]
        if any(len(r) != len(columns) for r in rows):
            raise ValueError(f"{key}: every row needs {len(columns)} values ({', '.join(columns)})")
        path = self._path(key, file, step, ".csv")
        if path is None:
            return None
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows(rows)
        for logger in self._wandb_loggers():
            logger.log_table(key=key, columns=list(columns), data=rows, step=self._step(step))
        return path

    # ---------------------------------------------------------------- helpers
    def _is_writer(self) -> bool:
        return self._trainer is None or self._trainer.is_global_zero

    def _step(self, step: int | None) -> int | None:
        if step is not None:
            return step
        return int(self._trainer.global_step) if self._trainer is not None else None

    def _path(self, key: str, file: str | None, step: int | None, ext: str) -> Path | None:
        if not self._is_writer():
            return None
        if self.root is None:
            raise RuntimeError("MediaLogger has no run folder: attach it to a Trainer or pass root")
        if file is None:
            s = self._step(step)
            file = f"{key}/step_{s if s is not None else 0:06d}{ext}"
        path = self.root / file
        path.parent.mkdir(parents=True, exist_ok=True)
        self.written.append(path)
        return path

    def _wandb_loggers(self) -> list[WandbLogger]:
        if self._trainer is None:
            return []
        return [lg for lg in self._trainer.loggers if isinstance(lg, WandbLogger)]


def media_logger(trainer: L.Trainer) -> MediaLogger:
    """The trainer's :class:`MediaLogger`; a disk-only one in its ``default_root_dir`` if the
    trainer was built without one (unit tests, notebooks)."""
    found = find_callback(trainer, MediaLogger)
    if found is None:
        found = MediaLogger()
        found.setup(trainer, None, "fit")  # type: ignore[arg-type]
        trainer.callbacks.append(found)
    return found


# --------------------------------------------------------------------------------------------
# EMA
# --------------------------------------------------------------------------------------------


class EMA(Callback):
    """Exponential moving average of ``pl_module.<attribute>``'s parameters.

    ``avg <- decay * avg + (1 - decay) * param`` after every ``every_n_batches``-th training
    batch (``every_n_batches=0``: only when the module calls :meth:`update`, e.g. after each
    generator step of a GAN); buffers (BatchNorm statistics) are copied. The average lives in
    float32 on the module's device, is saved in the callback's checkpoint state and restored
    on resume. :meth:`averaged` swaps the average into the module for a ``with`` block
    (sampling, evaluation), :meth:`copy` returns a separate module holding it.
    """

    def __init__(self, attribute: str, decay: float = 0.999, every_n_batches: int = 1) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        if every_n_batches < 0:
            raise ValueError(f"every_n_batches must be >= 0, got {every_n_batches}")
        self.attribute, self.decay, self.every_n_batches = attribute, float(decay), every_n_batches
        self.shadow: dict[str, torch.Tensor] = {}
        self.num_updates = 0
        self._pending: dict[str, Any] | None = None

    @property
    def state_key(self) -> str:
        return f"EMA[{self.attribute}]"

    def target(self, pl_module: L.LightningModule) -> nn.Module:
        module = pl_module
        for part in self.attribute.split("."):
            module = getattr(module, part)
        return module

    def _init_shadow(self, module: nn.Module) -> None:
        self.shadow = {
            name: t.detach().clone().float() if t.is_floating_point() else t.detach().clone()
            for name, t in module.state_dict().items()
        }

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        module = self.target(pl_module)
        if self._pending is not None:  # restored from a checkpoint before the module was known
            self.shadow = {
                k: v.to(module.state_dict()[k].device) for k, v in self._pending["shadow"].items()
            }
            self.num_updates = int(self._pending["num_updates"])
            self._pending = None
        elif not self.shadow:
            self._init_shadow(module)

    @torch.no_grad()
    def update(self, pl_module: L.LightningModule) -> None:
        """One averaging step from the module's current weights."""
        module = self.target(pl_module)
        if not self.shadow:
            self._init_shadow(module)
        params = dict(module.named_parameters())
        for name, value in module.state_dict().items():
            avg = self.shadow[name]
            if avg.device != value.device:
                avg = self.shadow[name] = avg.to(value.device)
            if name in params and value.is_floating_point():
                avg.lerp_(value.float(), 1.0 - self.decay)
            else:
                avg.copy_(value)
        self.num_updates += 1

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self.every_n_batches and (batch_idx + 1) % self.every_n_batches == 0:
            self.update(pl_module)

    @contextlib.contextmanager
    def averaged(self, pl_module: L.LightningModule) -> Iterator[nn.Module]:
        """The tracked module with the averaged weights loaded, restored afterwards."""
        module = self.target(pl_module)
        if not self.shadow:
            self._init_shadow(module)
        saved = {k: v.detach().clone() for k, v in module.state_dict().items()}
        module.load_state_dict({k: v.to(saved[k].dtype) for k, v in self.shadow.items()})
        try:
            yield module
        finally:
            module.load_state_dict(saved)

    def copy(self, pl_module: L.LightningModule) -> nn.Module:
        """A deep copy of the tracked module holding the averaged weights."""
        import copy

        with self.averaged(pl_module) as module:
            return copy.deepcopy(module)

    def state_dict(self) -> dict[str, Any]:
        return {
            "shadow": {k: v.detach().cpu() for k, v in self.shadow.items()},
            "num_updates": self.num_updates,
            "decay": self.decay,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = {
            "shadow": dict(state_dict["shadow"]),
            "num_updates": state_dict["num_updates"],
        }
        self.shadow = {}
