"""CIFAR-10 and STL-10 read through torchvision, official files or not.

torchvision's ``CIFAR10`` and ``STL10`` check the md5 of every file against the official
release and refuse anything else. The subclasses here keep that check for the official files
and read other files (a user's own subset, the generated sets of
:mod:`datamodules.images.synthetic`) through the same parsing with the check off, after the
checks torchvision lacks: a CIFAR batch that does not unpickle to ``(N, 3072)`` uint8 images
with N labels in 0..9, an STL image file that is not a whole number of images, an STL label
file whose count differs from its image file or that holds a label outside 1..10. Each such
problem raises :class:`~datamodules.errors.DataError` naming the file (and the position).

``data.root`` may be the folder holding ``cifar-10-batches-py/`` / ``stl10_binary/``
(torchvision's convention, and where ``download`` puts them) or that folder itself, whatever
its name.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets
from torchvision.datasets.utils import check_integrity

from datamodules.errors import DataError, check_not_a_file
from datamodules.images.classes import STL10_CLASSES

STL_IMAGE_BYTES = 3 * 96 * 96


@dataclass
class ImageArrays:
    """One split as read: uint8 images ``(N, 3, H, W)``, long labels (-1 = unlabelled)."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    folder: Path  # the folder the files were read from
    official: bool  # True: every file matched torchvision's md5


@dataclass(frozen=True)
class _Format:
    name: str
    base_folder: str
    probe: str  # a file that marks "root is the data folder itself"
    contents: str  # what to put there, for the missing-files message
    download_size: str


CIFAR10_FORMAT = _Format(
    "CIFAR-10",
    "cifar-10-batches-py",
    "batches.meta",
    "data_batch_1 ... data_batch_5, test_batch and batches.meta (the python version, "
    "cifar-10-python.tar.gz)",
    "163 MB",
)
STL10_FORMAT = _Format(
    "STL-10",
    "stl10_binary",
    "train_X.bin",
    "train_X.bin, train_y.bin, test_X.bin, test_y.bin, unlabeled_X.bin and class_names.txt "
    "(the binary version, stl10_binary.tar.gz)",
    "2.6 GB",
)


def resolve_root(root: str | Path, fmt: _Format) -> tuple[Path, str]:
    """``(holding folder, base_folder)`` for torchvision: ``base_folder`` is ``""`` when
    ``root`` is the data folder itself."""
    root = Path(root).expanduser()
    if (root / fmt.base_folder).is_dir():
        return root, fmt.base_folder
    if (root / fmt.probe).is_file():
        return root, ""
    if root.name == fmt.base_folder and not root.exists():
        return root.parent, fmt.base_folder  # download into the parent, as torchvision would
    return root, fmt.base_folder


def _check_present(folder: Path, names: list[str], fmt: _Format, root: Path) -> None:
    missing = [name for name in names if not (folder / name).is_file()]
    if not missing:
        return
    if len(missing) == len(names):
        where = f"no {fmt.name} files in {root}"
    else:
        where = f"{folder} lacks {', '.join(missing)}"
    raise DataError(
        f"{where}: put {fmt.contents} in {folder}/ (data.root may also be that folder itself), "
        f"or pass data.download=true to fetch them with torchvision ({fmt.download_size})"
    )


# --------------------------------------------------------------------------------------------
# CIFAR-10
# --------------------------------------------------------------------------------------------


def _unpickle(path: Path) -> object:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except Exception as exc:  # a cut or damaged pickle raises any of several exception types
        raise DataError(
            f"{path}: truncated or corrupt CIFAR-10 file ({type(exc).__name__}: {exc}); "
            "replace it with the one from cifar-10-python.tar.gz"
        ) from None


def check_cifar_batch(path: Path) -> int:
    """The number of images in a CIFAR-10 batch file, after checking its contents."""
    entry = _unpickle(path)
    if not isinstance(entry, dict) or "data" not in entry or "labels" not in entry:
        keys = sorted(map(str, entry)) if isinstance(entry, dict) else type(entry).__name__
        raise DataError(
            f"{path}: not a CIFAR-10 batch: expected a pickled dict with 'data' "
            f"and 'labels', found {keys}"
        )
    data, labels = entry["data"], entry["labels"]
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3072
        or len(data) == 0
    ):
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(
            f"{path}: 'data' must be a uint8 array of shape (N, 3072), N >= 1 (the "
            f"red, green, blue 32x32 planes of each image), got {got}"
        )
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels")
    for position, label in enumerate(labels):
        if not isinstance(label, (int, np.integer)) or not 0 <= label <= 9:
            raise DataError(
                f"{path}: label {label!r} at position {position} (CIFAR-10 labels are 0..9)"
            )
    return len(data)


