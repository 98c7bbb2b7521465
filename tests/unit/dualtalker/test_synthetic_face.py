"""The synthetic talking heads: exact release/BIWI layouts, seeding, speech engines, and a
mouth that opens when the audio is loud."""

from __future__ import annotations

import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest

from datamodules.face import speech
from datamodules.face.synthetic import (
    animate,
    head_mesh,
    mouth_gap,
    write_synthetic_biwi,
    write_synthetic_voca_release,
)
from tests.helpers.face_data import BIWI_SENTENCES, BIWI_SUBJECTS, biwi, voca_release


def _load(path: Path):
    with path.open("rb") as f:
        return pickle.load(f, encoding="latin1")


def test_voca_release_has_the_release_structure_and_types() -> None:
    src = voca_release()
    verts = np.load(src / "data_verts.npy", mmap_mode="r")
    assert verts.dtype == np.float32 and verts.ndim == 3 and verts.shape[1:] == (1442, 3)
    index, raw = _load(src / "subj_seq_to_idx.pkl"), _load(src / "raw_audio_fixed.pkl")
    templates = _load(src / "templates.pkl")
    assert set(index) == set(raw) == set(templates)
    rows = []
    for subject, sequences in index.items():
        assert templates[subject].shape == (1442, 3)
        for sentence, frames in sequences.items():
            assert sentence.startswith("sentence") and list(frames) == list(range(len(frames)))
            entry = raw[subject][sentence]
            assert entry["sample_rate"] == 22000 and entry["audio"].dtype == np.int16
            assert entry["audio"].ndim == 1
            assert abs(len(entry["audio"]) / 22000 - len(frames) / 60) <= 1 / 60  # 60 fps
            rows += list(frames.values())
    assert sorted(rows) == list(range(len(verts)))  # every row used exactly once
    lines = (src / "transcripts.txt").read_text().splitlines()
    assert len(lines) == sum(len(sequences) for sequences in index.values())


def test_biwi_layout() -> None:
    root = biwi()
    names = sorted(p.stem for p in (root / "wav").iterdir())
    assert names == sorted(f"{s}_e{n:02d}" for s in BIWI_SUBJECTS for n in BIWI_SENTENCES)
    for name in names:
        raw = (root / "wav" / f"{name}.wav").read_bytes()
        assert (
            raw.index(b"LIST") < raw.index(b"data")
            and int.from_bytes(raw[24:28], "little") == 44100
        )
        frames = np.load(root / "vertices_npy" / f"{name}.npy")
        assert frames.shape[1] == 1442 * 3
        assert abs((len(raw) - raw.index(b"data") - 8) / 2 / 44100 - len(frames) / 25) <= 1 / 25
    lips = [int(i) for i in (root / "regions" / "lve.txt").read_text().split(",")]
    upper = [int(i) for i in (root / "regions" / "fdd.txt").read_text().split(",")]
    assert lips and upper and not set(lips) & set(upper)
    texts = dict(line.split("\t") for line in (root / "transcripts.txt").read_text().splitlines())
    assert sorted(texts) == [f"e{n:02d}" for n in BIWI_SENTENCES]  # shared by the speakers


def test_seeded(tmp_path: Path) -> None:
    a = write_synthetic_biwi(tmp_path / "a", ["F2"], [1], seed=3, engine="formant")
    b = write_synthetic_biwi(tmp_path / "b", ["F2"], [1], seed=3, engine="formant")
    c = write_synthetic_biwi(tmp_path / "c", ["F2"], [1], seed=4, engine="formant")
    read = lambda root: (root / "vertices_npy" / "F2_e01.npy").read_bytes()  # noqa: E731
    assert read(a) == read(b) != read(c)
    assert (a / "wav" / "F2_e01.wav").read_bytes() == (b / "wav" / "F2_e01.wav").read_bytes()


def test_per_subject_heads_differ_and_share_index_sets() -> None:
    m1, m2 = head_mesh(np.random.default_rng([0, 0])), head_mesh(np.random.default_rng([0, 1]))
    assert np.abs(m1.vertices - m2.vertices).max() > 1e-3
    np.testing.assert_array_equal(m1.lips, m2.lips)
    assert len(m1.faces) == 2 * len(m1.vertices) - 4  # a closed triangulated sphere (Euler)


def test_the_mouth_opens_when_the_audio_is_loud() -> None:
    rng = np.random.default_rng(0)
    audio = speech.formant_speech("bright morning river stone", 16000, rng)
    frames = int(len(audio) / 16000 * 30)
    mesh = head_mesh(np.random.default_rng(1))
    vertices = animate(mesh, np.array([1.0, 1.0, 0.5]), audio, 16000, 30, frames, 0.1)
    gap = mouth_gap(vertices)
    windows = speech.frame_windows(audio, 16000, 30, frames)
    loudness = 20 * np.log10(np.sqrt((windows**2).mean(axis=1)) + 1e-8)
    assert np.corrcoef(gap, loudness)[0, 1] > 0.7
    assert gap.max() - gap.min() > 0.2 * (gap.min())  # the mouth really moves
    upper = vertices[:, mesh.upper_face, :].reshape(frames, -1)
    assert upper.std(axis=0).max() > 0  # brows move a little (FDD is not trivially 0)


def test_espeak_path() -> None:
    if speech.find_espeak() is None:
        pytest.skip("espeak-ng is not installed")
    audio, engine = speech.speak("hello there", 16000, np.random.default_rng(0), engine="auto")
    assert engine == "espeak-ng" and 0.3 < len(audio) / 16000 < 3 and np.abs(audio).max() > 0.1


def test_formant_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speech, "find_espeak", lambda: None)
    audio, engine = speech.speak("hello there", 16000, np.random.default_rng(0))
    assert engine == "formant" and audio.dtype == np.float32 and len(audio) > 4000
    opening = speech.mouth_opening(audio, 16000, 25, int(len(audio) / 16000 * 25))
    assert opening.max() > 0.9 and opening.min() < 0.3  # syllables and pauses
    with pytest.raises(RuntimeError, match="engine='espeak'"):
        speech.speak("hello", 16000, np.random.default_rng(0), engine="espeak")


def test_a_failing_espeak_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speech, "find_espeak", lambda: "/bin/false")
    _, engine = speech.speak("hello there", 16000, np.random.default_rng(0))
    assert engine == "formant"
    with pytest.raises(subprocess.CalledProcessError):
        speech.speak("hello", 16000, np.random.default_rng(0), engine="espeak")


def test_default_sets_in_the_layouts(tmp_path: Path) -> None:
    """The default subjects and sentences fit the standard split ranges."""
    out = write_synthetic_voca_release(
        tmp_path / "r", ["FaceTalk_170811_03275_TA"], [21], engine="formant"
    )
    assert set(_load(out / "subj_seq_to_idx.pkl")["FaceTalk_170811_03275_TA"]) == {"sentence21"}


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from datamodules.synthetic.__main__ import main

    main(["face", "--format", "biwi", "--out", str(tmp_path / "b"), "--engine", "formant"])
    assert "regions" in capsys.readouterr().out
    assert len(list((tmp_path / "b" / "wav").iterdir())) == 4 * 8  # default subjects, sentences
