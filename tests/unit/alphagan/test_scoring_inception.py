"""The Inception extractor: torch-fidelity's InceptionV3 from a local weights file
(``metrics.inception_weights``), and every broken file refused with one message naming it."""

from __future__ import annotations

import pytest
import torch

from datamodules.errors import DataError
from lightning_modules.alphagan.scoring import (
    INCEPTION_FILE,
    build_extractor,
    check_extractor,
    to_uint8,
)
from lightning_modules.alphagan.scoring import extractors as extractors_module
from tests.helpers.scoring import random_inception_state, write_random_inception_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> tuple:
    root = tmp_path_factory.mktemp("inception")
    state = random_inception_state(0)
    return write_random_inception_weights(root / INCEPTION_FILE), state


def test_weights_file_loads_into_torch_fidelitys_inception(weights) -> None:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    path, _ = weights
    ext = build_extractor("inception", str(path))
    assert ext.comparable and ext.feature_dim == 2048 and "standin" not in ext.name
    images = to_uint8(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    features, logits = ext(images)
    assert features.shape == (2, 2048) and features.dtype == torch.float64
    assert logits.shape == (2, 1008)
    # exactly torch-fidelity's own network, loading the same file through its own argument
    ref = FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path)
    )
    ref_features, ref_logits = ref(images)
    assert torch.equal(features, ref_features.double()) and torch.equal(logits, ref_logits)
    assert list(torch.nn.ModuleDict({"e": ext}).state_dict()) == []  # never checkpointed


def test_broken_weights_files_are_refused_naming_the_file(weights, tmp_path) -> None:
    path, state = weights
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[: 1 << 20])
    other = tmp_path / "other_network.pth"
    torch.save(torch.nn.Conv2d(3, 8, 3).state_dict(), other)
    reshaped = tmp_path / "reshaped.pth"
    torch.save({**state, "fc.weight": torch.zeros(10, 2048)}, reshaped)
    text = tmp_path / "notes.pth"
    text.write_text("weights go here")
    cases = {
        truncated: "cannot be read",
        other: "not the weights of torch-fidelity's InceptionV3",
        reshaped: r"fc.weight has shape \(10, 2048\)",
        text: "cannot be read",
        tmp_path / "missing.pth": "no such file",
    }
    for bad, match in cases.items():
        for check in (build_extractor, check_extractor):  # the run, and the config check first
            with pytest.raises(DataError, match=match) as e:
                check("inception", str(bad))
            message = str(e.value)
            assert message.startswith(f"metrics.inception_weights={bad}:")
            assert INCEPTION_FILE in message
    assert check_extractor("inception", str(path)) == 2048
    assert check_extractor("standin") == 32


def test_without_a_path_or_network_the_error_says_what_to_put_where(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(DataError, match="metrics.inception_weights is not set") as e:
        build_extractor("inception", None)
    assert INCEPTION_FILE in str(e.value) and str(tmp_path / "hub") in str(e.value)
    assert extractors_module.INCEPTION_URL in str(e.value)
