"""Test data of the DualTalker tests: the synthetic talking heads, written once per session.

:func:`synthetic_voca` (called by a test module's fixture, once per session) writes the generated
VOCASET *release* files (formant speech: fast and without espeak-ng) and converts them with
``make prepare-voca``'s code, so every DualTalker test reads the real on-disk layout: 4 training
speakers with sentences 1, 2, 21, 22, one unseen validation and one unseen test speaker with
21, 22 (2 sequences each), a 1442-vertex head in metres, about 2 s of audio per sentence.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from datamodules.face.synthetic import (
    BIWI_SUBJECTS,
    VOCA_SUBJECTS,
    ensure_synthetic_biwi,
    ensure_synthetic_voca,
)

SENTENCES = (1, 2, 21, 22)
_WRITTEN: dict[str, Path] = {}

#: The synthetic set's split, as overrides.
SPLIT = [
    f"data.train_subjects=[{','.join(VOCA_SUBJECTS['train'])}]",
    f"data.val_subjects=[{','.join(VOCA_SUBJECTS['val'])}]",
    f"data.test_subjects=[{','.join(VOCA_SUBJECTS['test'])}]",
]

#: Overrides that make a DualTalker run take seconds on a CPU (tiny wav2vec 2.0, d = 16).
TINY = [
    "model.audio_encoder=tiny",
    "model.feature_dim=16",
    "model.teacher_forcing=true",
    "data.generate=false",
    "data.batch_size=4",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=1",
    "evaluation.metrics_every_n_epochs=1",
    "logger.wandb.mode=disabled",
]


def write_synthetic_voca(root: Path) -> Path:
    """The converted data set in ``root/vocaset`` (returned)."""
    return ensure_synthetic_voca(root / "vocaset", sentences=SENTENCES, seed=0, engine="formant")


def synthetic_voca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The converted synthetic data set (read-only for the tests), written once per session
    (a test module's fixture calls it with pytest's ``tmp_path_factory``)."""
    if "voca" not in _WRITTEN:
        _WRITTEN["voca"] = write_synthetic_voca(tmp_path_factory.mktemp("synthetic-voca"))
    return _WRITTEN["voca"]


def synthetic_biwi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic BIWI-layout set (25 fps; subjects F2 F3 F4 M3 with e01-e04 for training,
    e33-e34 for validation and e37-e38 for Test-A), written once per session."""
    if "biwi" not in _WRITTEN:
        root = tmp_path_factory.mktemp("synthetic-biwi") / "BIWI"
        _WRITTEN["biwi"] = ensure_synthetic_biwi(root, seed=0, engine="formant")
    return _WRITTEN["biwi"]


#: The synthetic BIWI set's subjects in every split (Test-A: the training speakers).
BIWI_SPLIT = [
    f"data.{split}_subjects=[{','.join(BIWI_SUBJECTS)}]" for split in ("train", "val", "test")
]


def tiny(output_dir: Path, data_root: Path, *extra: str, biwi: bool = False) -> list[str]:
    """The tiny overrides on a synthetic set (VOCA's split, or BIWI's with ``biwi``), writing
    under ``output_dir``, plus ``extra``."""
    split = BIWI_SPLIT if biwi else SPLIT
    return [*TINY, *split, f"data.root={data_root}", f"output_dir={output_dir}", *extra]
