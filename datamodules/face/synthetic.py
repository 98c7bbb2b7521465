"""Synthetic talking-face data in exactly the VOCASET release layout and the BIWI layout.

A seeded procedural head (a deformed ellipsoid of about a thousand vertices, with a nose, eye
sockets, lip and upper-face index sets and a triangle mesh) speaks sentences: the audio comes
from :mod:`datamodules.face.speech` (espeak-ng, else formants), and per frame the jaw
rotates open and the lips part with the audio's loudness, the lips spread with its spectral
brightness and the brows rise with its slower loudness. Each subject has its own head shape
and its own speaking style (how far the jaw opens, how much the lips spread and the brows move),
so the speaker style is learnable as well as the audio-to-motion mapping.

- :func:`write_synthetic_voca_release`: ``data_verts.npy``, ``raw_audio_fixed.pkl``,
  ``templates.pkl``, ``subj_seq_to_idx.pkl`` as the VOCASET download has them (60 fps,
  22 kHz int16 audio), plus ``transcripts.txt``, ``FLAME_masks.pkl`` (the mesh's ``lips``,
  ``forehead``, ``eye_region``) and ``FLAME_sample.ply``; convert with ``make prepare-voca``.
- :func:`write_synthetic_biwi`: ``wav/`` (44.1 kHz with an ffmpeg-style ``LIST`` chunk),
  ``vertices_npy/`` (25 fps), ``templates.pkl``, ``regions/lve.txt`` + ``fdd.txt``,
  ``BIWI.ply``, ``transcripts.txt`` (BIWI's sentences are the same for every speaker).
"""

from __future__ import annotations

import pickle
import struct
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datamodules.errors import check_not_a_file
from datamodules.face.speech import frame_windows, mouth_opening, sentence, speak

VOCA_SUBJECTS = {
    "train": [
        "FaceTalk_170728_03272_TA",
        "FaceTalk_170904_00128_TA",
        "FaceTalk_170725_00137_TA",
        "FaceTalk_170915_00223_TA",
    ],
    "val": ["FaceTalk_170811_03275_TA"],
    "test": ["FaceTalk_170809_00138_TA"],
}
VOCA_SENTENCES = (1, 2, 3, 21, 22, 23)  # training subjects use 1-40, val/test subjects 21-40
BIWI_SUBJECTS = ("F2", "F3", "F4", "M3")
BIWI_SENTENCES = (1, 2, 3, 4, 33, 34, 37, 38)  # train 1-32, val 33-36, test 37-40
VOCA_RATE, BIWI_RATE = 22000, 44100
MOUTH_LAT = -0.45  # latitude (radians) of the mouth on the unit head


@dataclass
class HeadMesh:
    """A neutral head (unit scale, y up, face towards +z) and what moves when it speaks."""

    vertices: np.ndarray  # (V, 3) float64
    faces: np.ndarray  # (F, 3) int64
    lips: np.ndarray
    upper_lip_ids: np.ndarray  # the lip vertices above the mouth line
    lower_lip_ids: np.ndarray
    upper_face: np.ndarray
    eye_region: np.ndarray
    forehead: np.ndarray
    jaw_weight: np.ndarray  # (V,) how much each vertex follows the jaw
    upper_lip: np.ndarray  # (V,) weights
    brow_weight: np.ndarray  # (V,)


