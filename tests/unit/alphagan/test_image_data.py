"""ImageDataModule and the CIFAR-10 / STL-10 readers on small generated files in the real
formats."""

from __future__ import annotations

import hashlib
import pickle
import shutil
from pathlib import Path
from types import SimpleNamespace
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets

from datamodules.errors import DataError
from datamodules.images.datamodule import CIFAR_MEAN, CIFAR_STD, ImageDataModule, ImageDataOptions
from datamodules.images.readers import CIFAR10Files, STL10Files, read_split
from datamodules.images.synthetic import (
    SyntheticImages,
    write_synthetic_cifar10,
    write_synthetic_stl10,
)


@pytest.fixture(scope="module")
def cifar(tmp_path_factory: pytest.TempPathFactory) -> SyntheticImages:
    return write_synthetic_cifar10(tmp_path_factory.mktemp("cifar"), n_train=200, n_test=30)


@pytest.fixture(scope="module")
def stl(tmp_path_factory: pytest.TempPathFactory) -> SyntheticImages:
    return write_synthetic_stl10(
        tmp_path_factory.mktemp("stl"), n_train=40, n_test=10, n_unlabeled=6
    )


def copy_set(written: SyntheticImages, tmp_path: Path) -> Path:
    """A private copy of a written set (for tests that damage files); returns its folder."""
    return Path(shutil.copytree(written.folder, tmp_path / written.folder.name))


def module(root: Path, **kwargs) -> ImageDataModule:
    kwargs.setdefault("batch_size", 8)
    dm = ImageDataModule(root=str(root), num_workers=0, **kwargs)
    dm.setup("fit")
    return dm


def as_uint8(dm: ImageDataModule, images: torch.Tensor) -> np.ndarray:
    """Model-space batch -> uint8 NHWC, the inverse of the datamodule's normalisation."""
    return (dm.denormalize(images) * 255).round().byte().permute(0, 2, 3, 1).numpy()


# ------------------------------------------------------------------ decoding


def test_cifar_channel_order_and_row_major_planes(cifar: SyntheticImages, tmp_path: Path) -> None:
    folder = copy_set(cifar, tmp_path)
    path = folder / "data_batch_1"
    entry = pickle.loads(path.read_bytes(), encoding="latin1")
    # Image 0: pixel (row 1, column 2) red 11, green 22, blue 33; pixel (row 2, column 1) red 44.
    for channel, row, col, value in ((0, 1, 2, 11), (1, 1, 2, 22), (2, 1, 2, 33), (0, 2, 1, 44)):
        entry["data"][0, channel * 1024 + row * 32 + col] = value
    path.write_bytes(pickle.dumps(entry, protocol=2))
    arrays = read_split("cifar10", folder, "train")
    assert arrays.images.shape == (200, 3, 32, 32) and arrays.images.dtype == torch.uint8
    assert arrays.images[0, :, 1, 2].tolist() == [11, 22, 33]
    assert arrays.images[0, 0, 2, 1].item() == 44
    assert arrays.classes[:2] == ["airplane", "automobile"]


def test_cifar_decodes_the_written_images(cifar: SyntheticImages) -> None:
    arrays = read_split("cifar10", cifar.folder.parent, "train")
    assert np.array_equal(arrays.images.permute(0, 2, 3, 1).numpy(), cifar.train_images)
    assert arrays.labels.tolist() == cifar.train_labels.tolist()
    test = read_split("cifar10", cifar.folder.parent, "test")
    assert np.array_equal(test.images.permute(0, 2, 3, 1).numpy(), cifar.test_images)


def test_stl_column_major_layout(stl: SyntheticImages, tmp_path: Path) -> None:
    folder = copy_set(stl, tmp_path)
    data = bytearray((folder / "train_X.bin").read_bytes())
    image = 3  # image 3, pixel (row 5, column 70): each channel plane is stored column by column
    for channel, value in enumerate((7, 8, 9)):
        data[image * 27648 + channel * 9216 + 70 * 96 + 5] = value
    (folder / "train_X.bin").write_bytes(bytes(data))
    arrays = read_split("stl10", folder, "train")
    assert arrays.images.shape == (40, 3, 96, 96)
    assert arrays.images[image, :, 5, 70].tolist() == [7, 8, 9]
    unchanged = np.delete(np.arange(40), image)
    assert np.array_equal(
        arrays.images.permute(0, 2, 3, 1).numpy()[unchanged], stl.train_images[unchanged]
    )
    assert arrays.labels.tolist() == stl.train_labels.tolist()  # 1..10 on disk, 0..9 here
    assert arrays.classes[2] == "car"


