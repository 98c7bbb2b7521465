"""``FaceDataModule``: VOCASET and BIWI in the FaceFormer/CodeTalker layout, as padded batches.

The data folder (``data.root``)::

    wav/<subject>_<sentence>.wav        any rate and channel count (VOCA 22 kHz, BIWI 44.1 kHz)
    vertices_npy/<subject>_<sentence>.npy   (T, V*3) or (T, V, 3), any float type
    templates.pkl                       {subject: (V, 3) neutral mesh}
    regions/lve.txt, regions/fdd.txt    BIWI only, optional (the shipped CodeTalker sets)
    FLAME_masks.pkl                     VOCA only, optional (the lip set of VOCA LVE)
    transcripts.txt                     optional, ``<sequence or sentence>\\t<text>`` lines

VOCA's ``wav/`` and ``vertices_npy/`` come from the release files through
``make prepare-voca`` (:mod:`datamodules.face_prepare`). VOCA's files store 60 fps; every
second frame is kept (30 fps, FaceFormer's ``[::2]``); BIWI is 25 fps. Audio is read by librosa
as 16 kHz mono float32, raw (the model normalises it as wav2vec 2.0 expects). Each split is
the sequences of its subjects whose sentence number is in its range (:mod:`face_splits`).

Checks at :meth:`FaceDataModule.setup` (each a DataError naming the file or sequence): a
template missing for a subject; a vertices file whose vertex count differs from its template;
a WAV that is not audio, is cut inside its header or ends before its data chunk says; audio and
vertices whose durations differ by more than ``length_tolerance`` frames. A wav without a
vertices file is skipped with a warning naming it. An empty training split is an error naming
the subjects and sentences it looked for; an empty validation split is a warning (no
validation). Batches: :mod:`datamodules.face_collate`.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules import face_readers as readers
from datamodules.errors import DataError
from datamodules.face_collate import collate_faces
from datamodules.face_regions import region_indices
from datamodules.face_splits import describe_sentences, get_protocol, parse_sentences
from datamodules.samplers import BucketBatchSampler, ShardedEvalBatchSampler

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


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
    length_tolerance: float = 1.0  # frames by which audio and vertex durations may differ
    lip_vertices: Optional[str] = None  # vertex-id file (.txt/.npy) of the LVE lip set
    upper_face_vertices: Optional[str] = None  # vertex-id file of the FDD upper-face set
    flame_masks: Optional[str] = None  # VOCA: FLAME_masks.pkl (default <root>/FLAME_masks.pkl)


@dataclass
class FaceSequence:
    """One sequence of a split: where it is, its audio (16 kHz) and frame count as delivered."""

    name: str
    subject: str
    sentence: int
    vertices_path: Path
    audio: np.ndarray
    frames: int
    text: str


class FaceDataset(Dataset):
    """A split's sequences; vertices are read on access from the memory-mapped files."""

    def __init__(self, sequences: list[FaceSequence], templates: dict[str, np.ndarray],
                 train_subjects: list[str], frame_step: int) -> None:  # fmt: skip
        self.sequences = sequences
        self.templates = templates
        self.style = {s: i for i, s in enumerate(train_subjects)}
        self.frame_step = frame_step

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> dict[str, Any]:
        seq = self.sequences[index]
        vertices = readers.load_vertices(seq.vertices_path, self.frame_step, seq.frames)
        return {
            "audio": seq.audio,
            "vertices": vertices,
            "template": self.templates[seq.subject],
            "style": self.style.get(seq.subject, -1),
            "subject": seq.subject,
            "text": seq.text,
            "name": seq.name,
        }

    def lengths(self) -> list[int]:
        return [seq.frames for seq in self.sequences]


