"""Small synthetic face data for the data-layer tests, written once per process.

``voca_release()`` is a VOCASET release folder (2 training speakers, 1 validation, 1 test;
sentences 1, 21, 22; formant speech), ``voca_prepared()`` its conversion, ``biwi()`` a BIWI
folder (2 speakers; sentences 1, 2, 33, 37). The tests copy them before changing anything.
"""

from __future__ import annotations

import atexit
import hashlib
import shutil
import tempfile
from pathlib import Path

from datamodules.face.prepare import prepare_vocaset
from datamodules.face.synthetic import (
    VOCA_SUBJECTS,
    write_synthetic_biwi,
    write_synthetic_voca_release,
)

TRAIN = VOCA_SUBJECTS["train"][:2]
VAL, TEST = VOCA_SUBJECTS["val"], VOCA_SUBJECTS["test"]
VOCA_SENTENCES = (1, 21, 22)
BIWI_SUBJECTS = ["F2", "M3"]
BIWI_SENTENCES = (1, 2, 33, 37)

_ROOT = Path(tempfile.mkdtemp(prefix="face-data-tests-"))
atexit.register(shutil.rmtree, _ROOT, True)
_CACHE: dict[str, Path] = {}


def voca_release() -> Path:
    if "release" not in _CACHE:
        _CACHE["release"] = write_synthetic_voca_release(
            _ROOT / "release", [*TRAIN, *VAL, *TEST], VOCA_SENTENCES, seed=0, engine="formant"
        )
    return _CACHE["release"]


def voca_prepared() -> Path:
    if "vocaset" not in _CACHE:
        prepare_vocaset(voca_release(), _ROOT / "vocaset")
        _CACHE["vocaset"] = _ROOT / "vocaset"
    return _CACHE["vocaset"]


def biwi() -> Path:
    if "biwi" not in _CACHE:
        _CACHE["biwi"] = write_synthetic_biwi(
            _ROOT / "biwi", BIWI_SUBJECTS, BIWI_SENTENCES, seed=0, engine="formant"
        )
    return _CACHE["biwi"]


def copy_of(folder: Path, dst: Path) -> Path:
    """A private copy of a generated folder, to change."""
    return Path(shutil.copytree(folder, dst))


def snapshot(folder: Path) -> dict[str, str]:
    """{relative path: md5} of every file under ``folder`` (to prove nothing was written)."""
    return {
        str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
