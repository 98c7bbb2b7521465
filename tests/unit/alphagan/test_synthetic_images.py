"""The synthetic CIFAR-10 / STL-10 writer: official formats (read by stock torchvision), seeded,
and class structure a model can learn."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import datasets

from datamodules.images.synthetic import (
    CIFAR10_CLASSES,
    STL10_CLASSES,
    write_synthetic_cifar10,
    write_synthetic_stl10,
)
from datamodules.synthetic.__main__ import main

CIFAR_FILES = [
    "batches.meta",
    "data_batch_1",
    "data_batch_2",
    "data_batch_3",
    "data_batch_4",
    "data_batch_5",
    "test_batch",
]
STL_FILES = [
    "class_names.txt",
    "fold_indices.txt",
    "test_X.bin",
    "test_y.bin",
    "train_X.bin",
    "train_y.bin",
    "unlabeled_X.bin",
]


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_cifar_files_read_by_stock_torchvision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = write_synthetic_cifar10(tmp_path, n_train=53, n_test=7, seed=1)
    assert written.folder == tmp_path / "cifar-10-batches-py"
    assert sorted(p.name for p in written.folder.iterdir()) == CIFAR_FILES
    monkeypatch.setattr(datasets.cifar, "check_integrity", lambda *args: True)  # md5 off
    train = datasets.CIFAR10(str(tmp_path), train=True)
    assert np.array_equal(train.data, written.train_images)  # (N, 32, 32, 3) after its parsing
    assert train.targets == written.train_labels.tolist() and train.classes == list(CIFAR10_CLASSES)
    test = datasets.CIFAR10(str(tmp_path), train=False)
    assert np.array_equal(test.data, written.test_images) and len(test) == 7
    entry = pickle.loads((written.folder / "data_batch_5").read_bytes(), encoding="latin1")
    assert set(entry) == {"batch_label", "labels", "data", "filenames"}
    assert entry["data"].dtype == np.uint8
    assert entry["data"].shape == (10, 3072)  # 53 images = 11 + 11 + 11 + 10 + 10
    assert all(type(v) is int for v in entry["labels"])
    # Row layout: the red plane (1024 bytes, row-major), then green, then blue.
    image = written.train_images[-1]
    assert np.array_equal(entry["data"][-1][:1024].reshape(32, 32), image[..., 0])
    assert np.array_equal(entry["data"][-1][2048:].reshape(32, 32), image[..., 2])


def test_stl_files_read_by_stock_torchvision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = write_synthetic_stl10(tmp_path, n_train=20, n_test=10, n_unlabeled=3, seed=1)
    assert sorted(p.name for p in written.folder.iterdir()) == STL_FILES
    monkeypatch.setattr(datasets.STL10, "_check_integrity", lambda self: True)  # md5 off
    train = datasets.STL10(str(tmp_path), split="train+unlabeled")
    assert train.data.shape == (23, 3, 96, 96)
    assert np.array_equal(train.data[:20].transpose(0, 2, 3, 1), written.train_images)
    assert np.array_equal(train.data[20:].transpose(0, 2, 3, 1), written.unlabeled_images)
    assert (
        train.labels[:20].tolist() == written.train_labels.tolist()
        and train.labels[20:].tolist() == [-1] * 3
    )
    assert train.classes == list(STL10_CLASSES)
    raw = np.fromfile(written.folder / "test_y.bin", dtype=np.uint8)
    assert raw.min() >= 1 and raw.max() <= 10 and np.array_equal(raw - 1, written.test_labels)
    # Column-major planes: byte (channel c, column x, row y) of image 0.
    data = np.fromfile(written.folder / "train_X.bin", dtype=np.uint8)
    assert data[1 * 9216 + 40 * 96 + 7] == written.train_images[0, 7, 40, 1]
    folds = (written.folder / "fold_indices.txt").read_text().splitlines()
    assert len(folds) == 10 and all(0 <= int(i) < 20 for line in folds for i in line.split())
    fold = datasets.STL10(str(tmp_path), split="train", folds=3)  # torchvision's fold reader
    assert len(fold) == 4


def test_seeded(tmp_path: Path) -> None:
    write_synthetic_cifar10(tmp_path / "a", n_train=30, n_test=5, seed=4)
    write_synthetic_cifar10(tmp_path / "b", n_train=30, n_test=5, seed=4)
    write_synthetic_cifar10(tmp_path / "c", n_train=30, n_test=5, seed=5)
    a, b, c = (digests(tmp_path / x / "cifar-10-batches-py") for x in "abc")
    assert a == b and a["data_batch_1"] != c["data_batch_1"]
    s1 = write_synthetic_stl10(tmp_path / "s1", n_train=10, n_test=2, seed=4)
    s2 = write_synthetic_stl10(tmp_path / "s2", n_train=10, n_test=2, seed=4)
    assert digests(s1.folder) == digests(s2.folder)


def test_classes_balanced_and_learnable(tmp_path: Path) -> None:
    written = write_synthetic_cifar10(tmp_path, n_train=1000, n_test=300, seed=0)
    assert np.bincount(written.train_labels, minlength=10).tolist() == [100] * 10

    def features(images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        return torch.nn.functional.avg_pool2d(x, 4).flatten(1)  # 8x8 colour thumbnails

    train, test = features(written.train_images), features(written.test_images)
    centroids = torch.stack(
        [train[torch.from_numpy(written.train_labels == c)].mean(0) for c in range(10)]
    )
    predicted = torch.cdist(test, centroids).argmin(1).numpy()
    assert (predicted == written.test_labels).mean() > 0.8  # chance: 0.1 (measured 0.90)
    # Within a class the images vary (position, size, background), so there is more to learn.
    same = features(written.train_images[written.train_labels == 3])
    assert same.std(0).mean() > 0.05


def test_shapes_alone_tell_classes_apart(tmp_path: Path) -> None:
    written = write_synthetic_cifar10(tmp_path, n_train=1000, n_test=300, seed=2)

    def masks(images: np.ndarray) -> torch.Tensor:  # shape pixels, colour thrown away
        shape = (torch.from_numpy(images).max(-1).values > 125).float()[:, None]
        return torch.nn.functional.avg_pool2d(shape, 4).flatten(1)

    train, test = masks(written.train_images), masks(written.test_images)
    centroids = torch.stack(
        [train[torch.from_numpy(written.train_labels == c)].mean(0) for c in range(10)]
    )
    predicted = torch.cdist(test, centroids).argmin(1).numpy()
    assert (predicted == written.test_labels).mean() > 0.3  # chance: 0.1


def test_cli_images_and_default_sst(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(
        [
            "images",
            "--format",
            "stl10",
            "--out",
            str(tmp_path / "stl"),
            "--n-train",
            "20",
            "--n-test",
            "5",
            "--n-unlabeled",
            "2",
        ]
    )
    assert sorted(p.name for p in (tmp_path / "stl" / "stl10_binary").iterdir()) == STL_FILES
    assert (tmp_path / "stl" / "stl10_binary" / "unlabeled_X.bin").stat().st_size == 2 * 27648
    main(["images", "--out", str(tmp_path / "cifar"), "--n-train", "20", "--n-test", "5"])
    assert (
        sorted(p.name for p in (tmp_path / "cifar" / "cifar-10-batches-py").iterdir())
        == CIFAR_FILES
    )
    main(["--out", str(tmp_path / "sst"), "--n-train", "20", "--n-dev", "5", "--n-test", "5"])
    assert (tmp_path / "sst" / "train.txt").is_file()
    out = capsys.readouterr().out
    assert "stl10_binary in" in out and "cifar-10-batches-py in" in out
    with pytest.raises(SystemExit):
        main(["images", "--n-train", "2", "--out", str(tmp_path / "bad")])
