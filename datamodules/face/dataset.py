"""A split's face sequences as a Dataset, and the padding collate that batches them.

:class:`FaceDataset` keeps each sequence's 16 kHz audio in memory and reads its vertices on
access (memory-mapped, every ``frame_step``-th frame, float32). The reference implementations
train one sequence at a time; here a batch holds ``B`` sequences, right-padded with zeros,
with masks that say which positions are real::

    {"audio": float32 (B, S_max), "audio_mask": bool (B, S_max),       # 16 kHz samples
     "vertices": float32 (B, T_max, V*3), "frame_mask": bool (B, T_max),
     "template": float32 (B, V*3), "style": long (B,),                 # -1: not a training subject
     "subject": list[str], "text": list[str], "name": list[str]}

``audio_mask.sum(1)`` and ``frame_mask.sum(1)`` are each sequence's sample and frame counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.face.readers import SAMPLE_RATE, load_vertices


def audio_frames(num_samples: int, fps: int) -> int:
    """Motion frames that cover ``num_samples`` of 16 kHz audio: round(seconds x fps), halves
    up, at least 1 (frame t covers [t, t + 1) / fps s). The model predicts this many frames
    from audio alone, and a sequence's audio and vertices are cut to agree with it."""
    return max(1, (2 * num_samples * fps + SAMPLE_RATE) // (2 * SAMPLE_RATE))


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

    def __init__(
        self,
        sequences: list[FaceSequence],
        templates: dict[str, np.ndarray],
        train_subjects: list[str],
        frame_step: int,
    ) -> None:
        self.sequences = sequences
        self.templates = templates
        self.style = {s: i for i, s in enumerate(train_subjects)}
        self.frame_step = frame_step

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> dict[str, Any]:
        seq = self.sequences[index]
        vertices = load_vertices(seq.vertices_path, self.frame_step, seq.frames)
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


def _pad(arrays: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(a) for a in arrays])
    width = int(lengths.max())
    out = torch.zeros((len(arrays), width, *arrays[0].shape[1:]), dtype=torch.float32)
    for row, array in enumerate(arrays):
        out[row, : len(array)] = torch.from_numpy(np.asarray(array, dtype=np.float32))
    mask = torch.arange(width)[None, :] < lengths[:, None]
    return out, mask


def collate_faces(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch dataset items (``audio``, ``vertices``, ``template`` arrays; ``style`` int;
    ``subject``, ``text``, ``name`` strings) into the padded dict above."""
    if not items:
        raise ValueError("collate_faces needs at least one item")
    audio, audio_mask = _pad([item["audio"] for item in items])
    vertices, frame_mask = _pad([item["vertices"] for item in items])
    template = torch.from_numpy(np.stack([item["template"] for item in items]).astype(np.float32))
    return {
        "audio": audio,
        "audio_mask": audio_mask,
        "vertices": vertices,
        "frame_mask": frame_mask,
        "template": template,
        "style": torch.tensor([item["style"] for item in items], dtype=torch.long),
        "subject": [item["subject"] for item in items],
        "text": [item["text"] for item in items],
        "name": [item["name"] for item in items],
    }