def head_mesh(rng: np.random.Generator, rings: int = 30, segments: int = 48) -> HeadMesh:
    """A seeded head: ``rings * segments + 2`` vertices (1442 by default)."""
    lat = np.linspace(-np.pi / 2, np.pi / 2, rings + 2)[1:-1]
    lon = np.linspace(-np.pi, np.pi, segments, endpoint=False)
    la, lo = (g.reshape(-1) for g in np.meshgrid(lat, lon, indexing="ij"))
    la = np.concatenate([la, [-np.pi / 2, np.pi / 2]])
    lo = np.concatenate([lo, [0.0, 0.0]])
    direction = np.stack([np.cos(la) * np.sin(lo), np.sin(la), np.cos(la) * np.cos(lo)], axis=1)
    radius = 1.0 + sum(
        0.03 * rng.standard_normal() * np.cos(k * lo) * np.cos(m * la)
        for k in (1, 2, 3)
        for m in (1, 2)
    )
    radius = radius + 0.18 * np.exp(-((la + 0.1) ** 2 / 0.02 + lo**2 / 0.01))  # nose
    for side in (-1, 1):  # eye sockets
        radius = radius - 0.05 * np.exp(-((la - 0.22) ** 2 / 0.01 + (lo - side * 0.38) ** 2 / 0.02))
    scale = np.array([0.8, 1.05, 0.95]) * (1 + 0.06 * rng.standard_normal(3))
    vertices = direction * radius[:, None] * scale
    front = np.cos(lo) * np.cos(la) > 0.3
    mouth = ((la - MOUTH_LAT) / 0.2) ** 2 + (lo / 0.5) ** 2
    lips = np.flatnonzero((mouth < 1.0) & front)
    eye_region = np.flatnonzero(front & (np.abs(la - 0.22) < 0.15) & (np.abs(lo) < 0.7))
    forehead = np.flatnonzero(front & (la >= 0.37) & (la < 1.0) & (np.abs(lo) < 0.8))
    below = 1.0 / (1.0 + np.exp((la - MOUTH_LAT) / 0.04))
    return HeadMesh(
        vertices=vertices,
        faces=_sphere_faces(rings, segments),
        lips=lips,
        upper_lip_ids=lips[la[lips] > MOUTH_LAT],
        lower_lip_ids=lips[la[lips] <= MOUTH_LAT],
        upper_face=np.union1d(eye_region, forehead),
        eye_region=eye_region,
        forehead=forehead,
        jaw_weight=below * np.exp(-((lo / 1.1) ** 2)) * (la > -1.35),
        upper_lip=np.exp(-mouth) * (la > MOUTH_LAT) * front,
        brow_weight=np.exp(-((la - 0.45) ** 2) / 0.01) * front,
    )


def mouth_gap(vertices: np.ndarray) -> np.ndarray:
    """(T,) height of the open mouth of a synthetic sequence ((T, V*3) or (T, V, 3), any
    subject: the index sets are the same for every head): mean height of the upper-lip
    vertices minus that of the lower-lip ones, in the data's units."""
    frames = np.asarray(vertices, dtype=np.float64).reshape(len(vertices), -1, 3)
    mesh = head_mesh(np.random.default_rng(0))
    if frames.shape[1] != len(mesh.vertices):
        raise ValueError(
            f"not the synthetic head: {frames.shape[1]} vertices, not {len(mesh.vertices)}"
        )
    upper, lower = frames[:, mesh.upper_lip_ids, 1], frames[:, mesh.lower_lip_ids, 1]
    return upper.mean(axis=1) - lower.mean(axis=1)


def _sphere_faces(rings: int, segments: int) -> np.ndarray:
    faces = []
    for r in range(rings - 1):
        for s in range(segments):
            a, b = r * segments + s, r * segments + (s + 1) % segments
            faces += [(a, b + segments, b), (a, a + segments, b + segments)]
    south, north = rings * segments, rings * segments + 1
    top = (rings - 1) * segments
    for s in range(segments):
        faces += [(south, (s + 1) % segments, s), (north, top + s, top + (s + 1) % segments)]
    return np.array(faces, dtype=np.int64)


def _brightness(audio: np.ndarray, sample_rate: int, fps: float, frames: int) -> np.ndarray:
    """Per-frame spectral centroid mapped to [-1, 1] (dark vowels -1, bright +1)."""
    windows = frame_windows(audio, sample_rate, fps, frames)
    power = np.abs(np.fft.rfft(windows, axis=1)) ** 2
    freqs = np.fft.rfftfreq(windows.shape[1], 1 / sample_rate)
    centroid = (power * freqs).sum(axis=1) / (power.sum(axis=1) + 1e-12)
    return np.clip((centroid - 1500.0) / 1500.0, -1.0, 1.0)


