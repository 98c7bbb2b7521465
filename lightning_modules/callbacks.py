"""Callbacks shared by every system: the media logger.

* :class:`MediaLogger` is the one way a module shows a person something: an image (an array, a
  tensor or a matplotlib figure), a video file (with its audio) or a table goes to the run folder
  and, when a W&B logger is attached, to W&B. Modules reach it through :func:`media_logger`,
  so none of them looks at the trainer's loggers itself.

Averages of weights (the alphaGAN generator's EMA) use ``torch.optim.swa_utils.AveragedModel``
inside the module, which saves and resumes them with its ``state_dict``.

It is a plain Lightning callback and works without any logger (``fast_dev_run``).
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger

from lightning_modules.figures import save_figure

__all__ = ["MediaLogger", "find_callback", "media_logger"]


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
        save_figure(image, path)
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
