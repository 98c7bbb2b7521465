"""alphaGAN architecture search as an experiment system (docs/alphagan.md, "The search").

``python -m experiments train alphagan_search_cifar10`` runs the search
(:class:`~lightning_modules.alphagan.search.AlphaGANSearch`) on the first/second halves of the
labelled train split; when it ends, rank 0 writes the argmax genotype as ``genotype.yaml`` (the
format of ``search_spaces/gan/genotypes/*.yaml``) with ``genotype.png`` and the final
``alpha.png`` into the run folder, next to ``samples/``, ``search/epoch_XXX_{alpha,genotype}.png``
and ``search/alpha_history.csv`` (softmax(α) of every edge after every epoch).

``python -m experiments derive alphagan_search_cifar10 ckpt=PATH`` re-derives the genotype from
any search checkpoint into a new ``<timestamp>-derive`` folder;
``python -m experiments genotype alphagan_search_cifar10 FILE`` checks and draws a genotype file
(or a shipped one: ``alphagan_l``, ``alphagan_s``) against the experiment's bottom width.

Trainer notes (docs/alphagan.md, "Lightning notes"): manual optimization
(``trainer.gradient_clip_val`` null); the epoch length is the search's own
(``search.inner_steps``); under DDP each phase leaves some parameters without gradient (G in the D
step, D and α in the G step), so the spec asks for ``find_unused_parameters`` and
``trainer.strategy=ddp`` runs as ``ddp_find_unused_parameters_true``. Precision: ``32-true`` or
``bf16-mixed``; fp16 is refused (the worst-case copies step raw optimizers, which get no gradient
scaler).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from datamodules.images.datamodule import ImageDataModule, ImageDataOptions
from experiments.checkpoints import load_run
from experiments.config import (
    CheckpointConfig,
    ConfigError,
    RunConfig,
    TrainerConfig,
    require_positive,
    to_yaml,
)
from experiments.dashboard import Section, line, media
from experiments.registry import RunContext, SystemSpec
from lightning_modules.alphagan.config import (
    VARIANTS,
    ModelConfig,
    SearchConfig,
    SearchOptimConfig,
)
from lightning_modules.alphagan.plots import alpha_heatmap, genotype_figure
from lightning_modules.alphagan.search import AlphaGANSearch
from lightning_modules.figures import save_figure
from search_spaces.gan import GenotypeError, load_genotype, shipped_genotypes
from search_spaces.gan.cell import CONV_ALGORITHMS

PRECISIONS = ("32", "32-true", "bf16-mixed")
IMAGE_SIZES = {"cifar10": 32, "stl10": 48}


@dataclass
class AlphaGANDataConfig(ImageDataOptions):
    """The image data (``datamodules.images.datamodule``) plus generated data for CPU runs and
    tests."""

    generate: bool = False  # write a synthetic data set in the real format into root if missing
    generate_train: int = 2000  # images in the generated train split (halved by the search)
    generate_test: int = 500  # held-out images (the feature distance's real side)


@dataclass
class AlphaGANSearchConfig(RunConfig):
    system: str = "alphagan_search"
    seed: int = 2  # the reference's --seed
    data: AlphaGANDataConfig = field(default_factory=AlphaGANDataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    optim: SearchOptimConfig = field(default_factory=SearchOptimConfig)
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(
            max_epochs=99, num_sanity_val_steps=0, use_distributed_sampler=False
        )
    )
    # No monitor: derive and resume need the final α (and nothing is selected during search).
    checkpoint: CheckpointConfig = field(default_factory=lambda: CheckpointConfig(monitor=None))


def validate(cfg: DictConfig) -> None:
    """Checks of the composed config (it is never changed here)."""
    precision = str(cfg.trainer.precision)
    if precision not in PRECISIONS:
        raise ConfigError(
            f"trainer.precision={precision}: the alphaGAN search runs in 32-true or bf16-mixed "
            "(its worst-case copies step raw Adam optimizers, which get no fp16 gradient scaler, "
            "and half weights underflow Adam's eps)"
        )
    if cfg.trainer.use_distributed_sampler:
        raise ConfigError(
            "trainer.use_distributed_sampler must be false (the datamodule shards batches itself)"
        )
    s, m, d = cfg.search, cfg.model, cfg.data
    if s.variant not in VARIANTS:
        raise ConfigError(
            f"search.variant: expected one of {', '.join(VARIANTS)}, got '{s.variant}'"
        )
    if m.conv not in CONV_ALGORITHMS:
        raise ConfigError(
            f"model.conv: expected one of {', '.join(CONV_ALGORITHMS)}, got '{m.conv}'"
        )
    for key in ("inner_steps", "worst_steps", "arch_steps"):
        if s[key] is not None and s[key] < 0:
            raise ConfigError(
                f"search.{key} must be >= 0 (or null for variant {s.variant}'s), got {s[key]}"
            )
    require_positive(
        cfg,
        "search.n_critic",
        "model.width",
        "model.d_width",
        "model.latent_dim",
        "model.bottom_width",
        "data.batch_size",
    )
    if s.gen_batch_size is not None and s.gen_batch_size < 1:
        raise ConfigError(f"search.gen_batch_size must be >= 1 or null, got {s.gen_batch_size}")
    if d.dataset not in IMAGE_SIZES:
        raise ConfigError(
            f"data.dataset: expected one of {', '.join(IMAGE_SIZES)}, got '{d.dataset}'"
        )
    size = d.image_size or IMAGE_SIZES[d.dataset]
    if m.bottom_width * 8 != size:
        raise ConfigError(
            f"model.bottom_width={m.bottom_width} makes {8 * m.bottom_width}x{8 * m.bottom_width} "
            f"images (3 cells, each 2x), but the data are {size}x{size} (data.dataset={d.dataset}, "
            f"data.image_size={d.image_size}); set model.bottom_width={size // 8}"
            + ("" if size % 8 == 0 else " and an image size divisible by 8")
        )
    if s.eval_every < 0 or s.eval_samples < 2:
        raise ConfigError("search.eval_every must be >= 0 and search.eval_samples >= 2")


def datamodule(cfg: DictConfig, checkpoint: dict | None = None) -> ImageDataModule:
    """The search's datamodule (the labelled train split in two halves); with
    ``data.generate`` a synthetic data set in the real format is written into an empty root."""
    d = cfg.data
    if d.generate:
        _generate(d)
    return ImageDataModule.from_options(d, split="search")


def _generate(d: DictConfig) -> None:
    from datamodules.images.synthetic import write_synthetic_cifar10, write_synthetic_stl10

    root = Path(d.root)
    marker = {"cifar10": "cifar-10-batches-py", "stl10": "stl10_binary"}[d.dataset]
    if (root / marker).is_dir() or root.name == marker:
        return
    if d.dataset == "cifar10":
        write_synthetic_cifar10(root, n_train=d.generate_train, n_test=d.generate_test, seed=d.seed)
    else:
        write_synthetic_stl10(root, n_train=d.generate_train, n_test=d.generate_test, seed=d.seed)


def build(cfg: DictConfig, checkpoint: dict | None) -> tuple[AlphaGANSearch, ImageDataModule]:
    module = AlphaGANSearch(
        model=OmegaConf.to_object(cfg.model),
        search=OmegaConf.to_object(cfg.search),
        optim=OmegaConf.to_object(cfg.optim),
        seed=int(cfg.seed),
    )
    return module, datamodule(cfg, checkpoint)


def write_derived(module: AlphaGANSearch, out_dir: Path, comment: str) -> Path:
    """``genotype.yaml`` (argmax per edge), ``genotype.png`` and ``alpha.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    genotype = module.genotype()
    path = genotype.save(out_dir / "genotype.yaml", comment=comment)
    save_figure(
        genotype_figure(genotype, "derived genotype (argmax of softmax(α) per edge)"),
        out_dir / "genotype.png",
    )
    weights = {e: w.tolist() for e, w in module.generator.edge_weights().items()}
    save_figure(alpha_heatmap(weights, "final softmax(α) per edge"), out_dir / "alpha.png")
    return path


