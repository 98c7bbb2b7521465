"""DualTalker as a LightningModule: speech-driven facial animation trained jointly with lip
reading, one optimiser, one backward pass per batch (docs/dualtalker.md, "The suite's choices").

    training:   L = L_rec + E (lambda_dual L_dual + lambda_cons L_cons), E each sequence's
                motion energy (``losses.compute_losses``, the one place the total is formed)
                teacher-forced or autoregressive per ``model.teacher_forcing`` (FaceFormer
                trains autoregressively)
    validation: FaceFormer's: the teacher-forced losses; an unseen subject's loss is the mean
                over every training-subject condition. Every ``evaluation.metrics_every_n_epochs``
                epochs also the test metrics below on the validation split.
    test:       autoregressive prediction from the audio alone; LVE and FDD in the papers' units
                (CodeTalker's ``cal_metric.py``), unseen subjects conditioned by
                ``model.unseen_condition``; each prediction written as CodeTalker does
                (``predictions/<subject>_<sentence>_condition_<subject>.npy``, (T, V*3)); the
                per-vertex error plot through the media logger.
    predict:    ``trainer.predict`` (``predict_step``): the same autoregressive prediction from
                audio, template and condition alone (no ground truth), round(seconds x fps)
                frames, any length (memory linear in it), one record per sequence and condition.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from lightning_modules.callbacks import media_logger
from lightning_modules.options import as_config, plain

from .config import EvalConfig, OptimConfig
from .lip_reader import CharVocab
from .losses import compute_losses
from .metrics import PAPER_UNITS, LipVertexError, UpperFaceDynamicsDeviation, condition_indices
from .network import DualTalker, DualTalkerOptions
from .plots import PerVertexError, vertex_error_figure

STAGES = ("val", "test")
REGIONS_KEY = "face_regions"  # the checkpoint entry holding the LVE / FDD vertex sets


class DualTalkerModule(L.LightningModule):
    """Train and evaluate :class:`~lightning_modules.dualtalker.network.DualTalker`.

    Args:
        model: :class:`DualTalkerOptions` (or a mapping of some of its fields): the network and
            its loss weights.
        num_vertices: vertices of the data set's meshes (VOCA 5023, BIWI 23370).
        train_subjects: the training subjects in style-index order (the one-hot's meaning).
        fps: motion frame rate (VOCA 30, BIWI 25).
        dataset: ``vocaset`` or ``biwi``: the papers' units of LVE and FDD.
        lip_vertices / upper_face_vertices: vertex ids of LVE's lip set and FDD's upper face;
            None leaves that metric out. Stored in checkpoints as their own entry
            (``face_regions``), not in the state dict nor as hyper-parameters: the state dict's
            keys and shapes stay those of the network, so checkpoints written before the entry
            existed still load strictly. Loading restores a set the constructor was not given
            (e.g. a test folder without region files); a set given here wins, with a warning
            when the checkpoint's differs.
        optim: :class:`OptimConfig` (or a mapping); evaluation: :class:`EvalConfig`.
    """

    def __init__(
        self,
        model: DualTalkerOptions | dict | None,
        num_vertices: int,
        train_subjects: list[str],
        fps: int,
        dataset: str = "vocaset",
        lip_vertices: torch.Tensor | list[int] | None = None,
        upper_face_vertices: torch.Tensor | list[int] | None = None,
        optim: OptimConfig | dict | None = None,
        evaluation: EvalConfig | dict | None = None,
    ) -> None:
        super().__init__()
        self.options = as_config(DualTalkerOptions, model)
        self.optim_cfg = as_config(OptimConfig, optim)
        self.eval_cfg = as_config(EvalConfig, evaluation)
        # Hyper-parameters as plain dicts: checkpoints load with weights_only=True.
        model, optim, evaluation = plain(self.options), plain(self.optim_cfg), plain(self.eval_cfg)
        train_subjects = [str(s) for s in train_subjects]
        self.save_hyperparameters(ignore=["lip_vertices", "upper_face_vertices"])
        self.train_subjects = train_subjects
        vocab = CharVocab() if self.options.uses_ctc else None
        self.net = DualTalker(
            self.options, num_vertices, len(train_subjects), fps, vocab=vocab, dataset=dataset
        )
        self.units = PAPER_UNITS[dataset]
        self.lips = (
            None if lip_vertices is None else torch.as_tensor(lip_vertices, dtype=torch.long)
        )
        self.upper = (
            None
            if upper_face_vertices is None
            else torch.as_tensor(upper_face_vertices, dtype=torch.long)
        )
        self.scores = nn.ModuleDict({stage: self._stage_metrics(num_vertices) for stage in STAGES})

    def _stage_metrics(self, num_vertices: int) -> nn.ModuleDict:
        metrics = nn.ModuleDict({"vertex_error": PerVertexError(num_vertices)})
        if self.lips is not None:
            metrics["lve"] = LipVertexError(self.lips, unit=self.units["lve"])
        if self.upper is not None:
            metrics["fdd"] = UpperFaceDynamicsDeviation(self.upper, unit=self.units["fdd"])
        return metrics

    # ------------------------------------------------------------------ training

    def forward(
        self,
        batch: dict[str, Any],
        style: torch.Tensor | None = None,
        teacher_forcing: bool | None = None,
    ):
        """The network on a batch of ``datamodules.face.datamodule`` (``style`` overrides the
        batch's)."""
        return self.net(
            batch["audio"],
            batch["audio_mask"],
            batch["vertices"],
            batch["frame_mask"],
            batch["template"],
            batch["style"] if style is None else style,
            text=batch.get("text"),
            names=batch.get("name"),
            teacher_forcing=teacher_forcing,
        )

    def losses(self, out) -> dict[str, torch.Tensor]:
        """Every loss term by name, ``loss`` the total (computed in ``losses.compute_losses``)."""
        return compute_losses(out, self.options)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        parts = self.losses(self(batch))
        size = len(batch["name"])
        self.log(
            "train/loss", parts["loss"], prog_bar=True, on_step=True, on_epoch=True, batch_size=size
        )
        self.log_dict(
            {f"train/{k}": v for k, v in parts.items() if k != "loss"},
            on_step=True,
            on_epoch=True,
            batch_size=size,
        )
        return parts["loss"]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        cfg = self.optim_cfg
        params = [p for p in self.parameters() if p.requires_grad]  # the wav2vec CNN is frozen
        return torch.optim.Adam(
            params,
            lr=cfg.lr,
            betas=tuple(cfg.betas),
            eps=cfg.eps,
            weight_decay=cfg.weight_decay,
            fused=cfg.fused,
            foreach=None if cfg.fused else True,
        )

    # ------------------------------------------------------------------ validation

    def teacher_forced_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """FaceFormer's validation loss: seen subjects with their own condition; an unseen one
        (style -1) once per training-subject condition, averaged. The losses are means over
        sequences, so the mean over conditions is each sequence's condition-averaged loss."""
        style = batch["style"]
        unseen = style < 0
        if not bool(unseen.any()):
            return self.losses(self(batch, teacher_forcing=True))
        runs = [
            self.losses(self(batch, style=torch.where(unseen, c, style), teacher_forcing=True))
            for c in range(len(self.train_subjects))
        ]
        return {k: torch.stack([r[k] for r in runs]).mean() for k in runs[0]}

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        parts = self.teacher_forced_losses(batch)
        self.log_dict(
            {f"val/{k}": v for k, v in parts.items()},
            batch_size=len(batch["name"]),
            sync_dist=True,
            prog_bar=False,
        )
        if self._scores_this_epoch():
            self.score(batch, "val")

    def on_validation_epoch_end(self) -> None:
        if self._scores_this_epoch():
            self._log_scores("val")

    def _scores_this_epoch(self) -> bool:
        every, trainer = self.eval_cfg.metrics_every_n_epochs, self.trainer
        if trainer.sanity_checking or every <= 0:
            return False
        if trainer.state.fn != "fit":
            return True
        epoch = trainer.current_epoch + 1
        return epoch % every == 0 or epoch == trainer.max_epochs

    # ------------------------------------------------------------------ test

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.score(batch, "test", write=self.eval_cfg.write_predictions)

    def on_test_epoch_end(self) -> None:
        self._log_scores("test")

    def conditioned_predictions(self, batch: dict[str, Any], from_audio: bool = False):
        """Autoregressive predictions of a batch under the conditioning policy: a list of
        ``(sample indices, condition names, vertices (b, T, V*3), frame_mask (b, T))``.

        The frame count is the ground truth's (``frame_mask``), or with ``from_audio`` (or no
        ``frame_mask`` in the batch) the audio's: round(seconds x fps), the frames covering it.

        A training subject is conditioned on itself; the unseen ones (style -1) on
        ``condition_indices(model.unseen_condition)``: every training subject (``all``, each
        prediction scored as a sequence), their mean prediction (``mean``) or one subject."""
        style = torch.as_tensor(batch["style"], device=batch["audio"].device)
        lengths = None if from_audio or "frame_mask" not in batch else batch["frame_mask"].sum(1)
        audio_mask = batch.get("audio_mask")
        groups = []

        def predict(idx: torch.Tensor, styles: torch.Tensor):
            """(K, b, T, V*3) vertices under the (K, b) conditions, and the (b, T) mask."""
            return self.net.predict_conditions(
                batch["audio"][idx],
                batch["template"][idx],
                styles,
                audio_mask=None if audio_mask is None else audio_mask[idx],
                num_frames=None if lengths is None else lengths[idx],
            )

        seen = (style >= 0).nonzero().flatten()
        if len(seen):
            own = [self.train_subjects[int(s)] for s in style[seen]]
            vertices, mask = predict(seen, style[seen][None])
            groups.append((seen, own, vertices[0], mask))
        unseen = (style < 0).nonzero().flatten()
        if len(unseen):
            policy = self.options.unseen_condition
            conditions = condition_indices(policy, -1, self.train_subjects)
            # every condition of every unseen sequence: the audio encoded once, one batched
            # autoregressive pass
            cond = torch.tensor(conditions, device=style.device)[:, None].expand(-1, len(unseen))
            runs, mask = predict(unseen, cond)
            if policy == "mean":
                groups.append((unseen, ["mean"] * len(unseen), runs.mean(0), mask))
            else:
                for c, vertices in zip(conditions, runs):
                    groups.append((unseen, [self.train_subjects[c]] * len(unseen), vertices, mask))
        return groups

    def score(self, batch: dict[str, Any], stage: str, write: bool = False) -> None:
        """Predict, update the stage's LVE/FDD/per-vertex error; optionally write the files."""
        metrics = self.scores[stage]
        for idx, conditions, vertices, mask in self.conditioned_predictions(batch):
            length = vertices.shape[1]
            target = batch["vertices"][idx][:, :length]
            mask = mask & batch["frame_mask"][idx][:, :length]
            template = batch["template"][idx]
            metrics["vertex_error"].update(vertices, target, mask)
            if "lve" in metrics:
                metrics["lve"].update(vertices, target, mask)
            if "fdd" in metrics:
                metrics["fdd"].update(vertices, target, template, mask)
            if write:
                names = [batch["name"][int(i)] for i in idx]
                folder = Path(self.trainer.default_root_dir) / "predictions"
                self.write_predictions(folder, names, conditions, vertices, mask)

    # ------------------------------------------------------------------ checkpoints

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[REGIONS_KEY] = {
            name: None if ids is None else ids.detach().cpu().clone()
            for name, ids in (("lip_vertices", self.lips), ("upper_face_vertices", self.upper))
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stored = checkpoint.get(REGIONS_KEY)
        if not stored:  # a checkpoint from before the entry: keep the sets given
            return
        changed = False
        for name, attribute in (("lip_vertices", "lips"), ("upper_face_vertices", "upper")):
            mine, theirs = getattr(self, attribute), stored.get(name)
            if theirs is None:
                continue
            theirs = torch.as_tensor(theirs, dtype=torch.long)
            if mine is None:
                setattr(self, attribute, theirs)
                changed = True
            elif not torch.equal(mine.cpu(), theirs):
                warnings.warn(
                    f"{name}: the checkpoint's set ({len(theirs)} vertices) differs from the "
                    f"data's ({len(mine)}); the data's is used",
                    stacklevel=2,
                )
        if changed:
            num_vertices = self.net.head.out_features // 3
            self.scores = nn.ModuleDict(
                {stage: self._stage_metrics(num_vertices) for stage in STAGES}
            ).to(self.device)

    # ------------------------------------------------------------------ predict

    def predict_step(
        self, batch: dict[str, Any], batch_idx: int = 0, dataloader_idx: int = 0
    ) -> list[dict[str, Any]]:
        """``trainer.predict``: animate each sequence from its audio alone, no ground truth.

        The batch needs ``audio`` (B, S) 16 kHz, ``template`` (B, V*3), ``style`` (B,)
        (a training subject's index, or -1: ``model.unseen_condition``) and ``name``;
        ``audio_mask`` for a padded batch. Any length of audio: memory grows linearly with it
        (``DualTalker.predict``). Each sequence gets round(seconds x fps) frames, so the
        prediction covers its audio (and any ground truth of the datamodule, which is cut to
        the audio). Returns one record per sequence and condition: ``name``, ``condition`` (a
        training subject, or ``mean``) and ``vertices`` float32 (T, V*3) on the CPU; with
        ``evaluation.write_predictions`` each is also written as CodeTalker's
        ``predictions/<name>_condition_<condition>.npy`` under the Trainer's root (every rank
        its own sequences; nothing is written when called without a Trainer).
        """
        records = []
        for idx, conditions, vertices, mask in self.conditioned_predictions(batch, True):
            names = [batch["name"][int(i)] for i in idx]
            if self.eval_cfg.write_predictions and self._trainer is not None:
                folder = Path(self.trainer.default_root_dir) / "predictions"
                self.write_predictions(folder, names, conditions, vertices, mask)
            for name, condition, v, m in zip(names, conditions, vertices, mask):
                records.append(
                    {"name": name, "condition": condition, "vertices": v[m].float().cpu()}
                )
        return records

    def condition_index(self, subject: str) -> int:
        """The style index of training subject ``subject``; ValueError naming the choices."""
        if subject not in self.train_subjects:
            raise ValueError(
                f"condition {subject!r} is not a training subject; use one of "
                f"{', '.join(self.train_subjects)}"
            )
        return self.train_subjects.index(subject)

    @staticmethod
    def write_predictions(
        folder: Path,
        names: list[str],
        conditions: list[str],
        vertices: torch.Tensor,
        frame_mask: torch.Tensor,
    ) -> None:
        """``folder/<subject>_<sentence>_condition_<c>.npy``: (T, V*3) float32 absolute vertices,
        the real frames only (CodeTalker's layout; under DDP every rank writes its own)."""
        folder.mkdir(parents=True, exist_ok=True)
        for name, condition, v, m in zip(names, conditions, vertices, frame_mask):
            array = v[m].reshape(int(m.sum()), -1).float().cpu().numpy()
            np.save(folder / f"{name}_condition_{condition}.npy", array)

    def _log_scores(self, stage: str) -> None:
        metrics = self.scores[stage]
        errors = metrics["vertex_error"]
        if not errors.update_count:
            return
        values = {
            f"{stage}/{name}": metrics[name].compute() for name in ("lve", "fdd") if name in metrics
        }
        self.log_dict(values, prog_bar=stage == "val")
        per_vertex = errors.compute()
        if self.eval_cfg.plots:
            self._plot(stage, per_vertex)
        for metric in metrics.values():
            metric.reset()

    def _plot(self, stage: str, per_vertex: torch.Tensor) -> None:
        """The per-vertex error drawn on a template of the datamodule (the first training
        subject's); nothing without a datamodule (a bare ``trainer.test`` on loaders)."""
        template = self._plot_template()
        if template is None:
            return
        lips = None if self.lips is None else self.lips.cpu().numpy()
        figure = vertex_error_figure(
            template,
            per_vertex.cpu().numpy(),
            lips,
            title=f"{stage} per-vertex error"
            + (f", epoch {self.current_epoch}" if self.trainer.state.fn == "fit" else ""),
        )
        media_logger(self.trainer).log_image(f"{stage}/vertex_error", figure)

    def _plot_template(self) -> np.ndarray | None:
        datamodule = getattr(self.trainer, "datamodule", None)
        templates = getattr(datamodule, "templates", None)
        if not templates:
            return None
        template = templates.get(self.train_subjects[0], next(iter(templates.values())))
        return np.asarray(template, dtype=np.float64)
