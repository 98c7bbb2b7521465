"""The shared callbacks: the media logger (disk + W&B)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import WandbLogger
from matplotlib.figure import Figure
from PIL import Image

from lightning_modules.callbacks import MediaLogger, find_callback, media_logger

# ------------------------------------------------------------------------------ media logger


class RecordingWandb(WandbLogger):
    """A WandbLogger that records what it is asked to log instead of talking to W&B."""

    def __init__(self) -> None:
        super().__init__(mode="disabled")
        self.calls: list[tuple[str, str, list, int | None]] = []

    def log_image(self, key, images, step=None, **kwargs):  # type: ignore[override]
        self.calls.append(("image", key, images, step))

    def log_video(self, key, videos, step=None, **kwargs):  # type: ignore[override]
        self.calls.append(("video", key, videos, step))

    def log_table(self, key, columns=None, data=None, dataframe=None, step=None):  # type: ignore[override]
        self.calls.append(("table", key, [columns, data], step))


class FakeTrainer:
    def __init__(self, root: Path, loggers: list, rank0: bool = True, step: int = 7) -> None:
        self.default_root_dir, self.loggers = str(root), loggers
        self.is_global_zero, self.global_step, self.callbacks = rank0, step, []


def test_images_of_every_kind_go_to_disk_and_wandb(tmp_path):
    wandb = RecordingWandb()
    media = MediaLogger()
    media.setup(FakeTrainer(tmp_path, [wandb]), None, "fit")  # type: ignore[arg-type]
    gray = np.linspace(0, 1, 12).reshape(3, 4)  # float in [0, 1]
    path = media.log_image("samples/gray", gray)
    assert path == tmp_path / "samples/gray/step_000007.png"
    np.testing.assert_array_equal(
        np.asarray(Image.open(path)), np.round(gray * 255).astype(np.uint8)
    )
    chw = torch.zeros(3, 2, 5)
    chw[0] = 1.0  # red
    rgb = np.asarray(Image.open(media.log_image("samples/rgb", chw, file="grid.png")))
    assert rgb.shape == (2, 5, 3) and (rgb[..., 0] == 255).all() and (rgb[..., 1:] == 0).all()
    fig = Figure(figsize=(1, 1))
    fig.add_subplot().plot([0, 1])
    fig_path = media.log_image("plots/curve", fig, step=3)
    assert fig_path == tmp_path / "plots/curve/step_000003.png" and fig_path.stat().st_size > 0
    assert [(c[0], c[1], c[3]) for c in wandb.calls] == [
        ("image", "samples/gray", 7),
        ("image", "samples/rgb", 7),
        ("image", "plots/curve", 3),
    ]
    assert wandb.calls[1][2] == [str(tmp_path / "grid.png")]
    with pytest.raises(ValueError, match="image must be"):
        media.log_image("bad", np.zeros((2, 3, 7)))


def test_videos_and_tables(tmp_path):
    wandb = RecordingWandb()
    media = MediaLogger(tmp_path / "run")
    media.setup(FakeTrainer(tmp_path, [wandb]), None, "fit")  # type: ignore[arg-type]
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"not really a video, but a file with audio would be copied alike")
    path = media.log_video("videos/face", source, file="videos/face_0.mp4")
    assert path == tmp_path / "run/videos/face_0.mp4" and path.read_bytes() == source.read_bytes()
    table = media.log_table("eval/per_seq", ["name", "lve"], [["a", 1.5], ["b", 2.0]])
    with table.open() as f:
        assert list(csv.reader(f)) == [["name", "lve"], ["a", "1.5"], ["b", "2.0"]]
    assert [c[0] for c in wandb.calls] == ["video", "table"]
    assert wandb.calls[1][2] == [["name", "lve"], [["a", 1.5], ["b", 2.0]]]
    with pytest.raises(ValueError, match="every row needs 2 values"):
        media.log_table("eval/bad", ["name", "lve"], [["a"]])
    with pytest.raises(FileNotFoundError):
        media.log_video("videos/missing", tmp_path / "nope.mp4")


def test_other_ranks_write_nothing(tmp_path):
    wandb = RecordingWandb()
    media = MediaLogger()
    media.setup(FakeTrainer(tmp_path, [wandb], rank0=False), None, "fit")  # type: ignore[arg-type]
    assert media.log_image("x", np.zeros((2, 2))) is None
    assert media.log_table("t", ["a"], [[1]]) is None
    assert not any(tmp_path.iterdir()) and wandb.calls == []


def test_media_logger_is_found_or_made_disk_only(tmp_path):
    trainer = FakeTrainer(tmp_path, [])
    made = media_logger(trainer)  # type: ignore[arg-type]
    assert find_callback(trainer, MediaLogger) is made and media_logger(trainer) is made  # type: ignore[arg-type]
    assert made.log_image("k", np.ones((1, 1))) == tmp_path / "k/step_000007.png"
