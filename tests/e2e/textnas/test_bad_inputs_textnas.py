"""Bad TextNAS inputs through the command line, each one ``error:`` line naming the key or the
file (exit 2, nothing written): widths and embedding sizes below 1 (named as typed), SST-2
given another task's files, ``data.root`` naming a file, a GloVe vector holding NaN; and
``eval`` of a checkpoint reads no train file (the vocabulary comes from the checkpoint)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from datamodules.errors import DataError
from datamodules.text.vocab import Vocabulary, load_glove
from experiments.__main__ import cli
from experiments.run import train
from tests.e2e.conftest import QUIET, tiny, write_glue_task

pytestmark = pytest.mark.usefixtures("one_thread")


def _errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(
    ("experiment", "override", "message"),
    [
        ("textnas_train_synthetic", "model.width=0", "model.width must be >= 1, got 0"),
        ("textnas_train_synthetic", "model.width=-8", "model.width must be >= 1, got -8"),
        ("textnas_search_synthetic", "supernet.width=-8", "supernet.width must be >= 1, got -8"),
        ("textnas_train_synthetic", "model.embed_dim=-1", "model.embed_dim must be >= 1, got -1"),
        (
            "textnas_search_synthetic",
            "supernet.embed_dim=0",
            "supernet.embed_dim must be >= 1, got 0",
        ),
    ],
)
def test_sizes_below_one_name_the_key_typed(experiment, override, message, tmp_path, capsys):
    data, out = tmp_path / "sst", tmp_path / "out"
    assert cli(["train", experiment, override, f"data.root={data}", f"output_dir={out}"]) == 2
    assert _errors(capsys) == [f"error: {message}"]
    assert not data.exists() and not out.exists()  # nothing generated, no run folder


def test_sst2_given_rte_files(tmp_path, capsys) -> None:
    rte, out = write_glue_task(tmp_path / "RTE", "rte"), tmp_path / "out"
    assert cli(["data", "textnas_train_sst2", f"data.root={rte}", f"output_dir={out}"]) == 2
    assert _errors(capsys) == [
        f"error: {rte / 'train.tsv'}:1: these files have 4 columns (index, sentence1, sentence2, "
        "label), but task 'sst2' files have 2: is this another task? (tasks whose files have 4 "
        "columns: qnli, rte, wnli; set data.task)"
    ]
    assert not out.exists()


def test_a_data_root_that_is_a_file(tmp_path, capsys) -> None:
    file, out = tmp_path / "train.tsv", tmp_path / "out"
    file.write_text("sentence\tlabel\na b\t1\n")
    assert cli(["data", "textnas_train_sst2", f"data.root={file}", f"output_dir={out}"]) == 2
    assert _errors(capsys) == [
        f"error: data.root={file}: this is a file, not a folder; set data.root to the folder "
        "that holds the SST-2 files (train.tsv, dev.tsv, test.tsv)"
    ]
    assert not out.exists()


def test_eval_reads_no_train_file(sst_dir, tiny_arch, tmp_path) -> None:
    data = Path(shutil.copytree(sst_dir, tmp_path / "sst"))
    out = tmp_path / "out"
    args = [f"model.architecture={tiny_arch}", f"data.root={data}", "data.task=sst2"]
    run_dir = train("textnas_train_synthetic", tiny(out, *args)).run_dir
    (data / "train.tsv").unlink()  # eval needs dev.tsv only: the vocabulary is the checkpoint's
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert cli(["eval", f"ckpt={ckpt}", f"output_dir={out}", *QUIET]) == 0


def test_a_glove_vector_holding_nan(tmp_path) -> None:
    glove = tmp_path / "glove.txt"
    glove.write_text("good 0.1 0.2 0.3\nbad 0.4 nan 0.6\n")
    vocab = Vocabulary.build([["good", "bad"]], 1)
    with pytest.raises(DataError) as caught:
        load_glove(glove, vocab, dim=3)
    assert str(caught.value) == (
        f"{glove}:2: the vector of 'bad' holds a non-finite value ('nan') at index 1; every "
        "value must be a finite number"
    )


def test_a_glove_path_that_is_a_folder(tmp_path) -> None:
    vocab = Vocabulary.build([["good"]], 1)
    with pytest.raises(DataError) as caught:
        load_glove(tmp_path, vocab, dim=3)
    assert str(caught.value) == (
        f"data.glove={tmp_path}: this is a folder, not a file; set data.glove to the GloVe .txt "
        "file (glove.840B.300d.zip unzipped)"
    )
