"""``render``: a DualTalker checkpoint's animation of any speech, or of a whole split, as files
people look at (``make render``).

    python -m experiments render ckpt=PATH wav=speech.wav subject=S [condition=C] [video=false]
    python -m experiments render ckpt=PATH split=test

With ``wav``: the predicted vertices ``condition_<C>_subject_<S>.npy`` ((T, V*3) absolute
positions at the data set's frame rate) and ``<wav>_<S>_condition_<C>_audio.mp4`` (the shaded
mesh speaking, with the audio) in a new folder ``<run>/render/<wav>`` (the checkpoint's run
folder; ``-2``, ``-3``, ... when taken). ``subject`` gives the face (its template in the data
folder), ``condition`` the speaking style (a training subject; default: the subject itself when
it is one, else the first training subject). Any audio librosa reads, any rate, mono or stereo.

With ``split=test`` (or ``val``): every sequence of the split, the prediction (coloured by its
per-vertex error) beside the ground truth with the sequence's LVE in the corner, as
``<sequence>_condition_<C>_audio.mp4`` + ``.npy``, and ``lve.csv``. Training subjects are
conditioned on themselves; unseen ones on ``condition`` or the model's ``unseen_condition``
(``all`` and ``mean``: the mean prediction over every training condition).

The mesh topology is the data set's PLY (``data.topology``, ``topology=PATH`` on the command
line); see :mod:`datamodules.face.topology`.
"""

from __future__ import annotations

import contextlib
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from omegaconf import DictConfig, OmegaConf

from datamodules.errors import DataError
from experiments.config import ConfigError

SPLITS = ("val", "test")
SILENCE = 1e-4  # peak amplitude below which a file counts as silent


@dataclass
class RenderConfig:
    """``render`` command and training-video options (each also a bare key: ``wav=...``)."""

    wav: Optional[str] = None  # speech to animate (any audio file librosa reads)
    subject: Optional[str] = None  # whose face: a subject of templates.pkl
    condition: Optional[str] = None  # speaking style: a training subject (or mean, for split)
    split: Optional[str] = None  # val | test: every sequence beside its ground truth
    video: bool = True  # false: only the predicted vertices (.npy)
    size: int = 800  # frame width and height in pixels (side by side: twice as wide)
    out: Optional[str] = None  # output folder (default <run>/render/<wav or split>)
    timeout: float = 60.0  # seconds a frame may take before the renderer is stopped
    device: str = "auto"  # where the network predicts: auto (CUDA when there is one), cpu, cuda:N
    every_n_val: int = 10  # training: render videos every n-th validation (0 = never)
    val_sequences: int = 1  # ... of this many validation sequences
    val_size: int = 256  # ... this big (per panel)


# the render command's bare keys: ``wav=x`` is ``render.wav=x``, ``topology=`` data.topology
ALIASES = {
    k: f"render.{k}"
    for k in ("wav", "subject", "condition", "split", "video", "out", "size", "device")
}
ALIASES["topology"] = "data.topology"


