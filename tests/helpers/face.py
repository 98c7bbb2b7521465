"""Test data of the DualTalker tests: the synthetic talking heads, written once per session.

:func:`synthetic_voca` (a session fixture; import it into a test module) writes the generated
VOCASET *release* files (formant speech: fast and without espeak-ng) and converts them with
``make prepare-voca``'s code, so every DualTalker test reads the real on-disk layout: 4 training
speakers with sentences 1, 2, 21, 22, one unseen validation and one unseen test speaker with
21, 22 (2 sequences each), a 1442-vertex head in metres, about 2 s of audio per sentence.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from datamodules.synthetic.face import VOCA_SUBJECTS, ensure_synthetic_voca

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


@pytest.fixture(scope="session")
def synthetic_voca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The converted synthetic data set (read-only for the tests), written once per session."""
    if "voca" not in _WRITTEN:
        _WRITTEN["voca"] = write_synthetic_voca(tmp_path_factory.mktemp("synthetic-voca"))
    return _WRITTEN["voca"]


def tiny(output_dir: Path, data_root: Path, *extra: str) -> list[str]:
    """The tiny overrides on the synthetic set, writing under ``output_dir``, plus ``extra``."""
    return [*TINY, *SPLIT, f"data.root={data_root}", f"output_dir={output_dir}", *extra]
