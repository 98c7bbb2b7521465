"""Typed options of the alphaGAN search: each default is written here, once.

The entry point's schema (``experiments/systems/alphagan/search.py``) uses these dataclasses as
its ``model``, ``search`` and ``optim`` sections; the module takes them, or a partial mapping of
their fields (a checkpoint's hyper-parameters). Reference values: docs/alphagan.md, "The search".

Quirks of the reference code (docs/alphagan.md, "Quirks of the reference code") are flags here,
with the reference's behaviour as the default where it is harmless and the fix as the default
where it is a bug:

* ``search.g_lr_drift`` (bug, off): the reference's per-epoch CosineAnnealingLR(T_max=100,
  eta_min=1e-3) on the G optimizer *raises* G's lr from 2e-4 to 1e-3.
* ``search.detect_anomaly`` (bug, off): the reference turns autograd anomaly mode on in every
  cell forward, which slows the search and changes nothing else.
* ``search.maxmin_alpha_grad`` (faithful, off): G_w holds its own frozen copy of α, so the α
  gradient flows only through the minmax term; on, G_w uses G's live α and both terms count.
* ``search.reference_loop_bounds`` (faithful, on): the reference's loops stop with
  ``if step > N: break`` after the step, so they run N + 2 batches (22 for N = 20).
* the reference's inverted ``store_false`` flags are plain booleans here, defaulting to the
  reference's effective values: ``model.d_spectral_norm``, ``search.update_alphas``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Optional

#: alphaGAN(s) and alphaGAN(l) differ only in step counts (the reference's README): inner, worst,
#: arch.
VARIANTS: dict[str, tuple[int, int, int]] = {"s": (20, 20, 20), "l": (390, 390, 20)}


@dataclass
class ModelConfig:
    """The generator supernet (G) and the fixed AutoGAN discriminator (D)."""

    width: int = 256  # G channels everywhere (gf_dim), also during search
    d_width: int = 128  # D channels (df_dim)
    latent_dim: int = 128
    bottom_width: int = 4  # 4 for 32x32 (CIFAR-10), 6 for 48x48 (STL-10)
    d_spectral_norm: bool = True  # reference: --d_spectral_norm (store_false) -> True
    channels_last: bool = True  # memory format of G and D (speed only)
    conv: str = (
        "auto"  # G's fused 5x5 convolutions: auto (FFT on CPU, cuDNN on CUDA) | fft | direct
    )
    # CUDA: TF32 in cuDNN convolutions and matmuls (10-bit mantissa inputs, fp32 accumulate;
    # faster on Ampere/Hopper). false = true fp32, as the reference's GPUs had no TF32
    tf32: bool = False


@dataclass
class SearchConfig:
    """One search epoch: weight phase, worst-case phase, architecture phase (``search.py``).

    ``inner_steps``/``worst_steps``/``arch_steps`` left null take ``variant``'s counts."""

    variant: str = "s"  # s | l
    inner_steps: Optional[int] = None
    worst_steps: Optional[int] = None
    arch_steps: Optional[int] = None
    n_critic: int = 5  # one G step when the D-step counter % n_critic == 0
    gen_batch_size: Optional[int] = None  # G steps' batch; null = data.batch_size
    reference_loop_bounds: bool = True  # quirk: loops run N + 2 batches
    update_alphas: bool = True  # reference: --update_alphas (store_false) -> True
    maxmin_alpha_grad: bool = False  # quirk: α gradient only through minmax
    g_lr_drift: bool = False  # bug: CosineAnnealingLR(T_max=100, eta_min=1e-3) raising G's lr
    drift_t_max: int = 100
    drift_eta_min: float = 1e-3
    detect_anomaly: bool = False  # bug: the reference runs with anomaly mode on
    worst_lr: float = 2e-4  # Adam lr of G_w and D_w ...
    worst_lr_decay_epoch: int = 30  # ... times worst_lr_factor after this (1-based) epoch
    worst_lr_factor: float = 0.5
    num_samples: int = 64  # sample grid of a fixed z, per epoch
    eval_every: int = 4  # epochs between feature distances (reference: IS/FID every 4)
    eval_samples: int = 1000  # G samples per feature distance
    plots: bool = True


class StepCounts(NamedTuple):
    """Batches per phase of one search epoch, as run (bounds applied)."""

    weight_batches: int  # D steps of the weight phase
    worst_batches: int  # D_w steps, and as many G_w steps
    arch_steps: int


def step_counts(search: SearchConfig) -> StepCounts:
    """The step counts of ``search``: its variant's, with explicit keys taking precedence."""
    if search.variant not in VARIANTS:
        raise ValueError(
            f"search.variant must be one of {', '.join(VARIANTS)}, got {search.variant!r}"
        )
    inner, worst, arch = VARIANTS[search.variant]
    inner = inner if search.inner_steps is None else search.inner_steps
    worst = worst if search.worst_steps is None else search.worst_steps
    arch = arch if search.arch_steps is None else search.arch_steps
    extra = 2 if search.reference_loop_bounds else 0
    return StepCounts(inner + extra, worst + extra if worst > 0 else 0, arch)


