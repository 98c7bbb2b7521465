"""Small CIFAR-10 and STL-10 look-alikes in the official on-disk formats, for tests and demos.

Every image is one class-dependent shape (disc, square, triangle, ring, plus, diamond, bar,
two bars, X, frame) in a class-dependent colour, at a random position and size, on a soft
two-tone gradient background with a little noise. A GAN learns the colours within a few
hundred steps and the shapes soon after, and the class of an image is visible at a glance in
a preview grid.

``write_synthetic_cifar10`` writes ``cifar-10-batches-py/`` as the python version of CIFAR-10:
``data_batch_1`` … ``data_batch_5`` and ``test_batch`` are pickled dicts (protocol 2, ``str``
keys, as ``pickle.load(f, encoding="latin1")`` returns the official Python 2 pickles) with
``"data"``: uint8 ``(N, 3072)``, each row the red, green and blue 32×32 planes in row-major
order; ``"labels"``: a list of N ints in 0..9; ``"batch_label"`` and ``"filenames"``.
``batches.meta`` holds ``"label_names"``, ``"num_cases_per_batch"`` and ``"num_vis"``.

``write_synthetic_stl10`` writes ``stl10_binary/`` as the binary version of STL-10: each
``*_X.bin`` is raw uint8, per image the 3 colour planes of 96×96, each plane **column-major**
(the bytes of the array ``image[channel, column, row]``); each ``*_y.bin`` one uint8 label per
image in 1..10; ``class_names.txt`` one name per line; ``fold_indices.txt`` ten lines of
0-based training-image indices separated by spaces.

Both return the uint8 arrays they wrote (``(N, H, W, 3)``, labels 0-based) so tests can check
what a reader decodes against ground truth.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datamodules.errors import check_not_a_file
from datamodules.images.classes import CIFAR10_CLASSES, STL10_CLASSES

# One colour per class (RGB 0..255), far apart from each other and from the backgrounds.
_COLOURS = np.array(
    [
        [230, 40, 40],
        [40, 200, 60],
        [50, 90, 240],
        [245, 210, 40],
        [210, 60, 220],
        [40, 215, 215],
        [250, 140, 30],
        [150, 240, 120],
        [140, 80, 40],
        [250, 250, 250],
    ],
    dtype=np.float32,
)


@dataclass
class SyntheticImages:
    """What a writer put on disk: the data set folder and the arrays in it."""

    folder: Path
    class_names: list[str]
    train_images: np.ndarray  # uint8 (N, H, W, 3)
    train_labels: np.ndarray  # int64 (N,), 0-based
    test_images: np.ndarray
    test_labels: np.ndarray
    unlabeled_images: np.ndarray = field(default_factory=lambda: np.zeros((0, 96, 96, 3), np.uint8))


def _shape_mask(label: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Boolean mask of class ``label``'s shape; ``x``/``y`` in units of the shape's size."""
    ax, ay = np.abs(x), np.abs(y)
    if label == 0:  # disc
        return x * x + y * y <= 1.0
    if label == 1:  # square
        return np.maximum(ax, ay) <= 0.8
    if label == 2:  # triangle, apex up
        return (y >= -0.8) & (y <= 0.8) & (ax <= (y + 0.8) * 0.6)
    if label == 3:  # ring
        r2 = x * x + y * y
        return (r2 >= 0.3) & (r2 <= 1.0)
    if label == 4:  # plus
        return ((ax <= 0.3) & (ay <= 1.0)) | ((ay <= 0.3) & (ax <= 1.0))
    if label == 5:  # diamond
        return ax + ay <= 1.0
    if label == 6:  # horizontal bar
        return (ay <= 0.35) & (ax <= 1.0)
    if label == 7:  # two vertical bars
        return (np.abs(ax - 0.55) <= 0.22) & (ay <= 1.0)
    if label == 8:  # X
        return (np.abs(ax - ay) <= 0.28) & (np.maximum(ax, ay) <= 1.0)
    box = np.maximum(ax, ay)  # square frame
    return (box >= 0.6) & (box <= 1.0)


