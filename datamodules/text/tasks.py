"""What each text task's files look like: the GLUE TSV tasks and the SST PTB trees.

One :class:`TaskSpec` per task, in :data:`TASKS`. Column indices are 0-based; label names are
the strings found in the files, listed in HuggingFace ``ClassLabel`` order, so a label's id is
its position in ``label_names`` (MNLI: entailment 0, neutral 1, contradiction 2; WNLI's
0 = not_entailment is the reverse of RTE/QNLI).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from datamodules.errors import DataError

GLUE_URL = "https://gluebenchmark.com/tasks"
SST_TREES_URL = "https://nlp.stanford.edu/sentiment/trainDevTestTrees_PTB.zip"

_BINARY = ("0", "1")
_TREE_LABELS = ("0", "1", "2", "3", "4")


def _files(**files: str) -> Mapping[str, str]:
    return MappingProxyType(files)


@dataclass(frozen=True)
class TaskSpec:
    """The on-disk format and the evaluation of one task.

    Attributes:
        name: registry key, e.g. ``"sst2"``.
        directory: the folder the official download unpacks to (``"SST-2"``, ``"trees"``);
            files are looked for in ``data.root`` first, then in ``data.root/<directory>``.
        files: split name -> file name (``train``, ``dev``/``dev_matched``..., ``test``...).
        val_splits: the splits used for validation, in order.
        test_splits: the unlabelled (GLUE) or labelled (trees) test splits, in order.
        format: ``"tsv"`` or ``"ptb"`` (one bracketed sentiment tree per line).
        has_header: whether labelled (train/dev) files start with a header line.
        test_has_header: the same for test files (CoLA's test file has one, its train not).
        num_columns: column count of headerless labelled files (headered files must have as
            many columns as their header).
        text_columns: columns holding the text (one, or two for sentence pairs), labelled files.
        test_text_columns: the same for test files.
        label_column: column of the label in labelled files; -1 = last.
        label_names: label strings as written in the files, in HuggingFace ClassLabel order.
        class_names: readable class names (HuggingFace's), same order.
        regression: a float target (STS-B, 0 to 5) instead of classes.
        pair: two texts per example.
        metrics: among ``accuracy``, ``f1``, ``mcc``, ``pearson``, ``spearman``; the first one
            is the task's main metric.
        tokenizer: ``"whitespace"`` (already tokenised text) or ``"regex"``.
        tree_label_map: for tree tasks, SST label 0-4 -> class id, ``None`` = drop the phrase.
        skip_malformed_rows: skip rows with a wrong column count instead of failing (QQP, as
            the reference readers do: its malformed rows are questions broken across lines).
        columns: the column counts a headered train/dev file of the task has (MNLI: train 12,
            dev 16); another count means another task's file. Empty: not checked.
        test_columns: the same for the task's test files.
    """

    name: str
    directory: str
    files: Mapping[str, str]
    val_splits: tuple[str, ...]
    test_splits: tuple[str, ...]
    label_names: tuple[str, ...]
    class_names: tuple[str, ...]
    metrics: tuple[str, ...]
    format: str = "tsv"
    has_header: bool = True
    test_has_header: bool = True
    num_columns: int | None = None
    text_columns: tuple[int, ...] = (0,)
    test_text_columns: tuple[int, ...] = (1,)
    label_column: int = -1
    regression: bool = False
    pair: bool = False
    tokenizer: str = "regex"
    tree_label_map: Mapping[int, int | None] = field(default_factory=lambda: MappingProxyType({}))
    skip_malformed_rows: bool = False
    columns: tuple[int, ...] = ()
    test_columns: tuple[int, ...] = ()

    @property
    def num_classes(self) -> int:
        """Number of outputs: 1 for regression, else the number of classes."""
        return 1 if self.regression else len(self.label_names)

    @property
    def train_split(self) -> str:
        """The training split's name (always ``"train"``)."""
        return "train"

    @property
    def source_hint(self) -> str:
        """Where to get the files, for error messages."""
        if self.format == "ptb":
            return (
                f"download {SST_TREES_URL} and unzip it so that train.txt, dev.txt and test.txt "
                "are in data.root (or data.root/trees)"
            )
        return (
            f"download the GLUE data from {GLUE_URL} (or run download_glue_data.py "
            f"--tasks {self.directory}) and set data.root to the {self.directory} folder"
        )

    def label_id(self, text: str) -> int | None:
        """The class id of a label string, ``None`` if it is not one of ``label_names``."""
        try:
            return self.label_names.index(text)
        except ValueError:
            return None


def _glue(
    name: str,
    directory: str,
    label_names: tuple[str, ...],
    class_names: tuple[str, ...],
    metrics: tuple[str, ...],
    text_columns: tuple[int, ...],
    test_text_columns: tuple[int, ...],
    **options: Any,
) -> TaskSpec:
    options.setdefault("files", _files(train="train.tsv", dev="dev.tsv", test="test.tsv"))
    options.setdefault("val_splits", ("dev",))
    options.setdefault("test_splits", ("test",))
    return TaskSpec(
        name=name,
        directory=directory,
        label_names=label_names,
        class_names=class_names,
        metrics=metrics,
        text_columns=text_columns,
        test_text_columns=test_text_columns,
        pair=len(text_columns) == 2,
        **options,
    )


def _trees(name: str, binary: bool) -> TaskSpec:
    if binary:
        label_map = {0: 0, 1: 0, 2: None, 3: 1, 4: 1}
        label_names, class_names = _BINARY, ("negative", "positive")
    else:
        label_map = {i: i for i in range(5)}
        label_names = _TREE_LABELS
        class_names = ("very negative", "negative", "neutral", "positive", "very positive")
    return TaskSpec(
        name=name,
        directory="trees",
        files=_files(train="train.txt", dev="dev.txt", test="test.txt"),
        val_splits=("dev",),
        test_splits=("test",),
        label_names=label_names,
        class_names=class_names,
        metrics=("accuracy",),
        format="ptb",
        tokenizer="whitespace",
        tree_label_map=MappingProxyType(label_map),
    )


_NLI = ("entailment", "not_entailment")
_MNLI = ("entailment", "neutral", "contradiction")
_INDEXED_PAIR: dict[str, Any] = {"columns": (4,), "test_columns": (3,)}  # index, 2 texts, label

TASKS: dict[str, TaskSpec] = {
    "sst2": _glue(
        "sst2",
        "SST-2",
        _BINARY,
        ("negative", "positive"),
        ("accuracy",),
        (0,),
        (1,),
        label_column=1,
        tokenizer="whitespace",
        columns=(2,),
        test_columns=(2,),
    ),
    "cola": _glue(
        "cola",
        "CoLA",
        _BINARY,
        ("unacceptable", "acceptable"),
        ("mcc", "accuracy"),
        (3,),
        (1,),
        label_column=1,
        has_header=False,
        num_columns=4,
        test_columns=(2,),
    ),
    "mrpc": _glue(
        "mrpc",
        "MRPC",
        _BINARY,
        ("not_equivalent", "equivalent"),
        ("f1", "accuracy"),
        (3, 4),
        (3, 4),
        label_column=0,
        columns=(5,),
        test_columns=(5,),
    ),
    "qqp": _glue(
        "qqp",
        "QQP",
        _BINARY,
        ("not_duplicate", "duplicate"),
        ("f1", "accuracy"),
        (3, 4),
        (1, 2),
        label_column=5,
        skip_malformed_rows=True,
        columns=(6,),
        test_columns=(3,),
    ),
    "stsb": _glue(
        "stsb",
        "STS-B",
        (),
        (),
        ("pearson", "spearman"),
        (7, 8),
        (7, 8),
        regression=True,
        columns=(10,),
        test_columns=(9,),
    ),
    "mnli": _glue(
        "mnli",
        "MNLI",
        _MNLI,
        _MNLI,
        ("accuracy",),
        (8, 9),
        (8, 9),
        files=_files(
            train="train.tsv",
            dev_matched="dev_matched.tsv",
            dev_mismatched="dev_mismatched.tsv",
            test_matched="test_matched.tsv",
            test_mismatched="test_mismatched.tsv",
        ),
        val_splits=("dev_matched", "dev_mismatched"),
        test_splits=("test_matched", "test_mismatched"),
        columns=(12, 16),
        test_columns=(10,),
    ),
    "qnli": _glue("qnli", "QNLI", _NLI, _NLI, ("accuracy",), (1, 2), (1, 2), **_INDEXED_PAIR),
    "rte": _glue("rte", "RTE", _NLI, _NLI, ("accuracy",), (1, 2), (1, 2), **_INDEXED_PAIR),
    "wnli": _glue(
        "wnli",
        "WNLI",
        _BINARY,
        ("not_entailment", "entailment"),
        ("accuracy",),
        (1, 2),
        (1, 2),
        **_INDEXED_PAIR,
    ),
    "sst5": _trees("sst5", binary=False),
    "sst2_trees": _trees("sst2_trees", binary=True),
}


def get_task(name: str) -> TaskSpec:
    """The spec of task ``name``; a :class:`DataError` listing the valid names otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        valid = ", ".join(sorted(TASKS))
        raise DataError(f"unknown task {name!r}: set data.task to one of {valid}") from None