def _comment(cfg: DictConfig, module: AlphaGANSearch) -> str:
    return (
        f"derived by experiment {cfg.experiment} after {int(module.arch_step)} α steps, "
        f"{int(module.d_step)} D steps, {int(module.g_step)} G steps"
    )


def after_fit(ctx: RunContext) -> None:
    if ctx.trainer.is_global_zero:
        write_derived(ctx.module, Path(ctx.run_dir), _comment(ctx.cfg, ctx.module))


def derive_command(cfg: DictConfig, args: list[str]) -> int:
    """``derive EXPERIMENT ckpt=PATH``: the argmax genotype of a search checkpoint, written into a
    new ``<timestamp>-derive`` folder with its drawing, the α heatmap and the α history."""
    from experiments.trainer import make_run_dir
    from lightning_modules.alphagan.plots import alpha_history_rows

    if args:
        raise ConfigError(f"derive takes no extra arguments, got: {' '.join(args)}")
    if not cfg.ckpt:
        raise ConfigError("derive needs a search checkpoint: ckpt=PATH")
    run = load_run(
        str(cfg.ckpt), str(cfg.experiment), system="alphagan_search", output_dir=str(cfg.output_dir)
    )
    out_dir = make_run_dir(run.cfg, suffix="-derive")
    (out_dir / "config.yaml").write_text(to_yaml(run.cfg))
    path = write_derived(run.module, out_dir, _comment(run.cfg, run.module))
    columns, rows = alpha_history_rows(run.module.alpha_history)
    with (out_dir / "alpha_history.csv").open("w") as f:
        f.write(",".join(columns) + "\n")
        f.writelines(",".join(str(v) for v in row) + "\n" for row in rows)
    print(f"genotype: {path}")
    print(f"run folder: {out_dir}")
    return 0


