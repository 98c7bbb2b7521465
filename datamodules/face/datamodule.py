"""``FaceDataModule``: VOCASET and BIWI in the FaceFormer/CodeTalker layout, as padded batches.

The data folder (``data.root``)::

    wav/<subject>_<sentence>.wav        any rate and channel count (VOCA 22 kHz, BIWI 44.1 kHz)
    vertices_npy/<subject>_<sentence>.npy   (T, V*3) or (T, V, 3), any float type
    templates.pkl                       {subject: (V, 3) neutral mesh}
    regions/lve.txt, regions/fdd.txt    BIWI only, optional (the shipped CodeTalker sets)
    FLAME_masks.pkl                     VOCA only, optional (the lip set of VOCA LVE)
    transcripts.txt                     optional, ``<sequence or sentence>\\t<text>`` lines

VOCA's ``wav/`` and ``vertices_npy/`` come from the release files through
``make prepare-voca`` (:mod:`datamodules.face.prepare`). VOCA's files store 60 fps; every
second frame is kept (30 fps, FaceFormer's ``[::2]``); BIWI is 25 fps. Audio is read by librosa
as 16 kHz mono float32, raw (the model normalises it as wav2vec 2.0 expects). Each split is
the sequences of its subjects whose sentence number is in its range (:mod:`face_splits`).

Checks at :meth:`FaceDataModule.setup` (each a DataError naming the file or sequence): a
template missing for a subject; a vertices file whose vertex count differs from its template;
a WAV that is not audio, is cut inside its header or ends before its data chunk says; audio and
vertices whose durations differ by more than ``length_tolerance_s`` seconds (within it both
are cut to the shorter, with a warning naming the sequence). A wav without a
vertices file, or a vertices file without a wav, is skipped with a warning naming it; a listed
subject without any sequence in a split is a warning naming it. An empty training split is an
error naming the subjects and sentences it looked for; an empty validation split is a warning
(no validation). Batches: :mod:`datamodules.face.dataset`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from datamodules.errors import DataError
from datamodules.face.dataset import FaceDataset, collate_faces
from datamodules.face.folder import FaceFolder
from datamodules.face.regions import region_indices
from datamodules.face.splits import get_protocol, parse_sentences
from datamodules.samplers import BucketBatchSampler, ShardedEvalBatchSampler

SPLITS = ("train", "val", "test")
STAGES = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}


@dataclass
class FaceDataOptions:
    """Every data option of :class:`FaceDataModule` with its default, written once.

    ``None`` subjects or sentences mean the data set's standard split (:mod:`face_splits`);
    sentences are written as inclusive ranges (``"21-40"``, ``"1-3,7"``).
    """

    dataset: str = "vocaset"  # "vocaset" | "biwi"
    root: str = "data/vocaset"
    train_subjects: Optional[list[str]] = None
    val_subjects: Optional[list[str]] = None
    test_subjects: Optional[list[str]] = None
    train_sentences: Optional[str] = None
    val_sentences: Optional[str] = None
    test_sentences: Optional[str] = None
    batch_size: int = 1  # sequences per batch (the references train one at a time)
    num_workers: int = 0
    max_seconds: Optional[float] = None  # cut longer sequences (FaceFormer's mask: 600 frames)
    length_tolerance_s: float = 0.25  # audio and vertices may differ: both cut to the shorter
    # configs stored before length_tolerance_s: the tolerance in frames (used when set)
    length_tolerance: Optional[float] = None
    lip_vertices: Optional[str] = None  # vertex-id file (.txt/.npy) of the LVE lip set
    upper_face_vertices: Optional[str] = None  # vertex-id file of the FDD upper-face set
    flame_masks: Optional[str] = None  # VOCA: FLAME_masks.pkl (default <root>/FLAME_masks.pkl)


_DEFAULTS = FaceDataOptions()


class FaceDataModule(L.LightningDataModule):
    """VOCASET or BIWI from ``root`` (module docstring), split by subject and sentence.

    Args are :class:`FaceDataOptions`' keys plus ``seed`` (training order). The datamodule
    shards itself across ranks (run the Trainer with ``use_distributed_sampler=False``):
    length-bucketed shuffled training batches, evaluation batches that give each sequence to
    exactly one rank.
    """

    def __init__(
        self,
        dataset: str = _DEFAULTS.dataset,
        root: str = _DEFAULTS.root,
        train_subjects: list[str] | None = _DEFAULTS.train_subjects,
        val_subjects: list[str] | None = _DEFAULTS.val_subjects,
        test_subjects: list[str] | None = _DEFAULTS.test_subjects,
        train_sentences: str | Sequence[int] | None = _DEFAULTS.train_sentences,
        val_sentences: str | Sequence[int] | None = _DEFAULTS.val_sentences,
        test_sentences: str | Sequence[int] | None = _DEFAULTS.test_sentences,
        batch_size: int = _DEFAULTS.batch_size,
        num_workers: int = _DEFAULTS.num_workers,
        max_seconds: float | None = _DEFAULTS.max_seconds,
        length_tolerance_s: float = _DEFAULTS.length_tolerance_s,
        length_tolerance: float | None = _DEFAULTS.length_tolerance,
        lip_vertices: str | None = _DEFAULTS.lip_vertices,
        upper_face_vertices: str | None = _DEFAULTS.upper_face_vertices,
        flame_masks: str | None = _DEFAULTS.flame_masks,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.protocol = get_protocol(dataset)
        if length_tolerance is not None:  # an older config's frames at the data set's rate
            length_tolerance_s = length_tolerance / self.protocol.fps
        if batch_size < 1:
            raise DataError(f"data.batch_size must be at least 1, got {batch_size}")
        if max_seconds is not None and max_seconds <= 0:
            raise DataError(f"data.max_seconds must be positive, got {max_seconds}")
        if length_tolerance_s < 0:
            raise DataError(f"data.length_tolerance_s must be >= 0, got {length_tolerance_s}")
        self.root = Path(root)
        given = {"train": train_subjects, "val": val_subjects, "test": test_subjects}
        ranges = {"train": train_sentences, "val": val_sentences, "test": test_sentences}
        self.subjects: dict[str, list[str]] = {}
        self.sentences: dict[str, list[int]] = {}
        for split in SPLITS:
            if given[split] is None:
                given[split] = getattr(self.protocol, f"{split}_subjects")
            if ranges[split] is None:
                ranges[split] = getattr(self.protocol, f"{split}_sentences")
            self.subjects[split] = [str(s) for s in given[split]]
            self.sentences[split] = parse_sentences(ranges[split], f"{split}_sentences")
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.max_seconds, self.length_tolerance_s = max_seconds, length_tolerance_s
        self.region_files = {
            "lip": lip_vertices,
            "upper_face": upper_face_vertices,
            "flame_masks": flame_masks,
        }
        self.folder = FaceFolder(self.root, self.protocol, length_tolerance_s, max_seconds)
        self._datasets: dict[str, FaceDataset] = {}

    @classmethod
    def from_options(cls, options: Any, *, seed: int = 0) -> FaceDataModule:
        """The datamodule of a :class:`FaceDataOptions` or a config section with its keys."""
        values = {k: getattr(options, k) for k in FaceDataOptions.__dataclass_fields__}
        for key in ("train_subjects", "val_subjects", "test_subjects"):
            values[key] = list(values[key]) if values[key] is not None else None
        return cls(seed=seed, **values)

    # ------------------------------------------------------------------ properties

    @property
    def fps(self) -> int:
        """Frames per second of the delivered vertices (VOCA 30, BIWI 25)."""
        return self.protocol.fps

    @property
    def train_subjects(self) -> list[str]:
        """Training subjects, in style-index order."""
        return list(self.subjects["train"])

    @property
    def templates(self) -> dict[str, np.ndarray]:
        """{subject: float32 (V*3,)} from ``templates.pkl`` (read once)."""
        return self.folder.templates

    @property
    def skipped(self) -> list[str]:
        """Warnings about what was left out: a wav without vertices, vertices without a wav, a
        listed subject without sequences."""
        return self.folder.skipped

    @property
    def num_vertices(self) -> int:
        """Vertices per mesh (of the first training subject's template)."""
        subjects = self.subjects["train"] or list(self.templates)
        return self.folder.template(subjects[0]).size // 3

    @property
    def has_test_labels(self) -> bool:
        """Whether the test split has sequences (read now if not yet loaded): ``eval`` tests
        only then (test sequences always have their ground-truth vertices)."""
        return len(self._load("test")) > 0

    @property
    def lip_vertices(self) -> torch.Tensor:
        """LongTensor of the LVE lip vertex ids; DataError naming the file to provide if none."""
        return self._region("lip")

    @property
    def upper_face_vertices(self) -> torch.Tensor:
        """LongTensor of the FDD upper-face vertex ids; DataError naming what to provide."""
        return self._region("upper_face")

    def _region(self, kind: str) -> torch.Tensor:
        ids = region_indices(
            kind, self.protocol.name, self.root, self.region_files, self.num_vertices
        )
        return torch.from_numpy(ids)

    @property
    def loaded_splits(self) -> list[str]:
        """The splits :meth:`setup` has read, in the order train, val, test."""
        return [split for split in SPLITS if split in self._datasets]

    # ------------------------------------------------------------------ setup

    def setup(self, stage: str | None = None) -> None:
        """Read the splits ``stage`` needs (fit: train + val; validate: val; test: test)."""
        wanted = STAGES.get(stage or "", SPLITS)
        for split in wanted:
            self._load(split)
        if "train" in wanted and not len(self._datasets["train"]):
            raise DataError(self._empty_message("train") + "; nothing to train on")
        if "test" in wanted and not len(self._datasets["test"]):
            raise DataError(self._empty_message("test"))
        if "val" in wanted and not len(self._datasets["val"]):
            warnings.warn(self._empty_message("val") + "; validation is skipped", stacklevel=2)

    def _load(self, split: str) -> FaceDataset:
        if split not in self._datasets:
            sequences = self.folder.sequences(self.subjects[split], self.sentences[split], split)
            self._datasets[split] = FaceDataset(
                sequences, self.templates, self.train_subjects, self.protocol.frame_step
            )
        return self._datasets[split]

    def _empty_message(self, split: str) -> str:
        return self.folder.empty_message(split, self.subjects[split], self.sentences[split])

    # ------------------------------------------------------------------ state, summary

    def state_dict(self) -> dict[str, Any]:
        """The training subjects (the style indices' meaning), saved in every checkpoint."""
        return {"dataset": self.protocol.name, "train_subjects": self.train_subjects}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Refuse a checkpoint whose style indices mean other subjects."""
        subjects = list(state_dict.get("train_subjects", self.train_subjects))
        if subjects != self.train_subjects:
            raise DataError(
                f"the checkpoint was trained with data.train_subjects={subjects}, "
                f"not {self.train_subjects}: its style indices mean those subjects"
            )

    def dataset(self, split: str) -> FaceDataset:
        """The loaded split (after :meth:`setup`)."""
        if split not in self._datasets:
            raise RuntimeError(f"the {split} split is not loaded: call dm.setup() first")
        return self._datasets[split]

    def data_summary(self) -> dict[str, Any]:
        """Per loaded split: sequences, per-subject counts, frames and seconds; plus info."""
        from datamodules.face.preview import summarize

        return summarize(self)

    def write_preview(self, out_dir: Path) -> list[Path]:
        """A PNG of a template with its lip and upper-face sets coloured, and one sequence's
        audio loudness beside its lip motion; returns the paths written."""
        from datamodules.face.preview import write_preview

        return write_preview(self, Path(out_dir))

    # ------------------------------------------------------------------ dataloaders

    def _rank_and_world_size(self) -> tuple[int, int]:
        trainer = self.trainer
        return (0, 1) if trainer is None else (trainer.global_rank, trainer.world_size)

    def _loader(self, dataset: FaceDataset, sampler: Any) -> DataLoader:
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate_faces,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled (seeded by ``seed`` and epoch), length-bucketed; this rank's share."""
        dataset = self.dataset("train")
        rank, world_size = self._rank_and_world_size()
        sampler = BucketBatchSampler(
            dataset.lengths(),
            self.batch_size,
            shuffle=True,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
        )
        return self._loader(dataset, sampler)

    def _eval_loader(self, split: str) -> DataLoader | list:
        dataset = self.dataset(split)
        if not len(dataset):
            return []
        rank, world_size = self._rank_and_world_size()
        sampler = ShardedEvalBatchSampler(dataset.lengths(), self.batch_size, rank, world_size)
        return self._loader(dataset, sampler)

    def val_dataloader(self) -> DataLoader | list:
        """Validation batches, longest first; ``[]`` (no validation) for an empty split."""
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader | list:
        """Test batches, longest first."""
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader | list:
        """The test split, as :meth:`test_dataloader`."""
        return self._eval_loader("test")