def new_folder(path: Path) -> Path:
    """``path`` created, or ``path-2``, ``path-3``, ... when it exists: never an old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10000):
        candidate = path if n == 1 else path.with_name(f"{path.name}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        if n > 1:
            print(f"{path} exists: writing into {candidate}")
        return candidate
    raise ConfigError(f"cannot create a new folder next to {path}")


def _run_folder(ckpt: Path) -> Path:
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


def read_speech(path: str) -> tuple[np.ndarray, float]:
    """16 kHz mono float32 samples of any audio file librosa reads, and its duration."""
    import librosa

    from datamodules.face.readers import SAMPLE_RATE

    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"wav={path}: no such file")
    try:
        with warnings.catch_warnings():  # librosa's fallback notes, before our own message
            warnings.simplefilter("ignore")
            audio, _ = librosa.load(str(file), sr=SAMPLE_RATE, mono=True)
    except Exception as err:  # noqa: BLE001 - every decoder failure is the same user error
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"wav={path}: not an audio file librosa can read ({detail})") from None
    return np.ascontiguousarray(audio, dtype=np.float32), len(audio) / SAMPLE_RATE


def check_options(cfg: DictConfig) -> None:
    """Checks of the render section before anything is loaded."""
    r = cfg.render
    if bool(r.wav) == bool(r.split):
        raise ConfigError("render needs either wav=FILE (with subject=...) or split=test|val")
    if r.split and r.split not in SPLITS:
        raise ConfigError(f"split={r.split}: expected one of {', '.join(SPLITS)}")
    if r.wav and not r.subject:
        raise ConfigError("wav=... needs subject=NAME: whose face speaks (a templates.pkl subject)")
    if r.size < 16 or r.timeout <= 0:
        raise ConfigError("render.size must be >= 16 and render.timeout positive")
    predict_device(str(r.device))  # checked before the checkpoint loads


def predict_device(name: str) -> str:
    """``render.device`` as a torch device: ``auto`` is CUDA when there is one, else the CPU;
    ``cuda[:N]`` without that device is one error."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    if name == "cuda" or name.startswith("cuda:") and name[5:].isdigit():
        index = int(name[5:]) if name != "cuda" else 0
        if index >= torch.cuda.device_count():
            found = torch.cuda.device_count()
            raise ConfigError(f"render.device={name}: this machine has {found} CUDA device(s)")
        return name
    raise ConfigError(f"render.device={name}: expected auto, cpu, cuda or cuda:N")


def _apply_bare_keys(cfg: DictConfig, args: list[str]) -> list[str]:
    """``wav=x``-style words set their config keys in ``cfg``; returns them as overrides."""
    from experiments.config import parse_override

    done = []
    for word in args:
        key, sep, _ = word.partition("=")
        if not sep or key not in ALIASES:
            raise ConfigError(
                f"render: unknown argument {word!r}; it takes ckpt=PATH, "
                + ", ".join(f"{k}=..." for k in ALIASES)
                + " and config overrides"
            )
        value = parse_override(word)[1]
        OmegaConf.update(cfg, ALIASES[key], value, merge=False)
        done.append(f"{ALIASES[key]}={word.partition('=')[2]}")
    return done


def _overrides(cfg: DictConfig, bare: list[str]) -> list[str]:
    """The command line's overrides, recovered as what ``cfg`` changes in its experiment's
    YAML (they go on top of the checkpoint's stored config, as ``eval`` does)."""
    import json

    from experiments.run import compose_experiment

    _, plain = compose_experiment(str(cfg.experiment), [])
    ours = OmegaConf.to_container(cfg, resolve=True)
    theirs = OmegaConf.to_container(plain, resolve=True)
    out = []

    def walk(a, b, prefix: str) -> None:
        for key, value in a.items():
            other = b.get(key) if isinstance(b, dict) else None
            if isinstance(value, dict) and isinstance(other, dict):
                walk(value, other, f"{prefix}{key}.")
            elif value != other and f"{prefix}{key}" not in ("ckpt", "experiment", "render"):
                out.append(f"{prefix}{key}={json.dumps(value)}")

    walk(ours, theirs, "")
    return [*out, *bare]


def render_command(cfg: DictConfig, args: list[str]) -> int:
    """``render ckpt=PATH wav=FILE subject=S [condition=C]`` or ``render ckpt=PATH split=test``."""
    from experiments.checkpoints import load_run

    bare = _apply_bare_keys(cfg, args)
    if not cfg.ckpt:
        raise ConfigError("render needs a DualTalker checkpoint: ckpt=PATH")
    check_options(cfg)
    audio = read_speech(cfg.render.wav) if cfg.render.wav else None
    run = load_run(str(cfg.ckpt), system="dualtalker", overrides=_overrides(cfg, bare))
    run.module.to(predict_device(str(cfg.render.device)))
    faces = topology_faces(run.cfg, run.datamodule)
    base = Path(cfg.render.out) if cfg.render.out else None
    if audio is not None:
        subject, condition, style = check_speaker(run)
        stem = Path(cfg.render.wav).stem
        out = new_folder(base or _run_folder(run.path) / "render" / stem)
        job = lambda: render_speech(run, audio, faces, out, stem, subject, condition, style)  # noqa: E731
    else:
        out = new_folder(base or _run_folder(run.path) / "render" / str(cfg.render.split))
        job = lambda: render_split(run, faces, out)  # noqa: E731
    try:
        job()
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # a failed render leaves nothing behind
        raise
    print(f"render folder: {out}")
    return 0


