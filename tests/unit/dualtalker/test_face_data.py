"""FaceDataModule: VOCASET/BIWI layout reading, splits, batches, vertex sets and bad input."""

from __future__ import annotations

import math
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from datamodules.errors import DataError
from datamodules.face.datamodule import FaceDataModule, FaceDataOptions
from datamodules.face.dataset import collate_faces
from datamodules.face.readers import read_audio, read_wav_info
from datamodules.face.regions import region_indices
from datamodules.face.splits import describe_sentences, parse_sentences
from datamodules.face.synthetic import write_wav_with_list_chunk
from tests.helpers.face_data import (
    BIWI_SUBJECTS,
    TEST,
    TRAIN,
    VAL,
    biwi,
    copy_of,
    snapshot,
    voca_prepared,
)


def voca(root: Path | None = None, **kwargs) -> FaceDataModule:
    args = {"train_subjects": TRAIN, "val_subjects": VAL, "test_subjects": TEST, **kwargs}
    return FaceDataModule("vocaset", root or voca_prepared(), **args)


def biwi_dm(root: Path | None = None, **kwargs) -> FaceDataModule:
    args = {f"{s}_subjects": BIWI_SUBJECTS for s in ("train", "val", "test")} | kwargs
    return FaceDataModule("biwi", root or biwi(), **args)


def test_voca_60_to_30_fps_and_batch(tmp_path: Path) -> None:
    dm = voca(batch_size=3)
    dm.setup("fit")
    assert dm.fps == 30 and dm.num_vertices == 1442
    ds = dm.dataset("train")
    assert sorted(s.name for s in ds.sequences) == sorted(
        f"{s}_sentence{n:02d}" for s in TRAIN for n in (1, 21, 22)
    )
    item = ds[0]
    stored = np.load(voca_prepared() / "vertices_npy" / f"{item['name']}.npy")
    assert len(item["vertices"]) == math.ceil(len(stored) / 2)
    np.testing.assert_array_equal(item["vertices"], stored[::2])
    batch = next(iter(dm.train_dataloader()))
    assert batch["audio"].dtype == torch.float32 and batch["vertices"].shape[2] == 1442 * 3
    assert batch["template"].shape == (3, 1442 * 3) and batch["style"].tolist() == [
        TRAIN.index(s) for s in batch["subject"]
    ]
    assert all(batch["text"]) and all(n.startswith(tuple(TRAIN)) for n in batch["name"])
    val = next(iter(dm.val_dataloader()))
    assert val["style"].tolist() == [-1] * len(val["name"])  # unseen speaker


def test_collate_masks() -> None:
    items = [
        {
            "audio": np.ones(n * 10, np.float32),
            "vertices": np.ones((n, 6), np.float32),
            "template": np.zeros(6, np.float32),
            "style": i,
            "subject": "s",
            "text": "",
            "name": f"s_{n}",
        }
        for i, n in enumerate((3, 5, 1))
    ]
    batch = collate_faces(items)
    assert batch["audio"].shape == (3, 50) and batch["vertices"].shape == (3, 5, 6)
    assert batch["frame_mask"].sum(1).tolist() == [3, 5, 1]
    assert batch["audio_mask"].sum(1).tolist() == [30, 50, 10]
    assert batch["vertices"][~batch["frame_mask"]].abs().sum() == 0
    assert batch["audio"][batch["audio_mask"]].eq(1).all()
    assert batch["style"].dtype == torch.long and batch["style"].tolist() == [0, 1, 2]


def _peak_hz(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio))
    return float(np.fft.rfftfreq(len(audio), 1 / rate)[spectrum.argmax()])


def test_biwi_44k_wav_with_list_chunk_and_a_stereo_wav(tmp_path: Path) -> None:
    t = np.arange(44100) / 44100
    write_wav_with_list_chunk(tmp_path / "a.wav", 0.5 * np.sin(2 * np.pi * 440 * t), 44100)
    raw = (tmp_path / "a.wav").read_bytes()
    assert raw.index(b"LIST") < raw.index(b"data")
    audio, info = read_audio(tmp_path / "a.wav")
    assert (info.sample_rate, info.channels, info.frames) == (44100, 1, 44100)
    assert audio.dtype == np.float32 and abs(len(audio) - 16000) <= 1
    assert abs(_peak_hz(audio, 16000) - 440) < 2
    t = np.arange(22050) / 22050
    stereo = np.stack([np.sin(2 * np.pi * 300 * t), np.zeros_like(t)], axis=1) * 0.8
    soundfile.write(tmp_path / "b.wav", stereo, 22050, subtype="PCM_16")
    audio, info = read_audio(tmp_path / "b.wav")
    assert info.channels == 2 and abs(len(audio) - 16000) <= 1
    assert abs(np.abs(audio).max() - 0.4) < 0.02  # the channels averaged
    dm = biwi_dm()
    dm.setup("fit")
    assert dm.fps == 25 and read_wav_info(next((biwi() / "wav").iterdir())).sample_rate == 44100


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_vertices_cast_from_any_float_type(tmp_path: Path, dtype) -> None:
    root = copy_of(biwi(), tmp_path / "biwi")
    path = root / "vertices_npy" / "F2_e01.npy"
    stored = np.load(path)
    np.save(path, stored.astype(dtype).reshape(len(stored), -1, 3))  # (T, V, 3) also accepted
    dm = biwi_dm(root, train_sentences="1")
    dm.setup("fit")
    item = dm.dataset("train")[0]
    assert item["vertices"].dtype == np.float32 and item["vertices"].shape == stored.shape
    np.testing.assert_allclose(item["vertices"], stored, rtol=1e-3, atol=1e-3)


