"""DualTalker's part of ``make demo`` (generated data, CPU, a couple of minutes):

1. write the synthetic talking heads in the VOCASET release format and convert them as
   ``make prepare-voca`` does (``data.generate`` of ``dualtalker_synthetic``);
2. measure the untrained network (its zero-initialised head outputs the template);
3. train ``dualtalker_synthetic`` (lip reading as the dual task, the consistency loss) and the
   FaceFormer baseline (the same network and recipe, ``model.dual_target=none
   model.consistency=none``), and evaluate each one's best checkpoint;
4. report the test LVE and FDD of the three, in the papers' units, for the closing table;
5. render DualTalker speaking the shortest test sequence (an unseen speaker and sentence)
   beside its ground truth, the per-vertex error as colours and its LVE in the corner (256 px
   panels: seconds); its training also logs one small validation video at its last epoch.

    python -m experiments demo dualtalker [key=value ...]   # overrides go to every run
"""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L

from experiments.registry import DemoResult
from experiments.run import RunResult, evaluate, resolve, train
from experiments.trainer import build_trainer, make_run_dir

EXPERIMENT = "dualtalker_synthetic"
BASELINE = ["model.dual_target=none", "model.consistency=none"]
VIDEO = ["render.every_n_val=20", "render.val_size=128"]
VIDEO_SIZE = 256  # pixels per panel of the final video (small: it renders in seconds)


def _figures(metrics: dict) -> str:
    lve, fdd = metrics.get("test/lve", float("nan")), metrics.get("test/fdd", float("nan"))
    return f"test LVE {lve:.3f} (x1e-5), FDD {fdd:+.3f} (x1e-7)"


def untrained(overrides: list[str]) -> tuple[dict, Path]:
    """The test metrics of the freshly built network (nothing trained), in a ``-untrained`` run
    folder."""
    spec, cfg = resolve(EXPERIMENT, overrides)
    L.seed_everything(cfg.seed, workers=True)
    module, datamodule = spec.build(cfg, None)
    run_dir = make_run_dir(cfg, suffix="-untrained")
    trainer = build_trainer(cfg, run_dir, module, spec, checkpointing=False)
    (metrics,) = trainer.test(module, datamodule=datamodule, verbose=False)
    return metrics, run_dir


def _best(result: RunResult) -> str:
    """The run's best checkpoint (its last where none was monitored)."""
    return result.metrics.get("fit", {}).get("best_model_path") or str(
        result.run_dir / "checkpoints" / "last.ckpt"
    )


def _train_and_test(overrides: list[str]) -> tuple[RunResult, dict, Path]:
    """Train, then evaluate the best checkpoint (validation and test): its test metrics."""
    result = train(EXPERIMENT, overrides)
    best = _best(result)
    quiet = ["logger.wandb.mode=disabled", *[o for o in overrides if o.startswith("output_dir=")]]
    evaluation = evaluate(None, [f"ckpt={best}", *quiet])
    return result, evaluation.metrics.get("test", {}), evaluation.run_dir


def demo_video(ckpt: str, eval_dir: Path) -> Path | None:
    """The evaluated DualTalker checkpoint speaking the shortest test sequence (an unseen
    speaker, a sentence no training speaker said), beside its ground truth, into
    ``<eval run>/video/``; None (and a note) where the renderer cannot start here."""
    from experiments.checkpoints import load_run
    from experiments.systems.dualtalker.render import render_item, topology_faces
    from lightning_modules.dualtalker.render import RenderError

    run = load_run(ckpt, system="dualtalker", overrides=["logger.wandb.mode=disabled"])
    run.datamodule.setup("test")
    dataset = run.datamodule.dataset("test")
    shortest = min(range(len(dataset)), key=lambda i: dataset.lengths()[i])
    out = eval_dir / "video"
    out.mkdir(exist_ok=True)
    try:
        faces = topology_faces(run.cfg, run.datamodule)
        policy = run.module.options.unseen_condition
        lips = run.datamodule.lip_vertices
        name = render_item(run, dataset[shortest], faces, out, policy, lips, VIDEO_SIZE)[0]
    except RenderError as err:
        print(f"note: no demo video ({err})")
        return None
    return out / f"{name}_audio.mp4"


def demo(overrides: list[str]) -> DemoResult:
    """Untrained, FaceFormer baseline and DualTalker on the generated talking heads."""
    start = time.perf_counter()
    overrides = list(overrides)
    before, untrained_dir = untrained(overrides)
    baseline, baseline_test, baseline_eval = _train_and_test(
        [*overrides, *BASELINE, "render.every_n_val=0"]
    )
    # one small validation video at the last epoch (the training callback), then the final one
    dual, dual_test, dual_eval = _train_and_test([*VIDEO, *overrides])
    video = demo_video(_best(dual), dual_eval)
    rows = [
        ("untrained network (outputs the template)", _figures(before)),
        ("FaceFormer baseline (dual task, consistency off)", _figures(baseline_test)),
        ("DualTalker (lip reading + consistency)", _figures(dual_test)),
    ]
    outputs = [
        ("untrained test run", str(untrained_dir)),
        ("FaceFormer baseline run", str(baseline.run_dir)),
        ("DualTalker run", str(dual.run_dir)),
        ("DualTalker predictions (CodeTalker .npy layout)", str(dual_eval / "predictions")),
        ("DualTalker per-vertex error plot", str(dual_eval / "test" / "vertex_error")),
        ("baseline predictions", str(baseline_eval / "predictions")),
    ]
    if video is not None:
        outputs.insert(0, ("DualTalker speaking an unseen sentence, beside the truth", str(video)))
    return DemoResult("dualtalker", rows, outputs, time.perf_counter() - start)