def genotype_command(cfg: DictConfig, args: list[str]) -> int:
    """``genotype EXPERIMENT FILE|NAME``: check a genotype YAML (or a shipped one by name)
    against the experiment's bottom width, print its edges, and write it back in the shipped
    format with its drawing into a new ``<timestamp>-genotype`` folder.  A bad file is one
    error naming the file, line and edge, and writes nothing."""
    from experiments.trainer import make_run_dir

    if len(args) != 1:
        raise ConfigError(
            "genotype needs one genotype: a YAML file or a shipped name "
            f"({', '.join(shipped_genotypes())})"
        )
    try:
        genotype = load_genotype(args[0])
        genotype.check(int(cfg.model.bottom_width))
    except GenotypeError as e:
        raise ConfigError(str(e)) from None
    out_dir = make_run_dir(cfg, suffix="-genotype")
    genotype.save(out_dir / "genotype.yaml", comment=f"checked from {args[0]}")
    save_figure(
        genotype_figure(genotype, f"genotype {Path(args[0]).name}"), out_dir / "genotype.png"
    )
    for name, op in genotype.edges.items():
        print(f"{name:<14} {op}")
    print(f"run folder: {out_dir}")
    return 0


SPEC = SystemSpec(
    name="alphagan_search",
    summaries=lambda cfg: [("search/duality_gap", "min"), ("search/fid_standin", "min")],
    dashboard=lambda cfg: [
        Section(
            "Minimax",
            (
                line("search/duality_gap"),
                line("search/minmax", "search/maxmin"),
                line("train/d_loss", "train/g_loss"),
                line("search/fid_standin"),
            ),
        ),
        Section("Architecture", (media("search/alpha"), media("search/genotype"))),
        Section("Samples", (media("samples/continuous", "samples/argmax"),)),
        Section("Learning rates", (line("lr/g", "lr/d", "lr/alpha"),)),
    ],
    config_cls=AlphaGANSearchConfig,
    build=build,
    datamodule=datamodule,
    validate=validate,
    checkpoint_monitor=lambda cfg: "search/duality_gap",
    find_unused_parameters=True,  # G in the D step, D and α in the G step get no gradient
    after_fit=after_fit,
    commands=("train",),
    extra_commands={"derive": derive_command, "genotype": genotype_command},
)
