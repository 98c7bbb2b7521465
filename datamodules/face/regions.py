"""The lip (LVE) and upper-face (FDD) vertex sets of VOCASET and BIWI.

Where each set comes from, first match wins:

1. ``data.lip_vertices`` / ``data.upper_face_vertices``: an index file (``.txt`` with comma-
   or space-separated 0-based ids, or ``.npy``), for any mesh.
2. BIWI: ``<root>/regions/lve.txt`` and ``fdd.txt`` (CodeTalker's layout), else the copies
   shipped in ``datamodules/face/region_lists/biwi/`` (CodeTalker's hand-picked sets: 4996 lip, 7784
   upper-face vertices of the 23,370-vertex BIWI mesh).
3. VOCASET: FLAME's ``FLAME_masks.pkl`` (``data.flame_masks``, else ``<root>/FLAME_masks.pkl``).
   It cannot be shipped (FLAME licence): download it from the FLAME website ("FLAME Vertex
   Masks"; SelfTalk keeps it at ``vocaset/FLAME_masks.pkl``). Lips: the ``lips`` region (254
   vertices), the de-facto VOCA LVE set (SelfTalk, DiffSpeaker). Upper face: there is no agreed
   set; we take ``forehead`` + ``eye_region`` as DiffPoseTalk did (its issue #25), so VOCA FDD
   figures are comparable only to papers that made the same choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from datamodules.errors import DataError
from datamodules.face.readers import read_flame_masks, read_index_list

SHIPPED = Path(__file__).parent / "region_lists"
BIWI_FILES = {"lip": "lve.txt", "upper_face": "fdd.txt"}
BIWI_VERTICES = 23370
FLAME_KEYS = {"lip": ("lips",), "upper_face": ("forehead", "eye_region")}
_KEYS = {"lip": "data.lip_vertices", "upper_face": "data.upper_face_vertices"}
_USE = {"lip": "lip vertex error (LVE)", "upper_face": "upper-face dynamics deviation (FDD)"}


def region_indices(
    kind: str, dataset: str, root: Path, files: Mapping[str, str | None], num_vertices: int
) -> np.ndarray:
    """Sorted int64 vertex ids of ``kind`` (``"lip"`` or ``"upper_face"``) for ``dataset``."""
    if kind not in _KEYS:
        raise ValueError(f"kind must be 'lip' or 'upper_face', got {kind!r}")
    what = f"{kind.replace('_', '-')} ({_USE[kind]})"
    if files.get(kind):
        return read_index_list(Path(files[kind]), num_vertices, what)
    root = Path(root)
    if dataset == "biwi":
        local = root / "regions" / BIWI_FILES[kind]
        if local.is_file():
            return read_index_list(local, num_vertices, what)
        if num_vertices != BIWI_VERTICES:
            raise DataError(
                f"no {what} vertex set for this mesh: the shipped BIWI sets index the "
                f"{BIWI_VERTICES}-vertex BIWI mesh, this data has {num_vertices} vertices; put "
                f"{local} (comma-separated 0-based ids) or set {_KEYS[kind]}=<file>"
            )
        return read_index_list(SHIPPED / "biwi" / BIWI_FILES[kind], num_vertices, what)
    masks = Path(files.get("flame_masks") or root / "FLAME_masks.pkl")
    if masks.is_file():
        return read_flame_masks(masks, FLAME_KEYS[kind], num_vertices)
    regions = "+".join(FLAME_KEYS[kind])
    raise DataError(
        f"no {what} vertex set for VOCASET: {masks} is not there. Download FLAME_masks.pkl "
        "(FLAME website, 'FLAME Vertex Masks'; it cannot be shipped) and set "
        f"data.flame_masks=<path> or put it in {root}/ (its {regions!r} region is used), or "
        f"set {_KEYS[kind]}=<file of vertex ids>"
    )
