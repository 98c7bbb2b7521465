"""Bad face data through the command line: NaN or infinite values in any input array (vertices,
templates, audio, the VOCASET release), integer vertices and a ``data.root`` that is a file are
each one ``error:`` line naming the file and the first bad index (exit 2, nothing written); a
vertices file without its wav and a listed subject without files are warnings listed under
``skipped``; the hint for a raw VOCASET release is a prepare-voca command that works."""

from __future__ import annotations

import json
import pickle
import shlex
from pathlib import Path

import numpy as np
import pytest
import soundfile

from datamodules.face import prepare
from experiments.__main__ import cli
from experiments.run import train
from tests.e2e.conftest import QUIET
from tests.helpers.face import tiny
from tests.helpers.face_data import biwi as biwi_set
from tests.helpers.face_data import copy_of, snapshot, voca_release


def _errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


@pytest.fixture
def biwi(tmp_path: Path) -> Path:
    """A private copy of the small BIWI-layout set (F2 and M3; sentences 1, 2, 33, 37)."""
    return copy_of(biwi_set(), tmp_path / "biwi")


def _data(root: Path, out: Path, *extra: str) -> list[str]:
    """``data dualtalker_biwi`` on ``root`` with F2 and M3 in every split (``extra`` last)."""
    subjects = [f"data.{s}_subjects=[F2,M3]" for s in ("train", "val", "test")]
    return ["data", "dualtalker_biwi", f"data.root={root}", *subjects, f"output_dir={out}", *extra]


def _refused(root: Path, tmp_path: Path, capsys) -> str:
    """The one error line of ``data`` on ``root``; checks exit 2 and that nothing was written."""
    before, out = snapshot(root), tmp_path / "out"
    assert cli(_data(root, out)) == 2
    (line,) = _errors(capsys)
    assert snapshot(root) == before and not out.exists()
    return line


def test_nan_in_a_vertices_file(biwi, tmp_path, capsys) -> None:
    path = biwi / "vertices_npy" / "M3_e02.npy"
    vertices = np.load(path)
    vertices[3, 16] = np.nan
    np.save(path, vertices)
    assert _refused(biwi, tmp_path, capsys) == (
        f"error: {path}: non-finite vertex value (nan) at frame 3, vertex 5, coordinate y (index "
        "[3, 16] of the (frames, vertices*3) array); every value must be a finite number"
    )


def test_integer_vertices(biwi, tmp_path, capsys) -> None:
    path = biwi / "vertices_npy" / "F2_e01.npy"
    np.save(path, np.round(np.load(path) * 1000).astype(np.int32))  # millimetres
    line = _refused(biwi, tmp_path, capsys)
    assert line.startswith(f"error: {path}: the vertices are int32 integers; they must be floats")
    assert "(array / 1000).astype('float32')" in line


def test_infinity_in_a_template(biwi, tmp_path, capsys) -> None:
    path = biwi / "templates.pkl"
    templates = pickle.loads(path.read_bytes())
    templates["M3"] = np.array(templates["M3"])
    templates["M3"][7, 2] = np.inf
    path.write_bytes(pickle.dumps(templates))
    assert _refused(biwi, tmp_path, capsys) == (
        f"error: {path}: the template of 'M3' holds a non-finite value (inf) at vertex 7, "
        "coordinate z; every value must be a finite number"
    )


def test_nan_in_a_float_wav(biwi, tmp_path, capsys) -> None:
    path = biwi / "wav" / "F2_e02.wav"
    audio, rate = soundfile.read(path, dtype="float32")
    audio[rate // 2] = np.nan  # at 0.5 s
    soundfile.write(path, audio, rate, subtype="FLOAT")
    assert _refused(biwi, tmp_path, capsys) == (
        f"error: {path}: the audio holds a non-finite sample (nan) at 0.500 s (sample "
        f"{rate // 2} at the file's {rate} Hz); every sample must be a finite number"
    )


def test_a_missing_wav_and_an_empty_subject_are_warned_about_and_listed(
    biwi, tmp_path, capsys
) -> None:
    (biwi / "wav" / "M3_e01.wav").unlink()
    out = tmp_path / "out"
    with pytest.warns(UserWarning) as caught:
        assert cli(_data(biwi, out, "data.train_subjects=[F2,M3,F3]")) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    missing = (
        f"skipped M3_e01: {biwi / 'vertices_npy' / 'M3_e01.npy'} has no audio file "
        f"{biwi / 'wav' / 'M3_e01.wav'}"
    )
    empty = (
        f"train split: subject 'F3' has no sequence with sentences 1-32 in {biwi / 'wav'} or "
        f"{biwi / 'vertices_npy'}; it is left out (is the name right?)"
    )
    assert summary["info"]["skipped"] == [missing, empty]
    assert {missing, empty} <= {str(w.message) for w in caught}
    assert summary["splits"]["train"]["subjects"] == {"F2": 2, "M3": 1}


def test_a_data_root_that_is_a_file(tmp_path, capsys) -> None:
    file = tmp_path / "BIWI.zip"
    file.write_bytes(b"PK")
    out = tmp_path / "out"
    assert cli(_data(file, out)) == 2
    (line,) = _errors(capsys)
    assert line == (
        f"error: data.root={file}: this is a file, not a folder; set data.root to the folder "
        "that holds wav/, vertices_npy/ and templates.pkl"
    )
    assert not out.exists()


def test_the_hint_for_the_raw_voca_release_is_a_command_that_works(tmp_path, capsys) -> None:
    release = copy_of(voca_release(), tmp_path / "release")
    out = tmp_path / "out"
    assert cli(["data", "dualtalker_voca", f"data.root={release}", f"output_dir={out}"]) == 2
    (line,) = _errors(capsys)
    dst = tmp_path / "release-prepared"
    command = f'make prepare-voca ARGS="src={release} dst={dst}"'
    assert line == (
        f"error: data.root={release}: missing wav, vertices_npy; the folder needs wav/, "
        f"vertices_npy/ and templates.pkl: this is the VOCASET release itself; convert it with: "
        f"{command} and set data.root={dst}"
    )
    args = shlex.split(command.partition("ARGS=")[2])[0].split()
    assert prepare.main(args) == 0  # what `make prepare-voca` runs
    assert (dst / "wav").is_dir() and (dst / "templates.pkl").is_file()


def test_nan_in_the_voca_release(tmp_path, capsys) -> None:
    release = copy_of(voca_release(), tmp_path / "release")
    verts = np.load(release / "data_verts.npy")
    verts[10, 4, 0] = np.nan
    np.save(release / "data_verts.npy", verts)
    dst = tmp_path / "vocaset"
    assert prepare.main([f"src={release}", f"dst={dst}"]) == 2
    assert capsys.readouterr().err == (
        f"error: {release / 'data_verts.npy'}: non-finite value at row 10, vertex 4, "
        "coordinate x; every value must be a finite number\n"
    )
    assert not dst.exists()


def test_eval_reads_no_training_sequence(biwi, tmp_path) -> None:
    out = tmp_path / "out"
    subjects = [f"data.{s}_subjects=[F2,M3]" for s in ("train", "val", "test")]
    args = tiny(out, biwi, *subjects, "evaluation.metrics_every_n_epochs=0", biwi=True)
    run_dir = train("dualtalker_biwi", args).run_dir
    for sentence in ("e01", "e02"):  # the training sentences: eval must not need them
        for subject in ("F2", "M3"):
            (biwi / "wav" / f"{subject}_{sentence}.wav").unlink()
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert cli(["eval", f"ckpt={ckpt}", f"output_dir={out}", *QUIET]) == 0