@dataclass
class SearchOptimConfig:
    """Adam for G and D weights and for α (the DARTS values): docs/alphagan.md, "The search"."""

    g_lr: float = 2e-4
    d_lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.0, 0.9])
    arch_lr: float = 3e-4
    arch_betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    arch_weight_decay: float = 1e-3
    fused: bool = True  # one fused Adam kernel per optimizer (CPU and CUDA)


# ------------------------------------------------------------------------------------ retrain
#: ``metrics.select_on``: which evaluation picks the checkpoint that is kept as "best".
SELECT_ON = ("holdout", "last", "test")
EXTRACTORS = ("inception", "standin")
D_INITS = ("reference", "xavier_uniform")


@dataclass
class RetrainModelConfig(ModelConfig):
    """The plain generator of one genotype and the AutoGAN D (docs/alphagan.md, "Retraining recipe
    of the reference").

    ``init``: every ``Conv2d`` of G (``train_geno_gan.py::weights_init``: xavier_uniform, gain 1;
    BatchNorm weight N(1, 0.02), bias 0). ``d_init`` (quirk, faithful by default): the reference
    applies the same init to D *after* ``.cuda()``; under the hook-based spectral norm of
    PyTorch 1.3 the init then writes into a stale copy of each weight (``weight``, left on the
    old storage by ``Module._apply``) and the trained ``weight_orig`` keeps PyTorch's default
    init. ``reference`` keeps that default; ``xavier_uniform`` applies the init as written.
    ``conv`` is unused here (the plain generator runs its convolutions directly).
    """

    genotype: str = "alphagan_l"  # a shipped name (alphagan_l, alphagan_s) or a genotype YAML
    retarget: bool = False  # move the genotype to model.bottom_width (CIFAR-10 -> STL-10)
    init: str = "xavier_uniform"  # xavier_uniform | normal | orth
    d_init: str = "reference"  # reference (PyTorch default, as run) | xavier_uniform


@dataclass
class RetrainConfig:
    """Length and schedule of the retraining, counted in G iterations (``train_geno_gan.py``)."""

    g_iters: int = 50_000  # G steps (CIFAR-10 50k, STL-10 80k); D steps = g_iters * n_critic
    n_critic: int = 5  # one G step when the global D-step counter % n_critic == 0
    gen_batch_size: int = 128  # G steps' batch (D's is data.batch_size)
    ema_decay: float = 0.999  # EMA of G after every G step (samples and scores use it)
    ema_buffers: bool = False  # average BN buffers too; reference: live buffers (False)
    lr_decay: bool = False  # reference --lr_decay (not passed): linear to 1% of lr ...
    lr_decay_start: int = 40_664  # ... from this G iteration (260 epochs of 782 batches) on
    eval_every: int = 2_500  # G iterations between evaluations (scores, grids, checkpoint)
    num_samples: int = 64  # fixed-z sample grid per evaluation


@dataclass
class RetrainOptimConfig:
    """Adam for G and D (lr 2e-4 constant; betas (0, 0.9) CIFAR-10, (0.5, 0.9) STL-10)."""

    g_lr: float = 2e-4
    d_lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.0, 0.9])
    fused: bool = True  # one fused Adam kernel per optimizer (CPU and CUDA)


@dataclass
class MetricsConfig:
    """IS and FID of the EMA generator (docs/alphagan.md, "IS and FID").

    ``extractor``: ``inception`` (the TF Inception graph converted to PyTorch; the weights file
    is ``inception_weights``) or ``standin`` (a small frozen random network, no download, not
    comparable to published FID: its keys say ``standin``). ``fid_stats``: an npz with ``mu``
    and ``sigma`` of the scoring set (TTUR ``fid_stats_cifar10_train.npz``); null: computed
    from the training images. ``select_on``: ``holdout`` picks the checkpoint by FID against
    the held-out test split (data it is not scored on), ``last`` keeps the last one, ``test``
    picks by the scored FID itself (the reference's protocol: best of its evaluations).
    """

    extractor: str = "inception"
    inception_weights: Optional[str] = None
    fid_stats: Optional[str] = None
    eval_samples: int = 50_000  # eval command
    train_samples: int = 5_000  # each evaluation during training (0: grids only)
    select_on: str = "holdout"
    splits: int = 10  # IS splits
    batch_size: int = 100  # generator batch while scoring (the reference's eval batch)
    cache_dir: Optional[str] = None  # real statistics cache; null: <data.root>/fid_cache
