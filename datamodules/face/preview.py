"""What ``python -m experiments data`` shows for face data: split summary and a preview PNG."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from datamodules.errors import DataError
from datamodules.face.readers import SAMPLE_RATE
from datamodules.face.splits import describe_sentences

if TYPE_CHECKING:
    from datamodules.face.datamodule import FaceDataModule

SPLITS = ("train", "val", "test")


def _region_info(dm: FaceDataModule, attr: str) -> int | str:
    try:
        return int(getattr(dm, attr).numel())
    except DataError as err:
        return f"missing: {err}"


def summarize(dm: FaceDataModule) -> dict[str, Any]:
    """``{"splits": {split: {"size", "subjects", "labels", "frames", "seconds"}}, "info": {...}}``
    for every loaded split: sequences, sequences per subject (``labels`` too, which the data
    command prints), frames at ``dm.fps`` and seconds of 16 kHz audio, as the loaders give them."""
    splits: dict[str, Any] = {}
    for split in dm.loaded_splits:
        sequences = dm.dataset(split).sequences
        counts = dict(sorted(Counter(s.subject for s in sequences).items()))
        splits[split] = {
            "size": len(sequences),
            "subjects": counts,
            "labels": dict(counts),
            "frames": sum(s.frames for s in sequences),
            "seconds": round(sum(len(s.audio) for s in sequences) / SAMPLE_RATE, 3),
        }
    if not splits:
        raise RuntimeError("no split is loaded: call dm.setup('fit') (or 'test') first")
    info = {
        "dataset": dm.protocol.name,
        "root": str(dm.root),
        "fps": dm.fps,
        "num_vertices": dm.num_vertices,
        "batch_size": dm.batch_size,
        "max_seconds": dm.max_seconds,
        "subjects": {split: list(dm.subjects[split]) for split in SPLITS},
        "sentences": {split: describe_sentences(dm.sentences[split]) for split in SPLITS},
        "lip_vertices": _region_info(dm, "lip_vertices"),
        "upper_face_vertices": _region_info(dm, "upper_face_vertices"),
        "skipped": list(dm.skipped),
    }
    return {"splits": splits, "info": info}


def _region(dm: FaceDataModule, attr: str) -> tuple[np.ndarray, str]:
    try:
        ids = getattr(dm, attr).numpy()
        return ids, f"{ids.size} vertices"
    except DataError:
        return np.zeros(0, dtype=np.int64), "not available (see data_summary()['info'])"


def write_preview(dm: FaceDataModule, out_dir: Path) -> list[Path]:
    """``out_dir/preview.png``: the first training subject's template seen from the front and
    the side, lip vertices red and upper-face vertices blue; below, the first sequence's audio
    loudness per frame beside its lip motion (both scaled to [0, 1]), which should rise and
    fall together."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    split = next(s for s in dm.loaded_splits if len(dm.dataset(s)))
    dataset = dm.dataset(split)
    item = dataset[0]
    template = item["template"].reshape(-1, 3)
    lips, lip_text = _region(dm, "lip_vertices")
    upper, upper_text = _region(dm, "upper_face_vertices")
    fig = plt.figure(figsize=(11, 8), constrained_layout=True)
    grid = fig.add_gridspec(2, 2, height_ratios=[3, 1.4])
    for col, (axis, label) in enumerate(((0, "x (front view)"), (2, "z (side view)"))):
        ax = fig.add_subplot(grid[0, col])
        ax.scatter(template[:, axis], template[:, 1], s=3, c="0.7", linewidths=0)
        ax.scatter(
            template[upper, axis],
            template[upper, 1],
            s=8,
            c="tab:blue",
            linewidths=0,
            label=f"upper face: {upper_text}",
        )
        ax.scatter(
            template[lips, axis],
            template[lips, 1],
            s=8,
            c="tab:red",
            linewidths=0,
            label=f"lips: {lip_text}",
        )
        ax.set_aspect("equal")
        ax.set_xlabel(label)
        ax.set_ylabel("y")
        ax.legend(loc="lower right", fontsize=8, markerscale=4)
    fig.suptitle(
        f"{dm.protocol.name}: template of {item['subject']} "
        f"({len(template)} vertices), data.root={dm.root}"
    )
    ax = fig.add_subplot(grid[1, :])
    frames = item["vertices"].reshape(len(item["vertices"]), -1, 3)
    region = lips if lips.size else np.arange(len(template))
    motion = np.linalg.norm(frames[:, region] - template[region], axis=-1).mean(axis=1)
    hop = SAMPLE_RATE / dm.fps
    audio = item["audio"]
    loud = np.array(
        [
            np.sqrt(np.mean(audio[int(t * hop) : int((t + 1) * hop)] ** 2) + 1e-12)
            for t in range(len(frames))
        ]
    )
    t = np.arange(len(frames)) / dm.fps
    for values, label in ((loud, "audio RMS"), (motion, "lip displacement from template")):
        span = values.max() - values.min()
        ax.plot(t, (values - values.min()) / span if span > 0 else values * 0, label=label)
    ax.set_xlabel(f"seconds ({item['name']}, {split} split, {dm.fps} fps)")
    ax.set_ylabel("scaled")
    ax.legend(loc="upper right", fontsize=8)
    path = out_dir / "preview.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [path]
