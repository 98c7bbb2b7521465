"""``ImageDataModule``: CIFAR-10 / STL-10 for GAN search and training.

Batches are ``(images, labels)``: float32 ``(B, 3, H, W)`` normalised as chosen, long ``(B,)``
(-1 for STL-10's unlabelled images). The files are read through torchvision's datasets
(:mod:`datamodules.images.readers`), resized once (PIL's antialiased bilinear, bit for bit, as
the reference's ``transforms.Resize``) and kept as one uint8 tensor, so a batch costs a
gather and a multiply-add.

``split="search"`` is the reference's search split (docs/alphagan.md): the labelled train split
cut **by index**, the first half for the weights (:meth:`ImageDataModule.train_dataloader`,
"train") and the second half for the worst-case and α phases
(:meth:`ImageDataModule.arch_dataloader`, "val"): 25,000 / 25,000 on CIFAR-10, 2,500 / 2,500
on STL-10's labelled train split. ``split="train"`` is the whole train split for retraining
(STL-10: train + unlabeled, 105,000 images). There is no augmentation. :meth:`setup` also
reads the official test split (the held-out images the search compares its samples with), so a
damaged test file stops a run before it starts, and ``python -m experiments data`` checks it. A
part smaller than one batch is read and summarised (with a warning); only its loaders refuse it.

``normalize="gan"`` maps pixels to [-1, 1] ((x - 0.5) / 0.5, the generator's tanh range);
``"cifar_stats"`` uses the CIFAR-10 mean and std, as the reference's search does (a quirk: real
images then lie in about [-2.0, 2.1]).

The datamodule shards itself across ranks from ``self.trainer`` (the Trainer runs with
``use_distributed_sampler=False``): the training and α loaders use a ``DistributedSampler``
with the same seed on every rank, so ranks get disjoint shards of one permutation per epoch.
Lightning calls ``set_epoch`` on the training loader's sampler; whoever iterates
:meth:`arch_dataloader` calls ``loader.sampler.set_epoch(epoch)`` itself.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision.transforms.v2 import functional as TF
from torchvision.utils import save_image
from tqdm.auto import tqdm

from datamodules.errors import DataError
from datamodules.images.readers import ImageArrays, read_split

log = logging.getLogger(__name__)

CIFAR_MEAN = (0.491, 0.482, 0.447)  # the reference's search normalisation (docs/alphagan.md)
CIFAR_STD = (0.247, 0.243, 0.262)
NORMALIZATIONS = {"gan": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), "cifar_stats": (CIFAR_MEAN, CIFAR_STD)}
NATIVE_SIZE = {"cifar10": 32, "stl10": 96}
DEFAULT_SIZE = {"cifar10": 32, "stl10": 48}
SPLITS = ("search", "train")


@dataclass
class ImageDataOptions:
    """Every data setting with its default, written only here (the config's ``data``
    section subclasses it)."""

    dataset: str = "cifar10"  # "cifar10" | "stl10"
    root: str = "data/cifar10"  # holds cifar-10-batches-py/ (stl10_binary/), or is that folder
    download: bool = False  # fetch the official files with torchvision when they are missing
    batch_size: int = 64
    num_workers: int = 2
    image_size: Optional[int] = None  # None: 32 for cifar10, 48 for stl10
    normalize: str = "gan"  # "gan": [-1, 1]; "cifar_stats": CIFAR-10 mean/std (the search quirk)
    seed: int = 0  # the data order


class ImageTensorDataset(Dataset):
    """uint8 images ``(N, 3, H, W)`` and labels, served normalised as float32."""

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
    ) -> None:
        self.images, self.labels = images, labels
        self.mean, self.std = mean.view(3, 1, 1), std.view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index].float().div_(255.0).sub_(self.mean).div_(self.std)
        return image, self.labels[index]


def resize_images(images: torch.Tensor, size: int, chunk: int = 2048) -> torch.Tensor:
    """uint8 ``(N, 3, H, W)`` -> contiguous ``(N, 3, size, size)`` with antialiased bilinear
    (identical to PIL's ``Image.resize(BILINEAR)``, which ``transforms.Resize`` applies to PIL
    images). Shows a progress bar for large sets (STL-10's 105k images: about half a minute)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images.contiguous()
    starts = range(0, len(images), chunk)
    if len(images) > 20 * chunk:
        starts = tqdm(starts, desc=f"resizing {len(images)} images to {size}x{size}", unit="chunk")
    parts = [
        TF.resize(images[i : i + chunk].contiguous(), [size, size], antialias=True) for i in starts
    ]
    return torch.cat(parts) if parts else images.new_zeros((0, 3, size, size))


class ImageDataModule(L.LightningDataModule):
    """CIFAR-10 or STL-10 as the GAN sees it (see the module docstring).

    Args:
        options: an :class:`ImageDataOptions` (or a subclass instance, a ``DictConfig`` or a
            mapping: only its fields are read); keyword arguments override it.
        split: ``"search"`` (train half / val half) or ``"train"`` (the whole train split).
        pin_memory: pin batches for the GPU; ``None``: when CUDA is available.
        **kwargs: fields of :class:`ImageDataOptions`.
    """

    def __init__(
        self,
        options: ImageDataOptions | Mapping | None = None,
        split: str = "search",
        pin_memory: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.options = _options(options, kwargs)
        opts = self.options
        _check(opts, split)
        self.save_hyperparameters({"split": split, **dataclasses.asdict(opts)}, logger=False)
        self.dataset, self.root, self.download = opts.dataset, opts.root, opts.download
        self.batch_size, self.num_workers, self.seed = opts.batch_size, opts.num_workers, opts.seed
        self.image_size = opts.image_size or DEFAULT_SIZE[opts.dataset]
        self.normalize = opts.normalize
        self.split = split
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        mean, std = NORMALIZATIONS[opts.normalize]
        self.mean, self.std = torch.tensor(mean), torch.tensor(std)
        self.class_names: list[str] = []
        self._datasets: dict[str, ImageTensorDataset] = {}
        self._arrays: dict[str, ImageArrays] = {}
        self._arch_loader: tuple[tuple[int, int], DataLoader] | None = None

    @classmethod
    def from_options(cls, options: Any, **kwargs: Any) -> ImageDataModule:
        """Build from a config section that holds (at least) :class:`ImageDataOptions`' keys."""
        return cls(options, **kwargs)

    # ------------------------------------------------------------------ properties

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)

    @property
    def bottom_width(self) -> int:
        """The generator's first feature map: ``H // 8`` (4 on CIFAR-10, 6 on STL-10 at 48)."""
        return self.image_size // 8

    @property
    def num_classes(self) -> int:
        return 10

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        """Model-space images -> [0, 1] (clamped), for grids and FID."""
        mean, std = (t.to(images).view(1, 3, 1, 1) for t in (self.mean, self.std))
        return (images * std + mean).clamp_(0.0, 1.0)

    def normalize_images(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images -> the model's space (the inverse of :meth:`denormalize`)."""
        mean, std = (t.to(images).view(1, 3, 1, 1) for t in (self.mean, self.std))
        return (images - mean) / std

    # ------------------------------------------------------------------ setup

    def setup(self, stage: str | None = None) -> None:
        """Read the train split and cut it as ``split`` says, and read the test split (the
        held-out images a run compares its samples with), so every file a run reads is
        checked before it starts; safe to call repeatedly."""
        if "train" in self._datasets:
            return
        source = "train+unlabeled" if self.split == "train" and self.dataset == "stl10" else "train"
        arrays = self._read(source)
        if self.split == "train":
            self._datasets["train"] = self._make(arrays.images, arrays.labels)
        else:
            half = len(arrays.images) // 2
            self._datasets["train"] = self._make(arrays.images[:half], arrays.labels[:half])
            self._datasets["val"] = self._make(arrays.images[half:], arrays.labels[half:])
        test = self._read("test")
        self._datasets["test"] = self._make(test.images, test.labels)

    def too_small(self) -> str | None:
        """Why training would refuse the loaded split (a part with fewer images than one
        batch: every epoch would be empty), or None."""
        parts = [name for name in ("train", "val") if name in self._datasets]
        sizes = [len(self._datasets[name]) for name in parts]
        if min(sizes) >= self.batch_size:
            return None
        folder = next(iter(self._arrays.values())).folder
        if self.split == "train":
            what = f"the {sizes[0]} training images are"
        else:
            what = (
                f"the search split cuts the {sum(sizes)} training images into halves of "
                f"{' and '.join(map(str, sizes))},"
            )
        return (
            f"{folder}: {what} fewer than data.batch_size={self.batch_size}: use more images or "
            "a smaller data.batch_size"
        )

    def _check_size(self) -> None:
        problem = self.too_small()
        if problem is not None:
            raise DataError(problem)

    def _read(self, split: str) -> ImageArrays:
        if split not in self._arrays:
            arrays = read_split(self.dataset, self.root, split, self.download)
            arrays.images = resize_images(arrays.images, self.image_size)
            self._arrays[split] = arrays
            self.class_names = arrays.classes
            files = "official files, md5 verified" if arrays.official else "md5 check off"
            self._log(
                f"{split}: {len(arrays.images)} images from {arrays.folder} ({files}), "
                f"{self.image_size}x{self.image_size}"
            )
        return self._arrays[split]

    def _make(self, images: torch.Tensor, labels: torch.Tensor) -> ImageTensorDataset:
        return ImageTensorDataset(images, labels, self.mean, self.std)

    def _log(self, message: str) -> None:
        if self._rank_and_world_size()[0] == 0:
            log.info("%s: %s", self.dataset, message)

    def _rank_and_world_size(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def _loaded(self, name: str) -> ImageTensorDataset:
        if name not in self._datasets:
            raise RuntimeError(
                f"no '{name}' split (split={self.split!r}): call dm.setup('fit') "
                "first; the 'val' half exists only with split='search'"
            )
        return self._datasets[name]

    # ------------------------------------------------------------------ dataloaders

    def _loader(self, dataset: Dataset, **kwargs: Any) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
            generator=torch.Generator().manual_seed(self.seed),
            **kwargs,
        )

    def _shuffled(self, dataset: ImageTensorDataset, seed: int) -> DataLoader:
        rank, world_size = self._rank_and_world_size()
        sampler = DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        return self._loader(dataset, sampler=sampler, drop_last=True)

    def train_dataloader(self) -> DataLoader:
        """The weights' batches (search: the first half), reshuffled every epoch; this rank's.
        A DataError when a part is smaller than one batch (:meth:`too_small`)."""
        dataset = self._loaded("train")
        self._check_size()
        return self._shuffled(dataset, self.seed)

    def arch_dataloader(self) -> DataLoader:
        """The worst-case and α batches (the second half); call ``.sampler.set_epoch(epoch)``
        before each pass. The same loader comes back on every call (its workers persist). Its
        order is drawn with ``seed + 1``, so it is not the training half's permutation."""
        if self.split != "search":
            raise RuntimeError("arch_dataloader() needs split='search'")
        shard = self._rank_and_world_size()
        if self._arch_loader is None or self._arch_loader[0] != shard:
            dataset = self._loaded("val")
            self._check_size()
            self._arch_loader = (shard, self._shuffled(dataset, self.seed + 1))
        return self._arch_loader[1]

    def test_dataloader(self) -> DataLoader:
        """Held-out real images (the official test split) in order; rank r gets ``r::world``."""
        dataset = self._loaded("test")
        rank, world_size = self._rank_and_world_size()
        mine = torch.utils.data.Subset(dataset, range(rank, len(dataset), world_size))
        return self._loader(mine, shuffle=False)

    # ------------------------------------------------------------------ summary, preview

    def _splits(self) -> list[str]:
        self._loaded("train")  # says to call setup() first
        return [name for name in ("train", "val") if name in self._datasets]

    def data_summary(self) -> dict[str, Any]:
        """``{"splits": {"train"/"val"/"test": {"size", "labels": {class name: count}}},
        "info"}``; unlabelled STL-10 images count under ``"unlabeled"``. A part smaller than
        one batch is shown too, with a warning that training would refuse it."""
        splits: dict[str, Any] = {}
        start = 0
        indices: dict[str, list[int]] = {}
        for name in [*self._splits(), "test"]:
            dataset = self._datasets[name]
            counts = Counter(dataset.labels.tolist())
            labels = {cls: counts.get(i, 0) for i, cls in enumerate(self.class_names)}
            if counts.get(-1):
                labels["unlabeled"] = counts[-1]
            splits[name] = {"size": len(dataset), "labels": labels}
            if name != "test":
                indices[name] = [start, start + len(dataset)]
                start += len(dataset)
        problem = self.too_small()
        if problem is not None:
            warnings.warn(f"training would refuse this data: {problem}", stacklevel=2)
        arrays = next(iter(self._arrays.values()))
        world_size = self._rank_and_world_size()[1]
        low, high = -self.mean / self.std, (1 - self.mean) / self.std
        if arrays.official:
            files = "official (md5 verified)"
        else:
            files = "not the official files: md5 check off, contents checked"
        info = {
            "dataset": self.dataset,
            "folder": str(arrays.folder),
            "files": files,
            "split": self.split,
            "train_split_indices": indices,  # [start, end) in the train split's file order
            "image_shape": list(self.image_shape),
            "normalize": self.normalize,
            "value_range": [round(float(low.min()), 4), round(float(high.max()), 4)],
            "batch_size": self.batch_size,
            "batches_per_epoch": {
                name: len(self._datasets[name]) // world_size // self.batch_size
                for name in self._splits()
            },
        }
        if problem is not None:
            info["warning"] = f"training would refuse this data: {problem}"
        return {"splits": splits, "info": info}

    def write_preview(self, out_dir: Path, per_class: int = 8) -> list[Path]:
        """Write one PNG per split (``train.png``, ``val.png``): a row of ``per_class`` images
        per class (the first of each in the split), as the model gets them, denormalised;
        images under 64 px are enlarged by an integer factor (nearest neighbour) to be seen."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for name in self._splits():
            dataset = self._datasets[name]
            rows = []
            for label in [*range(len(self.class_names)), -1]:
                chosen = torch.nonzero(dataset.labels == label).flatten()[:per_class].tolist()
                if chosen:
                    rows.append(torch.stack([dataset[i][0] for i in chosen]))
                    pad = per_class - len(chosen)
                    if pad:
                        rows.append(self.normalize_images(torch.ones(pad, *self.image_shape)))
            path = out_dir / f"{name}.png"
            grid = self.denormalize(torch.cat(rows))
            zoom = max(1, 64 // self.image_size)
            if zoom > 1:
                grid = torch.nn.functional.interpolate(grid, scale_factor=zoom, mode="nearest")
            save_image(grid, path, nrow=per_class, padding=2)
            paths.append(path)
        return paths


def _options(options: Any, overrides: Mapping[str, Any]) -> ImageDataOptions:
    names = [f.name for f in dataclasses.fields(ImageDataOptions)]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise TypeError(f"ImageDataModule: unknown option(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    if options is not None:
        get = options.get if isinstance(options, Mapping) else None
        for name in names:
            if get is not None and name in options:
                values[name] = get(name)
            elif get is None and hasattr(options, name):
                values[name] = getattr(options, name)
    values.update(overrides)
    return ImageDataOptions(**values)


def _check(opts: ImageDataOptions, split: str) -> None:
    if opts.dataset not in NATIVE_SIZE:
        raise DataError(
            f"data.dataset must be one of {', '.join(NATIVE_SIZE)}, got {opts.dataset!r}"
        )
    if opts.normalize not in NORMALIZATIONS:
        raise DataError(
            f"data.normalize must be one of {', '.join(NORMALIZATIONS)}, got {opts.normalize!r}"
        )
    if split not in SPLITS:
        raise DataError(f"the image split must be one of {', '.join(SPLITS)}, got {split!r}")
    if opts.batch_size < 1:
        raise DataError(f"data.batch_size must be at least 1, got {opts.batch_size}")
    if opts.num_workers < 0:
        raise DataError(f"data.num_workers must be at least 0, got {opts.num_workers}")
    if opts.image_size is not None and (opts.image_size < 8 or opts.image_size % 8):
        raise DataError(
            f"data.image_size must be a multiple of 8 (the generator starts at "
            f"image_size // 8), got {opts.image_size}"
        )
