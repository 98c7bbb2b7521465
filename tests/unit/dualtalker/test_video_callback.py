"""The validation-video callback without a Trainer run: its schedule (every n-th validation,
sanity checks not counted, rank 0 only), the sequences it keeps, the files it writes through
the media logger, and the two ways it switches itself off with one warning while training goes
on (no topology to be found, a topology PLY that is missing). The renderer is replaced by a
function that records its arguments; ``test_render_cli.py`` renders real validation videos."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from datamodules.face.synthetic import write_ply
from lightning_modules.dualtalker import face_video
from lightning_modules.dualtalker.video_callback import ValidationVideos
from tests.unit.dualtalker.test_dualtalker_module import V, batch, module

pytestmark = pytest.mark.usefixtures("one_thread")


def fake_trainer(root: Path, datamodule=None) -> SimpleNamespace:
    return SimpleNamespace(
        sanity_checking=False,
        is_global_zero=True,
        datamodule=datamodule,
        current_epoch=0,
        global_step=0,
        callbacks=[],
        loggers=[],
        default_root_dir=str(root),
    )


def validate(callback: ValidationVideos, trainer, pl_module, batches) -> None:
    """What the Trainer calls on the callback during one validation."""
    callback.on_validation_epoch_start(trainer, pl_module)
    for i, b in enumerate(batches):
        callback.on_validation_batch_end(trainer, pl_module, None, b, i)
    callback.on_validation_epoch_end(trainer, pl_module)
    trainer.current_epoch += 1


@pytest.fixture
def renders(monkeypatch) -> list[dict]:
    calls: list[dict] = []

    def fake_render(path, faces, prediction, truth, fps, audio, rate, **kwargs):
        calls.append(dict(faces=faces, prediction=prediction, truth=truth, fps=fps, **kwargs))
        Path(path).write_bytes(b"not really an mp4")

    monkeypatch.setattr(face_video, "render_comparison", fake_render)
    return calls


@pytest.fixture
def ply(tmp_path) -> Path:
    faces = np.array([[i, i + 1, i + 2] for i in range(V - 2)])
    write_ply(tmp_path / "face.ply", np.random.default_rng(0).normal(size=(V, 3)), faces)
    return tmp_path / "face.ply"


def test_every_nth_validation_on_rank_zero_writes_the_kept_sequences(tmp_path, renders, ply):
    callback = ValidationVideos(every_n_val=2, sequences=1, size=32, topology=str(ply))
    trainer, pl_module = fake_trainer(tmp_path), module()
    batches = [batch([0, 1], frames=6), batch([2], frames=6)]
    trainer.sanity_checking = True  # not counted
    validate(callback, trainer, pl_module, batches)
    trainer.sanity_checking, trainer.current_epoch = False, 0
    for _ in range(4):  # validations 1..4: videos after the 2nd and the 4th
        validate(callback, trainer, pl_module, batches)
    assert [c["corner"] for c in renders] == ["epoch 1", "epoch 3"]
    first = batches[0]["name"][0]
    assert [p.relative_to(tmp_path).as_posix() for p in callback.written] == [
        f"val/videos/epoch_001_{first}.mp4",
        f"val/videos/epoch_003_{first}.mp4",
    ]
    assert all(p.is_file() for p in callback.written)
    call = renders[0]
    assert call["prediction"].shape == call["truth"].shape == (6, V * 3)
    assert call["size"] == 32 and call["fps"] == 30 and len(call["faces"]) == V - 2
    assert not pl_module.training  # the module's mode is restored (it was in eval)
    trainer.is_global_zero = False  # another rank: nothing, even when due
    callback.validations = 1
    validate(callback, trainer, pl_module, batches)
    assert len(renders) == 2


def test_sequences_are_taken_across_batches(tmp_path, renders, ply):
    callback = ValidationVideos(every_n_val=1, sequences=3, size=32, topology=str(ply))
    trainer = fake_trainer(tmp_path)
    batches = [batch([0, 1], frames=5), batch([2, 0], frames=7)]
    validate(callback, trainer, module(), batches)
    names = [*batches[0]["name"], batches[1]["name"][0]]
    assert [p.name for p in callback.written] == [f"epoch_000_{n}.mp4" for n in names]
    assert [len(c["truth"]) for c in renders] == [5, 5, 7]


@pytest.mark.parametrize("topology", [None, "/no/such/face.ply"])
def test_no_topology_is_one_warning_and_training_goes_on(tmp_path, renders, topology):
    """No PLY (no datamodule to find the data set's own, or a missing file): one warning, the
    callback switches itself off, and the next validations neither predict nor warn."""
    callback = ValidationVideos(every_n_val=1, sequences=1, size=32, topology=topology)
    trainer, pl_module = fake_trainer(tmp_path), module()
    predicted = []
    original = pl_module.net.predict
    pl_module.net.predict = lambda *a, **k: predicted.append(1) or original(*a, **k)
    with pytest.warns(UserWarning, match="validation videos are off") as caught:
        validate(callback, trainer, pl_module, [batch([0], frames=4)])
    message = str(caught[0].message)
    assert ("no topology" in message) if topology is None else ("such/face.ply" in message)
    assert callback.disabled and not callback.written and not renders
    assert not (tmp_path / "val").exists()
    before = len(predicted)
    with warnings.catch_warnings(record=True) as later:
        warnings.simplefilter("always")
        validate(callback, trainer, pl_module, [batch([0], frames=4)])
    assert len(predicted) == before and not later  # no second attempt, no second warning
