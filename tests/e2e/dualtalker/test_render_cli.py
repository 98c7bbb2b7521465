"""``render`` end to end on a tiny trained DualTalker: the validation videos of training, a wav
of any rate and channel count as .npy + mp4 in a new folder under the run (never an old one),
``split=test`` side by side with lve.csv, and every bad input as one ``error:`` line with exit
code 2 (or, for a silent file, the template with a note). The videos are tiny (48 px)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from datamodules.face.synthetic import VOCA_SUBJECTS, write_ply
from experiments.__main__ import cli
from experiments.run import train
from lightning_modules.dualtalker.render import renderer_available
from tests.helpers.face import synthetic_voca, tiny

pytestmark = pytest.mark.usefixtures("one_thread")

TEST_SUBJECT = VOCA_SUBJECTS["test"][0]
STYLE = VOCA_SUBJECTS["train"][2]
SMALL = ["size=48", "render.timeout=60"]


@pytest.fixture(scope="module")
def voca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_voca(tmp_path_factory)


@pytest.fixture(scope="module")
def renderer() -> None:
    ok, why = renderer_available()
    if not ok:
        pytest.skip(f"no offscreen renderer here: {why}")


@pytest.fixture(scope="module")
def run(voca, tmp_path_factory, renderer) -> Path:
    """One epoch, with the validation videos on (every validation, one sequence, 48 px)."""
    out = tmp_path_factory.mktemp("render-run")
    extra = ["render.every_n_val=1", "render.val_sequences=1", "render.val_size=48"]
    return train("dualtalker_synthetic", tiny(out, voca, *extra)).run_dir


@pytest.fixture(scope="module")
def ckpt(run) -> str:
    return str(run / "checkpoints" / "last.ckpt")


def stereo_wav(path: Path, seconds: float = 1.0, rate: int = 44100, silent: bool = False):
    t = np.arange(int(seconds * rate)) / rate
    voice = 0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)
    voice = voice * 0 if silent else voice
    sf.write(path, np.stack([voice, 0.5 * voice], axis=1), rate)
    return path


def test_training_writes_validation_videos(run):
    av = pytest.importorskip("av")
    videos = sorted((run / "val" / "videos").glob("epoch_000_*.mp4"))
    assert len(videos) == 1
    with av.open(str(videos[0])) as container:
        assert container.streams.video[0].width == 96  # two 48-pixel panels
        assert container.streams.audio  # the speech


def test_wav_renders_npy_and_video_into_a_new_folder(ckpt, run, tmp_path, capsys):
    av = pytest.importorskip("av")
    wav = stereo_wav(tmp_path / "speech.wav", seconds=1.0, rate=44100)
    words = ["render", f"ckpt={ckpt}", f"wav={wav}", f"subject={TEST_SUBJECT}"]
    assert cli([*words, f"condition={STYLE}", *SMALL]) == 0
    folder = run / "render" / "speech"
    npy = np.load(folder / f"condition_{STYLE}_subject_{TEST_SUBJECT}.npy")
    assert npy.shape == (30, 1442 * 3)  # 1 s at 30 fps, absolute positions
    video = folder / f"speech_{TEST_SUBJECT}_condition_{STYLE}_audio.mp4"
    with av.open(str(video)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 30
    # the same again: a new folder, the first one untouched
    stamp = video.stat().st_mtime_ns
    assert cli([*words, "video=false"]) == 0
    assert (run / "render" / "speech-2").is_dir() and video.stat().st_mtime_ns == stamp
    assert not list((run / "render" / "speech-2").glob("*.mp4"))
    assert "render folder:" in capsys.readouterr().out


def test_split_test_renders_every_sequence_side_by_side(ckpt, run, capsys):
    av = pytest.importorskip("av")
    assert cli(["render", f"ckpt={ckpt}", "split=test", *SMALL]) == 0
    folder = run / "render" / "test"
    rows = (folder / "lve.csv").read_text().splitlines()
    videos = sorted(folder.glob("*_audio.mp4"))
    assert rows[0].startswith("sequence,frames,lve") and len(rows) - 1 == len(videos) == 2
    assert all(float(r.split(",")[2]) > 0 for r in rows[1:])
    with av.open(str(videos[0])) as container:
        assert container.streams.video[0].width == 96 and container.streams.audio


def test_silent_and_empty_files_render_the_template(ckpt, run, tmp_path, capsys):
    silent = stereo_wav(tmp_path / "quiet.wav", seconds=0.5, silent=True)
    assert cli(["render", f"ckpt={ckpt}", f"wav={silent}", f"subject={TEST_SUBJECT}", *SMALL]) == 0
    assert "is silent: the video shows the template" in capsys.readouterr().out
    npy = next((run / "render" / "quiet").glob("*.npy"))
    frames = np.load(npy)
    assert frames.shape[0] == 15 and np.allclose(frames, frames[0])
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0), 16000)
    words = ["render", f"ckpt={ckpt}", f"wav={empty}", f"subject={TEST_SUBJECT}", "video=false"]
    assert cli(words) == 0
    assert "is empty" in capsys.readouterr().out


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: "), err
    return err[-1]


@pytest.mark.parametrize(
    "extra,message",
    [
        (["subject=Nobody"], "subject=Nobody: no template in .* it has: FaceTalk"),
        ([f"subject={TEST_SUBJECT}", "condition=Nobody"], "not a training subject .* use one of"),
        ([f"subject={TEST_SUBJECT}", "topology=/no/such.ply"], "such.ply: the topology PLY"),
        ([f"subject={TEST_SUBJECT}", "topology=BROKEN"], "not a PLY file"),
        ([f"subject={TEST_SUBJECT}", "topology=SMALL"], "the topology has 4 vertices .* 1442"),
        ([f"subject={TEST_SUBJECT}", "render.timeout=0.0001"], "took more than 0.0001 s"),
        ([f"subject={TEST_SUBJECT}", "wav=NOT_AUDIO"], "not an audio file librosa can read"),
        (["subject=X", "colour=red"], "render: unknown argument 'colour=red'"),
        ([f"subject={TEST_SUBJECT}", "device=cuda:7"], r"device=cuda:7: this machine has \d CUDA"),
        ([f"subject={TEST_SUBJECT}", "device=gpu"], "expected auto, cpu, cuda or cuda:N"),
    ],
)
def test_bad_inputs_are_one_error_line(ckpt, run, tmp_path, capsys, extra, message):
    wav = stereo_wav(tmp_path / "s.wav", seconds=0.3)
    (tmp_path / "broken.ply").write_text("hello")
    write_ply(tmp_path / "small.ply", np.eye(4)[:, :3], np.array([[0, 1, 2], [0, 2, 3]]))
    (tmp_path / "fake.wav").write_text("this is not audio\n")
    names = {
        "BROKEN": tmp_path / "broken.ply",
        "SMALL": tmp_path / "small.ply",
        "NOT_AUDIO": tmp_path / "fake.wav",
    }
    extra = [
        e.split("=")[0] + "=" + str(names.get(e.split("=")[1], e.split("=")[1])) for e in extra
    ]
    before = sorted(p.name for p in (run / "render").glob("*")) if (run / "render").is_dir() else []
    code = cli(["render", f"ckpt={ckpt}", f"wav={wav}", *SMALL[:1], *extra])
    assert code == 2
    assert re.search(message, _error(capsys)), message
    after = sorted(p.name for p in (run / "render").glob("*")) if (run / "render").is_dir() else []
    assert after == before  # nothing written


def test_checkpoint_of_another_system_is_refused(tmp_path, capsys):
    fake = tmp_path / "other.ckpt"
    meta = {"experiment": "textnas_train_synthetic", "system": "textnas_train", "config": {}}
    torch.save({"suite": meta, "state_dict": {}}, fake)
    assert cli(["render", f"ckpt={fake}", "wav=x.wav", "subject=S"]) == 2
    assert "has no command 'render'" in _error(capsys)


def test_missing_system_library_is_named(ckpt, tmp_path, capsys, monkeypatch):
    fake = tmp_path / "fake" / "open3d"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise OSError('libEGL.so.1: cannot open shared object file: No such file or directory')"
    )
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")])
    )
    wav = stereo_wav(tmp_path / "s.wav", seconds=0.3)
    assert cli(["render", f"ckpt={ckpt}", f"wav={wav}", f"subject={TEST_SUBJECT}", *SMALL]) == 2
    assert "sudo apt-get install libegl1" in _error(capsys)


def test_a_minute_of_flac_predicts_every_frame(ckpt, run, tmp_path):
    """Any format librosa reads, any length: 60 s of 22.05 kHz FLAC -> 1800 frames (no video)."""
    rate = 22050
    t = np.arange(60 * rate) / rate
    sf.write(tmp_path / "minute.flac", 0.3 * np.sin(2 * np.pi * 150 * t) * (t % 1 < 0.6), rate)
    words = ["render", f"ckpt={ckpt}", f"wav={tmp_path / 'minute.flac'}", "video=false"]
    assert cli([*words, f"subject={TEST_SUBJECT}", f"condition={STYLE}"]) == 0
    npy = np.load(run / "render" / "minute" / f"condition_{STYLE}_subject_{TEST_SUBJECT}.npy")
    assert npy.shape == (1800, 1442 * 3) and np.isfinite(npy).all()


@pytest.mark.gpu
def test_render_predicts_on_cuda_as_on_the_cpu(ckpt, run, tmp_path):
    """``device=auto`` predicts on the GPU where there is one: the same vertices as the CPU."""
    wav = stereo_wav(tmp_path / "gpu.wav", seconds=1.0)
    words = ["render", f"ckpt={ckpt}", f"wav={wav}", f"subject={TEST_SUBJECT}", "video=false"]
    outs = {}
    for device in ("cuda", "cpu"):
        folder = tmp_path / device
        assert cli([*words, f"condition={STYLE}", f"device={device}", f"out={folder}"]) == 0
        outs[device] = np.load(folder / f"condition_{STYLE}_subject_{TEST_SUBJECT}.npy")
    np.testing.assert_allclose(outs["cuda"], outs["cpu"], atol=1e-4)