def test_standard_splits_and_a_user_subset() -> None:
    dm = biwi_dm()
    dm.setup("fit")
    dm.setup("test")
    names = {s: sorted(q.name for q in dm.dataset(s).sequences) for s in ("train", "val", "test")}
    assert names == {
        "train": ["F2_e01", "F2_e02", "M3_e01", "M3_e02"],
        "val": ["F2_e33", "M3_e33"],
        "test": ["F2_e37", "M3_e37"],
    }
    sub = FaceDataModule(
        "biwi",
        biwi(),
        train_subjects=["M3"],
        val_subjects=["F2"],
        test_subjects=["F2"],
        train_sentences="2",
        val_sentences=[1, 33],
    )
    sub.setup("fit")
    assert [q.name for q in sub.dataset("train").sequences] == ["M3_e02"]
    assert sorted(q.name for q in sub.dataset("val").sequences) == ["F2_e01", "F2_e33"]
    assert sub.dataset("val")[0]["style"] == -1 and sub.train_subjects == ["M3"]
    standard = FaceDataModule("vocaset", voca_prepared())
    assert len(standard.train_subjects) == 8 and standard.sentences["val"] == list(range(21, 41))


def test_sentence_ranges() -> None:
    assert parse_sentences("1-3,7") == [1, 2, 3, 7] and parse_sentences(5) == [5]
    assert (
        parse_sentences([3, 1, 3]) == [1, 3]
        and describe_sentences([1, 2, 3, 7, 9, 10]) == "1-3,7,9-10"
    )
    for bad in ("1-", "4-2", "a", True):
        with pytest.raises(DataError, match="data.train_sentences"):
            parse_sentences(bad, "train_sentences")
    assert set(FaceDataOptions.__dataclass_fields__) - {"dataset", "root"} <= set(
        FaceDataModule.__init__.__code__.co_varnames
    )


def test_data_summary_numbers_computed_independently(tmp_path: Path) -> None:
    dm = voca()
    dm.setup("fit")
    summary = dm.data_summary()
    root = voca_prepared()
    for split, subjects, sentences in (("train", TRAIN, (1, 21, 22)), ("val", VAL, (21, 22))):
        names = [f"{s}_sentence{n:02d}" for s in subjects for n in sentences]
        frames = sum(math.ceil(len(np.load(root / "vertices_npy" / f"{n}.npy")) / 2) for n in names)
        seconds = sum(soundfile.info(root / "wav" / f"{n}.wav").duration for n in names)
        entry = summary["splits"][split]
        assert entry["size"] == len(names) and entry["frames"] == frames
        assert entry["labels"] == entry["subjects"] == {s: len(sentences) for s in sorted(subjects)}
        assert abs(entry["seconds"] - seconds) < 1e-3 * len(names)
    assert summary["info"]["lip_vertices"] == 22 and summary["info"]["fps"] == 30
    paths = dm.write_preview(tmp_path / "preview")
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[0].stat().st_size > 10_000


def test_vertex_sets(tmp_path: Path) -> None:
    dm = voca()
    lips, upper = dm.lip_vertices, dm.upper_face_vertices
    assert lips.dtype == torch.long and len(lips) == 22 and len(upper) == 111
    masks = pickle.loads((voca_prepared() / "FLAME_masks.pkl").read_bytes())
    assert lips.tolist() == sorted(masks["lips"].tolist())
    bare = copy_of(voca_prepared(), tmp_path / "bare")
    (bare / "FLAME_masks.pkl").unlink()
    with pytest.raises(DataError, match="FLAME_masks.pkl.*data.flame_masks.*data.lip_vertices"):
        _ = voca(bare).lip_vertices
    (tmp_path / "lips.txt").write_text("3, 1,2\n")
    assert voca(bare, lip_vertices=str(tmp_path / "lips.txt")).lip_vertices.tolist() == [1, 2, 3]
    np.save(tmp_path / "upper.npy", np.array([5, 9]))
    assert voca(
        bare, upper_face_vertices=str(tmp_path / "upper.npy")
    ).upper_face_vertices.tolist() == [5, 9]
    (tmp_path / "bad.txt").write_text("1, 5000")
    with pytest.raises(DataError, match=r"bad.txt .*vertex id 5000 is outside the mesh's 1442"):
        _ = voca(bare, lip_vertices=str(tmp_path / "bad.txt")).lip_vertices
    assert len(biwi_dm().lip_vertices) == 22  # the folder's own regions/lve.txt
    shipped_lips = region_indices("lip", "biwi", tmp_path, {}, 23370)
    shipped_upper = region_indices("upper_face", "biwi", tmp_path, {}, 23370)
    assert (len(shipped_lips), len(shipped_upper)) == (4996, 7784)
    assert not set(shipped_lips) & set(shipped_upper)
    with pytest.raises(DataError, match="23370-vertex BIWI mesh.*data.lip_vertices"):
        region_indices("lip", "biwi", tmp_path, {}, 1442)