class CIFAR10Files(datasets.CIFAR10):
    """torchvision's ``CIFAR10``: the md5 check on for the official files, off for others
    (whose contents are checked instead). ``base_folder=""`` reads ``root`` itself."""

    def __init__(self, root: Path, train: bool, download: bool, base_folder: str) -> None:
        self.base_folder = base_folder
        self.official: bool | None = None
        super().__init__(str(root), train=train, download=download)

    def _paths(self) -> list[tuple[Path, str]]:
        files = self.train_list if self.train else self.test_list
        folder = Path(self.root) / self.base_folder
        return [(folder / name, md5) for name, md5 in files] + [
            (folder / self.meta["filename"], self.meta["md5"])
        ]

    def _check_integrity(self) -> bool:
        if self.official is None:
            paths = self._paths()
            if not all(path.is_file() for path, _ in paths):
                return False  # torchvision downloads, or the caller has said what is missing
            self.official = all(check_integrity(str(path), md5) for path, md5 in paths)
            if not self.official:
                for path, _ in paths[:-1]:
                    check_cifar_batch(path)
                self._check_meta(paths[-1][0])
        return True

    def _check_meta(self, path: Path) -> None:
        meta = _unpickle(path)
        names = meta.get(self.meta["key"]) if isinstance(meta, dict) else None
        if not isinstance(names, list) or len(names) != 10:
            raise DataError(
                f"{path}: expected a pickled dict whose 'label_names' lists the 10 class names"
            )

    def _load_meta(self) -> None:
        if self.official:
            super()._load_meta()
            return
        path = os.path.join(self.root, self.base_folder, self.meta["filename"])
        with open(path, "rb") as f:
            self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}


# --------------------------------------------------------------------------------------------
# STL-10
# --------------------------------------------------------------------------------------------

_STL_FILES = {
    "train": [("train_X.bin", "train_y.bin")],
    "test": [("test_X.bin", "test_y.bin")],
    "unlabeled": [("unlabeled_X.bin", None)],
}
_STL_FILES["train+unlabeled"] = _STL_FILES["train"] + _STL_FILES["unlabeled"]


def check_stl_pair(image_path: Path, label_path: Path | None) -> int:
    """The number of images in an STL-10 image file, after checking it and its labels."""
    size = image_path.stat().st_size
    if size % STL_IMAGE_BYTES:
        raise DataError(
            f"{image_path}: {size} bytes is not a whole number of 96x96 colour images "
            f"({STL_IMAGE_BYTES} bytes each): the file is truncated or not STL-10's binary format"
        )
    count = size // STL_IMAGE_BYTES
    if label_path is None:
        return count
    labels = np.fromfile(label_path, dtype=np.uint8)
    if len(labels) != count:
        first = min(len(labels), count)
        what = (
            f"image {first} has no label" if len(labels) < count else f"label {first} has no image"
        )
        raise DataError(
            f"{label_path}: {len(labels)} labels for the {count} images of "
            f"{image_path.name} ({what}, 0-based)"
        )
    bad = np.flatnonzero((labels < 1) | (labels > 10))
    if len(bad):
        raise DataError(
            f"{label_path}: label {labels[bad[0]]} at position {bad[0]} "
            "(0-based; STL-10 labels are 1..10)"
        )
    return count


class STL10Files(datasets.STL10):
    """torchvision's ``STL10``: the md5 check on for the official files, off for others
    (whose sizes and labels are checked instead); only the files of ``split`` are needed."""

    def __init__(self, root: Path, split: str, download: bool, base_folder: str) -> None:
        self.base_folder = base_folder
        self.official: bool | None = None
        super().__init__(str(root), split=split, download=download)

    def _check_integrity(self) -> bool:
        if self.official is None:
            md5 = dict(self.train_list + self.test_list)
            folder = Path(self.root) / self.base_folder
            pairs = _STL_FILES[self.split]
            names = [name for pair in pairs for name in pair if name is not None]
            if not all((folder / name).is_file() for name in names):
                return False
            self.official = all(check_integrity(str(folder / n), md5[n]) for n in names)
            if not self.official:
                for images, labels in pairs:
                    check_stl_pair(folder / images, folder / labels if labels else None)
        return True


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def read_split(dataset: str, root: str | Path, split: str, download: bool = False) -> ImageArrays:
    """Read ``split`` of ``dataset`` ("cifar10": train | test; "stl10": train | test |
    unlabeled | train+unlabeled) from ``root`` into uint8 tensors at the native size."""
    fmt = CIFAR10_FORMAT if dataset == "cifar10" else STL10_FORMAT
    check_not_a_file(root, f"{fmt.base_folder}/ (or its files: {fmt.contents})")
    holding, base = resolve_root(root, fmt)
    folder = holding / base
    if dataset == "cifar10":
        names = [
            n
            for n, _ in (
                datasets.CIFAR10.train_list if split == "train" else datasets.CIFAR10.test_list
            )
        ] + ["batches.meta"]
    else:
        names = [n for pair in _STL_FILES[split] for n in pair if n is not None]
    if not download:
        _check_present(folder, names, fmt, Path(root))
    try:
        if dataset == "cifar10":
            ds = CIFAR10Files(holding, split == "train", download, base)
            images = torch.from_numpy(ds.data).permute(0, 3, 1, 2)  # NHWC -> NCHW
            labels, classes = torch.as_tensor(ds.targets, dtype=torch.long), list(ds.classes)
        else:
            ds = STL10Files(holding, split, download, base)
            images = torch.from_numpy(ds.data)  # already (N, 3, H, W) after torchvision's transpose
            labels = torch.from_numpy(ds.labels.astype(np.int64))
            classes = list(getattr(ds, "classes", STL10_CLASSES))
    except (OSError, RuntimeError) as exc:  # download failures, torchvision's corrupt-file check
        doing = f"could not download {fmt.name} into {holding}" if download else fmt.name
        raise DataError(f"{doing} ({exc}): put {fmt.contents} in {folder}/ yourself") from None
    return ImageArrays(images, labels, classes, folder, bool(ds.official))