def animate(
    mesh: HeadMesh,
    style: np.ndarray,
    audio: np.ndarray,
    sample_rate: int,
    fps: float,
    frames: int,
    size: float,
) -> np.ndarray:
    """(frames, V, 3) float32 positions of ``mesh`` (scaled by ``size``) speaking ``audio``.

    ``style`` = (jaw gain, lip-spread gain, brow gain) of the speaker.
    """
    opening = mouth_opening(audio, sample_rate, fps, frames) * style[0]
    spread = _brightness(audio, sample_rate, fps, frames) * opening * style[1]
    window = max(1, int(round(0.4 * fps)))
    brow = (
        np.convolve(
            np.pad(opening, window // 2, mode="edge"), np.ones(window) / window, mode="valid"
        )[:frames]
        * style[2]
    )
    v = mesh.vertices[None].repeat(frames, axis=0)
    theta = 0.22 * opening[:, None]
    hinge_y, hinge_z = MOUTH_LAT * 0.6, -0.1
    dy, dz = v[..., 1] - hinge_y, v[..., 2] - hinge_z
    w = mesh.jaw_weight[None]
    v[..., 1] += w * (dy * np.cos(theta) - dz * np.sin(theta) - dy)
    v[..., 2] += w * (dy * np.sin(theta) + dz * np.cos(theta) - dz)
    v[..., 1] += 0.03 * opening[:, None] * mesh.upper_lip[None]
    lip = np.zeros(len(mesh.vertices))
    lip[mesh.lips] = 1.0
    v[..., 0] *= 1 + 0.12 * spread[:, None] * lip[None]
    v[..., 1] += 0.025 * brow[:, None] * mesh.brow_weight[None]
    return (v * size).astype(np.float32)


def _subject_style(rng: np.random.Generator) -> np.ndarray:
    return np.array([rng.uniform(0.7, 1.3), rng.uniform(0.5, 1.5), rng.uniform(0.2, 1.0)])


def _speak_all(
    subjects: Sequence[str],
    sentences: Sequence[int],
    seed: int,
    fps: float,
    sample_rate: int,
    size: float,
    engine: str,
    shared_text: bool,
):
    """Yield (subject, sentence, mesh, text, audio, vertices) per sequence, in order.

    The speech is synthesised in a few threads (espeak-ng runs as a subprocess); every random
    draw comes from a generator seeded by (seed, subject, sentence), so the output is the same
    whatever the threads' timing.
    """
    jobs = []
    for s_index, subject in enumerate(subjects):
        for number in sentences:
            text_rng = np.random.default_rng(
                [seed, 10_000 + number] if shared_text else [seed, s_index, number]
            )
            jobs.append((s_index, subject, number, sentence(text_rng)))

    def say(job):
        s_index, _, number, text = job
        rng = np.random.default_rng([seed, s_index, number, 1])
        return speak(text, sample_rate, rng, voice=s_index, engine=engine)[0]

    with ThreadPoolExecutor(max_workers=4) as pool:
        audios = list(pool.map(say, jobs))
    heads: dict[int, tuple[HeadMesh, np.ndarray]] = {}
    for (s_index, subject, number, text), audio in zip(jobs, audios):
        if s_index not in heads:
            rng = np.random.default_rng([seed, s_index])
            heads[s_index] = (head_mesh(rng), _subject_style(rng))
        mesh, style = heads[s_index]
        frames = max(1, round(len(audio) / sample_rate * fps))
        vertices = animate(mesh, style, audio, sample_rate, fps, frames, size)
        yield subject, number, mesh, text, audio, vertices


def write_ply(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """An ASCII PLY mesh (the layouts' rendering topology)."""
    lines = [
        "ply",
        "format ascii 1.0",
        f"element vertex {len(vertices)}",
        "property float x",
        "property float y",
        "property float z",
        f"element face {len(faces)}",
        "property list uchar int vertex_indices",
        "end_header",
    ]
    lines += [f"{x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    lines += [f"3 {a} {b} {c}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")


def write_synthetic_voca_release(
    out: str | Path,
    subjects: Sequence[str] | None = None,
    sentences: Sequence[int] = VOCA_SENTENCES,
    seed: int = 0,
    engine: str = "auto",
) -> Path:
    """Write the four VOCASET release files (+ transcripts, FLAME masks, PLY) into ``out``.

    ``subjects`` default to :data:`VOCA_SUBJECTS` (4 train, 1 val, 1 test), each with
    ``sentences`` (``sentenceNN`` keys). Meshes in metres (a head about 0.2 m tall), 60 fps.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    subjects = list(subjects or [s for split in VOCA_SUBJECTS.values() for s in split])
    rows: list[np.ndarray] = []
    index: dict[str, dict[str, dict[int, int]]] = {}
    raw_audio: dict[str, dict[str, dict]] = {}
    templates: dict[str, np.ndarray] = {}
    transcripts, mesh = [], None
    for subject, number, mesh, text, audio, vertices in _speak_all(
        subjects, sentences, seed, 60, VOCA_RATE, 0.1, engine, shared_text=False
    ):
        key = f"sentence{number:02d}"
        templates[subject] = mesh.vertices * 0.1
        start = sum(len(r) for r in rows)
        index.setdefault(subject, {})[key] = {f: start + f for f in range(len(vertices))}
        rows.append(vertices)
        pcm = np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16)
        raw_audio.setdefault(subject, {})[key] = {"audio": pcm, "sample_rate": VOCA_RATE}
        transcripts.append(f"{subject}_{key}\t{text}")
    np.save(out / "data_verts.npy", np.concatenate(rows).astype(np.float32))
    for name, value in (
        ("raw_audio_fixed.pkl", raw_audio),
        ("templates.pkl", templates),
        ("subj_seq_to_idx.pkl", index),
    ):
        with (out / name).open("wb") as f:
            pickle.dump(value, f, protocol=2)
    masks = {
        "lips": mesh.lips,
        "forehead": mesh.forehead,
        "eye_region": mesh.eye_region,
        "face": np.union1d(mesh.upper_face, mesh.lips),
    }
    with (out / "FLAME_masks.pkl").open("wb") as f:
        pickle.dump(masks, f, protocol=2)
    (out / "transcripts.txt").write_text("\n".join(transcripts) + "\n", encoding="utf-8")
    write_ply(out / "FLAME_sample.ply", mesh.vertices * 0.1, mesh.faces)
    return out


def write_wav_with_list_chunk(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM WAV with an ffmpeg-style ``LIST/INFO/ISFT`` chunk before ``data``."""
    pcm = np.round(np.clip(audio, -1, 1) * 32767).astype("<i2")
    channels = 1 if pcm.ndim == 1 else pcm.shape[1]
    data = pcm.tobytes()
    software = b"Lavf58.76.100\x00"
    info = b"INFO" + b"ISFT" + struct.pack("<I", len(software)) + software
    fmt = struct.pack(
        "<HHIIHH", 1, channels, sample_rate, sample_rate * 2 * channels, 2 * channels, 16
    )
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"LIST"
        + struct.pack("<I", len(info))
        + info
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def write_synthetic_biwi(
    out: str | Path,
    subjects: Sequence[str] = BIWI_SUBJECTS,
    sentences: Sequence[int] = BIWI_SENTENCES,
    seed: int = 0,
    engine: str = "auto",
) -> Path:
    """Write a BIWI-layout folder into ``out``: ``<subject>_eNN`` sequences at 25 fps."""
    out = Path(out)
    for sub in ("wav", "vertices_npy", "regions"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    templates, transcripts, mesh = {}, {}, None
    size = 1 / np.sqrt(4 * np.pi)  # a sphere of unit surface area, as BIWI's normalisation
    for subject, number, mesh, text, audio, vertices in _speak_all(
        subjects, sentences, seed, 25, BIWI_RATE, size, engine, shared_text=True
    ):
        name = f"{subject}_e{number:02d}"
        templates[subject] = (mesh.vertices * size).astype(np.float32)
        write_wav_with_list_chunk(out / "wav" / f"{name}.wav", audio, BIWI_RATE)
        np.save(out / "vertices_npy" / f"{name}.npy", vertices.reshape(len(vertices), -1))
        transcripts[f"e{number:02d}"] = text
    with (out / "templates.pkl").open("wb") as f:
        pickle.dump(templates, f)
    (out / "regions" / "lve.txt").write_text(", ".join(map(str, mesh.lips)))
    (out / "regions" / "fdd.txt").write_text(", ".join(map(str, mesh.upper_face)))
    (out / "transcripts.txt").write_text(
        "".join(f"{k}\t{v}\n" for k, v in sorted(transcripts.items())), encoding="utf-8"
    )
    write_ply(out / "BIWI.ply", mesh.vertices * size, mesh.faces)
    return out


def _is_face_folder(root: Path) -> bool:
    return all((root / p).exists() for p in ("wav", "vertices_npy", "templates.pkl"))


def ensure_synthetic_voca(
    root: str | Path,
    subjects: Sequence[str] | None = None,
    sentences: Sequence[int] = VOCA_SENTENCES,
    seed: int = 0,
    engine: str = "auto",
) -> Path:
    """The synthetic VOCASET converted into ``root`` (``wav/``, ``vertices_npy/``, ...): the
    release files are written to a temporary folder beside it and converted with
    :func:`datamodules.face.prepare.prepare_vocaset`; a ``root`` that already holds the layout
    is returned as it is (a non-empty ``root`` without it is refused, never overwritten)."""
    from datamodules.face.prepare import prepare_vocaset

    check_not_a_file(root, "the generated data set (written there when missing)")
    root = Path(root)
    if not _is_face_folder(root):
        root.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f"{root.name}-release-", dir=root.parent) as tmp:
            write_synthetic_voca_release(tmp, subjects, sentences, seed, engine)
            prepare_vocaset(tmp, root)
    return root


def ensure_synthetic_biwi(
    root: str | Path,
    subjects: Sequence[str] = BIWI_SUBJECTS,
    sentences: Sequence[int] = BIWI_SENTENCES,
    seed: int = 0,
    engine: str = "auto",
) -> Path:
    """The synthetic BIWI set in ``root``, written unless ``root`` already holds the layout."""
    check_not_a_file(root, "the generated data set (written there when missing)")
    root = Path(root)
    if not _is_face_folder(root):
        write_synthetic_biwi(root, subjects, sentences, seed, engine)
    return root