def test_max_seconds_and_checkpoint_subjects() -> None:
    dm = voca(max_seconds=1.0)
    dm.setup("fit")
    assert max(s.frames for s in dm.dataset("train").sequences) == 30
    assert max(len(s.audio) for s in dm.dataset("train").sequences) == 16000
    dm.load_state_dict(dm.state_dict())
    with pytest.raises(DataError, match="trained with data.train_subjects"):
        dm.load_state_dict({"train_subjects": ["other"]})


# ---------------------------------------------------------------------- bad input


def _setup_error(root: Path, match: str, **kwargs) -> None:
    before = snapshot(root)
    with pytest.raises(DataError, match=match):
        biwi_dm(root, **kwargs).setup("fit")
    assert snapshot(root) == before  # nothing written into the data folder


def test_a_template_file_without_one_of_the_subjects(tmp_path: Path) -> None:
    root = copy_of(biwi(), tmp_path / "biwi")
    templates = pickle.loads((root / "templates.pkl").read_bytes())
    del templates["M3"]
    (root / "templates.pkl").write_bytes(pickle.dumps(templates))
    _setup_error(root, r"templates.pkl: no template for subject 'M3' \(it has: F2\)")


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda b: b"this is a text file, not audio", "F2_e02.wav: not a WAV audio file"),
        (lambda b: b[:30], "F2_e02.wav: the WAV file is cut inside its"),
        (lambda b: b[:6], "F2_e02.wav: the WAV file is cut inside its header"),
        (lambda b: b[: len(b) // 2], r"F2_e02.wav: the audio data ends before its header says"),
    ],
    ids=["not-audio", "cut-in-fmt", "cut-in-riff", "data-cut"],
)
def test_a_damaged_wav(tmp_path: Path, damage, match: str) -> None:
    root = copy_of(biwi(), tmp_path / "biwi")
    wav = root / "wav" / "F2_e02.wav"
    wav.write_bytes(damage(wav.read_bytes()))
    _setup_error(root, match)


def test_audio_and_vertices_of_different_lengths(tmp_path: Path) -> None:
    root = copy_of(biwi(), tmp_path / "biwi")
    path = root / "vertices_npy" / "M3_e01.npy"
    stored = np.load(path)
    np.save(path, np.concatenate([stored, stored[:10]]))  # 0.4 s more than the audio
    seconds = read_wav_info(root / "wav" / "M3_e01.wav").seconds
    _setup_error(
        root,
        rf"sequence M3_e01: the audio lasts {seconds:.3f} s .* the vertices "
        rf"{(len(stored) + 10) / 25:.3f} s \({len(stored) + 10} frames",
    )
    with pytest.warns(UserWarning, match="sequence M3_e01: .* both cut to"):
        biwi_dm(root, length_tolerance_s=0.5).setup("fit")  # within the tolerance: cut


def test_a_vertices_file_with_another_vertex_count(tmp_path: Path) -> None:
    root = copy_of(biwi(), tmp_path / "biwi")
    path = root / "vertices_npy" / "F2_e01.npy"
    np.save(path, np.load(path)[:, :-3])
    _setup_error(root, r"F2_e01.npy: 1441 vertices per frame, but .* templates.pkl has 1442")


def test_empty_training_and_validation_splits(tmp_path: Path) -> None:
    with pytest.raises(
        DataError,
        match=r"train split is empty: no sequence of subjects F9, M9 "
        r"with sentences 1-32 .*subjects found in wav/: F2, M3",
    ):
        biwi_dm(train_subjects=["F9", "M9"]).setup("fit")
    dm = biwi_dm(val_sentences="39-40")
    with pytest.warns(UserWarning, match="val split is empty.*39-40.*validation is skipped"):
        dm.setup("fit")
    assert dm.val_dataloader() == [] and len(dm.train_dataloader()) == 4


def test_a_folder_without_the_layout(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing wav, vertices_npy, templates.pkl.*prepare-voca"):
        voca(tmp_path).setup("fit")
    assert list(tmp_path.iterdir()) == []


def test_no_warning_for_a_clean_set() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        biwi_dm().setup("fit")


def test_a_vertices_file_without_frames(tmp_path: Path) -> None:
    root = copy_of(biwi(), tmp_path / "biwi")
    path = root / "vertices_npy" / "F2_e01.npy"
    np.save(path, np.load(path)[:0])
    _setup_error(root, r"sequence F2_e01: .*F2_e01.npy has no frames")
