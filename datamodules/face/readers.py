"""Readers for the FaceFormer/CodeTalker face layout, each turning bad files into a DataError.

``wav/<subject>_<sentence>.wav`` (any rate, any channel count), ``vertices_npy/<name>.npy``
((T, V*3) or (T, V, 3), any float type), ``templates.pkl`` ({subject: (V, 3)}), vertex index
lists (``regions/lve.txt`` style or ``.npy``), FLAME's ``FLAME_masks.pkl`` and an optional
``transcripts.txt``. The WAV header is parsed here first, so a file that is not audio, is cut
inside its header or ends before its data chunk says gets a message naming it (the audio
libraries' own errors are cryptic); the samples are then decoded and resampled by librosa.
"""

from __future__ import annotations

import pickle
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.errors import DataError

SAMPLE_RATE = 16000  # what wav2vec 2.0 takes
_STREAMING_SIZE = 0xFFFFFFFF  # data size written by encoders that cannot seek back


@dataclass(frozen=True)
class WavInfo:
    """What a WAV header says: rate, channels, bits per sample and the sample frames."""

    sample_rate: int
    channels: int
    bits: int
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def parse_sequence_name(stem: str) -> tuple[str, int] | None:
    """``"FaceTalk_170725_00137_TA_sentence01"`` -> ``("FaceTalk_170725_00137_TA", 1)``,
    ``"F2_e01"`` -> ``("F2", 1)``: the subject is the stem minus its last ``_`` field, the
    sentence the number that field ends with (FaceFormer's reading). ``None`` if it has none."""
    subject, sep, last = stem.rpartition("_")
    match = re.search(r"(\d+)$", last)
    if not sep or not subject or match is None:
        return None
    return subject, int(match.group(1))


