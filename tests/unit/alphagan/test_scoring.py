"""FID and IS of the alphaGAN scoring package against values worked out independently."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from datamodules.errors import DataError
from lightning_modules.alphagan.scoring import (
    FeatureMoments,
    FrechetDistance,
    InceptionScore,
    StandinExtractor,
    build_extractor,
    load_fid_stats,
    real_statistics,
    to_uint8,
)


def test_to_uint8_truncates_as_the_tf_protocol() -> None:
    x = torch.tensor([-2.0, -1.0, -0.999, 0.0, 0.0039, 0.5, 0.99, 1.0, 1.5])
    expected = np.clip(x.numpy() * 127.5 + 127.5, 0, 255).astype(np.uint8)  # the papers' code
    out = to_uint8(x)
    assert out.dtype == torch.uint8
    assert out.tolist() == expected.tolist() == [0, 0, 0, 127, 127, 191, 253, 255, 255]
    assert torch.equal(to_uint8(out), out)  # uint8 passes through


def _features(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.randn(
        d, d, generator=g, dtype=torch.float64
    ) + torch.randn(d, generator=g, dtype=torch.float64)


def _moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    m = FeatureMoments(x.shape[1])
    m.update(x)
    return m.compute()


def test_moments_are_numpy_mean_and_cov_and_fid_of_a_set_to_itself_is_zero() -> None:
    x = _features(300, 6, 0)
    mu, sigma = _moments(x)
    assert np.allclose(mu.numpy(), x.numpy().mean(0), atol=1e-12)
    assert np.allclose(sigma.numpy(), np.cov(x.numpy(), rowvar=False), atol=1e-10)
    fid = FrechetDistance(6, mu, sigma)
    for chunk in x.split(70):  # several updates
        fid.update(chunk)
    assert abs(float(fid.compute())) < 1e-8
    fid.reset()
    fid.update(x + 1.0)  # a shift by 1 in 6 dimensions: |mu1 - mu2|^2 = 6
    assert float(fid.compute()) == pytest.approx(6.0, abs=1e-7)


def _exact_samples(mu: np.ndarray, sigma: np.ndarray, n: int, seed: int) -> torch.Tensor:
    """``n`` samples whose sample mean and unbiased covariance are exactly ``mu``, ``sigma``."""
    z = np.random.default_rng(seed).standard_normal((n, len(mu)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T
    return torch.from_numpy(z @ np.linalg.cholesky(sigma).T + mu)


def test_fid_of_gaussian_features_equals_the_closed_form() -> None:
    """Features with exact moments: FID = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), the
    square root by scipy's sqrtm (TTUR's route; the metric takes eigenvalues), and for
    diagonal covariances by hand: sum (sqrt s1 - sqrt s2)^2."""
    rng = np.random.default_rng(1)
    d = 5
    a, b = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    s1, s2 = a @ a.T + 0.5 * np.eye(d), b @ b.T + 0.1 * np.eye(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    fake = _exact_samples(mu2, s2, 400, seed=2)
    fid = FrechetDistance(d, mu1, s1)
    fid.update(fake)
    closed = (
        np.sum((mu1 - mu2) ** 2)
        + np.trace(s1 + s2)
        - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
    )
    assert float(fid.compute()) == pytest.approx(closed, rel=1e-9)

    v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    fid = FrechetDistance(3, np.zeros(3), np.diag(v1))
    fid.update(_exact_samples(np.array([1.0, 0.0, 2.0]), np.diag(v2), 100, seed=3))
    by_hand = 1 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2 + (3 - 0.5) ** 2
    assert float(fid.compute()) == pytest.approx(by_hand, rel=1e-9)


def _tf_inception_score(logits: np.ndarray, splits: int) -> tuple[float, float]:
    """The OpenAI improved-GAN code (inception_score.py), on logits instead of its graph."""
    e = np.exp(logits - logits.max(1, keepdims=True))
    preds = e / e.sum(1, keepdims=True)
    scores = []
    for i in range(splits):
        part = preds[(i * preds.shape[0] // splits) : ((i + 1) * preds.shape[0] // splits), :]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        scores.append(np.exp(np.mean(np.sum(kl, 1))))
    return float(np.mean(scores)), float(np.std(scores))


def test_inception_score_is_the_tf_formula_with_contiguous_splits() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(103, 20, generator=g) * 3  # 103: splits of 10 and 11 samples
    logits[:50] += torch.arange(20.0) * 0.5  # the first half differs: shuffling would mix it
    metric = InceptionScore(splits=10)
    for chunk in logits.split(17):
        metric.update(chunk)
    mean, std = metric.compute()
    ref_mean, ref_std = _tf_inception_score(logits.double().numpy(), 10)
    assert float(mean) == pytest.approx(ref_mean, rel=1e-10)
    assert float(std) == pytest.approx(ref_std, rel=1e-10)
    shuffled = _tf_inception_score(logits[torch.randperm(103, generator=g)].double().numpy(), 10)
    assert abs(shuffled[1] - ref_std) > 1e-3  # contiguous splits are what is computed


def test_standin_extractor_is_seeded_frozen_and_outside_the_state_dict() -> None:
    images = to_uint8(torch.rand(4, 3, 8, 8) * 2 - 1)
    a, b = StandinExtractor(), build_extractor("standin")
    fa, logits = a(images)
    assert fa.dtype == torch.float64 and fa.shape == (4, a.feature_dim) and logits is None
    assert torch.equal(fa, b(images)[0])
    assert "standin" in a.name and not a.comparable
    parent = nn.Module()
    parent.extractor = a
    parent.train()
    assert list(parent.state_dict()) == [] and not a.net.training
    parent.to(torch.float64)  # a parent's dtype change leaves the network in float32
    assert next(a.net.parameters()).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast off inside
        assert torch.equal(a(images)[0], fa)
    with pytest.raises(ValueError, match="uint8"):
        a(torch.rand(4, 3, 8, 8))
    with pytest.raises(DataError, match="metrics.extractor"):
        build_extractor("vgg")


def test_fid_stats_file_is_read_and_bad_ones_are_named(tmp_path) -> None:
    mu, sigma = np.arange(4.0), np.eye(4) * 2
    good = tmp_path / "stats.npz"
    np.savez(good, mu=mu, sigma=sigma)
    ext = StandinExtractor(width=2)  # 4 features
    got = real_statistics(ext, lambda: pytest.fail("the data must not be read"), fid_stats=good)
    assert np.array_equal(got[0].numpy(), mu) and np.array_equal(got[1].numpy(), sigma)
    np.savez(tmp_path / "no_sigma.npz", mu=mu, cov=sigma)
    np.savez(tmp_path / "dim.npz", mu=np.zeros(2048), sigma=np.eye(2048, dtype=np.float32)[:8])
    (tmp_path / "text.npz").write_text("mu, sigma")
    for name, match in (
        ("no_sigma.npz", "has no sigma"),
        ("dim.npz", "do not fit the extractor's 4 features"),
        ("text.npz", "not a readable .npz"),
        ("missing.npz", "no such file"),
    ):
        with pytest.raises(DataError, match=match) as e:
            load_fid_stats(tmp_path / name, 4)
        assert str(e.value).startswith(f"metrics.fid_stats={tmp_path / name}:")


def test_real_statistics_cache_is_keyed_by_data_files_and_extractor(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    data = {k: torch.rand(12, 3, 8, 8, generator=g) * 2 - 1 for k in ("a", "b")}
    files = {}
    for k in data:
        files[k] = tmp_path / f"data_{k}.bin"
        files[k].write_bytes(k.encode() * 10)
    calls = []

    def batches(k):
        def read():
            calls.append(k)
            return [(x, 0) for x in data[k].split(5)]

        return read

    ext, cache = StandinExtractor(), tmp_path / "cache" / "real.npz"
    mu_a, sigma_a = real_statistics(ext, batches("a"), cache=cache, data_files=[files["a"]])
    assert cache.is_file() and calls == ["a"]
    direct = _moments(ext(to_uint8(data["a"]))[0])
    assert torch.allclose(mu_a, direct[0]) and torch.allclose(sigma_a, direct[1])
    again = real_statistics(ext, batches("a"), cache=cache, data_files=[files["a"]])
    assert calls == ["a"] and torch.equal(again[0], mu_a)  # reused, data not read
    with pytest.warns(UserWarning, match="other data or another extractor"):
        mu_b, _ = real_statistics(ext, batches("b"), cache=cache, data_files=[files["b"]])
    assert calls == ["a", "b"] and not torch.allclose(mu_b, mu_a)
    files["b"].write_bytes(b"changed")  # same name, other content: recomputed
    with pytest.warns(UserWarning):
        real_statistics(ext, batches("b"), cache=cache, data_files=[files["b"]])
    other = StandinExtractor(seed=1)
    with pytest.warns(UserWarning, match="other data or another extractor"):
        mu_o, _ = real_statistics(other, batches("b"), cache=cache, data_files=[files["b"]])
    assert calls == ["a", "b", "b", "b"] and not torch.allclose(mu_o, mu_b)
