"""DualTalker (and its FaceFormer baseline) as an experiment system: configs and the builder.

``python -m experiments train dualtalker_voca data.root=data/vocaset
model.audio_encoder=/models/wav2vec2-base-960h`` composes :class:`DualTalkerConfig` (defaults)
<- the experiment YAML <- the overrides; :func:`build` returns the face datamodule and
:class:`~lightning_modules.dualtalker.module.DualTalkerModule`. ``faceformer_*`` experiments
are the same network with the dual task and the consistency loss off
(``model.dual_target=none model.consistency=none``). ``eval`` (``make eval-dualtalker
ckpt=...``) validates, tests (LVE/FDD in the papers' units, predictions as .npy files) and
writes ``face_metrics.json`` in its run folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from datamodules.errors import DataError
from datamodules.face.datamodule import FaceDataModule, FaceDataOptions
from datamodules.face.synthetic import ensure_synthetic_voca
from experiments.config import CheckpointConfig, ConfigError, RunConfig, TrainerConfig
from experiments.dashboard import Section, line, media
from experiments.registry import RunContext, SystemSpec
from experiments.systems.dualtalker.render import RenderConfig, render_command
from experiments.trainer import env_rank
from lightning_modules.dualtalker import DualTalkerOptions
from lightning_modules.dualtalker.config import EvalConfig, OptimConfig
from lightning_modules.dualtalker.metrics import PAPER_UNITS, check_unseen_condition
from lightning_modules.dualtalker.module import DualTalkerModule
from lightning_modules.options import as_config

SPEECH_ENGINES = ("auto", "espeak", "formant")


@dataclass
class DualTalkerDataConfig(FaceDataOptions):
    """The face data (``datamodules.face.datamodule``); ``generate`` writes the synthetic data
    set."""

    # true: when data.root holds no data yet, write the synthetic talking heads in the VOCASET
    # release format and convert them into root (make prepare-voca's code)
    generate: bool = False
    speech: str = "auto"  # generated audio: espeak-ng (auto: when installed) or formant speech
    # the mesh's PLY for rendering (null: the data set's own; datamodules.face.topology)
    topology: Optional[str] = None


@dataclass
class DualTalkerModelConfig(DualTalkerOptions):
    """The network and its loss weights (``lightning_modules.dualtalker.DualTalkerOptions``)."""


@dataclass
class DualTalkerConfig(RunConfig):
    system: str = "dualtalker"
    data: DualTalkerDataConfig = field(default_factory=DualTalkerDataConfig)
    model: DualTalkerModelConfig = field(default_factory=DualTalkerModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    render: RenderConfig = field(default_factory=RenderConfig)  # make render, training videos
    # FaceFormer: 100 epochs of batch 1. The datamodule shards every split across ranks itself.
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(max_epochs=100, use_distributed_sampler=False)
    )
    # FaceFormer keeps the weights of every 25th epoch and tests epoch 100: no "best" choice.
    checkpoint: CheckpointConfig = field(
        default_factory=lambda: CheckpointConfig(monitor=None, save_top_k=-1, every_n_epochs=25)
    )


# ------------------------------------------------------------------------------ checks


def validate(cfg: DictConfig) -> None:
    """The model options' own checks and the data set name, as config errors."""
    try:
        options = as_config(DualTalkerOptions, OmegaConf.to_object(cfg.model))
    except ValueError as e:
        raise ConfigError(str(e) if str(e).startswith("model.") else f"model: {e}") from e
    if cfg.data.dataset not in PAPER_UNITS:
        raise ConfigError(
            f"data.dataset: expected one of {', '.join(PAPER_UNITS)}, got {cfg.data.dataset!r}"
        )
    if cfg.data.speech not in SPEECH_ENGINES:
        raise ConfigError(
            f"data.speech: expected one of {', '.join(SPEECH_ENGINES)}, got {cfg.data.speech!r}"
        )
    if cfg.data.generate and cfg.data.dataset != "vocaset":
        raise ConfigError(
            "data.generate writes a VOCASET-format data set: set data.dataset=vocaset"
        )
    if cfg.data.train_subjects is not None:
        try:
            check_unseen_condition(options.unseen_condition, list(cfg.data.train_subjects))
        except ValueError as e:
            raise ConfigError(str(e)) from e
    if cfg.optim.lr <= 0:
        raise ConfigError(f"optim.lr must be positive, got {cfg.optim.lr}")
    if cfg.evaluation.metrics_every_n_epochs < 0:
        raise ConfigError("evaluation.metrics_every_n_epochs must be >= 0 (0 = only at test)")


# ------------------------------------------------------------------------------ data


def datamodule(cfg: DictConfig, checkpoint: dict | None = None) -> FaceDataModule:
    """The face datamodule of ``cfg.data`` (the synthetic set written first if asked)."""
    if cfg.data.generate and env_rank() == 0:
        ensure_synthetic_voca(cfg.data.root, engine=cfg.data.speech)
    return FaceDataModule.from_options(cfg.data, seed=cfg.seed)


