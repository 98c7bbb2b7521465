"""``make prepare-voca``: the VOCASET release files converted into the FaceFormer layout."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from datamodules.errors import DataError
from datamodules.face.datamodule import FaceDataModule
from datamodules.face.prepare import RELEASE_FILES, main, prepare_vocaset
from tests.helpers.face_data import TRAIN, VAL, copy_of, snapshot, voca_release


def _load(path: Path):
    with path.open("rb") as f:
        return pickle.load(f, encoding="latin1")


def test_prepare_gives_the_frames_rows_and_audio_the_index_says(tmp_path: Path) -> None:
    src = voca_release()
    before = snapshot(src)
    result = prepare_vocaset(src, tmp_path / "vocaset")
    dst = tmp_path / "vocaset"
    verts = np.load(src / "data_verts.npy")
    index = _load(src / "subj_seq_to_idx.pkl")
    raw = _load(src / "raw_audio_fixed.pkl")
    n = 0
    for subject, sequences in index.items():
        for sentence, frames in sequences.items():
            out = np.load(dst / "vertices_npy" / f"{subject}_{sentence}.npy")
            rows = [frames[f] for f in sorted(frames)]
            assert out.shape == (len(frames), verts.shape[1] * 3)
            np.testing.assert_array_equal(out, verts[rows].reshape(len(rows), -1))
            wav = dst / "wav" / f"{subject}_{sentence}.wav"
            info = soundfile.info(wav)
            entry = raw[subject][sentence]
            assert info.frames == len(entry["audio"]) and info.samplerate == entry["sample_rate"]
            samples, _ = soundfile.read(wav, dtype="int16")
            np.testing.assert_array_equal(samples, entry["audio"])
            n += 1
    assert result["sequences"] == n == len(list((dst / "vertices_npy").iterdir()))
    assert result["frames"] == len(verts)  # every row belongs to one sequence
    assert (dst / "templates.pkl").read_bytes() == (src / "templates.pkl").read_bytes()
    assert (dst / "templates" / "FLAME_sample.ply").is_file()
    assert (dst / "transcripts.txt").is_file() and (dst / "FLAME_masks.pkl").is_file()
    assert snapshot(src) == before  # nothing written into the release folder


@pytest.mark.parametrize("missing", RELEASE_FILES)
def test_a_release_missing_one_of_its_files(tmp_path: Path, missing: str) -> None:
    src = copy_of(voca_release(), tmp_path / "release")
    (src / missing).unlink()
    with pytest.raises(DataError, match=rf"release file {missing} is missing"):
        prepare_vocaset(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_template_file_without_one_of_the_subjects(tmp_path: Path) -> None:
    src = copy_of(voca_release(), tmp_path / "release")
    templates = _load(src / "templates.pkl")
    del templates[TRAIN[1]]
    (src / "templates.pkl").write_bytes(pickle.dumps(templates))
    with pytest.raises(DataError, match=rf"templates.pkl: no template for subject '{TRAIN[1]}'"):
        prepare_vocaset(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_audio_without_a_vertex_entry_is_converted_and_skipped_by_the_reader(
    tmp_path: Path,
) -> None:
    src = copy_of(voca_release(), tmp_path / "release")
    index = _load(src / "subj_seq_to_idx.pkl")
    del index[VAL[0]]["sentence22"]
    (src / "subj_seq_to_idx.pkl").write_bytes(pickle.dumps(index))
    result = prepare_vocaset(src, tmp_path / "out")
    name = f"{VAL[0]}_sentence22"
    assert result["audio_only"] == [name]
    dm = FaceDataModule("vocaset", tmp_path / "out", train_subjects=TRAIN, val_subjects=VAL)
    with pytest.warns(UserWarning, match=rf"skipped {name}: .* has no vertices file"):
        dm.setup("fit")
    names = [s.name for s in dm.dataset("val").sequences]
    assert name not in names and names and all(s.frames > 0 for s in dm.dataset("val").sequences)


def test_dst_inside_src_non_empty_dst_and_overwrite(tmp_path: Path) -> None:
    src = copy_of(voca_release(), tmp_path / "release")
    before = snapshot(src)
    with pytest.raises(DataError, match="inside src"):
        prepare_vocaset(src, src / "vocaset")
    assert snapshot(src) == before
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty.*overwrite=true"):
        prepare_vocaset(src, dst)
    assert [p.name for p in dst.iterdir()] == ["keep.txt"]
    prepare_vocaset(src, dst, overwrite=True)
    assert (dst / "keep.txt").read_text() == "mine" and (dst / "wav").is_dir()


def test_rows_outside_data_verts(tmp_path: Path) -> None:
    src = copy_of(voca_release(), tmp_path / "release")
    index = _load(src / "subj_seq_to_idx.pkl")
    index[TRAIN[0]]["sentence01"][0] = 10**6
    (src / "subj_seq_to_idx.pkl").write_bytes(pickle.dumps(index))
    with pytest.raises(DataError, match=rf"{TRAIN[0]}/sentence01: row 1000000 is outside"):
        prepare_vocaset(src, tmp_path / "out")


def test_float64_release_and_frame_order(tmp_path: Path) -> None:
    """Stored float types are kept; frames come out in frame order whatever the dict order."""
    src = copy_of(voca_release(), tmp_path / "release")
    verts = np.load(src / "data_verts.npy").astype(np.float64)
    np.save(src / "data_verts.npy", verts)
    index = _load(src / "subj_seq_to_idx.pkl")
    frames = index[TRAIN[0]]["sentence01"]
    index[TRAIN[0]]["sentence01"] = dict(reversed(list(frames.items())))
    (src / "subj_seq_to_idx.pkl").write_bytes(pickle.dumps(index))
    prepare_vocaset(src, tmp_path / "out")
    out = np.load(tmp_path / "out" / "vertices_npy" / f"{TRAIN[0]}_sentence01.npy")
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, verts[sorted(frames.values())].reshape(len(frames), -1))


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = voca_release()
    assert main([f"src={src}", f"dst={tmp_path / 'a'}"]) == 0
    assert "vertex sequences" in capsys.readouterr().out
    assert main([f"src={src}", f"dst={tmp_path / 'a'}"]) == 2
    assert "error: " in capsys.readouterr().err
    assert main([f"src={src}", f"dst={tmp_path / 'a'}", "overwrite=true"]) == 0
    assert main([f"source={src}"]) == 2
    assert "src=<release folder>" in capsys.readouterr().err
    assert main([f"src={tmp_path / 'none'}", f"dst={tmp_path / 'b'}"]) == 2
    shutil.rmtree(tmp_path / "a")
