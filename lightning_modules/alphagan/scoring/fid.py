"""The Fréchet distance between the Gaussians fitted to two feature sets, as torchmetrics Metrics.

FID (TTUR, Heusel et al., arXiv 1706.08500, eq. in §3 "Fréchet Inception Distance"):
``|mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr((S_1 S_2)^(1/2))``. The trace of the matrix square
root is taken as the sum of the square roots of the eigenvalues of ``S_1 S_2`` by
torch-fidelity's ``fid_statistics_to_metric`` (torch-fidelity 0.4.0, ``metric_fid.py``; equal to
TTUR's ``scipy.linalg.sqrtm`` trace, since ``S_1 S_2`` is similar to a PSD matrix), in float64
NumPy on the host.

The states are float64 sums (sum of features, sum of outer products, count) reduced with
``sum``: under DDP each rank updates with its own samples and ``compute()`` gives the statistics
of all of them, equal to one process seeing every sample (tested with 2 gloo processes). The
covariance is the unbiased one (``np.cov``), as TTUR's.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric


def frechet_distance(
    mu1: np.ndarray | torch.Tensor,
    sigma1: np.ndarray | torch.Tensor,
    mu2: np.ndarray | torch.Tensor,
    sigma2: np.ndarray | torch.Tensor,
) -> float:
    """The Fréchet distance of N(mu1, sigma1) and N(mu2, sigma2), in float64 (see module doc)."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    def f64(x: np.ndarray | torch.Tensor) -> np.ndarray:
        x = x.detach().cpu().numpy() if torch.is_tensor(x) else x
        return np.asarray(x, dtype=np.float64)

    one = {"mu": f64(mu1), "sigma": f64(sigma1)}
    two = {"mu": f64(mu2), "sigma": f64(sigma2)}
    return float(fid_statistics_to_metric(one, two, verbose=False)[KEY_METRIC_FID])


class FeatureMoments(Metric):
    """Mean and unbiased covariance of the features seen by ``update`` (float64 sums)."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    def __init__(self, feature_dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.feature_dim = int(feature_dim)
        d = self.feature_dim
        self.add_state("total", torch.zeros(d, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("outer", torch.zeros(d, d, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, features: torch.Tensor) -> None:
        if features.dim() != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(
                f"expected features (N, {self.feature_dim}), got {tuple(features.shape)}"
            )
        f = features.to(device=self.total.device, dtype=torch.float64)
        self.total += f.sum(0)
        self.outer += f.T @ f
        self.count += f.shape[0]

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = float(self.count)
        if n < 2:
            raise ValueError(f"the Fréchet distance needs at least 2 samples, got {int(n)}")
        mu = self.total / n
        sigma = (self.outer - n * torch.outer(mu, mu)) / (n - 1)
        return mu, sigma

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.moments()


class FrechetDistance(FeatureMoments):
    """The Fréchet distance of the features passed to ``update`` (the generated side) to fixed
    real statistics ``(real_mu, real_sigma)`` (see :func:`~.real_stats.real_statistics`).

    ``update(fake_features)`` takes (N, ``feature_dim``) features; ``compute()`` returns a
    float64 scalar tensor. The real statistics are buffers that are not checkpointed."""

    higher_is_better = False

    def __init__(
        self,
        feature_dim: int,
        real_mu: np.ndarray | torch.Tensor,
        real_sigma: np.ndarray | torch.Tensor,
        **kwargs,
    ) -> None:
        super().__init__(feature_dim, **kwargs)
        mu = torch.as_tensor(np.asarray(real_mu), dtype=torch.float64)
        sigma = torch.as_tensor(np.asarray(real_sigma), dtype=torch.float64)
        d = self.feature_dim
        if mu.shape != (d,) or sigma.shape != (d, d):
            raise ValueError(
                f"real statistics of shapes {tuple(mu.shape)}, {tuple(sigma.shape)} do not fit "
                f"{d} features (expected ({d},), ({d}, {d}))"
            )
        self.register_buffer("real_mu", mu, persistent=False)
        self.register_buffer("real_sigma", sigma, persistent=False)

    def compute(self) -> torch.Tensor:
        mu, sigma = self.moments()
        value = frechet_distance(mu, sigma, self.real_mu, self.real_sigma)
        return torch.tensor(value, dtype=torch.float64)
