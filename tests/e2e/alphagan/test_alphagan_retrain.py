"""alphaGAN retraining end to end: train, selection, eval, sample, bad inputs, exact resume.

Runs go through :func:`experiments.run.train` on a generated CIFAR-10-format data set resized to
8x8 (``model.bottom_width=1``, the genotype retargeted), width-8 networks and stand-in scores,
so each run takes seconds on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from experiments.__main__ import cli
from experiments.run import evaluate, resolve, train
from tests.e2e.alphagan.test_alphagan_search import gan_data  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = [
    "data.image_size=8",
    "model.bottom_width=1",
    "model.retarget=true",
    "model.width=8",
    "model.d_width=8",
    "model.latent_dim=16",
    "data.batch_size=8",
    "data.generate=false",
    "train.gen_batch_size=8",
    "train.g_iters=6",
    "train.eval_every=2",
    "train.num_samples=8",
    "metrics.train_samples=40",
    "metrics.batch_size=16",
    "trainer.enable_progress_bar=false",
    "logger.wandb.mode=disabled",
]


def tiny_retrain(out: Path, data: Path, *extra: str) -> list[str]:
    return [*TINY, f"output_dir={out}", f"data.root={data}", *extra]


@pytest.fixture(scope="module")
def retrain_run(gan_data: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    return train("alphagan_train_synthetic", tiny_retrain(tmp_path_factory.mktemp("out"), gan_data))


def test_every_retrain_config_resolves() -> None:
    _, cifar = resolve("alphagan_train_cifar10")
    assert (cifar.train.g_iters, cifar.data.batch_size, cifar.train.gen_batch_size) == (
        50_000,
        64,
        128,
    )
    assert list(cifar.optim.betas) == [0.0, 0.9] and cifar.metrics.eval_samples == 50_000
    _, stl = resolve("alphagan_train_stl10")
    assert (stl.model.bottom_width, stl.data.image_size, stl.train.g_iters) == (6, 48, 80_000)
    assert list(stl.optim.betas) == [0.5, 0.9] and stl.model.retarget
    resolve("alphagan_train_synthetic")


def test_retrain_counts_g_iterations_scores_and_selects(retrain_run) -> None:
    run_dir = Path(retrain_run.run_dir)
    ckpt = torch.load(run_dir / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert int(ckpt["state_dict"]["g_step"]) == 6 and int(ckpt["state_dict"]["d_step"]) == 30
    evaluations = ckpt["alphagan_retrain"]["evaluations"]
    assert [int(r["g_iter"]) for r in evaluations] == [2, 4, 6]
    fit = retrain_run.metrics["fit"]
    assert "val/fid_standin_40" in fit and "val/fid_holdout_standin_40" in fit
    chosen = json.loads((run_dir / "selection.json").read_text())
    best = min(evaluations, key=lambda r: r["fid_holdout"])
    assert chosen["g_iter"] == int(best["g_iter"])
    assert chosen["scores"]["val/fid_standin_40"] == pytest.approx(best["fid"])
    assert fit["best_model_score"] == pytest.approx(best["fid_holdout"])
    for g in (2, 4, 6):
        for kind in ("ema", "raw"):
            assert (run_dir / f"samples/g{g:06d}_{kind}.png").is_file()
    assert (run_dir / "evaluations.csv").read_text().count("\n") == 4


def test_select_on_test_says_it_is_the_reference_protocol(gan_data, tmp_path, capsys) -> None:  # noqa: F811
    train(
        "alphagan_train_synthetic",
        tiny_retrain(tmp_path, gan_data, "metrics.select_on=test", "train.g_iters=2"),
    )
    assert "reference's protocol" in capsys.readouterr().out


def test_eval_scores_eval_samples_of_the_ema_generator(retrain_run, tmp_path) -> None:
    ckpt = Path(retrain_run.run_dir) / "checkpoints/last.ckpt"
    result = evaluate(None, [f"ckpt={ckpt}", "metrics.eval_samples=48", f"output_dir={tmp_path}"])
    scores = json.loads((Path(result.run_dir) / "scores.json").read_text())
    assert scores["samples"] == 48 and scores["fid"] > 0 and "not comparable" in scores["note"]
    assert "val/fid_standin_48" in result.metrics["validate"]


def test_sample_writes_pngs_npz_and_grid(retrain_run, tmp_path) -> None:
    ckpt = Path(retrain_run.run_dir) / "checkpoints/last.ckpt"
    out = tmp_path / "samples"
    assert cli(["sample", f"ckpt={ckpt}", "n=10", f"out={out}"]) == 0
    arr = np.load(out / "samples.npz")["arr_0"]
    assert arr.shape == (10, 8, 8, 3) and arr.dtype == np.uint8
    assert len(list(out.glob("0*.png"))) == 10 and (out / "grid.png").is_file()
    again = tmp_path / "again"
    assert cli(["sample", f"ckpt={ckpt}", "n=10", f"out={again}"]) == 0
    assert np.array_equal(np.load(again / "samples.npz")["arr_0"], arr)  # seeded


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["n=0"], "n must be a positive integer"),
        (["n=x"], "n must be a positive integer"),
        (["n=4", "out=FULL"], "already holds files"),
    ],
)
def test_sample_bad_input_is_one_error_line(retrain_run, tmp_path, capsys, words, message) -> None:
    ckpt = Path(retrain_run.run_dir) / "checkpoints/last.ckpt"
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    words = [w.replace("FULL", str(full)) for w in words]
    if not any(w.startswith("out=") for w in words):
        words.append(f"out={tmp_path / 'new'}")
    assert cli(["sample", f"ckpt={ckpt}", *words]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]
    assert not (tmp_path / "new").exists() and sorted(p.name for p in full.iterdir()) == [
        "keep.txt"
    ]


def test_sample_refuses_a_checkpoint_of_another_system(gan_data, tmp_path, capsys) -> None:  # noqa: F811
    from tests.e2e.alphagan.test_alphagan_search import tiny_search

    search = train(
        "alphagan_search_synthetic", tiny_search(tmp_path, gan_data, "trainer.max_epochs=1")
    )
    ckpt = Path(search.run_dir) / "checkpoints/last.ckpt"
    capsys.readouterr()  # the search's own output
    assert cli(["sample", f"ckpt={ckpt}", "n=4", f"out={tmp_path / 's'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no command 'sample'" in err[0] and not (tmp_path / "s").exists()


def test_resumed_retrain_equals_an_uninterrupted_one(gan_data, tmp_path) -> None:  # noqa: F811
    """Stopped after 2 G iterations (mid-epoch) and resumed to 6: G, D, EMA, both Adams, the
    counters and the noise generator equal an uninterrupted run's bit for bit."""
    straight = train("alphagan_train_synthetic", tiny_retrain(tmp_path / "a", gan_data))
    first = train(
        "alphagan_train_synthetic", tiny_retrain(tmp_path / "b", gan_data, "train.g_iters=2")
    )
    resumed = train(
        "alphagan_train_synthetic",
        tiny_retrain(tmp_path / "b", gan_data, "train.g_iters=6", "resume=last"),
    )
    assert resumed.run_dir == first.run_dir
    load = lambda r: torch.load(  # noqa: E731
        Path(r.run_dir) / "checkpoints/last.ckpt", map_location="cpu", weights_only=True
    )
    a, b = load(straight), load(resumed)
    assert int(a["state_dict"]["g_step"]) == int(b["state_dict"]["g_step"]) == 6
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    assert any(k.startswith("ema.") for k in a["state_dict"])
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        for sa, sb in zip(opt_a["state"].values(), opt_b["state"].values(), strict=True):
            for k in sa:
                assert torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(sb[k])), k
    assert torch.equal(a["alphagan_retrain"]["noise"][0], b["alphagan_retrain"]["noise"][0])
    assert a["alphagan_retrain"]["evaluations"] == b["alphagan_retrain"]["evaluations"]


def test_demo_retrain_part_draws_untrained_beside_retrained(gan_data, tmp_path) -> None:  # noqa: F811
    from experiments.systems.alphagan.demo_retrain import retrain_part
    from search_spaces.gan import shipped_genotypes

    rows, outputs = retrain_part(
        shipped_genotypes()["alphagan_s"], tiny_retrain(tmp_path, gan_data)
    )
    ((what, figures),) = rows
    assert "6 G iterations" in figures and "stand-in, not comparable to published FID" in figures
    picture = Path(dict(outputs)["untrained vs retrained samples"])
    assert picture.is_file() and picture.stat().st_size > 1000
