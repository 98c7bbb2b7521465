"""Inception weights files for the scoring tests: torch-fidelity's InceptionV3 with random init
saved as the state dict that ``metrics.inception_weights`` takes (no download)."""

from __future__ import annotations

from pathlib import Path

import torch


def random_inception_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """The state dict of a randomly initialised ``FeatureExtractorInceptionV3`` (its own
    keys and shapes; torch-fidelity's loading is skipped while it is built)."""
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    class _Random(fe.FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):
            return None

    old = fe.load_state_dict_from_url
    fe.load_state_dict_from_url = lambda *a, **k: {}
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            net = _Random("inception-v3-compat", ["2048"])
    finally:
        fe.load_state_dict_from_url = old
    return {k: v.clone() for k, v in net.state_dict().items()}


def write_random_inception_weights(path: Path, seed: int = 0) -> Path:
    """``random_inception_state(seed)`` saved with ``torch.save``, as torch-fidelity's file is."""
    path = Path(path)
    torch.save(random_inception_state(seed), path)
    return path