def test_stl_resized_to_48_as_pil_does(stl: SyntheticImages) -> None:
    dm = module(stl.folder.parent, dataset="stl10")
    assert dm.image_shape == (3, 48, 48) and dm.bottom_width == 6
    images, labels = next(iter(torch.utils.data.DataLoader(dm._datasets["train"], batch_size=4)))
    expected = np.stack(
        [
            np.asarray(Image.fromarray(im).resize((48, 48), Image.BILINEAR))
            for im in stl.train_images[:4]
        ]
    )
    assert np.array_equal(as_uint8(dm, images), expected)
    assert labels.tolist() == stl.train_labels[:4].tolist()


def test_stl_train_split_adds_unlabeled(stl: SyntheticImages) -> None:
    dm = module(stl.folder.parent, dataset="stl10", split="train")
    summary = dm.data_summary()
    assert list(summary["splits"]) == ["train", "test"]  # the test split is read and checked too
    assert summary["splits"]["train"]["size"] == 46
    assert summary["splits"]["train"]["labels"]["unlabeled"] == 6
    assert dm._datasets["train"].labels[-6:].tolist() == [-1] * 6


# ------------------------------------------------------------------ roots, official files


@pytest.mark.parametrize("which", ["holding", "itself", "renamed"])
def test_root_conventions(cifar: SyntheticImages, tmp_path: Path, which: str) -> None:
    if which == "holding":
        root = cifar.folder.parent
    elif which == "itself":
        root = cifar.folder
    else:
        root = Path(shutil.copytree(cifar.folder, tmp_path / "my-cifar"))
    arrays = read_split("cifar10", root, "train")
    assert len(arrays.images) == 200 and not arrays.official
    assert np.array_equal(arrays.images[5].permute(1, 2, 0).numpy(), cifar.train_images[5])


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_official_files_go_through_torchvisions_md5_check(
    cifar: SyntheticImages, stl: SyntheticImages, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Make torchvision's md5 lists describe the generated files: they are then "official".
    folder = cifar.folder
    monkeypatch.setattr(
        CIFAR10Files,
        "train_list",
        [[f"data_batch_{i}", _md5(folder / f"data_batch_{i}")] for i in range(1, 6)],
    )
    monkeypatch.setattr(
        CIFAR10Files, "meta", {**CIFAR10Files.meta, "md5": _md5(folder / "batches.meta")}
    )
    loaded_meta = []
    original = CIFAR10Files.__mro__[1]._load_meta
    monkeypatch.setattr(
        CIFAR10Files.__mro__[1],
        "_load_meta",
        lambda self: (loaded_meta.append(True), original(self))[1],
    )
    arrays = read_split("cifar10", folder, "train")
    assert arrays.official and loaded_meta == [True]  # torchvision's own md5-checked meta read
    assert np.array_equal(arrays.images.permute(0, 2, 3, 1).numpy(), cifar.train_images)
    assert not read_split("cifar10", folder, "test").official  # test_batch md5 unchanged

    md5 = {name: _md5(stl.folder / name) for name in ("train_X.bin", "train_y.bin")}
    monkeypatch.setattr(
        STL10Files, "train_list", [[n, m] for n, m in md5.items()] + [["unlabeled_X.bin", "0" * 32]]
    )
    assert read_split("stl10", stl.folder, "train").official
    assert not read_split("stl10", stl.folder, "train+unlabeled").official


def test_generated_files_are_not_official(cifar: SyntheticImages, stl: SyntheticImages) -> None:
    assert not read_split("cifar10", cifar.folder, "train").official
    assert not read_split("stl10", stl.folder, "test").official
    dm = module(cifar.folder)
    assert "md5 check off" in dm.data_summary()["info"]["files"]


# ------------------------------------------------------------------ bad files


def test_missing_folder_says_what_to_put_where(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        module(tmp_path / "nowhere")
    message = str(err.value)
    assert "no CIFAR-10 files" in message and "data.download=true" in message
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in message
    assert "data_batch_1" in message and "batches.meta" in message
    with pytest.raises(DataError, match=r"train_X\.bin.*stl10_binary/.*data\.download=true"):
        module(tmp_path, dataset="stl10")


def test_download_uses_torchvision_only_when_files_are_missing(
    cifar: SyntheticImages, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def offline(url: str, root: str, **kwargs) -> None:
        calls.append((url, root))
        raise URLError("offline")

    monkeypatch.setattr(datasets.cifar, "download_and_extract_archive", offline)
    assert len(read_split("cifar10", cifar.folder.parent, "train", download=True).images) == 200
    assert calls == []  # present (if not official) files are used as they are
    with pytest.raises(DataError, match=r"could not download CIFAR-10 into .*offline.*yourself"):
        read_split("cifar10", tmp_path / "empty", "train", download=True)
    assert calls == [(datasets.CIFAR10.url, str(tmp_path / "empty"))]


def test_partly_missing_files_are_named(cifar: SyntheticImages, tmp_path: Path) -> None:
    folder = copy_set(cifar, tmp_path)
    (folder / "batches.meta").unlink()
    (folder / "data_batch_4").unlink()
    with pytest.raises(DataError, match=r"cifar-10-batches-py lacks data_batch_4, batches\.meta"):
        module(tmp_path)


def test_truncated_cifar_batch_names_the_file(cifar: SyntheticImages, tmp_path: Path) -> None:
    folder = copy_set(cifar, tmp_path)
    path = folder / "data_batch_3"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError) as err:
        module(tmp_path)
    assert str(path) in str(err.value) and "truncated or corrupt" in str(err.value)


def test_cifar_batch_with_a_bad_label_names_file_and_position(
    cifar: SyntheticImages, tmp_path: Path
) -> None:
    folder = copy_set(cifar, tmp_path)
    path = folder / "data_batch_2"
    entry = pickle.loads(path.read_bytes(), encoding="latin1")
    entry["labels"][17] = 10
    path.write_bytes(pickle.dumps(entry, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_2: label 10 at position 17"):
        module(tmp_path)
    entry["labels"] = entry["labels"][:-1]
    path.write_bytes(pickle.dumps(entry, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_2: 40 images but 39 labels"):
        module(tmp_path)


@pytest.mark.parametrize(
    ("damage", "pattern"),
    [
        (
            "short",
            r"train_y\.bin: 39 labels for the 40 images of train_X\.bin \(image 39 has no label",
        ),
        (
            "long",
            r"train_y\.bin: 41 labels for the 40 images of train_X\.bin \(label 40 has no image",
        ),
        ("zero", r"train_y\.bin: label 0 at position 7 \(0-based; STL-10 labels are 1\.\.10\)"),
        ("eleven", r"train_y\.bin: label 11 at position 7"),
        ("cut_images", r"train_X\.bin: 1105919 bytes is not a whole number of 96x96"),
    ],
)
def test_bad_stl_files_name_file_and_position(
    stl: SyntheticImages, tmp_path: Path, damage: str, pattern: str
) -> None:
    folder = copy_set(stl, tmp_path)
    labels = bytearray((folder / "train_y.bin").read_bytes())
    if damage == "short":
        labels = labels[:-1]
    elif damage == "long":
        labels.append(3)
    elif damage in ("zero", "eleven"):
        labels[7] = 0 if damage == "zero" else 11
    else:
        images = folder / "train_X.bin"
        images.write_bytes(images.read_bytes()[:-1])
    (folder / "train_y.bin").write_bytes(bytes(labels))
    with pytest.raises(DataError, match=pattern):
        module(folder, dataset="stl10")


# ------------------------------------------------------------------ split, loaders


def _index_of(written: SyntheticImages) -> dict[bytes, int]:
    return {image.tobytes(): i for i, image in enumerate(written.train_images)}


def test_search_split_by_index(cifar: SyntheticImages) -> None:
    dm = module(cifar.folder, batch_size=10)
    index = _index_of(cifar)
    train = {index[im.tobytes()] for im in dm._datasets["train"].images.permute(0, 2, 3, 1).numpy()}
    assert train == set(range(100))
    seen: list[int] = []
    for images, labels in dm.train_dataloader():
        assert (
            images.dtype == torch.float32
            and labels.dtype == torch.long
            and images.shape == (10, 3, 32, 32)
        )
        rows = [index[im.tobytes()] for im in as_uint8(dm, images)]
        assert labels.tolist() == cifar.train_labels[rows].tolist()
        seen += rows
    assert sorted(seen) == list(range(100)) and seen != list(range(100))  # all of it, shuffled
    arch = [
        index[im.tobytes()] for images, _ in dm.arch_dataloader() for im in as_uint8(dm, images)
    ]
    assert sorted(arch) == list(range(100, 200))  # the second half: disjoint, union = all
    assert [i - 100 for i in arch] != seen  # its own permutation (seed + 1), not the first half's


def test_drop_last_and_batch_size_above_half(cifar: SyntheticImages) -> None:
    dm = module(cifar.folder, batch_size=32)
    assert len(dm.train_dataloader()) == 3 and len(list(dm.arch_dataloader())) == 3  # 100 // 32
    small = module(cifar.folder, batch_size=128)  # the data can be read and shown ...
    with pytest.raises(DataError, match=r"halves of 100 and 100, fewer than data\.batch_size=128"):
        small.train_dataloader()  # ... but not trained on
    with pytest.raises(DataError, match=r"halves of 100 and 100"):
        small.arch_dataloader()


def test_arch_loader_shards_two_ranks(cifar: SyntheticImages) -> None:
    index = _index_of(cifar)

    def shard(rank: int, epoch: int) -> list[int]:
        dm = module(cifar.folder, batch_size=5, seed=3)
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        loader = dm.arch_dataloader()
        assert loader is dm.arch_dataloader()
        loader.sampler.set_epoch(epoch)
        return [index[im.tobytes()] for images, _ in loader for im in as_uint8(dm, images)]

    rank0, rank1 = shard(0, 0), shard(1, 0)
    assert len(rank0) == len(rank1) == 50 and not set(rank0) & set(rank1)
    assert sorted(rank0 + rank1) == list(range(100, 200))
    assert shard(0, 0) == rank0  # the order depends only on (seed, epoch)
    again0, again1 = shard(0, 1), shard(1, 1)
    assert again0 != rank0 and sorted(again0 + again1) == list(range(100, 200))


def test_arch_loader_needs_search_split(cifar: SyntheticImages) -> None:
    dm = module(cifar.folder, split="train")
    assert len(dm._datasets["train"]) == 200
    with pytest.raises(RuntimeError, match="split='search'"):
        dm.arch_dataloader()


def test_test_loader_each_image_once_across_ranks(cifar: SyntheticImages) -> None:
    got = []
    for rank in (0, 1):
        dm = module(cifar.folder, batch_size=4)
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        got += [im.tobytes() for images, _ in dm.test_dataloader() for im in as_uint8(dm, images)]
    assert sorted(got) == sorted(im.tobytes() for im in cifar.test_images)


# ------------------------------------------------------------------ normalisation


@pytest.mark.parametrize("normalize", ["gan", "cifar_stats"])
def test_normalisation_values(cifar: SyntheticImages, normalize: str) -> None:
    dm = module(cifar.folder, normalize=normalize)
    image, _ = dm._datasets["train"][0]
    raw = torch.from_numpy(cifar.train_images[0]).permute(2, 0, 1).double() / 255
    mean, std = ((0.5,) * 3, (0.5,) * 3) if normalize == "gan" else (CIFAR_MEAN, CIFAR_STD)
    expected = (raw - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    torch.testing.assert_close(image.double(), expected, atol=1e-6, rtol=0)
    low, high = dm.data_summary()["info"]["value_range"]
    if normalize == "gan":
        assert (low, high) == (-1.0, 1.0)
        white = torch.full((3, 1, 1), 255, dtype=torch.uint8)
        assert dm._make(white[None], torch.zeros(1, dtype=torch.long))[0][0].max().item() == 1.0
    else:
        assert low == pytest.approx(-0.491 / 0.247, abs=1e-4)  # red: (0 - 0.491) / 0.247
        assert high == pytest.approx((1 - 0.482) / 0.243, abs=1e-4)  # green
    back = dm.denormalize(image[None])[0].double()
    torch.testing.assert_close(back, raw, atol=1e-6, rtol=0)


def test_options_dataclass_and_bad_values(cifar: SyntheticImages) -> None:
    dm = ImageDataModule(ImageDataOptions(root=str(cifar.folder), batch_size=4), num_workers=0)
    assert (dm.batch_size, dm.num_workers, dm.image_size) == (4, 0, 32)
    dm = ImageDataModule.from_options({"root": str(cifar.folder), "generate": True}, split="train")
    assert dm.split == "train" and dm.num_workers == ImageDataOptions.num_workers
    for key, value, pattern in (
        ("dataset", "mnist", "data.dataset"),
        ("normalize", "imagenet", "data.normalize"),
        ("batch_size", 0, "data.batch_size"),
        ("image_size", 36, "multiple of 8"),
    ):
        with pytest.raises(DataError, match=pattern):
            ImageDataModule(root=str(cifar.folder), **{key: value})


# ------------------------------------------------------------------ summary, preview


def test_data_summary_counts_from_the_files(cifar: SyntheticImages) -> None:
    labels: list[int] = []
    for i in range(1, 6):  # read the pickles directly, not through the reader
        with open(cifar.folder / f"data_batch_{i}", "rb") as f:
            labels += pickle.load(f, encoding="latin1")["labels"]
    names = pickle.loads((cifar.folder / "batches.meta").read_bytes())["label_names"]
    summary = module(cifar.folder.parent).data_summary()
    for split, part in (("train", labels[:100]), ("val", labels[100:])):
        assert summary["splits"][split]["size"] == len(part)
        assert summary["splits"][split]["labels"] == {
            name: part.count(c) for c, name in enumerate(names)
        }
    assert summary["info"]["train_split_indices"] == {"train": [0, 100], "val": [100, 200]}
    assert summary["info"]["batches_per_epoch"] == {"train": 12, "val": 12}


def test_write_preview_pngs(stl: SyntheticImages, tmp_path: Path) -> None:
    dm = module(stl.folder, dataset="stl10", normalize="cifar_stats")
    paths = dm.write_preview(tmp_path / "preview")
    assert [p.name for p in paths] == ["train.png", "val.png"]
    half = stl.train_labels[:20]
    with Image.open(paths[0]) as grid:
        # a row of 8 tiles (48 px, 2 px padding) per class present in the train half
        assert grid.size == (8 * 50 + 2, len(set(half.tolist())) * 50 + 2)
        first = np.asarray(grid.convert("RGB"))[2:50, 2:50]
    first_of_lowest_class = int(np.flatnonzero(half == half.min())[0])
    expected = np.asarray(
        Image.fromarray(stl.train_images[first_of_lowest_class]).resize((48, 48), Image.BILINEAR)
    )
    assert np.abs(first.astype(int) - expected).max() <= 1  # denormalised back to the pixels


def test_preview_enlarges_small_images(cifar: SyntheticImages, tmp_path: Path) -> None:
    dm = module(cifar.folder)
    (path,) = dm.write_preview(tmp_path, per_class=4)[:1]
    with Image.open(path) as grid:
        assert grid.size == (4 * 66 + 2, 10 * 66 + 2)  # 32 px shown at 64 px
        tile = np.asarray(grid.convert("RGB"))[2:66, 2:66]
    first = int(np.flatnonzero(cifar.train_labels[:100] == 0)[0])
    assert np.array_equal(tile[::2, ::2], cifar.train_images[first])
