"""During training: a few validation sequences as small videos every n-th validation.

:class:`ValidationVideos` keeps the first ``sequences`` validation sequences of the epoch (their
audio, template, style and ground truth), and after every ``every_n_val``-th validation (sanity
checks not counted) predicts them autoregressively and renders each as the prediction
(coloured by its error) beside the ground truth, ``size`` pixels a panel, with the speech.
The videos go through the shared media logger: ``<run>/val/videos/epoch_XXX_<sequence>.mp4`` and
W&B (``val/video``). Rank 0 only. Unseen subjects speak in the first condition of the model's
``unseen_condition`` policy. A renderer that cannot start (no EGL, no open3d) or a data set
without a topology PLY is one warning, and training goes on without videos.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from datamodules.errors import DataError
from lightning_modules.callbacks import media_logger

from .render import RenderError


class ValidationVideos(Callback):
    """Render ``sequences`` validation sequences every ``every_n_val`` validations.

    ``topology``: the PLY of the mesh (None: the datamodule's data set's own,
    :func:`datamodules.face.topology.default_topology_path`).
    """

    def __init__(
        self,
        every_n_val: int = 10,
        sequences: int = 1,
        size: int = 256,
        topology: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.every_n_val, self.sequences, self.size = every_n_val, sequences, size
        self.topology, self.timeout = topology, timeout
        self.validations = 0
        self.disabled = every_n_val <= 0 or sequences <= 0
        self._kept: list[dict[str, Any]] = []
        self._faces: np.ndarray | None = None
        self.written: list[Path] = []

    def _due(self, trainer: L.Trainer) -> bool:
        return (
            not self.disabled
            and not trainer.sanity_checking
            and trainer.is_global_zero
            and (self.validations + 1) % self.every_n_val == 0
        )

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._kept = []

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not self._due(trainer) or len(self._kept) >= self.sequences:
            return
        frames, samples = batch["frame_mask"].sum(1), batch["audio_mask"].sum(1)
        for i in range(len(batch["name"])):
            if len(self._kept) >= self.sequences:
                break
            self._kept.append(
                {
                    "name": batch["name"][i],
                    "audio": batch["audio"][i, : int(samples[i])].detach().cpu(),
                    "template": batch["template"][i].detach().cpu(),
                    "style": int(batch["style"][i]),
                    "truth": batch["vertices"][i, : int(frames[i])].detach().cpu(),
                }
            )

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        due = self._due(trainer)
        self.validations += 1
        if not due or not self._kept:
            return
        try:
            self._render(trainer, pl_module)
        except (DataError, OSError) as err:  # no renderer, no topology: go on without videos
            self.disabled = True
            warnings.warn(f"validation videos are off: {err}", stacklevel=2)
        finally:
            self._kept = []

    def _faces_of(self, trainer: L.Trainer, num_vertices: int) -> np.ndarray:
        from datamodules.face.topology import default_topology_path, load_topology

        if self._faces is None:
            path = self.topology
            if path is None:
                dm = trainer.datamodule
                if dm is None or not hasattr(dm, "protocol"):
                    raise RenderError("no topology: pass render topology (data.topology)")
                path = default_topology_path(dm.root, dm.protocol.name)
            self._faces = load_topology(path, num_vertices).faces
        return self._faces

    @torch.no_grad()
    def _render(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from .face_video import render_comparison
        from .metrics import condition_indices

        net = pl_module.net
        subjects = list(pl_module.train_subjects)
        policy = pl_module.options.unseen_condition
        fps = int(pl_module.hparams["fps"])
        epoch = trainer.current_epoch
        logger = media_logger(trainer)
        was_training = pl_module.training
        pl_module.eval()
        try:
            for seq in self._kept:
                style = condition_indices(policy, seq["style"], subjects)[0]
                device = pl_module.device
                vertices, _ = net.predict(
                    seq["audio"][None].to(device),
                    seq["template"][None].to(device),
                    torch.tensor([style], device=device),
                )
                prediction = vertices[0].float().cpu().numpy()
                truth = seq["truth"].numpy()
                faces = self._faces_of(trainer, truth.shape[1] // 3)
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / "video.mp4"
                    render_comparison(
                        path,
                        faces,
                        prediction,
                        truth,
                        fps,
                        seq["audio"].numpy(),
                        16000,
                        size=self.size,
                        template=seq["template"].numpy(),
                        corner=f"epoch {epoch}",
                        timeout=self.timeout,
                        progress=False,
                    )
                    written = logger.log_video(
                        "val/video",
                        path,
                        file=f"val/videos/epoch_{epoch:03d}_{seq['name']}.mp4",
                        caption=f"{seq['name']} (condition {subjects[style]}), epoch {epoch}",
                    )
                if written is not None:
                    self.written.append(written)
        finally:
            pl_module.train(was_training)