def _regions(dm: FaceDataModule) -> tuple[object, object]:
    """The lip and upper-face sets, each None (that metric off, one warning) when the data has
    none."""
    found = []
    for name in ("lip_vertices", "upper_face_vertices"):
        try:
            found.append(getattr(dm, name))
        except DataError as e:
            if env_rank() == 0:
                print(
                    f"warning: {e}; its metric ({'LVE' if name == 'lip_vertices' else 'FDD'}) is "
                    "left out",
                    flush=True,
                )
            found.append(None)
    return found[0], found[1]


def build(cfg: DictConfig, checkpoint: dict | None) -> tuple[DualTalkerModule, FaceDataModule]:
    """Datamodule first (its subjects, frame rate and mesh size shape the network), then the
    module. A run rebuilt from a checkpoint keeps the checkpoint's training subjects: the
    one-hot style indices must mean the same speakers."""
    dm = datamodule(cfg, checkpoint)
    # eval of a checkpoint reads no training sequence (a resumed fit reads them when it starts)
    dm.setup("validate" if checkpoint is not None else "fit")
    subjects = dm.train_subjects
    if checkpoint is not None:
        stored = list(checkpoint["hyper_parameters"]["train_subjects"])
        if stored != subjects:
            raise ConfigError(
                f"data.train_subjects={subjects} differs from the checkpoint's {stored}: "
                "the style one-hot indices would mean other speakers"
            )
    try:
        check_unseen_condition(cfg.model.unseen_condition, subjects)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    lips, upper = _regions(dm)
    module = DualTalkerModule(
        model=as_config(DualTalkerOptions, OmegaConf.to_object(cfg.model)),
        num_vertices=dm.num_vertices,
        train_subjects=subjects,
        fps=dm.fps,
        dataset=cfg.data.dataset,
        lip_vertices=lips,
        upper_face_vertices=upper,
        optim=OmegaConf.to_object(cfg.optim),
        evaluation=OmegaConf.to_object(cfg.evaluation),
    )
    return module, dm


# ------------------------------------------------------------------------------ outputs


def after_eval(ctx: RunContext) -> None:
    """``face_metrics.json``: LVE and FDD in the papers' units, with the protocol behind them."""
    if not ctx.trainer.is_global_zero:
        return
    test = ctx.metrics.get("test", {})
    val = ctx.metrics.get("validate", {})
    dataset = str(ctx.cfg.data.dataset)
    units = PAPER_UNITS[dataset]
    predictions = Path(ctx.run_dir) / "predictions"
    report = {
        "checkpoint": str(ctx.cfg.ckpt),
        "dataset": dataset,
        "test_subjects": list(ctx.datamodule.subjects["test"]),
        "unseen_condition": str(ctx.cfg.model.unseen_condition),
        "units": {"lve": f"x {units['lve']:g} (mm in the papers)", "fdd": f"x {units['fdd']:g}"},
        "test": {k.split("/", 1)[1]: test[k] for k in ("test/lve", "test/fdd") if k in test},
        "val": {
            k.split("/", 1)[1]: val[k]
            for k in ("val/loss", "val/rec", "val/lve", "val/fdd")
            if k in val
        },
        "predictions": str(predictions) if predictions.is_dir() else None,
        "prediction_files": len(list(predictions.glob("*.npy"))) if predictions.is_dir() else 0,
    }
    (Path(ctx.run_dir) / "face_metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    lve, fdd = report["test"].get("lve"), report["test"].get("fdd")
    print(
        f"{dataset} test: LVE {lve if lve is None else f'{lve:.4f}'} (x{units['lve']:g}), "
        f"FDD {fdd if fdd is None else f'{fdd:.4f}'} (x{units['fdd']:g}); "
        f"{report['prediction_files']} predictions in {predictions}"
    )


def validation_videos(cfg: DictConfig) -> list:
    """Every ``render.every_n_val``-th validation: a few sequences as videos (media logger)."""
    from lightning_modules.dualtalker.video_callback import ValidationVideos

    r = cfg.render
    if r.every_n_val <= 0:
        return []
    return [
        ValidationVideos(
            r.every_n_val, r.val_sequences, r.val_size, cfg.data.topology, float(r.timeout)
        )
    ]


SPEC = SystemSpec(
    name="dualtalker",
    dashboard=lambda cfg: [
        Section(
            "Losses",
            (
                line("train/loss_epoch", "val/loss"),
                line("val/rec", "val/dual", "val/cons", log_y=True),
            ),
        ),
        Section("Lip sync", (line("val/lve"), line("val/fdd"), media("val/vertex_error"))),
        Section("Videos", (media("val/video"),)),
    ],
    summaries=lambda cfg: [("val/lve", "min"), ("test/lve", "min")],
    config_cls=DualTalkerConfig,
    build=build,
    datamodule=datamodule,
    validate=validate,
    # wav2vec 2.0's LayerDrop and SpecAugment's mask embedding leave parameters without a
    # gradient in some steps
    find_unused_parameters=True,
    after_eval=after_eval,
    callbacks=validation_videos,
    extra_commands={"render": render_command},
)
