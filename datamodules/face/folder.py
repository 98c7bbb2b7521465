"""``FaceFolder``: one VOCASET/BIWI data folder, its sequences read and checked.

The folder holds ``wav/``, ``vertices_npy/``, ``templates.pkl`` and optionally
``transcripts.txt`` (see :mod:`datamodules.face.datamodule`). :meth:`FaceFolder.sequences` returns the
sequences of some subjects and sentence numbers with their 16 kHz audio (read once, cached)
and their frame count at the model's frame rate, after the checks of every sequence: its
subject has a template, its vertex count matches it, its WAV is sound audio, and audio and
vertices last as long as each other within ``length_tolerance`` frames. A wav without a
vertices file is skipped with a warning naming it (as FaceFormer's loader skips it).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from datamodules.errors import DataError
from datamodules.face import readers
from datamodules.face.dataset import FaceSequence
from datamodules.face.splits import FaceProtocol, describe_sentences

log = logging.getLogger(__name__)

LAYOUT = ("wav", "vertices_npy", "templates.pkl")


class FaceFolder:
    """The data folder ``root`` of ``protocol``'s data set.

    ``length_tolerance``: frames (at ``protocol.fps``) by which the durations of a sequence's
    audio and vertices may differ; ``max_seconds``: longer sequences are cut (audio and frames).
    """

    def __init__(
        self,
        root: Path,
        protocol: FaceProtocol,
        length_tolerance: float = 1.0,
        max_seconds: float | None = None,
    ) -> None:
        self.root = Path(root)
        self.protocol = protocol
        self.length_tolerance = length_tolerance
        self.max_seconds = max_seconds
        self.skipped: list[str] = []
        self._templates: dict[str, np.ndarray] | None = None
        self._wavs: dict[Path, tuple[str, int] | None] | None = None
        self._transcripts: dict[str, str] | None = None
        self._audio: dict[str, tuple[np.ndarray, readers.WavInfo]] = {}

    def check_layout(self) -> None:
        """DataError naming what is missing (and, for VOCA, how to make it)."""
        missing = [p for p in LAYOUT if not (self.root / p).exists()]
        if missing:
            hint = ""
            if self.protocol.name == "vocaset":
                hint = (
                    " (convert the VOCASET release with: make prepare-voca "
                    f'ARGS="src=<release folder> dst={self.root}")'
                )
            raise DataError(
                f"data.root={self.root}: missing {', '.join(missing)}; the folder needs "
                f"wav/, vertices_npy/ and templates.pkl{hint}"
            )

    @property
    def templates(self) -> dict[str, np.ndarray]:
        """{subject: float32 (V*3,)} from ``templates.pkl`` (read once)."""
        if self._templates is None:
            self.check_layout()
            self._templates = readers.read_templates(self.root / "templates.pkl")
        return self._templates

    def template(self, subject: str) -> np.ndarray:
        """``subject``'s template, or a DataError naming the subject and the file."""
        return readers.template_of(self.templates, subject, self.root / "templates.pkl")

    @property
    def wavs(self) -> dict[Path, tuple[str, int] | None]:
        """{wav path: (subject, sentence) or None when the name does not parse}."""
        if self._wavs is None:
            self.check_layout()
            paths = sorted((self.root / "wav").glob("*.wav"))
            self._wavs = {p: readers.parse_sequence_name(p.stem) for p in paths}
        return self._wavs

    @property
    def transcripts(self) -> dict[str, str]:
        """``transcripts.txt`` entries, ``{}`` without the file."""
        if self._transcripts is None:
            path = self.root / "transcripts.txt"
            self._transcripts = readers.read_transcripts(path) if path.is_file() else {}
        return self._transcripts

    def sequences(
        self, subjects: Iterable[str], sentences: Iterable[int], split: str = ""
    ) -> list[FaceSequence]:
        """The checked sequences of ``subjects`` whose sentence number is in ``sentences``."""
        from tqdm.auto import tqdm

        subjects, sentences = set(subjects), set(sentences)
        chosen = [
            (path, key)
            for path, key in self.wavs.items()
            if key is not None and key[0] in subjects and key[1] in sentences
        ]
        out = []
        for wav, (subject, sentence) in tqdm(chosen, f"reading {split}", disable=None, leave=False):
            sequence = self._sequence(wav, subject, sentence)
            if sequence is not None:
                out.append(sequence)
        log.info("%s %s: %d sequences", self.protocol.name, split, len(out))
        return out

    def _sequence(self, wav: Path, subject: str, sentence: int) -> FaceSequence | None:
        name, fps, file_fps = wav.stem, self.protocol.fps, self.protocol.file_fps
        vertices_path = self.root / "vertices_npy" / f"{name}.npy"
        if not vertices_path.is_file():
            message = f"skipped {name}: {wav} has no vertices file {vertices_path}"
            if message not in self.skipped:
                self.skipped.append(message)
                warnings.warn(message, stacklevel=4)
            return None
        stored = len(readers.open_vertices(vertices_path, self.template(subject).size))
        if stored == 0:
            raise DataError(f"sequence {name}: {vertices_path} has no frames")
        if name not in self._audio:
            self._audio[name] = readers.read_audio(wav)
        audio, info = self._audio[name]
        vertex_seconds = stored / file_fps
        if abs(info.seconds - vertex_seconds) * fps > self.length_tolerance:
            raise DataError(
                f"sequence {name}: the audio lasts {info.seconds:.3f} s ({wav}) but the vertices "
                f"{vertex_seconds:.3f} s ({stored} frames at {file_fps} fps, {vertices_path}); "
                f"they may differ by at most data.length_tolerance={self.length_tolerance:g} "
                f"frame(s) at {fps} fps (raise it if such files are known to be good: the "
                "model aligns audio and frames)"
            )
        frames = math.ceil(stored / self.protocol.frame_step)
        if self.max_seconds is not None and frames > self.max_seconds * fps:
            frames = int(self.max_seconds * fps)
            audio = audio[: round(frames / fps * readers.SAMPLE_RATE)]
        sentence_key = name.rpartition("_")[2]
        text = self.transcripts.get(name, self.transcripts.get(sentence_key, ""))
        return FaceSequence(name, subject, sentence, vertices_path, audio, frames, text)

    def empty_message(self, split: str, subjects: list[str], sentences: list[int]) -> str:
        """What an empty ``split`` looked for, and which subjects the folder has."""
        found = sorted({key[0] for key in self.wavs.values() if key is not None})
        return (
            f"{self.root}: the {split} split is empty: no sequence of subjects "
            f"{', '.join(subjects) or '(none)'} with sentences "
            f"{describe_sentences(sentences) or '(none)'} has both wav/ and vertices_npy/ files "
            f"(subjects found in wav/: {', '.join(found) or 'none'}); set "
            f"data.{split}_subjects / data.{split}_sentences"
        )
