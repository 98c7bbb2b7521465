"""Retraining an alphaGAN genotype, and scoring and sampling it (docs/alphagan.md, "Retraining
recipe of the reference" and "IS and FID").

``python -m experiments train alphagan_train_cifar10 model.genotype=alphagan_l|FILE`` retrains
the genotype (:class:`~lightning_modules.alphagan.retrain.AlphaGANRetrain`) on the whole train
split (STL-10: train + unlabeled at 48x48, the genotype retargeted to bottom width 6). Every
``train.eval_every`` G iterations and at the end it scores ``metrics.train_samples`` EMA samples
and writes the fixed-z grids (EMA and raw G) and ``evaluations.csv``; the checkpoint kept as
best is chosen by ``metrics.select_on`` (``holdout``: FID against the held-out test images, which
the generator is not scored on; ``last``; ``test``: the scored FID, the reference's protocol).
When training ends the run folder gets ``selection.json`` and the selection is printed.

``python -m experiments eval ckpt=PATH`` scores ``metrics.eval_samples`` (50,000) samples of the
EMA generator: IS (mean ± std over 10 splits) and FID, printed and written to ``scores.json``.

``python -m experiments sample ckpt=PATH n=50000 out=DIR [seed=S] [batch=B]`` writes
``DIR/000000.png`` ... and ``DIR/samples.npz`` (``arr_0``: uint8 ``(n, H, W, 3)``); ``n <= 64``
also writes ``DIR/grid.png``. A checkpoint of another system, ``n`` not a positive integer or an
``out`` folder that holds files is one error line, exit 2, nothing written.

Trainer notes: manual optimisation (``trainer.gradient_clip_val`` null); the run's length is
``train.g_iters`` (the module stops the Trainer), so ``trainer.max_epochs`` is -1; D's
parameters get no gradient in the G step, so DDP runs with ``find_unused_parameters``;
precision ``32-true`` or ``bf16-mixed``.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset, Sampler

from datamodules.images.datamodule import ImageDataModule
from experiments.config import (
    CheckpointConfig,
    ConfigError,
    RunConfig,
    TrainerConfig,
    require_positive,
)
from experiments.dashboard import Section, line, media
from experiments.registry import RunContext, SystemSpec
from experiments.systems.alphagan.sample import sample_command
from experiments.systems.alphagan.search import IMAGE_SIZES, AlphaGANDataConfig, _generate
from lightning_modules.alphagan.config import (
    D_INITS,
    EXTRACTORS,
    SELECT_ON,
    MetricsConfig,
    RetrainConfig,
    RetrainModelConfig,
    RetrainOptimConfig,
)
from lightning_modules.alphagan.retrain import AlphaGANRetrain, score_key
from search_spaces.gan import GenotypeError, load_genotype

PRECISIONS = ("32", "32-true", "bf16-mixed")
G_INITS = ("xavier_uniform", "normal", "orth")


@dataclass
class AlphaGANTrainConfig(RunConfig):
    system: str = "alphagan_train"
    seed: int = 12345  # the reference's --random_seed
    data: AlphaGANDataConfig = field(default_factory=AlphaGANDataConfig)
    model: RetrainModelConfig = field(default_factory=RetrainModelConfig)
    train: RetrainConfig = field(default_factory=RetrainConfig)
    optim: RetrainOptimConfig = field(default_factory=RetrainOptimConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(
            max_epochs=-1, num_sanity_val_steps=0, use_distributed_sampler=False
        )
    )
    checkpoint: CheckpointConfig = field(default_factory=lambda: CheckpointConfig(monitor="auto"))


# ------------------------------------------------------------------------------------- config
def _genotype(cfg: DictConfig):
    m = cfg.model
    try:
        genotype = load_genotype(str(m.genotype))
        if m.retarget:
            genotype = genotype.retarget(int(m.bottom_width))
        genotype.check(int(m.bottom_width))
    except GenotypeError as e:
        hint = "" if m.retarget else " (or model.retarget=true)"
        raise ConfigError(f"model.genotype: {e}{hint}") from None
    return genotype


def validate(cfg: DictConfig) -> None:
    """Checks of the composed config (it is never changed here)."""
    precision = str(cfg.trainer.precision)
    if precision not in PRECISIONS:
        raise ConfigError(
            f"trainer.precision={precision}: the alphaGAN retraining runs in 32-true or "
            "bf16-mixed (fp16 shares one gradient scaler between the D and G optimizers, and half "
            "weights underflow Adam's eps)"
        )
    if cfg.trainer.use_distributed_sampler:
        raise ConfigError(
            "trainer.use_distributed_sampler must be false (the datamodule shards batches itself)"
        )
    m, t, mc, d = cfg.model, cfg.train, cfg.metrics, cfg.data
    if d.dataset not in IMAGE_SIZES:
        raise ConfigError(
            f"data.dataset: expected one of {', '.join(IMAGE_SIZES)}, got '{d.dataset}'"
        )
    size = d.image_size or IMAGE_SIZES[d.dataset]
    if m.bottom_width * 8 != size:
        raise ConfigError(
            f"model.bottom_width={m.bottom_width} makes {8 * m.bottom_width}x{8 * m.bottom_width} "
            f"images, but the data are {size}x{size}; set model.bottom_width={size // 8}"
        )
    require_positive(
        cfg,
        "train.g_iters",
        "train.n_critic",
        "train.gen_batch_size",
        "train.eval_every",
        "train.num_samples",
        "model.width",
        "model.d_width",
        "model.latent_dim",
        "data.batch_size",
        "metrics.splits",
        "metrics.batch_size",
    )
    if not 0.0 <= t.ema_decay < 1.0:
        raise ConfigError(f"train.ema_decay must be in [0, 1), got {t.ema_decay}")
    for key, value, valid in (
        ("model.init", m.init, G_INITS),
        ("model.d_init", m.d_init, D_INITS),
        ("metrics.extractor", mc.extractor, EXTRACTORS),
        ("metrics.select_on", mc.select_on, SELECT_ON),
    ):
        if value not in valid:
            raise ConfigError(f"{key}: expected one of {', '.join(valid)}, got '{value}'")
    if mc.eval_samples < 0 or mc.train_samples < 0:
        raise ConfigError("metrics.eval_samples and metrics.train_samples must be >= 0")
    if mc.train_samples == 0 and mc.select_on != "last":
        raise ConfigError(
            f"metrics.select_on={mc.select_on} needs scores during training: set "
            "metrics.train_samples > 0 or metrics.select_on=last"
        )
    for key in ("inception_weights", "fid_stats"):
        if mc[key] is not None and not Path(str(mc[key])).expanduser().is_file():
            raise ConfigError(f"metrics.{key}: no such file: {mc[key]}")
    _genotype(cfg)


# ---------------------------------------------------------------------------------- data
class _Chunks(Dataset):
    """Scoring chunks ``(index, size)`` of one rank: chunk i holds samples [i*b, (i+1)*b)."""

    def __init__(self, total: int, batch: int, rank: int, world: int) -> None:
        chunks = [(i, min(batch, total - i * batch)) for i in range(-(-total // batch))]
        self.items = chunks[rank::world] or [(-1, 0)]  # at least one (empty) step: grids

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[int, int]:
        return self.items[i]


class _SkipFirst(Sampler):
    """``sampler`` with its first ``skip`` indices dropped once (resuming inside an epoch)."""

    def __init__(self, sampler: Any, skip: int) -> None:
        self.sampler, self.skip = sampler, skip

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        skip, self.skip = self.skip, 0
        for i, index in enumerate(self.sampler):
            if i >= skip:
                yield index


class RetrainDataModule(ImageDataModule):
    """The whole train split for the D steps; the scoring noise chunks as validation batches;
    the real images of the scoring (train) and held-out (test) statistics."""

    def __init__(self, options: Any, metrics: Any, seed: int) -> None:
        super().__init__(options, split="train")
        self.metrics, self._resume_batches = metrics, 0

    def resume_at(self, batches_done: int) -> None:
        """The run has taken ``batches_done`` D steps: the next epoch starts inside its order
        (so Lightning's warning that a mid-epoch resume is not exact does not apply here)."""
        self._resume_batches = int(batches_done)
        warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended")

    def train_dataloader(self) -> DataLoader:
        loader = super().train_dataloader()
        skip = self._resume_batches % max(len(loader), 1)
        self._resume_batches = 0
        if not skip:
            return loader
        sampler = _SkipFirst(loader.sampler, skip * self.batch_size)
        return self._loader(loader.dataset, sampler=sampler, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        m = self.metrics
        validating = self.trainer is not None and self.trainer.state.fn == "validate"
        total = m.eval_samples if validating else m.train_samples
        rank, world = self._rank_and_world_size()
        chunks = _Chunks(int(total), int(m.batch_size), rank, world)
        return DataLoader(chunks, batch_size=None, shuffle=False)

    def real_images(self, split: str) -> tuple[Any, list[Path], str]:
        """``(batches, files, tag)`` of ``split`` ("train": the scoring statistics' images,
        "test": the held-out ones): a callable giving this rank's uint8 ``(n, 3, H, W)`` chunks,
        the files they are read from (the cache key) and a name for the cache file."""
        self.setup("fit")
        if split == "train":
            images = self._datasets["train"].images
            source = "train+unlabeled" if self.dataset == "stl10" else "train"
        else:
            images, source = self._read("test").images, "test"
        folder = Path(self._arrays[source].folder)
        names = {
            ("cifar10", "train"): "data_batch_*",
            ("cifar10", "test"): "test_batch",
            ("stl10", "train+unlabeled"): "*_X.bin",
            ("stl10", "test"): "test_X.bin",
        }[(self.dataset, source)]
        files = sorted(
            p for p in folder.glob(names) if source != "train+unlabeled" or "test" not in p.name
        )
        rank, world = self._rank_and_world_size()
        mine = images[rank::world]

        def batches() -> list[torch.Tensor]:
            return [mine[i : i + 500] for i in range(0, len(mine), 500)]

        return batches, files, f"{self.dataset}_{source}_{self.image_size}"


def datamodule(cfg: DictConfig, checkpoint: dict | None = None) -> RetrainDataModule:
    if cfg.data.generate:
        _generate(cfg.data)
    return RetrainDataModule(cfg.data, cfg.metrics, int(cfg.seed))


def build(cfg: DictConfig, checkpoint: dict | None) -> tuple[AlphaGANRetrain, RetrainDataModule]:
    stored = ((checkpoint or {}).get("hyper_parameters") or {}).get("genotype")
    genotype = stored if stored is not None else _genotype(cfg)
    metrics = OmegaConf.to_object(cfg.metrics)
    if metrics.cache_dir is None:
        metrics.cache_dir = str(Path(cfg.data.root) / "fid_cache")
    module = AlphaGANRetrain(
        genotype,
        model=OmegaConf.to_object(cfg.model),
        train=OmegaConf.to_object(cfg.train),
        optim=OmegaConf.to_object(cfg.optim),
        metrics=metrics,
        seed=int(cfg.seed),
    )
    return module, datamodule(cfg, checkpoint)


def checkpoint_monitor(cfg: DictConfig) -> str | None:
    """The selection metric: FID against held-out images, the scored FID, or none (last)."""
    mc = cfg.metrics
    name = {"holdout": "fid_holdout", "test": "fid", "last": None}[mc.select_on]
    return None if name is None else score_key(name, int(mc.train_samples), str(mc.extractor))


# ------------------------------------------------------------------------------- reports
def selection(cfg: DictConfig, evaluations: list[dict], best_path: str | None) -> dict[str, Any]:
    """Which evaluation the kept checkpoint is and its scored figures (the same numbers the
    checkpoint callback compared)."""
    mc = cfg.metrics
    n, kind = int(mc.train_samples), str(mc.extractor)
    rows = [r for r in evaluations if "fid" in r] or evaluations
    if not rows:
        return {}
    if mc.select_on == "last":
        row, rule = rows[-1], "the last checkpoint (metrics.select_on=last)"
    else:
        name = "fid_holdout" if mc.select_on == "holdout" else "fid"
        row = min(rows, key=lambda r: r.get(name, float("inf")))
        rule = f"lowest {score_key(name, n, kind)} over {len(rows)} evaluations"
        if mc.select_on == "test":
            rule += (
                " (metrics.select_on=test: the reference's protocol, best FID on the scoring "
                "statistics themselves; the figure is selected on the test metric)"
            )
        else:
            rule += " (against held-out images the generator is not scored on)"
    scores = {score_key(k, n, kind): v for k, v in row.items() if k != "g_iter"}
    return {"rule": rule, "g_iter": int(row["g_iter"]), "checkpoint": best_path, "scores": scores}


def after_fit(ctx: RunContext) -> None:
    if not ctx.trainer.is_global_zero:
        return
    ckpt = ctx.trainer.checkpoint_callback
    best = getattr(ckpt, "best_model_path", None) or getattr(ckpt, "last_model_path", None)
    chosen = selection(ctx.cfg, ctx.module.evaluations, best)
    if not chosen:
        return
    (Path(ctx.run_dir) / "selection.json").write_text(json.dumps(chosen, indent=2) + "\n")
    figures = ", ".join(f"{k} {v:.3f}" for k, v in chosen["scores"].items())
    print(f"selected: G iteration {chosen['g_iter']}, {chosen['rule']}")
    print(f"  {figures}")
    if chosen["checkpoint"]:
        print(
            f"  checkpoint {chosen['checkpoint']}; full score: make eval-alphagan ARGS='ckpt=...'"
        )


def after_eval(ctx: RunContext) -> None:
    if not ctx.trainer.is_global_zero:
        return
    mc = ctx.cfg.metrics
    n, kind = int(mc.eval_samples), str(mc.extractor)
    found = ctx.metrics.get("validate", {})
    scores = {
        k: found[score_key(k, n, kind)]
        for k in ("fid", "fid_holdout", "is", "is_std")
        if score_key(k, n, kind) in found
    }
    out = {"samples": n, "extractor": kind, "checkpoint": str(ctx.cfg.ckpt), **scores}
    if kind != "inception":
        out["note"] = "stand-in features: not comparable to published FID/IS"
    (Path(ctx.run_dir) / "scores.json").write_text(json.dumps(out, indent=2) + "\n")
    tag = "" if kind == "inception" else " (stand-in, not comparable to published figures)"
    if "is" in scores:
        print(f"IS  {scores['is']:.3f} ± {scores['is_std']:.3f} ({mc.splits} splits, {n} samples)")
    if "fid" in scores:
        print(f"FID {scores['fid']:.3f} ({n} samples){tag}")
        print(f"FID against held-out images {scores['fid_holdout']:.3f}{tag}")


def _scores(cfg: DictConfig) -> list[tuple[str, str]]:
    """The training-time scores' keys and directions (they name the sample count)."""
    m = cfg.metrics
    n, kind = int(m.train_samples), str(m.extractor)
    keys = [(score_key("fid", n, kind), "min"), (score_key("fid_holdout", n, kind), "min")]
    if kind == "inception":
        keys.append((score_key("is", n, kind), "max"))
    return keys


def dashboard(cfg: DictConfig) -> list[Section]:
    scores = [key for key, _ in _scores(cfg)]
    return [
        Section("Scores", tuple(line(key) for key in scores)),
        Section("Samples (fixed z)", (media("samples/ema"), media("samples/raw"))),
        Section(
            "Losses",
            (
                line("train/d_loss", "train/g_loss"),
                line("train/d_real", "train/d_fake"),
                line("lr/g", "lr/d"),
            ),
        ),
    ]


SPEC = SystemSpec(
    name="alphagan_train",
    summaries=_scores,
    dashboard=dashboard,
    config_cls=AlphaGANTrainConfig,
    build=build,
    datamodule=datamodule,
    validate=validate,
    checkpoint_monitor=checkpoint_monitor,
    find_unused_parameters=True,  # D gets no gradient in the G step
    after_fit=after_fit,
    after_eval=after_eval,
    extra_commands={"sample": sample_command},
)
