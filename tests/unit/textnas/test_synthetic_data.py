"""The synthetic sentiment corpus: formats, determinism and the need for composition."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
import torch

from datamodules.synthetic.__main__ import main
from datamodules.text.readers import parse_tree, read_split
from datamodules.text.synthetic import (
    SPLIT_FILES,
    ensure_synthetic_sst,
    oracle_score,
    write_synthetic_sst,
)
from datamodules.text.tasks import TASKS


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    start = time.perf_counter()
    root = write_synthetic_sst(tmp_path_factory.mktemp("syn"))  # the defaults
    assert time.perf_counter() - start < 2.0
    return root


def _rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]


def test_files_in_glue_and_ptb_formats(corpus: Path) -> None:
    assert all((corpus / name).is_file() for name in SPLIT_FILES)
    train, dev, test = (_rows(corpus / f"{s}.tsv") for s in ("train", "dev", "test"))
    assert train[0] == ["sentence", "label"] and dev[0] == ["sentence", "label"]
    assert test[0] == ["index", "sentence"]
    assert all(len(row) == 2 and row[1] in {"0", "1"} for row in train[1:] + dev[1:])
    assert [row[0] for row in test[1:]] == [str(i) for i in range(len(test) - 1)]
    labels = _rows(corpus / "labels_test.tsv")
    assert labels[0] == ["index", "label"] and len(labels) == len(test)
    text = (corpus / "train.tsv").read_text() + (corpus / "dev.tsv").read_text()
    assert text == text.lower()
    trees = (corpus / "train.txt").read_text().splitlines()
    assert len(trees) == 2000 and all(line.startswith("(") for line in trees)
    assert len((corpus / "dev.txt").read_text().splitlines()) == 400
    # The repo's readers accept every file.
    for task in ("sst2", "sst5", "sst2_trees"):
        for split in ("train", "dev", "test"):
            assert read_split(TASKS[task], corpus, split, phrases=True)


def test_labels_are_balanced_and_all_classes_present(corpus: Path) -> None:
    dev = read_split(TASKS["sst2"], corpus, "dev")
    share = sum(ex.label for ex in dev) / len(dev)
    assert 0.35 < share < 0.65
    five = {ex.label for ex in read_split(TASKS["sst5"], corpus, "test")}
    assert five == {0, 1, 2, 3, 4}


def test_every_node_follows_the_composition_rules(corpus: Path) -> None:
    """Labels are a function of the tokens: the oracle re-derives every node's label."""
    seen: dict[tuple[str, ...], int] = {}
    for split in ("train", "dev", "test"):
        for line in (corpus / f"{split}.txt").read_text().splitlines():
            for node in parse_tree(line).nodes():
                tokens = tuple(node.leaves())
                assert oracle_score(tokens) + 2 == node.label, tokens
                assert seen.setdefault(tokens, node.label) == node.label
    assert oracle_score("the movie is not good .".split()) == -1
    assert oracle_score("the movie is very good .".split()) == 2
    assert oracle_score("i never really liked the film .".split()) == -1
    assert oracle_score("the plot is awful , but i loved the cast .".split()) == 2
    assert oracle_score("although the plot is awful , the cast is good .".split()) == 1
    assert oracle_score("the cast is good , although the plot is awful .".split()) == 1
    assert oracle_score("the plot is bad and the cast is good .".split()) == 0


def test_deterministic_for_a_seed(tmp_path: Path, corpus: Path) -> None:
    def digest(root: Path) -> str:
        return hashlib.sha256(b"".join((root / n).read_bytes() for n in SPLIT_FILES)).hexdigest()

    assert digest(write_synthetic_sst(tmp_path / "a")) == digest(corpus)
    assert digest(write_synthetic_sst(tmp_path / "b", seed=1)) != digest(corpus)


def test_ensure_writes_only_when_missing(tmp_path: Path) -> None:
    root = ensure_synthetic_sst(tmp_path / "s", n_train=50, n_dev=20, n_test=20)
    (root / "dev.tsv").write_text("sentence\tlabel\nkept \t1\n")
    ensure_synthetic_sst(root, n_train=50, n_dev=20, n_test=20)
    assert (root / "dev.tsv").read_text() == "sentence\tlabel\nkept \t1\n"
    (root / "test.txt").unlink()
    ensure_synthetic_sst(root, n_train=50, n_dev=20, n_test=20)
    assert (root / "test.txt").is_file() and "kept" not in (root / "dev.tsv").read_text()


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["--out", str(tmp_path / "cli"), "--n-train", "30", "--n-dev", "10", "--n-test", "10"])
    assert len((tmp_path / "cli" / "train.txt").read_text().splitlines()) == 30
    assert "train.tsv" in capsys.readouterr().out


def test_bag_of_words_stays_well_below_the_oracle(corpus: Path) -> None:
    """A linear bag-of-words model cannot get the binary dev labels; the rules get all."""
    train = read_split(TASKS["sst2"], corpus, "train")
    dev = read_split(TASKS["sst2"], corpus, "dev")
    vocab = {w: i for i, w in enumerate(sorted({w for ex in train for w in ex.text_a}))}

    def features(examples: list) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.zeros(len(examples), len(vocab))
        for row, ex in enumerate(examples):
            for word in ex.text_a:
                if word in vocab:
                    x[row, vocab[word]] += 1.0
        return x, torch.tensor([float(ex.label) for ex in examples])

    (x, y), (x_dev, y_dev) = features(train), features(dev)
    generator = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(len(vocab), 1)
    torch.nn.init.normal_(linear.weight, std=0.01, generator=generator)
    optimizer = torch.optim.Adam(linear.parameters(), lr=0.05)
    for _ in range(300):
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(linear(x).squeeze(1), y)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        bow = ((linear(x_dev).squeeze(1) > 0).float() == y_dev).float().mean().item()
    oracle = sum((oracle_score(ex.text_a) > 0) == ex.label for ex in dev) / len(dev)
    assert oracle == 1.0
    assert bow <= 0.70, f"bag-of-words dev accuracy {bow:.3f}"
