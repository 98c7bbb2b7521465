"""The TextNAS retraining experiments end to end, on generated data (CPU, tiny settings).

Every ``textnas_train`` experiment YAML trains; every GLUE task logs its own metrics; ``eval``
reproduces training's validation numbers from the checkpoint alone; user mistakes on the
command line end in one ``error:`` line without touching earlier runs; bf16 autocast runs on
CPU (with the fused-Adam default and the hand-written bi-GRU too); and the
default synthetic experiment really learns what a bag of words cannot.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

from experiments.config import ConfigError
from experiments.registry import list_experiments
from experiments.run import evaluate, resolve, train
from experiments.systems.textnas.retrain import build_datamodule
from experiments.trainer import checkpoint_monitor
from search_spaces.text import Architecture
from tests.e2e.conftest import QUIET, cli_env, python, tiny, tree_hashes

pytestmark = pytest.mark.usefixtures("one_thread")

#: Every experiment YAML of the TextNAS retraining system (a new YAML is covered by itself).
TEXTNAS_EXPERIMENTS = sorted(i.name for i in list_experiments() if i.system == "textnas_train")


def _checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _check_run_folder(run_dir: Path, metrics: dict, monitor: str) -> None:
    for rel in ("config.yaml", "checkpoints/last.ckpt", "metrics.json", "architecture.yaml"):
        assert (run_dir / rel).is_file(), rel
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics
    fit = metrics["fit"]
    assert monitor in fit and math.isfinite(fit[monitor]), sorted(fit)
    assert fit["best_model_score"] == pytest.approx(fit[monitor])  # one epoch: best = last
    assert Path(fit["best_model_path"]).is_file()
    assert math.isfinite(fit["train/loss"]) and math.isfinite(fit["val/loss"])


# ---------------------------------------------------------------------------------------------
# 1. Every experiment YAML
# ---------------------------------------------------------------------------------------------


def test_textnas_experiments_are_found():
    assert "textnas_train_synthetic" in TEXTNAS_EXPERIMENTS
    assert {"textnas_train_sst2", "textnas_train_sst5", "textnas_train_glue"} <= set(
        TEXTNAS_EXPERIMENTS
    )


@pytest.mark.parametrize("experiment", TEXTNAS_EXPERIMENTS)
def test_every_textnas_experiment_trains(experiment, task_data, tiny_arch, tiny_arch_obj, tmp_path):
    overrides = tiny(tmp_path, f"model.architecture={tiny_arch}")
    spec, cfg = resolve(experiment, overrides)
    root = task_data(str(cfg.data.task))
    result = train(experiment, [*overrides, f"data.root={root}"])

    run_dir = result.run_dir
    assert run_dir.parent == tmp_path / experiment
    assert cfg.checkpoint.monitor == "auto"  # validation leaves the config as composed
    _check_run_folder(run_dir, result.metrics, checkpoint_monitor(cfg, spec))
    assert f"experiment: {experiment}" in (run_dir / "config.yaml").read_text()
    assert Architecture.load(run_dir / "architecture.yaml") == tiny_arch_obj
    ckpt = _checkpoint(run_dir / "checkpoints/last.ckpt")
    assert ckpt["suite"]["experiment"] == experiment
    assert ckpt["hyper_parameters"]["architecture"]["layers"] == tiny_arch_obj.to_dict()["layers"]
    assert [p.name for p in tmp_path.iterdir()] == [experiment]  # nothing written elsewhere


# ---------------------------------------------------------------------------------------------
# 2. GLUE tasks: the right metrics
# ---------------------------------------------------------------------------------------------

GLUE_METRICS = {
    "rte": ["val/acc"],
    "stsb": ["val/pearson", "val/spearman"],
    "mnli": ["val/acc", "val_mismatched/acc", "val_mismatched/loss"],
    "cola": ["val/mcc", "val/acc"],
    "mrpc": ["val/f1", "val/acc"],
    "qqp": ["val/f1", "val/acc"],
    "qnli": ["val/acc"],
    "wnli": ["val/acc"],
}


@pytest.mark.parametrize("task", list(GLUE_METRICS))
def test_glue_task_metrics(task, task_data, tiny_arch, tmp_path):
    result = train(
        "textnas_train_glue",
        tiny(
            tmp_path,
            f"data.task={task}",
            f"data.root={task_data(task)}",
            f"model.architecture={tiny_arch}",
        ),
    )
    fit = result.metrics["fit"]
    expected = GLUE_METRICS[task]
    for key in [*expected, "val/loss"]:
        assert key in fit and math.isfinite(fit[key]), (key, sorted(fit))
    val_keys = {k for k in fit if k.startswith("val")}
    assert val_keys == {*expected, "val/loss"}, sorted(val_keys)  # nothing more, nothing less
    assert fit["best_model_score"] == pytest.approx(fit[expected[0]])  # the task's main metric
    ckpt = _checkpoint(result.run_dir / "checkpoints/last.ckpt")
    monitors = [
        k for k in ckpt["callbacks"] if k.startswith("ModelCheckpoint") and "'monitor': 'val/" in k
    ]
    assert monitors and all(f"'monitor': '{expected[0]}'" in k for k in monitors), list(
        ckpt["callbacks"]
    )
    outputs = {"stsb": 1, "mnli": 3}.get(task, 2)  # a scalar score for STS-B
    width = 4 * 8 if task != "cola" else 8  # pairs: [u, v, |u - v|, u * v]
    assert ckpt["state_dict"]["net.head.weight"].shape == (outputs, width)


# ---------------------------------------------------------------------------------------------
# 3. eval
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_run(one_thread, sst_dir, tiny_arch, tmp_path_factory):
    """One tiny finished run of ``textnas_train_synthetic`` (output folder, RunResult)."""
    out = tmp_path_factory.mktemp("outputs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "disabled")
        mp.delenv("SUITE_RUN_DIR", raising=False)
        result = train(
            "textnas_train_synthetic",
            tiny(out, f"data.root={sst_dir}", f"model.architecture={tiny_arch}"),
        )
    return out, result


@pytest.mark.parametrize("which", ["last", "best"])
def test_eval_reproduces_final_val_metrics(synthetic_run, which):
    out, result = synthetic_run
    fit = result.metrics["fit"]
    ckpt = (
        result.run_dir / "checkpoints/last.ckpt"
        if which == "last"
        else Path(fit["best_model_path"])
    )
    ev = evaluate(None, [f"ckpt={ckpt}", *QUIET])
    assert ev.run_dir.parent == out / "textnas_train_synthetic"
    assert ev.run_dir.name.endswith("-eval")
    val = ev.metrics["validate"]
    assert val["val/acc"] == pytest.approx(fit["val/acc"], abs=1e-6)
    assert val["val/loss"] == pytest.approx(fit["val/loss"], abs=1e-6)
    assert json.loads((ev.run_dir / "metrics.json").read_text()) == ev.metrics
    assert not (ev.run_dir / "checkpoints").exists()


def test_eval_uses_the_checkpoints_vocabulary(synthetic_run, sst_dir, tmp_path):
    """New words in the training file would shift every id of a rebuilt (sorted) vocabulary."""
    _, result = synthetic_run
    last = result.run_dir / "checkpoints/last.ckpt"
    grown = shutil.copytree(sst_dir, tmp_path / "grown")
    with open(grown / "train.tsv", "a", encoding="utf-8") as f:
        f.write("aaa-new-word abacus very good \t1\n" * 3 + "zzz-unseen awful \t0\n")
    stored = next(v for k, v in _checkpoint(last).items() if k.endswith("GlueDataModule"))["vocab"]
    _, cfg = resolve("textnas_train_synthetic", [f"data.root={grown}"])
    rebuilt = build_datamodule(cfg.data, cfg.model.embed_dim, cfg.seed)
    rebuilt.setup("fit")
    assert rebuilt.vocab.to_list() != stored and len(rebuilt.vocab) > len(stored)

    ev = evaluate(None, [f"ckpt={last}", f"data.root={grown}", *QUIET])
    assert ev.metrics["validate"]["val/acc"] == pytest.approx(
        result.metrics["fit"]["val/acc"], abs=1e-6
    )
    assert ev.metrics["validate"]["val/loss"] == pytest.approx(
        result.metrics["fit"]["val/loss"], abs=1e-6
    )
    assert f"root: {grown}" in (ev.run_dir / "config.yaml").read_text()


def test_eval_with_checkpoint_of_another_experiment_fails(synthetic_run):
    out, result = synthetic_run
    last = result.run_dir / "checkpoints/last.ckpt"
    before = tree_hashes(out)
    with pytest.raises(ConfigError) as info:
        evaluate("textnas_train_sst2", [f"ckpt={last}", f"output_dir={out}", *QUIET])
    assert str(info.value) == (
        f"checkpoint {last} was written by experiment 'textnas_train_synthetic', "
        "not 'textnas_train_sst2'"
    )
    assert tree_hashes(out) == before  # no new folder, nothing touched


# ---------------------------------------------------------------------------------------------
# 4. Bad input on the command line
# ---------------------------------------------------------------------------------------------


def _bad_tsv(data: Path, tmp: Path) -> tuple[str, list[str], str]:
    bad = shutil.copytree(data, tmp / "bad-tsv")
    lines = (bad / "train.tsv").read_text().splitlines(keepends=True)
    lines[3] = lines[3].rstrip("\n") + "\textra column\n"  # line 4 of the file
    (bad / "train.tsv").write_text("".join(lines))
    message = f"{bad}/train.tsv:4: expected 2 columns, found 3"
    return "textnas_train_synthetic", [f"data.root={bad}"], message


def _bad_arch(data: Path, tmp: Path) -> tuple[str, list[str], str]:
    path = tmp / "bad_arch.yaml"
    path.write_text(
        "name: broken\nnum_layers: 3\nk: 5\nlayers:\n"
        "  - {op: conv3, input: stem, skips: []}\n"
        "  - {op: rnn, input: 0, skips: []}\n"
        "  - {op: attention, input: 1, skips: [2]}\n"  # a skip to itself
    )
    message = "layer 2: skip to layer 2 is not an earlier layer"
    return "textnas_train_synthetic", [f"data.root={data}", f"model.architecture={path}"], message


# case -> (data dir, scratch dir) -> (experiment, overrides after the tiny ones, error text)
BAD_INPUTS = {
    "missing_data_dir": lambda d, t: (
        "textnas_train_sst2",  # (textnas_train_synthetic would generate the data there)
        [f"data.root={t / 'no-such-dir'}"],
        f"data directory {t / 'no-such-dir'} does not exist",
    ),
    "tsv_wrong_column_count": _bad_tsv,
    "unknown_task": lambda d, t: (
        "textnas_train_synthetic",
        [f"data.root={d}", "data.task=sst3"],
        "data.task: unknown task 'sst3'; valid tasks: cola, ",
    ),
    "invalid_architecture": _bad_arch,
    "misspelt_key": lambda d, t: (
        "textnas_train_synthetic",
        [f"data.root={d}", "model.widht=16"],
        "unknown config key 'model.widht'; did you mean 'model.width'?",
    ),
    "wrong_type": lambda d, t: (
        "textnas_train_synthetic",
        [f"data.root={d}", "trainer.max_epochs=two"],
        "trainer.max_epochs: expected int or null, got 'two'",
    ),
    "invalid_trainer_setting": lambda d, t: (  # fails after the new run folder was made
        "textnas_train_synthetic",
        [f"data.root={d}", "trainer.strategy=no_such_strategy"],
        "invalid trainer settings: You selected an invalid strategy name",
    ),
    "resume_with_mismatching_model": lambda d, t: (  # must not touch the run it resumes
        "textnas_train_synthetic",
        [f"data.root={d}", "resume=last", "trainer.max_epochs=2", "model.width=12"],
        "",
    ),
}
XFAIL: dict[str, str] = {}  # bad inputs that hit a known bug (none now)


@pytest.fixture(scope="module")
def cli_run(one_thread, sst_dir, tiny_arch, tmp_path_factory):
    """An output folder holding one finished tiny run, for the bad commands to aim at."""
    out = tmp_path_factory.mktemp("cli-outputs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "disabled")
        mp.delenv("SUITE_RUN_DIR", raising=False)
        train(
            "textnas_train_synthetic",
            tiny(out, f"data.root={sst_dir}", f"model.architecture={tiny_arch}"),
        )
    return out


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, marks=pytest.mark.xfail(reason=XFAIL[c], strict=True)) if c in XFAIL else c
        for c in BAD_INPUTS
    ],
)
def test_cli_bad_input_is_one_error_line_and_touches_nothing(
    case, cli_run, sst_dir, tiny_arch, tmp_path, monkeypatch, capsys
):
    """The first case through a real ``python -m experiments`` process, the others through
    the same ``cli()`` in this process (a subprocess costs seconds of imports each)."""
    out = cli_run
    experiment, overrides, message = BAD_INPUTS[case](sst_dir, tmp_path)
    scratch = {p.name for p in tmp_path.iterdir()}
    before, data_before = tree_hashes(out), tree_hashes(sst_dir)
    argv = ["train", experiment, *tiny(out, f"model.architecture={tiny_arch}"), *overrides]
    if case == next(iter(BAD_INPUTS)):
        proc = subprocess.run(
            [python(), "-m", "experiments", *argv],
            cwd=tmp_path,
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        code, stderr = proc.returncode, proc.stderr
    else:
        from experiments.__main__ import cli

        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("SUITE_RUN_DIR", raising=False)
        monkeypatch.delenv("SUITE_DEBUG", raising=False)
        monkeypatch.setenv("WANDB_MODE", "disabled")
        code, stderr = cli(argv), capsys.readouterr().err
    assert tree_hashes(out) == before  # the earlier run is untouched, no new folder
    assert code == 2, stderr
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert message in errors[0], errors[0]
    assert stderr.rstrip("\n").splitlines()[-1] == errors[0]  # the error comes last
    assert tree_hashes(sst_dir) == data_before
    assert {p.name for p in tmp_path.iterdir()} == scratch  # nothing written into the cwd


# ---------------------------------------------------------------------------------------------
# 5. bf16 autocast on CPU
# ---------------------------------------------------------------------------------------------


class ActivationDtypes(L.Callback):
    """Records the output dtypes of every convolution and linear layer during training."""

    def __init__(self) -> None:
        self.seen: set[torch.dtype] = set()

    def on_train_start(self, trainer, pl_module) -> None:
        for m in pl_module.modules():
            if isinstance(m, (nn.Conv1d, nn.Linear)):
                m.register_forward_hook(lambda _m, _i, out: self.seen.add(out.dtype))


@pytest.mark.parametrize(
    "variant",
    [
        "defaults",
        "unfused",
        "unfused_without_rnn",
    ],
)
def test_bf16_mixed_on_cpu(variant, sst_dir, tiny_arch, tiny_arch_obj, tmp_path, monkeypatch):
    import experiments.trainer

    recorder = ActivationDtypes()
    build_callbacks = experiments.trainer.build_callbacks
    monkeypatch.setattr(
        experiments.trainer,
        "build_callbacks",
        lambda *a, **k: [*build_callbacks(*a, **k), recorder],
    )
    arch = tiny_arch
    extra = ["trainer.precision=bf16-mixed"]
    if variant != "defaults":
        extra.append("optim.fused=false")
    if variant == "unfused_without_rnn":  # every other op of the tiny architecture
        layers = [
            {
                "op": "conv5" if spec["op"] == "rnn" else spec["op"],
                "input": spec["input"],
                "skips": spec["skips"],
            }
            for spec in tiny_arch_obj.to_dict()["layers"]
        ]
        arch = Architecture.from_dict({"layers": layers}).save(tmp_path / "no_rnn.yaml")
    result = train(
        "textnas_train_synthetic",
        tiny(tmp_path, f"data.root={sst_dir}", f"model.architecture={arch}", *extra),
    )
    fit = result.metrics["fit"]
    assert fit["global_step"] == 4
    assert torch.bfloat16 in recorder.seen, recorder.seen  # autocast really ran
    for key in ("train/loss", "val/loss", "val/acc"):
        assert math.isfinite(fit[key]), (key, fit)
    weights = _checkpoint(result.run_dir / "checkpoints/last.ckpt")["state_dict"]
    for name, tensor in weights.items():
        if tensor.is_floating_point():
            assert tensor.dtype == torch.float32, name  # mixed: fp32 weights, bf16 compute
            assert torch.isfinite(tensor).all(), name


# ---------------------------------------------------------------------------------------------
# 6. It learns (composition a bag of words cannot express)
# ---------------------------------------------------------------------------------------------


def _bag_of_words_accuracy(
    dm, epochs: int = 10, dim: int = 64, lr: float = 5e-3
) -> tuple[float, float]:
    """Mean-pooled embeddings -> Linear, Adam, on the datamodule's own batches.

    Returns (best validation accuracy over the epochs, final training accuracy)."""
    torch.manual_seed(0)
    bag = nn.EmbeddingBag(len(dm.vocab), dim, mode="mean", padding_idx=0)
    linear = nn.Linear(dim, dm.num_classes)
    opt = torch.optim.Adam([*bag.parameters(), *linear.parameters()], lr=lr)

    def accuracy(loader) -> float:
        with torch.no_grad():
            right = total = 0
            for b in loader:
                right += int((linear(bag(b["ids"])).argmax(-1) == b["label"]).sum())
                total += len(b["label"])
        return right / total

    best = 0.0
    for _ in range(epochs):
        for b in dm.train_dataloader():
            loss = nn.functional.cross_entropy(linear(bag(b["ids"])), b["label"])
            opt.zero_grad()
            loss.backward()
            opt.step()
        best = max(best, accuracy(dm.val_dataloader()))
    return best, accuracy(dm.train_dataloader())


def test_synthetic_sst2_learns_beyond_bag_of_words(tmp_path):
    """Measured (2 CPU cores without AVX-512, 1 thread, ~55 s): TextNAS (released architecture,
    C=32, the experiment's 3 epochs of batch 64) val acc 0.910; bag of words best val acc 0.59
    (its training accuracy stays at 0.58: no linear function of word counts fits the labels);
    majority class 0.574 (357 dev sentences)."""
    root = tmp_path / "data"
    overrides = [
        f"data.root={root}",
        f"output_dir={tmp_path / 'out'}",
        "trainer.num_sanity_val_steps=0",
        *QUIET,
    ]
    result = train("textnas_train_synthetic", overrides)  # writes the default-size corpus
    textnas_acc = result.metrics["fit"]["val/acc"]

    _, cfg = resolve("textnas_train_synthetic", overrides)
    dm = build_datamodule(
        cfg.data, cfg.model.embed_dim, cfg.seed
    )  # the same files, batches and seed as the run
    dm.setup("fit")
    labels = torch.cat([b["label"] for b in dm.val_dataloader()]).float()
    majority = max(labels.mean().item(), 1 - labels.mean().item())
    bow_acc, bow_train_acc = _bag_of_words_accuracy(dm)

    print(
        f"textnas {textnas_acc:.3f}  bag of words {bow_acc:.3f} (train {bow_train_acc:.3f})  "
        f"majority {majority:.3f}"
    )
    assert textnas_acc >= 0.88
    assert textnas_acc >= majority + 0.25
    assert textnas_acc >= bow_acc + 0.25


def test_last_checkpoint_is_the_latest_epoch_not_the_best(sst_dir, tiny_arch, tmp_path):
    """Lightning rewrites last.ckpt only with a new top-k file; resume=last needs the latest."""
    # mode=min on accuracy makes epoch 0 the "best" of a learning run, so only a separate
    # always-saving callback can make last.ckpt hold epoch 2.
    result = train(
        "textnas_train_synthetic",
        tiny(
            tmp_path,
            f"data.root={sst_dir}",
            f"model.architecture={tiny_arch}",
            "trainer.max_epochs=3",
            "checkpoint.monitor=val/acc",
            "checkpoint.mode=min",
        ),
    )
    last = torch.load(
        result.run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    assert last["epoch"] == 2
    assert last["global_step"] == result.metrics["fit"]["global_step"]
    best = [p for p in (result.run_dir / "checkpoints").glob("epoch*.ckpt")]
    assert len(best) == 1
