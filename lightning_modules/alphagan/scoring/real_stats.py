"""The real side of FID: mean and covariance of the real images' features.

From a statistics file when one is given (``metrics.fid_stats``: TTUR's ``.npz`` with ``mu`` and
``sigma``, e.g. ``fid_stats_cifar10_train.npz``, or AutoGAN's
``stl10_train_unlabeled_fid_stats_48.npz``), else computed from the data once and cached in a
``.npz`` that also records its key: the extractor's name and the SHA-256 of every data file.
A cache whose key differs (other data files, changed files, another extractor) is reported and
recomputed, never reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from datamodules.errors import DataError

from .extractors import FrozenExtractor, to_uint8
from .fid import FeatureMoments


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_key(extractor_name: str, data_files: Sequence[str | Path]) -> str:
    """The key of a statistics cache: the extractor's name and each data file's name and
    SHA-256 (in the order given), as one JSON string."""
    files = []
    for p in data_files:
        p = Path(p)
        if not p.is_file():
            raise DataError(f"{p}: data file for the FID statistics not found")
        files.append([p.name, _sha256(p)])
    return json.dumps({"extractor": extractor_name, "files": files}, sort_keys=True)


def load_fid_stats(path: str | Path, feature_dim: int, key: str = "metrics.fid_stats") -> tuple:
    """``(mu, sigma)`` (float64 tensors) from an ``.npz`` with ``mu`` (D,) and ``sigma`` (D, D),
    checked against ``feature_dim``; a :class:`DataError` naming ``key`` and the file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{key}={path}: no such file (an .npz with arrays mu and sigma)")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:
        raise DataError(f"{key}={path}: not a readable .npz file ({type(e).__name__})") from None
    missing = [k for k in ("mu", "sigma") if k not in arrays]
    if missing:
        raise DataError(
            f"{key}={path}: has no {' and '.join(missing)} (arrays: {', '.join(arrays) or 'none'});"
            " expected TTUR's format, arrays mu (D,) and sigma (D, D)"
        )
    mu, sigma = arrays["mu"], arrays["sigma"]
    d = int(feature_dim)
    if mu.shape != (d,) or sigma.shape != (d, d):
        raise DataError(
            f"{key}={path}: mu {mu.shape} and sigma {sigma.shape} do not fit the extractor's "
            f"{d} features (expected ({d},) and ({d}, {d}))"
        )
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise DataError(f"{key}={path}: mu or sigma holds NaN or inf")
    return (
        torch.as_tensor(mu, dtype=torch.float64),
        torch.as_tensor(sigma, dtype=torch.float64),
    )


def feature_moments(
    extractor: FrozenExtractor, batches: Iterable[Any]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of ``extractor``'s features of ``batches`` (tensors or
    ``(images, ...)`` tuples; float images in [-1, 1] go through :func:`to_uint8`). Under DDP,
    pass each rank its own shard: the sums are reduced over ranks."""
    moments = FeatureMoments(extractor.feature_dim).to(extractor.device)
    for batch in batches:
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        moments.update(extractor(to_uint8(images))[0])
    mu, sigma = moments.compute()
    return mu.cpu(), sigma.cpu()


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _on_every_rank(flag: bool) -> bool:
    """``flag`` of all ranks, and-ed (one object all-gather under DDP)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    flags: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(flags, bool(flag))
    return all(flags)


def _read_cache(path: Path, key: str, feature_dim: int) -> tuple | None:
    """The statistics cached in ``path`` if its key is ``key``; else None (a warning when the
    file exists: it was made for other data files or another extractor)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            stored = str(f["key"]) if "key" in f.files else None
        if stored == key:
            return load_fid_stats(path, feature_dim, key="statistics cache")
    except (DataError, OSError, ValueError):
        stored = "unreadable"
    warnings.warn(
        f"FID statistics cache {path} was made for other data or another extractor "
        f"(stored key {stored!r:.200}, expected {key!r:.200}): recomputing it",
        stacklevel=3,
    )
    return None


def real_statistics(
    extractor: FrozenExtractor,
    batches: Callable[[], Iterable[Any]] | Iterable[Any],
    *,
    fid_stats: str | Path | None = None,
    cache: str | Path | None = None,
    data_files: Sequence[str | Path] = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu, sigma)`` of the real images' features, float64 on the CPU.

    Args:
        extractor: from :func:`~.extractors.build_extractor`.
        batches: the real images (this rank's shard under DDP, see :func:`feature_moments`),
            or a function returning them, called only when the statistics are computed.
        fid_stats: ``metrics.fid_stats``, a precomputed ``.npz`` (mu, sigma); used as is.
        cache: the ``.npz`` to reuse or write; its key (``extractor.name`` and the SHA-256 of
            ``data_files``) must match, else it is recomputed (with a warning) and rewritten.
        data_files: the files the real images are read from (the cache key).
    """
    if fid_stats:
        return load_fid_stats(fid_stats, extractor.feature_dim)
    key = cache_key(extractor.name, data_files) if cache else ""
    cached = _read_cache(Path(cache), key, extractor.feature_dim) if cache else None
    if _on_every_rank(cached is not None):  # the ranks compute together, or none does
        return cached
    mu, sigma = feature_moments(extractor, batches() if callable(batches) else batches)
    if cache and _rank() == 0:
        path = Path(cache)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
        np.savez(tmp, mu=mu.numpy(), sigma=sigma.numpy(), key=np.array(key))
        os.replace(tmp, path)
    return mu, sigma
