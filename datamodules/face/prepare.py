"""Convert the VOCASET release files into the layout the face loaders read.

``python -m datamodules.face.prepare src=/data/vocaset_release dst=data/vocaset [overwrite=false]``
(``make prepare-voca ARGS="src=... dst=..."``) reads the four files of the VOCASET "Training
Data" download from ``src``::

    data_verts.npy        (N, 5023, 3) float, every captured frame of every sequence, 60 fps
    raw_audio_fixed.pkl   {subject: {sentence: {"audio": 1-D int16, "sample_rate": 22000}}}
    templates.pkl         {subject: (5023, 3)} neutral meshes
    subj_seq_to_idx.pkl   {subject: {sentence: {frame: row of data_verts.npy}}}

and writes, as FaceFormer's ``vocaset/process_voca_data.py`` does, ``dst/vertices_npy/
<subject>_<sentence>.npy`` ((T, V*3), 60 fps, the stored float type, frames in frame order)
for every indexed sequence, ``dst/wav/<subject>_<sentence>.wav`` at the stored sample rate
(22 kHz, the stored sample type) for every audio entry, and a copy of ``templates.pkl``. Optional
extras found in ``src`` are copied too: ``transcripts.txt``, ``FLAME_masks.pkl`` and
``FLAME_sample.ply`` (to ``dst/templates/``). ``data_verts.npy`` is memory-mapped read-only
(FaceFormer opens it ``r+``) and read once in chunks to find NaN or infinite values; nothing is
ever written into ``src``. Everything is checked before the first file is written; a ``dst``
that is not empty is refused unless ``overwrite=true``.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.errors import DataError
from datamodules.face.readers import first_nonfinite, read_pickle

RELEASE_FILES = ("data_verts.npy", "raw_audio_fixed.pkl", "templates.pkl", "subj_seq_to_idx.pkl")
EXTRAS = {
    "transcripts.txt": "transcripts.txt",
    "FLAME_masks.pkl": "FLAME_masks.pkl",
    "FLAME_sample.ply": "templates/FLAME_sample.ply",
}
_SUBTYPES = {
    "int16": "PCM_16",
    "int32": "PCM_32",
    "uint8": "PCM_U8",
    "float32": "FLOAT",
    "float64": "DOUBLE",
}


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _check_folders(src: Path, dst: Path, overwrite: bool) -> None:
    if not src.is_dir():
        raise DataError(f"src={src}: not a folder (give the folder of the VOCASET release files)")
    missing = [name for name in RELEASE_FILES if not (src / name).is_file()]
    if missing:
        raise DataError(
            f"src={src}: the VOCASET release file {missing[0]} is missing (the "
            f"folder needs {', '.join(RELEASE_FILES)}; they are the 'Training Data' "
            "download of voca.is.tue.mpg.de)"
        )
    if _is_within(dst.resolve(), src.resolve()):
        raise DataError(
            f"dst={dst} is inside src={src}: the release folder is never written "
            "into (it may be read-only); choose a dst outside it"
        )
    if dst.exists() and not dst.is_dir():
        raise DataError(f"dst={dst} exists and is not a folder")
    if dst.is_dir() and any(dst.iterdir()) and not overwrite:
        raise DataError(
            f"dst={dst} is not empty; its files would be overwritten: choose an "
            "empty or new folder, or pass overwrite=true"
        )


def _frames_of(index: Any, verts: np.ndarray, path: Path) -> dict[tuple[str, str], np.ndarray]:
    """{(subject, sentence): rows of data_verts in frame order}, every row checked."""
    if not isinstance(index, dict):
        raise DataError(
            f"{path}: expected {{subject: {{sentence: {{frame: row}}}}}}, got "
            f"{type(index).__name__}"
        )
    rows: dict[tuple[str, str], np.ndarray] = {}
    for subject, sequences in index.items():
        if not isinstance(sequences, dict):
            raise DataError(f"{path}: the entry of subject {subject!r} is not a dict of sentences")
        for sentence, frames in sequences.items():
            if not isinstance(frames, dict) or not frames:
                raise DataError(
                    f"{path}: {subject}/{sentence}: expected a non-empty {{frame: row}} dict"
                )
            ordered = np.array([frames[k] for k in sorted(frames)], dtype=np.int64)
            bad = ordered[(ordered < 0) | (ordered >= len(verts))]
            if bad.size:
                raise DataError(
                    f"{path}: {subject}/{sentence}: row {int(bad[0])} is outside "
                    f"data_verts.npy's {len(verts)} rows"
                )
            rows[(str(subject), str(sentence))] = ordered
    return rows


def _audio_of(raw: Any, path: Path) -> dict[tuple[str, str], tuple[np.ndarray, int]]:
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected {{subject: {{sentence: {{'audio', 'sample_rate'}}}}}}")
    out: dict[tuple[str, str], tuple[np.ndarray, int]] = {}
    for subject, sequences in raw.items():
        if not isinstance(sequences, dict):
            raise DataError(f"{path}: the entry of subject {subject!r} is not a dict of sentences")
        for sentence, entry in sequences.items():
            where = f"{path}: {subject}/{sentence}"
            if not isinstance(entry, dict) or "audio" not in entry or "sample_rate" not in entry:
                raise DataError(f"{where}: expected a dict with 'audio' and 'sample_rate'")
            audio = np.asarray(entry["audio"])
            if audio.dtype.name not in _SUBTYPES or audio.ndim not in (1, 2) or not audio.size:
                raise DataError(
                    f"{where}: expected non-empty 1-D int16 or float samples, got "
                    f"{audio.dtype} of shape {audio.shape}"
                )
            if np.issubdtype(audio.dtype, np.floating):
                bad = np.argwhere(~np.isfinite(audio))
                if len(bad):
                    raise DataError(
                        f"{where}: the audio holds a non-finite sample at index "
                        f"{[int(i) for i in bad[0]]}; every sample must be a finite number"
                    )
            rate = int(entry["sample_rate"])
            if rate <= 0:
                raise DataError(f"{where}: sample_rate must be positive, got {rate}")
            out[(str(subject), str(sentence))] = (audio, rate)
    return out


def prepare_vocaset(src: str | Path, dst: str | Path, overwrite: bool = False) -> dict[str, Any]:
    """Convert the release in ``src`` into ``dst`` (module docstring); returns what it wrote:
    ``{"sequences", "frames", "wavs", "audio_seconds", "audio_only", "vertices_only"}``."""
    import soundfile
    from tqdm.auto import tqdm

    src, dst = Path(src), Path(dst)
    _check_folders(src, dst, overwrite)
    try:
        verts = np.load(src / "data_verts.npy", mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DataError(f"{src / 'data_verts.npy'}: not a readable .npy array ({err})") from None
    if verts.ndim == 2 and verts.shape[1] % 3 == 0:
        verts = verts.reshape(len(verts), -1, 3)
    if verts.ndim != 3 or verts.shape[2] != 3 or not np.issubdtype(verts.dtype, np.floating):
        raise DataError(
            f"{src / 'data_verts.npy'}: expected a float (N, V, 3) array, got "
            f"{verts.dtype} {tuple(verts.shape)}"
        )
    bad = first_nonfinite(verts.reshape(len(verts), -1))
    if bad is not None:
        raise DataError(
            f"{src / 'data_verts.npy'}: non-finite value at row {bad[0]}, vertex {bad[1] // 3}, "
            f"coordinate {'xyz'[bad[1] % 3]}; every value must be a finite number"
        )
    rows = _frames_of(
        read_pickle(src / "subj_seq_to_idx.pkl", "subj_seq_to_idx.pkl"),
        verts,
        src / "subj_seq_to_idx.pkl",
    )
    audio = _audio_of(
        read_pickle(src / "raw_audio_fixed.pkl", "raw_audio_fixed.pkl"), src / "raw_audio_fixed.pkl"
    )
    templates = read_pickle(src / "templates.pkl", "the templates file")
    if not isinstance(templates, dict):
        raise DataError(f"{src / 'templates.pkl'}: expected a dict {{subject: (V, 3) mesh}}")
    for subject in sorted({s for s, _ in rows} | {s for s, _ in audio}):
        if subject not in templates:
            raise DataError(
                f"{src / 'templates.pkl'}: no template for subject {subject!r}, "
                "which subj_seq_to_idx.pkl or raw_audio_fixed.pkl have"
            )
    (dst / "vertices_npy").mkdir(parents=True, exist_ok=True)
    (dst / "wav").mkdir(exist_ok=True)
    for (subject, sentence), ordered in tqdm(
        sorted(rows.items()), desc="vertices_npy", disable=None, leave=False
    ):
        frames = np.ascontiguousarray(verts[ordered]).reshape(len(ordered), -1)
        np.save(dst / "vertices_npy" / f"{subject}_{sentence}.npy", frames)
    for (subject, sentence), (samples, rate) in tqdm(
        sorted(audio.items()), desc="wav", disable=None, leave=False
    ):
        soundfile.write(
            dst / "wav" / f"{subject}_{sentence}.wav",
            samples,
            rate,
            subtype=_SUBTYPES[samples.dtype.name],
        )
    shutil.copyfile(src / "templates.pkl", dst / "templates.pkl")
    for name, target in EXTRAS.items():
        if (src / name).is_file():
            (dst / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / name, dst / target)
    return {
        "sequences": len(rows),
        "frames": int(sum(len(r) for r in rows.values())),
        "wavs": len(audio),
        "audio_seconds": round(sum(len(a) / r for a, r in audio.values()), 3),
        "audio_only": sorted(f"{s}_{q}" for s, q in set(audio) - set(rows)),
        "vertices_only": sorted(f"{s}_{q}" for s, q in set(rows) - set(audio)),
    }


def _parse(words: Sequence[str]) -> dict[str, Any]:
    values: dict[str, Any] = {"overwrite": False}
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or key not in ("src", "dst", "overwrite"):
            raise DataError(
                f"cannot read {word!r}: the arguments are src=<release folder> "
                "dst=<output folder> [overwrite=false]"
            )
        if key == "overwrite":
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise DataError(f"overwrite={value}: expected true or false")
            values[key] = value.lower() in ("true", "1", "yes")
        else:
            values[key] = value
    for key in ("src", "dst"):
        if not values.get(key):
            raise DataError(
                f"{key}= is missing: python -m datamodules.face.prepare "
                "src=<release folder> dst=<output folder> [overwrite=false]"
            )
    return values


def main(argv: Sequence[str] | None = None) -> int:
    """Run the conversion; a DataError is one ``error:`` line and exit code 2."""
    try:
        args = _parse(sys.argv[1:] if argv is None else argv)
        result = prepare_vocaset(args["src"], args["dst"], args["overwrite"])
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"wrote {result['sequences']} vertex sequences ({result['frames']} frames at 60 fps) "
        f"and {result['wavs']} wavs ({result['audio_seconds']:.1f} s) to {args['dst']}"
    )
    for key, text in (
        ("audio_only", "audio without vertices (the loaders skip them)"),
        ("vertices_only", "vertices without audio"),
    ):
        if result[key]:
            print(f"{len(result[key])} sequences with {text}: {', '.join(result[key][:10])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