class FaceDataModule(L.LightningDataModule):
    """VOCASET or BIWI from ``root`` (module docstring), split by subject and sentence.

    Args are :class:`FaceDataOptions`' keys plus ``seed`` (training order). The datamodule
    shards itself across ranks (run the Trainer with ``use_distributed_sampler=False``):
    length-bucketed shuffled training batches, evaluation batches that give each sequence to
    exactly one rank.
    """

    def __init__(self, dataset: str = "vocaset", root: str = "data/vocaset",
                 train_subjects: list[str] | None = None, val_subjects: list[str] | None = None,
                 test_subjects: list[str] | None = None, train_sentences: Any = None,
                 val_sentences: Any = None, test_sentences: Any = None, batch_size: int = 1,
                 num_workers: int = 0, max_seconds: float | None = None,
                 length_tolerance: float = 1.0, lip_vertices: str | None = None,
                 upper_face_vertices: str | None = None, flame_masks: str | None = None,
                 seed: int = 0) -> None:  # fmt: skip
        super().__init__()
        self.protocol = get_protocol(dataset)
        if batch_size < 1:
            raise DataError(f"data.batch_size must be at least 1, got {batch_size}")
        if max_seconds is not None and max_seconds <= 0:
            raise DataError(f"data.max_seconds must be positive, got {max_seconds}")
        if length_tolerance < 0:
            raise DataError(f"data.length_tolerance must be >= 0, got {length_tolerance}")
        self.root = Path(root)
        given = {"train": train_subjects, "val": val_subjects, "test": test_subjects}
        self.subjects = {split: [str(s) for s in (given[split] if given[split] is not None
                                 else getattr(self.protocol, f"{split}_subjects"))]
                         for split in SPLITS}  # fmt: skip
        ranges = {"train": train_sentences, "val": val_sentences, "test": test_sentences}
        self.sentences = {split: parse_sentences(ranges[split] if ranges[split] is not None
                                                 else getattr(self.protocol, f"{split}_sentences"),
                                                 f"{split}_sentences")
                          for split in SPLITS}  # fmt: skip
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.max_seconds, self.length_tolerance = max_seconds, length_tolerance
        self.region_files = {"lip": lip_vertices, "upper_face": upper_face_vertices,
                             "flame_masks": flame_masks}  # fmt: skip
        self._templates: dict[str, np.ndarray] | None = None
        self._datasets: dict[str, FaceDataset] = {}
        self._audio_cache: dict[str, tuple[np.ndarray, readers.WavInfo]] = {}
        self.skipped: list[str] = []

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
        if self._templates is None:
            self._check_layout()
            self._templates = readers.read_templates(self.root / "templates.pkl")
        return self._templates

    @property
    def num_vertices(self) -> int:
        """Vertices per mesh (of the first training subject's template)."""
        path = self.root / "templates.pkl"
        subject = self.subjects["train"][0] if self.subjects["train"] else next(iter(self.templates))
        return readers.template_of(self.templates, subject, path).size // 3

    @property
    def has_test_labels(self) -> bool:
        """Whether the test split has sequences (read now if not yet loaded): ``eval`` tests
        only then (test sequences always have their ground-truth vertices)."""
        if "test" not in self._datasets:
            self._datasets["test"] = FaceDataset(self._read_split("test"), self.templates,
                                                 self.train_subjects, self.protocol.frame_step)  # fmt: skip
        return len(self._datasets["test"]) > 0

    @property
    def lip_vertices(self) -> torch.Tensor:
        """LongTensor of the LVE lip vertex ids; DataError naming the file to provide if none."""
        return torch.from_numpy(region_indices("lip", self.protocol.name, self.root,
                                               self.region_files, self.num_vertices))  # fmt: skip

    @property
    def upper_face_vertices(self) -> torch.Tensor:
        """LongTensor of the FDD upper-face vertex ids; DataError naming what to provide."""
        return torch.from_numpy(region_indices("upper_face", self.protocol.name, self.root,
                                               self.region_files, self.num_vertices))  # fmt: skip

    # ------------------------------------------------------------------ setup

    def _check_layout(self) -> None:
        missing = [p for p in ("wav", "vertices_npy", "templates.pkl") if not (self.root / p).exists()]
        if missing:
            hint = (" (convert the VOCASET release with: make prepare-voca "
                    f"ARGS=\"src=<release folder> dst={self.root}\")"
                    if self.protocol.name == "vocaset" else "")  # fmt: skip
            raise DataError(f"data.root={self.root}: missing {', '.join(missing)}; the folder "
                            f"needs wav/, vertices_npy/ and templates.pkl{hint}")  # fmt: skip

    def setup(self, stage: str | None = None) -> None:
        """Read the splits ``stage`` needs (fit: train + val; validate: val; test: test)."""
        wanted = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"],
                  "predict": ["test"]}.get(stage or "", list(SPLITS))  # fmt: skip
        for split in wanted:
            if split not in self._datasets:
                self._datasets[split] = FaceDataset(self._read_split(split), self.templates,
                                                    self.train_subjects, self.protocol.frame_step)  # fmt: skip
        if "train" in wanted and not self._datasets["train"].sequences:
            raise DataError(self._empty_message("train") + "; nothing to train on")
        if "test" in wanted and not self._datasets["test"].sequences:
            raise DataError(self._empty_message("test"))
        if "val" in wanted and not self._datasets["val"].sequences:
            warnings.warn(self._empty_message("val") + "; validation is skipped", stacklevel=2)

    def _empty_message(self, split: str) -> str:
        found = sorted({p[0] for p in self._index().values() if p is not None})
        return (f"{self.root}: the {split} split is empty: no sequence of subjects "
                f"{', '.join(self.subjects[split]) or '(none)'} with sentences "
                f"{describe_sentences(self.sentences[split]) or '(none)'} has both wav/ and "
                f"vertices_npy/ files (subjects found in wav/: {', '.join(found) or 'none'}); "
                f"set data.{split}_subjects / data.{split}_sentences")  # fmt: skip

    def _index(self) -> dict[Path, tuple[str, int] | None]:
        if not hasattr(self, "_wav_index"):
            self._check_layout()
            self._wav_index = {p: readers.parse_sequence_name(p.stem)
                               for p in sorted((self.root / "wav").glob("*.wav"))}  # fmt: skip
        return self._wav_index

    def _read_split(self, split: str) -> list[FaceSequence]:
        from tqdm.auto import tqdm

        subjects, sentences = set(self.subjects[split]), set(self.sentences[split])
        chosen = [(p, key) for p, key in self._index().items()
                  if key is not None and key[0] in subjects and key[1] in sentences]  # fmt: skip
        transcripts_path = self.root / "transcripts.txt"
        transcripts = readers.read_transcripts(transcripts_path) if transcripts_path.is_file() else {}
        sequences = []
        for wav, (subject, sentence) in tqdm(chosen, desc=f"reading {split}", disable=None, leave=False):
            sequence = self._read_sequence(wav, subject, sentence, transcripts)
            if sequence is not None:
                sequences.append(sequence)
        log.info("%s %s: %d sequences of %d subjects", self.protocol.name, split, len(sequences),
                 len({s.subject for s in sequences}))  # fmt: skip
        return sequences

    def _read_sequence(self, wav: Path, subject: str, sentence: int,
                       transcripts: dict[str, str]) -> FaceSequence | None:  # fmt: skip
        name = wav.stem
        vertices_path = self.root / "vertices_npy" / f"{name}.npy"
        if not vertices_path.is_file():
            message = f"skipped {name}: {wav} has no vertices file {vertices_path}"
            if message not in self.skipped:
                self.skipped.append(message)
                warnings.warn(message, stacklevel=3)
            return None
        template = readers.template_of(self.templates, subject, self.root / "templates.pkl")
        stored = readers.open_vertices(vertices_path, template.size).shape[0]
        if name not in self._audio_cache:
            self._audio_cache[name] = readers.read_audio(wav)
        audio, info = self._audio_cache[name]
        vertex_seconds = stored / self.protocol.file_fps
        if abs(info.seconds - vertex_seconds) * self.fps > self.length_tolerance:
            raise DataError(
                f"sequence {name}: the audio lasts {info.seconds:.3f} s ({wav}) but the vertices "
                f"{vertex_seconds:.3f} s ({stored} frames at {self.protocol.file_fps} fps, "
                f"{vertices_path}); they may differ by at most data.length_tolerance="
                f"{self.length_tolerance:g} frame(s) at {self.fps} fps"
            )
        frames = math.ceil(stored / self.protocol.frame_step)
        if self.max_seconds is not None and frames > self.max_seconds * self.fps:
            frames = int(self.max_seconds * self.fps)
            audio = audio[: round(frames / self.fps * readers.SAMPLE_RATE)]
        text = transcripts.get(name, transcripts.get(name.rpartition("_")[2], ""))
        return FaceSequence(name, subject, sentence, vertices_path, audio, frames, text)

    # ------------------------------------------------------------------ state, summary

    def state_dict(self) -> dict[str, Any]:
        """The training subjects (the style indices' meaning), saved in every checkpoint."""
        return {"dataset": self.protocol.name, "train_subjects": self.train_subjects}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Refuse a checkpoint whose style indices mean other subjects."""
        subjects = list(state_dict.get("train_subjects", self.train_subjects))
        if subjects != self.train_subjects:
            raise DataError(f"the checkpoint was trained with data.train_subjects={subjects}, "
                            f"not {self.train_subjects}: its style indices mean those subjects")  # fmt: skip

    def dataset(self, split: str) -> FaceDataset:
        """The loaded split (after :meth:`setup`)."""
        if split not in self._datasets:
            raise RuntimeError(f"the {split} split is not loaded: call dm.setup() first")
        return self._datasets[split]

    def data_summary(self) -> dict[str, Any]:
        """Per loaded split: sequences, per-subject counts, frames and seconds; plus info."""
        from datamodules.face_preview import summarize

        return summarize(self)

    def write_preview(self, out_dir: Path) -> list[Path]:
        """A PNG of a template with its lip and upper-face sets coloured, and one sequence's
        audio loudness beside its lip motion; returns the paths written."""
        from datamodules.face_preview import write_preview

        return write_preview(self, Path(out_dir))

    # ------------------------------------------------------------------ dataloaders

    def _rank_and_world_size(self) -> tuple[int, int]:
        trainer = self.trainer
        return (0, 1) if trainer is None else (trainer.global_rank, trainer.world_size)

    def _loader(self, dataset: FaceDataset, sampler: Any) -> DataLoader:
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_faces,
                          num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        """Shuffled (seeded by ``seed`` and epoch), length-bucketed; this rank's share."""
        dataset = self.dataset("train")
        rank, world_size = self._rank_and_world_size()
        sampler = BucketBatchSampler(dataset.lengths(), self.batch_size, shuffle=True,
                                     seed=self.seed, rank=rank, world_size=world_size)  # fmt: skip
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
