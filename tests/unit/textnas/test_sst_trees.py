"""PTB sentiment-tree parsing and phrase expansion, as NNI's TextNAS dataloader does it."""

from __future__ import annotations

from pathlib import Path

import pytest

from datamodules.errors import DataError
from datamodules.text.readers import parse_tree, read_split, read_trees, tree_examples
from datamodules.text.tasks import TASKS

# 9 nodes: a brace leaf, a leaf written with a space ("8 1\/2") and a neutral subtree.
TREE = r"(3 (2 (2 The) (2 {)) (4 (2 8 1\/2) (4 (2 very) (4 good))))"
SECOND = "(1 (2 It) (0 (1 is) (0 awful)))"


def test_parse_leaves_braces_and_space_quirk() -> None:
    tree = parse_tree(TREE)
    assert tree.label == 3
    assert tree.leaves() == ["The", "-LCB-", r"1\/2", "very", "good"]  # case kept
    assert [node.label for node in tree.nodes()] == [3, 2, 2, 2, 4, 2, 4, 2, 4]


def test_phrases_are_all_nodes_plus_root_again() -> None:
    tree = parse_tree(TREE)
    phrases = tree_examples(tree, TASKS["sst5"], phrases=True, lowercase=False)
    assert len(phrases) == 9 + 1
    assert phrases[0].text_a == phrases[-1].text_a == tree.leaves()  # root twice
    assert [ex.label for ex in phrases] == [3, 2, 2, 2, 4, 2, 4, 2, 4, 3]
    assert ["very", "good"] in [ex.text_a for ex in phrases]
    sentence = tree_examples(tree, TASKS["sst5"], phrases=False, lowercase=False)
    assert [(ex.text_a, ex.label) for ex in sentence] == [(tree.leaves(), 3)]


def test_binary_drops_neutral_and_maps_labels() -> None:
    tree = parse_tree(TREE)
    phrases = tree_examples(tree, TASKS["sst2_trees"], phrases=True, lowercase=False)
    assert [ex.label for ex in phrases] == [1, 1, 1, 1, 1]  # nodes 3, 4, 4, 4 and the root dup
    negative = tree_examples(parse_tree(SECOND), TASKS["sst2_trees"], True, False)
    assert [ex.label for ex in negative] == [0, 0, 0, 0, 0]


def test_read_tree_files(tmp_path: Path) -> None:
    for name in ("train.txt", "dev.txt", "test.txt"):
        (tmp_path / name).write_text(f"{TREE}\n{SECOND}\n", encoding="utf-8")
    spec = TASKS["sst5"]
    assert len(read_split(spec, tmp_path, "train", phrases=True)) == (9 + 1) + (5 + 1)
    dev = read_split(spec, tmp_path, "dev")
    assert [ex.label for ex in dev] == [3, 1]
    assert dev[1].text_a == ["It", "is", "awful"]
    test = read_split(spec, tmp_path, "test")  # tree test files carry labels
    assert [ex.label for ex in test] == [3, 1]
    lowered = read_trees(tmp_path / "dev.txt", spec, lowercase=True)
    assert lowered[0].text_a[0] == "the"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("(3 (2 a) (2 b)", "unbalanced"),
        ("(7 (2 a) (2 b))", "unknown label '7'"),
        ("(x a)", "unknown label 'x'"),
        ("(2 a) (2 b)", "text after the tree"),
    ],
)
def test_bad_trees_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    (tmp_path / "train.txt").write_text(f"{SECOND}\n{line}\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"train\.txt:2: {message}"):
        read_trees(tmp_path / "train.txt", TASKS["sst5"])


def test_empty_tree_file(tmp_path: Path) -> None:
    (tmp_path / "dev.txt").write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"dev\.txt: no trees"):
        read_trees(tmp_path / "dev.txt", TASKS["sst5"])


def test_tree_file_not_utf8_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "test.txt"
    path.write_bytes(SECOND.encode() + b"\n(2 (2 na\xefve) (2 film))\n")
    with pytest.raises(DataError, match=r"test\.txt:2: not UTF-8 .*re-save the file as UTF-8"):
        read_trees(path, TASKS["sst5"])