def draw_images(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 ``(N, size, size, 3)`` images of the classes ``labels`` (0..9)."""
    n = len(labels)
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size  # pixel centres in (0, 1)
    scale = rng.uniform(0.22, 0.34, (n, 1, 1)).astype(np.float32)
    x = (grid[None, None, :] - rng.uniform(0.36, 0.64, (n, 1, 1)).astype(np.float32)) / scale
    y = (grid[None, :, None] - rng.uniform(0.36, 0.64, (n, 1, 1)).astype(np.float32)) / scale
    masks = np.zeros((n, size, size), dtype=bool)
    for label in range(10):
        rows = np.flatnonzero(labels == label)
        if len(rows):
            masks[rows] = _shape_mask(label, x[rows], y[rows])
    # Background: a vertical gradient between two dull tones, drawn per image.
    top = rng.uniform(20, 110, (n, 1, 1, 3)).astype(np.float32)
    bottom = rng.uniform(20, 110, (n, 1, 1, 3)).astype(np.float32)
    images = np.empty((n, size, size, 3), dtype=np.float32)
    images[:] = top + (bottom - top) * grid[None, :, None, None]
    colour = _COLOURS[labels] * rng.uniform(0.85, 1.0, (n, 1)).astype(np.float32)
    images[masks] = colour.repeat(masks.sum(axis=(1, 2)), axis=0)
    images += rng.standard_normal(images.shape, np.float32) * 6.0
    return np.clip(images, 0, 255, out=images).round().astype(np.uint8)


def _balanced_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` labels, every class equally often (±1), in random order."""
    return rng.permutation(np.arange(n) % 10).astype(np.int64)


def cifar_rows(images: np.ndarray) -> np.ndarray:
    """``(N, 32, 32, 3)`` -> ``(N, 3072)``: red, green, blue planes, each row-major."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), -1)


def stl_bytes(images: np.ndarray) -> bytes:
    """``(N, 96, 96, 3)`` -> STL-10's layout: per image, per channel, column-major."""
    return np.ascontiguousarray(images.transpose(0, 3, 2, 1)).tobytes()


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_synthetic_cifar10(
    root: str | Path, n_train: int = 2000, n_test: int = 500, seed: int = 0
) -> SyntheticImages:
    """Write ``root/cifar-10-batches-py/`` (train images spread over the 5 batch files)."""
    if n_train < 5 or n_test < 1:
        raise ValueError(f"need n_train >= 5 and n_test >= 1, got {n_train}, {n_test}")
    rng = np.random.default_rng(seed)
    train_labels, test_labels = _balanced_labels(n_train, rng), _balanced_labels(n_test, rng)
    train, test = draw_images(train_labels, 32, rng), draw_images(test_labels, 32, rng)
    check_not_a_file(root, "the generated data set (written there when missing)")
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    batches = [(f"data_batch_{i + 1}", f"training batch {i + 1} of 5") for i in range(5)]
    chunks = np.array_split(np.arange(n_train), 5)
    parts = [(name, label, train[c], train_labels[c]) for (name, label), c in zip(batches, chunks)]
    parts.append(("test_batch", "testing batch 1 of 1", test, test_labels))
    start = 0
    for name, batch_label, images, labels in parts:
        _pickle(
            folder / name,
            {
                "batch_label": batch_label,
                "labels": [int(v) for v in labels],
                "data": cifar_rows(images),
                "filenames": [f"synthetic_{start + i:05d}.png" for i in range(len(images))],
            },
        )
        start += len(images)
    meta = {
        "label_names": list(CIFAR10_CLASSES),
        "num_cases_per_batch": len(chunks[0]),
        "num_vis": 3072,
    }
    _pickle(folder / "batches.meta", meta)
    return SyntheticImages(folder, list(CIFAR10_CLASSES), train, train_labels, test, test_labels)


def write_synthetic_stl10(
    root: str | Path, n_train: int = 1000, n_test: int = 200, n_unlabeled: int = 0, seed: int = 0
) -> SyntheticImages:
    """Write ``root/stl10_binary/`` (``unlabeled_X.bin`` always, empty when ``n_unlabeled=0``)."""
    if n_train < 10 or n_test < 1 or n_unlabeled < 0:
        raise ValueError(
            f"need n_train >= 10, n_test >= 1, n_unlabeled >= 0, got "
            f"{n_train}, {n_test}, {n_unlabeled}"
        )
    rng = np.random.default_rng(seed)
    train_labels, test_labels = _balanced_labels(n_train, rng), _balanced_labels(n_test, rng)
    train, test = draw_images(train_labels, 96, rng), draw_images(test_labels, 96, rng)
    unlabeled = draw_images(rng.integers(0, 10, n_unlabeled), 96, rng)
    check_not_a_file(root, "the generated data set (written there when missing)")
    folder = Path(root) / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    for name, images in (("train", train), ("test", test), ("unlabeled", unlabeled)):
        (folder / f"{name}_X.bin").write_bytes(stl_bytes(images))
    (folder / "train_y.bin").write_bytes((train_labels + 1).astype(np.uint8).tobytes())
    (folder / "test_y.bin").write_bytes((test_labels + 1).astype(np.uint8).tobytes())
    (folder / "class_names.txt").write_text("\n".join(STL10_CLASSES) + "\n")
    fold_size = max(1, n_train // 5)  # the official folds: 1,000 of the 5,000 training images
    folds = [" ".join(map(str, rng.permutation(n_train)[:fold_size])) for _ in range(10)]
    (folder / "fold_indices.txt").write_text("\n".join(folds) + "\n")
    return SyntheticImages(
        folder, list(STL10_CLASSES), train, train_labels, test, test_labels, unlabeled
    )