def read_wav_info(path: Path) -> WavInfo:
    """Parse the RIFF/WAVE header of ``path`` (skipping ``LIST`` and other chunks).

    Raises DataError when the file is not a WAV file, is cut inside its header, has no
    ``fmt `` or ``data`` chunk, or is shorter than its ``data`` chunk says.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(12)
            if len(head) < 12:
                if b"RIFF".startswith(head[:4]) and head:
                    raise DataError(f"{path}: the WAV file is cut inside its header ({size} bytes)")
                raise DataError(f"{path}: not a WAV audio file (no RIFF/WAVE header)")
            if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                raise DataError(f"{path}: not a WAV audio file (no RIFF/WAVE header)")
            fmt: tuple[int, int, int, int] | None = None
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    what = "no data chunk" if not chunk else "a chunk header is cut"
                    raise DataError(f"{path}: the WAV file is cut inside its header ({what})")
                chunk_id, chunk_size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if chunk_id == b"fmt ":
                    body = f.read(chunk_size)
                    if chunk_size < 16 or len(body) < 16:
                        raise DataError(f"{path}: the WAV file is cut inside its fmt chunk")
                    _, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", body[:16])
                    fmt = (channels, rate, block_align, bits)
                    f.seek(chunk_size % 2, 1)
                    continue
                if chunk_id == b"data":
                    break
                f.seek(chunk_size + chunk_size % 2, 1)  # LIST, fact, ...: skipped
            start = f.tell()
    except OSError as err:
        raise DataError(f"{path}: cannot read the audio file ({err.strerror or err})") from None
    if fmt is None:
        raise DataError(f"{path}: the WAV file has no fmt chunk before its data")
    channels, rate, block_align, bits = fmt
    if channels < 1 or rate < 1 or block_align < 1:
        raise DataError(
            f"{path}: the WAV header is damaged ({channels} channels, {rate} Hz, "
            f"block size {block_align})"
        )
    available = size - start
    if chunk_size == _STREAMING_SIZE:
        chunk_size = available - available % block_align
    if chunk_size > available:
        raise DataError(
            f"{path}: the audio data ends before its header says: the data chunk should hold "
            f"{chunk_size} bytes ({chunk_size // block_align / rate:.3f} s) but the file has "
            f"{available} ({available // block_align / rate:.3f} s); the file is truncated"
        )
    return WavInfo(sample_rate=rate, channels=channels, bits=bits, frames=chunk_size // block_align)


def read_audio(path: Path, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, WavInfo]:
    """The file's samples as float32 mono at ``sample_rate`` (librosa: channels averaged,
    resampled from any rate), with its header info. Bad files raise DataError naming them."""
    import librosa

    info = read_wav_info(path)
    try:
        audio, rate = librosa.load(str(path), sr=None, mono=False)
    except Exception as err:  # soundfile/audioread errors name neither the file nor the cause
        raise DataError(f"{path}: cannot decode the audio ({type(err).__name__}: {err})") from None
    if audio.ndim == 2:  # (channels, samples); librosa's to_mono refuses NaN, so averaged here
        audio = audio.mean(axis=0)
    bad = np.flatnonzero(~np.isfinite(audio))
    if bad.size:  # a float WAV can hold NaN or inf
        raise DataError(
            f"{path}: the audio holds a non-finite sample ({float(audio[bad[0]])}) at "
            f"{bad[0] / rate:.3f} s (sample {int(bad[0])} at the file's {rate} Hz); every "
            "sample must be a finite number"
        )
    if rate != sample_rate:  # what librosa.load(sr=sample_rate) does, after the check above
        audio = librosa.resample(audio, orig_sr=rate, target_sr=sample_rate)
    return np.ascontiguousarray(audio, dtype=np.float32), info


def open_vertices(path: Path, values_per_frame: int | None = None) -> np.ndarray:
    """``vertices_npy`` file memory-mapped read-only as (T, V*3), any numeric dtype.

    ``values_per_frame`` (the template's V*3) is checked when given: a mesh with another
    vertex count raises DataError naming both counts.
    """
    path = Path(path)
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: vertices file not found") from None
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{path}: not a readable .npy vertices file ({err})") from None
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.number):
        raise DataError(f"{path}: expected a numeric (T, V*3) array, got {_describe(array)}")
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(
            f"{path}: the vertices are {array.dtype} integers; they must be floats in the data "
            "set's unit (VOCASET and BIWI store metres; integer millimetres would be read as "
            "metres): save them as float32, e.g. (array / 1000).astype('float32') for mm"
        )
    if array.ndim == 3 and array.shape[2] == 3:
        array = array.reshape(array.shape[0], -1)
    if array.ndim != 2 or array.shape[1] % 3:
        raise DataError(
            f"{path}: expected (frames, vertices*3) or (frames, vertices, 3), got "
            f"shape {tuple(array.shape)}"
        )
    if values_per_frame is not None and array.shape[1] != values_per_frame:
        raise DataError(
            f"{path}: {array.shape[1] // 3} vertices per frame, but the subject's template in "
            f"templates.pkl has {values_per_frame // 3}"
        )
    return array


def first_nonfinite(array: np.ndarray, chunk_bytes: int = 1 << 26) -> tuple[int, ...] | None:
    """The index of the first NaN or infinite value of a float ``array`` (read in chunks of
    rows, so a memory-mapped file is never loaded whole), or None if every value is finite."""
    if array.ndim == 0:
        return None if np.isfinite(array) else ()
    rows = max(1, chunk_bytes // max(1, array[:1].nbytes))
    for start in range(0, len(array), rows):
        bad = np.argwhere(~np.isfinite(array[start : start + rows]))
        if len(bad):
            index = tuple(int(i) for i in bad[0])
            return (index[0] + start, *index[1:])
    return None


def check_vertices_finite(array: np.ndarray, path: Path) -> None:
    """:func:`check_finite` for a (T, V*3) vertices array, naming the frame and vertex."""
    index = first_nonfinite(array)
    if index is not None:
        frame, column = index
        raise DataError(
            f"{path}: non-finite vertex value ({float(array[frame, column])}) at frame "
            f"{frame}, vertex {column // 3}, coordinate {'xyz'[column % 3]} (index "
            f"[{frame}, {column}] of the (frames, vertices*3) array); every value must be a "
            "finite number"
        )


def load_vertices(path: Path, step: int = 1, frames: int | None = None) -> np.ndarray:
    """Every ``step``-th frame (of the first ``frames`` kept), as float32 (T, V*3)."""
    kept = open_vertices(path)[::step]
    if frames is not None:
        kept = kept[:frames]
    return np.array(kept, dtype=np.float32)  # a writable copy, whatever the stored type


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {tuple(value.shape)}"
    return type(value).__name__


def read_pickle(path: Path, what: str) -> Any:
    """Unpickle ``path`` (Python 2 pickles too, as the VOCA release ships them)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return pickle.load(f, encoding="latin1")
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found") from None
    except Exception as err:
        raise DataError(f"{path}: cannot read {what} ({type(err).__name__}: {err})") from None


def read_templates(path: Path) -> dict[str, np.ndarray]:
    """``templates.pkl``: {subject: neutral mesh}, each flattened to float32 (V*3,)."""
    templates = read_pickle(path, "the templates file")
    if not isinstance(templates, dict):
        raise DataError(
            f"{path}: expected a dict {{subject: (V, 3) mesh}}, got {type(templates).__name__}"
        )
    out: dict[str, np.ndarray] = {}
    for subject, mesh in templates.items():
        try:
            array = np.asarray(mesh)
            flat = array.astype(np.float32).reshape(-1)
        except (TypeError, ValueError):
            raise DataError(f"{path}: the template of {subject!r} is not a numeric mesh") from None
        if not np.issubdtype(array.dtype, np.floating):
            raise DataError(
                f"{path}: the template of {subject!r} is {array.dtype}, not floats in the data "
                "set's unit (VOCASET and BIWI store metres)"
            )
        bad = np.flatnonzero(~np.isfinite(array.reshape(-1)))
        if bad.size:
            raise DataError(
                f"{path}: the template of {subject!r} holds a non-finite value "
                f"({float(array.reshape(-1)[bad[0]])}) at vertex {bad[0] // 3}, coordinate "
                f"{'xyz'[bad[0] % 3]}; every value must be a finite number"
            )
        if flat.size == 0 or flat.size % 3:
            raise DataError(
                f"{path}: the template of {subject!r} has {flat.size} values, not a multiple of 3"
            )
        out[str(subject)] = flat
    return out


def template_of(templates: dict[str, np.ndarray], subject: str, path: Path) -> np.ndarray:
    """The template of ``subject``, or a DataError naming the subject and the file."""
    if subject not in templates:
        have = ", ".join(sorted(templates)[:20]) or "none"
        raise DataError(f"{path}: no template for subject {subject!r} (it has: {have})")
    return templates[subject]


def read_index_list(path: Path, num_vertices: int, what: str) -> np.ndarray:
    """Vertex ids from a ``.txt`` (comma- or space-separated, CodeTalker's ``regions/*.txt``)
    or a ``.npy`` file, checked against the mesh's ``num_vertices``."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: this is a folder, not the {what} vertex list (.txt or .npy)")
    if not path.is_file():
        raise DataError(f"{path}: the {what} vertex list is not there")
    if path.suffix == ".npy":
        try:
            ids = np.load(path, allow_pickle=False).reshape(-1)
        except (ValueError, OSError) as err:
            raise DataError(f"{path}: not a readable .npy vertex list ({err})") from None
    else:
        text = path.read_text(encoding="utf-8", errors="replace")
        tokens = [t for t in re.split(r"[\s,;]+", text) if t]
        bad = next((t for t in tokens if not t.isdigit()), None)
        if bad is not None:
            raise DataError(f"{path}: {bad!r} is not a vertex id (expected 0-based integers)")
        ids = np.array([int(t) for t in tokens], dtype=np.int64)
    return check_ids(ids, num_vertices, f"{path} ({what})")


def check_ids(ids: Any, num_vertices: int, source: str) -> np.ndarray:
    """Sorted unique int64 ids, all in ``[0, num_vertices)``; DataError naming ``source``."""
    ids = np.asarray(ids).reshape(-1)
    if ids.size == 0:
        raise DataError(f"{source}: the vertex list is empty")
    if not np.issubdtype(ids.dtype, np.integer):
        raise DataError(f"{source}: vertex ids must be integers, got {ids.dtype}")
    out_of_range = ids[(ids < 0) | (ids >= num_vertices)]
    if out_of_range.size:
        raise DataError(
            f"{source}: vertex id {int(out_of_range[0])} is outside the mesh's "
            f"{num_vertices} vertices (0-based ids)"
        )
    return np.unique(ids.astype(np.int64))


def read_flame_masks(path: Path, keys: tuple[str, ...], num_vertices: int) -> np.ndarray:
    """The union of ``keys`` of FLAME's ``FLAME_masks.pkl`` ({region name: vertex ids})."""
    masks = read_pickle(path, "FLAME_masks.pkl")
    if not isinstance(masks, dict):
        raise DataError(
            f"{path}: expected a dict {{region: vertex ids}}, got {type(masks).__name__}"
        )
    missing = [k for k in keys if k not in masks]
    if missing:
        raise DataError(f"{path}: no region {missing[0]!r} (it has: {', '.join(sorted(masks))})")
    ids = np.concatenate([np.asarray(masks[k]).reshape(-1) for k in keys])
    return check_ids(ids, num_vertices, f"{path} ({'+'.join(keys)})")


def read_transcripts(path: Path) -> dict[str, str]:
    """``transcripts.txt``: one ``<key><TAB><text>`` per line; the key is a sequence name
    (``F2_e01``) or a sentence name shared by every subject (``e01``, ``sentence01``). Blank
    lines and lines starting with ``#`` are skipped."""
    out: dict[str, str] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        key, tab, text = line.partition("\t")
        if not tab or not key.strip():
            raise DataError(f"{path}, line {number}: expected '<sequence or sentence>\\t<text>'")
        out[key.strip()] = text.strip()
    return out
