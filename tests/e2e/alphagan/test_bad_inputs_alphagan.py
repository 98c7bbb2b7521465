"""Bad alphaGAN inputs through the command line, each one ``error:`` line naming the file (exit
2, nothing written): a genotype that is not UTF-8, a corrupt CIFAR ``test_batch`` (``data``
reads every file the search reads), ``data.root`` naming a file; and a search split smaller than
one batch, which ``data`` shows with a warning and ``train`` refuses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from datamodules.images.synthetic import write_synthetic_cifar10
from experiments.__main__ import cli

EXPERIMENT = "alphagan_search_synthetic"
QUIET = ["trainer.enable_progress_bar=false", "logger.wandb.mode=disabled"]


def _errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated CIFAR-10 set of 200 training and 20 test images (read-only here)."""
    root = tmp_path_factory.mktemp("cifar")
    write_synthetic_cifar10(root, n_train=200, n_test=20, seed=0)
    return root


def _data(root: Path, out: Path) -> list[str]:
    return ["data", EXPERIMENT, f"data.root={root}", "data.generate=false", f"output_dir={out}"]


def test_a_genotype_that_is_not_utf8(tmp_path, capsys) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"# g\xe9notype\nbottom_width: 4\n")
    out = tmp_path / "out"
    assert cli(["genotype", EXPERIMENT, str(bad), f"output_dir={out}"]) == 2
    (line,) = _errors(capsys)
    assert line == (
        f"error: genotype {bad} line 1: not UTF-8 text (byte b'\\xe9'); a genotype is a YAML "
        "file: re-save it as UTF-8"
    )
    assert not out.exists()


def test_data_reads_the_test_batch_the_search_reads(cifar, tmp_path, capsys) -> None:
    root = Path(shutil.copytree(cifar, tmp_path / "cifar"))
    test_batch = root / "cifar-10-batches-py" / "test_batch"
    test_batch.write_bytes(test_batch.read_bytes()[:1000])  # cut
    out = tmp_path / "out"
    assert cli(_data(root, out)) == 2
    (line,) = _errors(capsys)
    assert line.startswith(f"error: {test_batch}: truncated or corrupt CIFAR-10 file"), line
    assert not list(out.rglob("*-data"))


def test_data_shows_a_split_smaller_than_a_batch_and_train_refuses_it(
    cifar, tmp_path, capsys
) -> None:
    out = tmp_path / "out"
    folder = cifar / "cifar-10-batches-py"
    refusal = (
        f"{folder}: the search split cuts the 200 training images into halves of 100 and 100, "
        "fewer than data.batch_size=128: use more images or a smaller data.batch_size"
    )
    with pytest.warns(UserWarning, match="training would refuse this data"):
        assert cli([*_data(cifar, out), "data.batch_size=128"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    sizes = {split: info["size"] for split, info in summary["splits"].items()}
    assert sizes == {"train": 100, "val": 100, "test": 20}
    assert summary["info"]["warning"] == f"training would refuse this data: {refusal}"

    train_out = tmp_path / "train"
    args = [f"data.root={cifar}", "data.generate=false", "data.batch_size=128"]
    assert cli(["train", EXPERIMENT, *args, f"output_dir={train_out}", *QUIET]) == 2
    (line,) = _errors(capsys)
    assert line == f"error: {refusal}"
    assert not [p for p in train_out.rglob("*") if p.is_file()]  # no run folder, no checkpoint


def test_a_data_root_that_is_a_file(tmp_path, capsys) -> None:
    file = tmp_path / "cifar.tar.gz"
    file.write_bytes(b"not a folder")
    out = tmp_path / "out"
    assert cli(_data(file, out)) == 2
    (line,) = _errors(capsys)
    assert line.startswith(f"error: data.root={file}: this is a file, not a folder;"), line
    assert not out.exists()