def topology_faces(cfg: DictConfig, datamodule) -> np.ndarray | None:
    """The triangles of ``data.topology`` (default: the data set's PLY); None without video."""
    from datamodules.face.topology import default_topology_path, load_topology

    if not cfg.render.video:
        return None
    path = cfg.data.topology or default_topology_path(datamodule.root, datamodule.protocol.name)
    return load_topology(path, datamodule.num_vertices).faces


def check_speaker(run) -> tuple[str, str, int]:
    """``(subject, condition, style index)`` of the ``wav=`` render, checked: the subject has a
    template, the condition is a training subject (default: the subject, else the first)."""
    dm, subjects = run.datamodule, run.module.train_subjects
    subject, condition = str(run.cfg.render.subject), run.cfg.render.condition
    if subject not in dm.templates:
        raise DataError(
            f"subject={subject}: no template in {dm.root / 'templates.pkl'}; it has: "
            + ", ".join(sorted(dm.templates))
        )
    if condition is None:
        condition = subject if subject in subjects else subjects[0]
        if subject not in subjects:
            print(f"{subject} is not a training subject: speaking in {condition}'s style")
    if condition not in subjects:
        raise DataError(
            f"condition={condition} is not a training subject of this checkpoint; use one of "
            + ", ".join(subjects)
        )
    return subject, str(condition), subjects.index(condition)


def predict(module, audio: np.ndarray, template: np.ndarray, styles: list[int]) -> np.ndarray:
    """(T, V*3) absolute vertices: the mean prediction over ``styles`` (one index: itself)."""
    import torch

    module.eval()
    device = module.device
    with torch.no_grad():
        wave = torch.from_numpy(audio)[None].to(device)
        tmpl = torch.from_numpy(np.asarray(template, dtype=np.float32))[None].to(device)
        conditions = torch.tensor(styles, device=device)[:, None]  # the audio encoded once
        runs, _ = module.net.predict_conditions(wave, tmpl, conditions)
    return runs[:, 0].mean(0).float().cpu().numpy()


def render_speech(
    run, speech, faces, out: Path, stem: str, subject: str, condition: str, style: int
) -> None:
    """The ``wav=`` render: the .npy of the prediction and its video."""
    from datamodules.face.dataset import audio_frames
    from datamodules.face.readers import SAMPLE_RATE
    from lightning_modules.dualtalker.face_video import render_video

    cfg, dm = run.cfg, run.datamodule
    audio, seconds = speech
    template = dm.templates[subject]
    if not len(audio) or float(np.abs(audio).max()) < SILENCE:
        frames = audio_frames(len(audio), dm.fps)
        print(
            f"{cfg.render.wav} is {'empty' if not len(audio) else 'silent'}: the video shows "
            f"the template ({frames} frame(s))"
        )
        vertices = np.repeat(template[None], frames, axis=0).astype(np.float32)
    else:
        vertices = predict(run.module, audio, template, [style])
    npy = out / f"condition_{condition}_subject_{subject}.npy"
    np.save(npy, vertices.reshape(len(vertices), -1))
    print(f"vertices: {npy} ({len(vertices)} frames at {dm.fps} fps, {seconds:.2f} s of audio)")
    if faces is not None:
        video = out / f"{stem}_{subject}_condition_{condition}_audio.mp4"
        render_video(
            video,
            faces,
            vertices,
            dm.fps,
            audio if len(audio) else None,
            SAMPLE_RATE,
            size=int(cfg.render.size),
            template=template,
            timeout=float(cfg.render.timeout),
        )
        print(f"video: {video}")


