"""Vocabulary building and encoding, GloVe initialisation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from datamodules.errors import DataError
from datamodules.text.vocab import Vocabulary, load_glove


def test_build_sorted_with_specials() -> None:
    vocab = Vocabulary.build([["b", "a", "b"], ["c", "a"]])
    assert vocab.tokens == ["<pad>", "<unk>", "a", "b", "c"]
    assert len(vocab) == 5
    assert vocab.encode(["c", "a", "zzz"]) == [4, 2, Vocabulary.UNK_ID]
    assert "a" in vocab and "zzz" not in vocab


def test_min_count() -> None:
    vocab = Vocabulary.build([["b", "a", "b"], ["c", "a"], ["b"]], min_count=2)
    assert vocab.tokens == ["<pad>", "<unk>", "a", "b"]
    assert vocab.encode(["c"]) == [1]


def test_roundtrip_through_list() -> None:
    vocab = Vocabulary.build([["x", "y"], ["z"]])
    restored = Vocabulary.from_list(vocab.to_list())
    assert restored == vocab
    assert restored.encode(["z", "x", "q"]) == vocab.encode(["z", "x", "q"])


def test_bad_lists_are_rejected() -> None:
    with pytest.raises(DataError, match="must start with"):
        Vocabulary.from_list(["a", "b"])
    with pytest.raises(DataError, match="twice"):
        Vocabulary.from_list(["<pad>", "<unk>", "a", "a"])


def _glove(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "glove.tiny.3d.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_glove_rows(tmp_path: Path) -> None:
    path = _glove(
        tmp_path,
        ["the 0.1 0.2 0.3", "at home 1 2 3", "Cat 4 5 6", "cat 7 8 9", "cat -1 -1 -1"],
    )
    vocab = Vocabulary.from_list(["<pad>", "<unk>", "at home", "cat", "dog", "the"])
    weights = load_glove(path, vocab, dim=3, seed=0)
    assert weights.shape == (6, 3) and weights.dtype == torch.float32
    assert torch.equal(weights[0], torch.zeros(3))
    assert torch.allclose(weights[vocab.index("the")], torch.tensor([0.1, 0.2, 0.3]))
    assert torch.equal(weights[vocab.index("at home")], torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(weights[vocab.index("cat")], torch.tensor([7.0, 8.0, 9.0]))  # first one
    random_rows = weights[[1, vocab.index("dog")]]
    assert random_rows.abs().max() < 0.25 and random_rows.abs().min() > 0
    again = load_glove(path, vocab, dim=3, seed=0)
    assert torch.equal(again, weights)
    other = load_glove(path, vocab, dim=3, seed=1)
    assert not torch.equal(other[vocab.index("dog")], weights[vocab.index("dog")])


def test_glove_wrong_dimension(tmp_path: Path) -> None:
    path = _glove(tmp_path, ["the 0.1 0.2 0.3", "a 0.1 0.2"])
    vocab = Vocabulary.from_list(["<pad>", "<unk>", "zzz"])
    with pytest.raises(DataError, match=r"glove\.tiny\.3d\.txt:2: expected a token and 3 values"):
        load_glove(path, vocab, dim=3)
    with pytest.raises(DataError, match=r"glove\.tiny\.3d\.txt:1: expected a token and 300"):
        load_glove(path, vocab, dim=300)


def test_glove_missing_file(tmp_path: Path) -> None:
    vocab = Vocabulary.from_list(["<pad>", "<unk>"])
    with pytest.raises(DataError, match=r"missing\.txt.*840B.*nlp\.stanford\.edu/projects/glove"):
        load_glove(tmp_path / "missing.txt", vocab)


def test_decode_is_the_inverse_of_encode() -> None:
    vocab = Vocabulary.build([["x", "y"], ["z"]])
    assert vocab.decode(vocab.encode(["z", "q", "x"])) == ["z", "<unk>", "x"]
    assert vocab.decode([0, 1]) == ["<pad>", "<unk>"]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        vocab.decode([len(vocab)])


def test_glove_lines_not_utf8_are_skipped_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "glove.latin1.3d.txt"
    path.write_bytes(b"the 1 2 3\ncaf\xe9 4 5 6\nna\xefve 7 8 9\ncat 0 1 0\n")
    vocab = Vocabulary.from_list(["<pad>", "<unk>", "café", "cat", "the"])
    with caplog.at_level("WARNING", logger="datamodules.text.vocab"):
        weights = load_glove(path, vocab, dim=3)
    assert weights[vocab.index("the")].tolist() == [1, 2, 3]
    assert weights[vocab.index("cat")].tolist() == [0, 1, 0]
    assert weights[vocab.index("café")].abs().max() <= 0.25  # stays random
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "glove.latin1.3d.txt:2: not UTF-8, skipped (2 such lines" in warnings[0]
    assert "re-save the file as UTF-8" in warnings[0]
