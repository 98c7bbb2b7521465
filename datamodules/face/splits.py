"""The standard VOCASET and BIWI protocols: subjects, sentence ranges, frame rates.

These are the defaults of :class:`datamodules.face.datamodule.FaceDataModule`; each is a config key
(``data.train_subjects``, ``data.train_sentences``, ...), so a subset or another split is a
command-line override. Sources (docs/dualtalker.md, "Data: VOCASET and BIWI"):

- VOCASET (FaceFormer / CodeTalker / VOCA): 8 training subjects with sentences 1-40, 2
  validation and 2 test subjects (unseen speakers) with sentences 21-40. The files store 60
  fps; the loaders keep every second frame (30 fps).
- BIWI (CodeTalker protocol): the same 6 subjects in every split, sentences e01-e32 for
  training, e33-e36 for validation and e37-e40 for the test ("Test-A", the one LVE/FDD are
  reported on). ``BIWI_TEST_B`` lists the 8 unseen subjects of "Test-B" (user studies).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from datamodules.errors import DataError


@dataclass(frozen=True)
class FaceProtocol:
    """One data set's frame rates, mesh size and standard split."""

    name: str
    fps: int  # frames per second the model sees
    file_fps: int  # frames per second stored in vertices_npy/
    num_vertices: int  # of the real data set's mesh (the synthetic sets have fewer)
    train_subjects: tuple[str, ...]
    val_subjects: tuple[str, ...]
    test_subjects: tuple[str, ...]
    train_sentences: str
    val_sentences: str
    test_sentences: str

    @property
    def frame_step(self) -> int:
        """Keep every ``frame_step``-th stored frame (VOCA: 2, FaceFormer's ``[::2]``)."""
        return self.file_fps // self.fps


VOCASET = FaceProtocol(
    name="vocaset",
    fps=30,
    file_fps=60,
    num_vertices=5023,
    train_subjects=(
        "FaceTalk_170728_03272_TA",
        "FaceTalk_170904_00128_TA",
        "FaceTalk_170725_00137_TA",
        "FaceTalk_170915_00223_TA",
        "FaceTalk_170811_03274_TA",
        "FaceTalk_170913_03279_TA",
        "FaceTalk_170904_03276_TA",
        "FaceTalk_170912_03278_TA",
    ),
    val_subjects=("FaceTalk_170811_03275_TA", "FaceTalk_170908_03277_TA"),
    test_subjects=("FaceTalk_170809_00138_TA", "FaceTalk_170731_00024_TA"),
    train_sentences="1-40",
    val_sentences="21-40",
    test_sentences="21-40",
)

_BIWI_SEEN = ("F2", "F3", "F4", "M3", "M4", "M5")

BIWI = FaceProtocol(
    name="biwi",
    fps=25,
    file_fps=25,
    num_vertices=23370,
    train_subjects=_BIWI_SEEN,
    val_subjects=_BIWI_SEEN,
    test_subjects=_BIWI_SEEN,
    train_sentences="1-32",
    val_sentences="33-36",
    test_sentences="37-40",
)

BIWI_TEST_B = ("F1", "F5", "F6", "F7", "F8", "M1", "M2", "M6")

PROTOCOLS = {p.name: p for p in (VOCASET, BIWI)}


def get_protocol(dataset: str) -> FaceProtocol:
    """The protocol of ``"vocaset"`` or ``"biwi"`` (case-insensitive)."""
    protocol = PROTOCOLS.get(dataset.lower())
    if protocol is None:
        raise DataError(f"data.dataset must be one of {sorted(PROTOCOLS)}, got {dataset!r}")
    return protocol


_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+))?\s*$")


def parse_sentences(spec: str | int | Sequence[int] | range, key: str = "sentences") -> list[int]:
    """Sentence numbers from ``"1-40"``, ``"21-40,3"``, ``7``, ``[1, 2, 5]`` or a range.

    Ranges are inclusive on both ends (``"33-36"`` is 33, 34, 35, 36), as the papers write
    them; the result is sorted and without duplicates. ``key`` names the setting in errors.
    """
    if isinstance(spec, bool):
        raise DataError(f"data.{key}: expected sentence numbers like '1-40', got {spec!r}")
    if isinstance(spec, int):
        numbers = [spec]
    elif isinstance(spec, str):
        numbers = []
        for part in spec.split(","):
            match = _RANGE.match(part)
            if match is None:
                raise DataError(
                    f"data.{key}: cannot read {part.strip()!r} in {spec!r}; write sentence "
                    "numbers and inclusive ranges, e.g. '1-32' or '21-40,3'"
                )
            first, last = int(match.group(1)), int(match.group(2) or match.group(1))
            if last < first:
                raise DataError(f"data.{key}: range {part.strip()!r} ends before it starts")
            numbers.extend(range(first, last + 1))
    else:
        try:
            numbers = [int(n) for n in spec]
        except (TypeError, ValueError):
            raise DataError(
                f"data.{key}: expected sentence numbers like '1-40' or a list, got {spec!r}"
            ) from None
    return sorted(set(numbers))


def describe_sentences(numbers: Sequence[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3,7"`` (the inverse of :func:`parse_sentences`)."""
    parts: list[str] = []
    numbers = sorted(set(numbers))
    start = prev = None
    for n in [*numbers, None]:
        if n is not None and prev is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = n
    return ",".join(parts)