def render_split(run, faces, out: Path) -> None:
    """The ``split=`` render: each sequence's prediction beside its ground truth."""
    from lightning_modules.dualtalker.render import Camera, MeshRenderer

    cfg, dm, module = run.cfg, run.datamodule, run.module
    split = str(cfg.render.split)
    dm.setup("validate" if split == "val" else "test")
    dataset = dm.dataset(split)
    policy = cfg.render.condition or module.options.unseen_condition
    if policy not in (*module.train_subjects, "all", "mean"):
        raise DataError(
            f"condition={policy} is not a training subject of this checkpoint; use one of "
            + ", ".join(module.train_subjects)
            + " (or mean)"
        )
    try:
        lips = dm.lip_vertices
    except DataError as err:
        lips = None
        print(f"no LVE in the videos: {err}")
    size = int(cfg.render.size)
    with contextlib.ExitStack() as stack:
        renderer = None
        if faces is not None:  # one worker for every video (each its own camera)
            first = dataset[0]["template"]
            camera = Camera.fit(first)
            renderer = stack.enter_context(
                MeshRenderer(faces, camera, size, size, timeout=float(cfg.render.timeout))
            )
        rows = [
            render_item(run, dataset[i], faces, out, policy, lips, size, renderer)
            for i in range(len(dataset))
        ]
    unit = _lve_unit(cfg)
    with (out / "lve.csv").open("w") as f:
        f.write(f"sequence,frames,lve_x{unit:g}\n")
        f.writelines(",".join(map(str, row)) + "\n" for row in rows)
    print(f"{len(rows)} {split} sequences rendered")


def _lve_unit(cfg: DictConfig) -> float:
    from lightning_modules.dualtalker.metrics import PAPER_UNITS

    return PAPER_UNITS[str(cfg.data.dataset)]["lve"]


def render_item(
    run, item: dict, faces, out: Path, policy: str, lips, size: int, renderer=None
) -> tuple:
    """One sequence of a split (a dataset item): ``<name>_condition_<c>.npy`` and, with
    ``faces``, ``<name>_condition_<c>_audio.mp4`` side by side; returns its lve.csv row.
    Training subjects speak in their own style, unseen ones in ``policy``'s (all, mean: the
    mean prediction over every training condition)."""
    import torch

    from datamodules.face.readers import SAMPLE_RATE
    from lightning_modules.dualtalker.face_video import render_comparison
    from lightning_modules.dualtalker.metrics import LipVertexError

    cfg, module, subjects = run.cfg, run.module, run.module.train_subjects
    unit = _lve_unit(cfg)
    if item["style"] >= 0:
        condition, styles = item["subject"], [item["style"]]
    elif policy in subjects:
        condition, styles = policy, [subjects.index(policy)]
    else:
        condition, styles = "mean", list(range(len(subjects)))
    prediction = predict(module, item["audio"], item["template"], styles)
    truth = item["vertices"]
    length = min(len(prediction), len(truth))
    name = f"{item['name']}_condition_{condition}"
    np.save(out / f"{name}.npy", prediction[:length])
    corner, lve = "", None
    if lips is not None:
        metric = LipVertexError(lips, unit=unit)
        metric.update(
            torch.from_numpy(prediction[None, :length]), torch.from_numpy(truth[None, :length])
        )
        lve = float(metric.compute())
        corner = f"LVE {lve:.3f} (x{unit:g})"
    if faces is not None:
        render_comparison(
            out / f"{name}_audio.mp4",
            faces,
            prediction,
            truth,
            run.datamodule.fps,
            item["audio"],
            SAMPLE_RATE,
            size=size,
            template=item["template"],
            corner=corner,
            unit="m" if str(cfg.data.dataset) == "vocaset" else "",  # BIWI: area-normalised
            timeout=float(cfg.render.timeout),
            renderer=renderer,
        )
    return name, length, "" if lve is None else f"{lve:.6f}"
