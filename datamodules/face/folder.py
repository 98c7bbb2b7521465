"""``FaceFolder``: one VOCASET/BIWI data folder, its sequences read and checked.

The folder holds ``wav/``, ``vertices_npy/``, ``templates.pkl`` and optionally
``transcripts.txt`` (see :mod:`datamodules.face.datamodule`). :meth:`FaceFolder.sequences`
returns the sequences of some subjects and sentence numbers with their 16 kHz audio (read once,
cached) and their frame count at the model's frame rate, after the checks of every sequence: its
subject has a template, its vertex count matches it, its vertices are finite floats (read
once here, in chunks), its WAV is sound audio with finite samples, and audio and vertices last
as long as each other within ``length_tolerance_s`` seconds (then both are cut to the
shorter, frames counted as round(seconds x fps), with a warning naming the sequence; beyond it
a DataError). A wav without a
vertices file is skipped with a warning naming it (as FaceFormer's loader skips it), and so is
a vertices file without a wav; a listed subject with no sequence in a split is a warning
naming it. Each such warning is also listed in :attr:`FaceFolder.skipped`.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from datamodules.errors import DataError, check_not_a_file
from datamodules.face import readers
from datamodules.face.dataset import FaceSequence, audio_frames
from datamodules.face.splits import FaceProtocol, describe_sentences

log = logging.getLogger(__name__)

LAYOUT = ("wav", "vertices_npy", "templates.pkl")


class FaceFolder:
    """The data folder ``root`` of ``protocol``'s data set.

    ``length_tolerance_s``: seconds by which the durations of a sequence's audio and vertices
    may differ (both are cut to the shorter); ``max_seconds``: longer sequences are cut (audio
    and frames).
    """

    def __init__(
        self,
        root: Path,
        protocol: FaceProtocol,
        length_tolerance_s: float = 0.25,
        max_seconds: float | None = None,
    ) -> None:
        self.root = Path(root)
        self.protocol = protocol
        self.length_tolerance_s = length_tolerance_s
        self.max_seconds = max_seconds
        self.skipped: list[str] = []
        self._templates: dict[str, np.ndarray] | None = None
        self._wavs: dict[Path, tuple[str, int] | None] | None = None
        self._vertex_files: dict[Path, tuple[str, int] | None] | None = None
        self._transcripts: dict[str, str] | None = None
        self._audio: dict[str, tuple[np.ndarray, readers.WavInfo]] = {}

    def check_layout(self) -> None:
        """DataError naming what is missing (and, for VOCA, how to make it)."""
        check_not_a_file(self.root, "wav/, vertices_npy/ and templates.pkl")
        missing = [p for p in LAYOUT if not (self.root / p).exists()]
        if missing:
            hint = _prepare_hint(self.root) if self.protocol.name == "vocaset" else ""
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
    def vertex_files(self) -> dict[Path, tuple[str, int] | None]:
        """{vertices_npy file: (subject, sentence) or None when the name does not parse}."""
        if self._vertex_files is None:
            self.check_layout()
            paths = sorted((self.root / "vertices_npy").glob("*.npy"))
            self._vertex_files = {p: readers.parse_sequence_name(p.stem) for p in paths}
        return self._vertex_files

    def _skip(self, message: str) -> None:
        """Warn once about something left out, and list it in :attr:`skipped`."""
        if message not in self.skipped:
            self.skipped.append(message)
            warnings.warn(message, stacklevel=4)

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

        listed, sentences = list(dict.fromkeys(subjects)), set(sentences)
        subjects = set(listed)
        chosen = [
            (path, key)
            for path, key in self.wavs.items()
            if key is not None and key[0] in subjects and key[1] in sentences
        ]
        have = {key[0] for _, key in chosen}
        wav_stems = {path.stem for path in self.wavs}
        for path, key in self.vertex_files.items():
            if key is None or key[0] not in subjects or key[1] not in sentences:
                continue
            have.add(key[0])
            if path.stem not in wav_stems:
                wav = self.root / "wav" / f"{path.stem}.wav"
                self._skip(f"skipped {path.stem}: {path} has no audio file {wav}")
        for subject in listed if have else []:  # an empty split has its own message
            if subject not in have:
                self._skip(
                    f"{split or 'a'} split: subject {subject!r} has no sequence with sentences "
                    f"{describe_sentences(sorted(sentences)) or '(none)'} in {self.root / 'wav'} "
                    f"or {self.root / 'vertices_npy'}; it is left out (is the name right?)"
                )
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
            self._skip(f"skipped {name}: {wav} has no vertices file {vertices_path}")
            return None
        vertices = readers.open_vertices(vertices_path, self.template(subject).size)
        readers.check_vertices_finite(vertices, vertices_path)
        stored = len(vertices)
        if stored == 0:
            raise DataError(f"sequence {name}: {vertices_path} has no frames")
        if name not in self._audio:
            self._audio[name] = readers.read_audio(wav)
        audio, info = self._audio[name]
        vertex_seconds = stored / file_fps
        if abs(info.seconds - vertex_seconds) > self.length_tolerance_s:
            raise DataError(
                f"sequence {name}: the audio lasts {info.seconds:.3f} s ({wav}) but the vertices "
                f"{vertex_seconds:.3f} s ({stored} frames at {file_fps} fps, {vertices_path}); "
                f"they may differ by at most data.length_tolerance_s="
                f"{self.length_tolerance_s:g} s (raise it if such files are known to be good)"
            )
        frames = math.ceil(stored / self.protocol.frame_step)
        covered = audio_frames(len(audio), fps)
        if covered != frames:  # within the tolerance: both cut to the shorter
            # one frame is the frame counts' rounding, not a fault (in half of VOCASET: an odd
            # count of 60 fps frames halved up, against the audio's round(seconds x 30))
            if abs(covered - frames) > 1:
                self._skip(
                    f"sequence {name}: audio {info.seconds:.3f} s ({covered} frames at {fps} "
                    f"fps) and vertices {vertex_seconds:.3f} s ({frames} frames); both cut to "
                    f"{min(covered, frames)} frames"
                )
            frames = min(covered, frames)
            audio = audio[: round(frames / fps * readers.SAMPLE_RATE)]
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


def _prepare_hint(root: Path) -> str:
    """How to make ``root``'s layout with ``make prepare-voca``, in a command that works: its
    ``dst`` is outside the release folder and empty or new (what prepare-voca accepts)."""
    from datamodules.face.prepare import RELEASE_FILES

    if all((root / name).is_file() for name in RELEASE_FILES):
        dst = root.parent / f"{root.name}-prepared"
        n = 1
        while dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
            n += 1
            dst = root.parent / f"{root.name}-prepared-{n}"
        return (
            f": this is the VOCASET release itself; convert it with: make prepare-voca "
            f'ARGS="src={root} dst={dst}" and set data.root={dst}'
        )
    if root.is_dir() and any(root.iterdir()):
        return (
            ' (convert the VOCASET release with: make prepare-voca ARGS="src=<release folder> '
            'dst=<a new folder>" and set data.root to that folder)'
        )
    return (
        " (convert the VOCASET release with: make prepare-voca "
        f'ARGS="src=<release folder> dst={root}")'
    )
