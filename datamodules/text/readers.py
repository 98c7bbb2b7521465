"""Readers for GLUE TSV files and SST PTB trees: files on disk -> ``list[Example]``.

TSV files are read as GLUE's own tools do with ``csv.QUOTE_NONE``: quote characters are
literal text and a row is a line split on tabs. UTF-8 with or without a BOM, LF or CRLF line
ends. Rows with the wrong number of columns are errors (``file:line: expected N columns, found
M``), except for QQP, whose malformed rows are skipped like the reference readers do.

Trees follow NNI's TextNAS ``dataloader.py`` (docs/textnas.md, "Data"): a node's text is
its leaves joined by spaces, ``{``/``}`` become ``-LCB-``/``-RCB-``, no lowercasing, and a leaf
written with a space (``(2 8 1\\/2)``) keeps only the part after the last space.
"""

from __future__ import annotations

import codecs
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from datamodules.errors import DataError, check_not_a_file
from datamodules.text.tasks import TASKS, TaskSpec

log = logging.getLogger(__name__)

_REGEX_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|\w+(?:['’-]\w+)*|[^\w\s]")
_TREE_TOKEN = re.compile(r"\(|\)|[^\s()]+")


@dataclass
class Example:
    """One example: tokens of the first (and second) text and the label.

    ``label`` is a class id, a float (regression) or ``None`` (unlabelled test files).
    """

    text_a: list[str]
    text_b: list[str] | None = None
    label: int | float | None = None


# ---------------------------------------------------------------------------------------------
# Tokenisation
# ---------------------------------------------------------------------------------------------


def tokenize(text: str, kind: str = "regex", lowercase: bool = False) -> list[str]:
    """Split ``text`` into tokens.

    ``"whitespace"`` splits on whitespace (SST-2 and the trees are already tokenised);
    ``"regex"`` keeps words (with inner ``'`` or ``-``) and numbers (``3.5``, ``1,000``) whole
    and makes every other non-space character a token of its own.
    """
    if lowercase:
        text = text.lower()
    if kind == "whitespace":
        return text.split()
    if kind == "regex":
        return _REGEX_TOKEN.findall(text)
    raise ValueError(f"unknown tokenizer {kind!r}")


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def split_path(spec: TaskSpec, root: str | Path, split: str) -> Path:
    """The file of ``split``: ``root/<file>``, else ``root/<spec.directory>/<file>``.

    Raises :class:`DataError` naming the expected path and where to get the data.
    """
    if split not in spec.files:
        raise DataError(
            f"task {spec.name!r} has no split {split!r}: its splits are {', '.join(spec.files)}"
        )
    name = spec.files[split]
    base = Path(root).expanduser()
    check_not_a_file(root, f"the {spec.directory} files ({', '.join(spec.files.values())})")
    candidates = (base / name, base / spec.directory / name)
    for path in candidates:
        if path.is_file():
            return path
    if not base.is_dir():
        raise DataError(f"data directory {base.resolve()} does not exist: {spec.source_hint}")
    raise DataError(
        f"{candidates[0].resolve()} not found (nor {candidates[1].resolve()}): {spec.source_hint}"
    )


def read_split(
    spec: TaskSpec,
    root: str | Path,
    split: str,
    lowercase: bool = False,
    phrases: bool = False,
) -> list[Example]:
    """Read one split of a task from ``root``.

    ``phrases`` only matters for tree tasks: every node of every tree instead of the sentences.
    Test splits of GLUE tasks have no labels (``label=None``); tree test files do.
    """
    path = split_path(spec, root, split)
    if spec.format == "ptb":
        return read_trees(path, spec, phrases=phrases, lowercase=lowercase)
    return read_tsv(path, spec, labelled=not split.startswith("test"), lowercase=lowercase)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its LF/CRLF) for every non-blank line.

    Lines are split on LF only (a stray CR inside a field stays text, as with
    ``newline="\\n"``) and decoded one by one, so bytes that are not UTF-8 end in a
    :class:`DataError` naming the file and line instead of a ``UnicodeDecodeError``.
    """
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise not_utf8(path, number, raw, e) from None
            line = line.rstrip("\n").rstrip("\r")
            if line.strip():
                yield number, line


def not_utf8(path: str | Path, number: int, raw: bytes, error: UnicodeDecodeError) -> DataError:
    """The :class:`DataError` for line ``number`` of ``path`` (bytes ``raw``) not being UTF-8."""
    bad = raw[error.start : min(error.end, error.start + 4)]
    return DataError(
        f"{path}:{number}: not UTF-8 (byte {bad!r} at byte {error.start + 1} of the line): "
        "re-save the file as UTF-8, e.g. iconv -f latin1 -t utf-8 old > new if it is Latin-1"
    )


def read_tsv(
    path: str | Path, spec: TaskSpec, labelled: bool = True, lowercase: bool = False
) -> list[Example]:
    """Read a GLUE TSV file: labelled (train/dev) or unlabelled (test)."""
    path = Path(path)
    text_columns = spec.text_columns if labelled else spec.test_text_columns
    has_header = spec.has_header if labelled else spec.test_has_header
    expected = None if has_header else spec.num_columns
    examples: list[Example] = []
    skipped = 0
    for number, line in _lines(path):
        row = line.split("\t")
        if expected is None:  # the header line fixes the column count
            expected = len(row)
            _check_header(path, spec, row, labelled, text_columns)
            continue
        if len(row) != expected:
            if spec.skip_malformed_rows:
                skipped += 1
                continue
            raise DataError(f"{path}:{number}: expected {expected} columns, found {len(row)}")
        texts = [tokenize(row[c], spec.tokenizer, lowercase) for c in text_columns]
        label = _parse_label(path, number, spec, row[spec.label_column]) if labelled else None
        examples.append(Example(texts[0], texts[1] if spec.pair else None, label))
    if skipped:
        log.warning("%s: skipped %d malformed rows (wrong column count)", path, skipped)
    if not examples:
        raise DataError(
            f"{path}: no data rows (empty or truncated file): download it again, {spec.source_hint}"
        )
    return examples


def _check_header(
    path: Path, spec: TaskSpec, header: list[str], labelled: bool, text_columns: tuple[int, ...]
) -> None:
    """Fail early on a header that cannot hold the task's columns, has another task's column
    count, or looks like data."""
    counts = spec.columns if labelled else spec.test_columns
    if counts and len(header) not in counts:
        raise DataError(
            f"{path}:1: these files have {len(header)} columns ({', '.join(header)}), but "
            f"task {spec.name!r} {'test ' if not labelled else ''}files have "
            f"{' or '.join(map(str, counts))}: is this another task?{_tasks_with(header, labelled)}"
        )
    needed = max(text_columns) + 1
    if labelled and spec.label_column >= 0:
        needed = max(needed, spec.label_column + 1)
    if len(header) < needed:
        raise DataError(
            f"{path}:1: header has {len(header)} columns, task {spec.name!r} needs at least "
            f"{needed}: is this the right file for the task?"
        )
    if labelled and not spec.regression and spec.label_id(header[spec.label_column]) is not None:
        raise DataError(
            f"{path}:1: the first line looks like data, not the header {spec.name!r} files "
            "start with: restore the header line"
        )


def _tasks_with(header: list[str], labelled: bool) -> str:
    """`` (tasks with N columns: ...; set data.task)`` for a header of N columns, or ``""``."""
    names = [
        t.name for t in TASKS.values() if len(header) in (t.columns if labelled else t.test_columns)
    ]
    if not names:
        return ""
    return f" (tasks whose files have {len(header)} columns: {', '.join(names)}; set data.task)"


def _parse_label(path: Path, number: int, spec: TaskSpec, text: str) -> int | float:
    text = text.strip()
    if spec.regression:
        try:
            value = float(text)
        except ValueError:
            raise DataError(f"{path}:{number}: label {text!r} is not a number") from None
        if not 0.0 <= value <= 5.0:
            raise DataError(f"{path}:{number}: score {value} is outside 0 to 5")
        return value
    label = spec.label_id(text)
    if label is None:
        raise DataError(
            f"{path}:{number}: unknown label {text!r}, expected one of "
            f"{', '.join(spec.label_names)}"
        )
    return label


# ---------------------------------------------------------------------------------------------
# PTB trees
# ---------------------------------------------------------------------------------------------


@dataclass
class Tree:
    """A sentiment tree node: SST label 0-4 and either leaf ``words`` or ``children``."""

    label: int
    children: list[Tree]
    word: str | None = None

    def leaves(self) -> list[str]:
        """The node's text as tokens."""
        if self.word is not None:
            return [self.word]
        return [w for child in self.children for w in child.leaves()]

    def nodes(self) -> list[Tree]:
        """Every node, pre-order (the root first)."""
        return [self, *(n for child in self.children for n in child.nodes())]


def parse_tree(line: str, where: str = "<string>") -> Tree:
    """Parse one bracketed tree such as ``(3 (2 It) (3 (2 's) (4 good)))``.

    ``where`` (``file:line``) prefixes error messages.
    """
    tokens = _TREE_TOKEN.findall(line)
    pos = 0

    def fail(message: str) -> DataError:
        return DataError(f"{where}: {message}: a line must hold one tree like '(3 (2 a) (3 b))'")

    def node() -> Tree:
        nonlocal pos
        if pos >= len(tokens) or tokens[pos] != "(":
            raise fail("expected '('")
        pos += 1
        if pos >= len(tokens) or not tokens[pos].isdigit() or int(tokens[pos]) > 4:
            found = tokens[pos] if pos < len(tokens) else "end of line"
            raise fail(f"unknown label {found!r}, expected 0 to 4")
        label = int(tokens[pos])
        pos += 1
        children: list[Tree] = []
        words: list[str] = []
        while pos < len(tokens) and tokens[pos] != ")":
            if tokens[pos] == "(":
                children.append(node())
            else:
                words.append(tokens[pos])
                pos += 1
        if pos >= len(tokens):
            raise fail("unbalanced brackets")
        pos += 1
        if children and words:
            raise fail("a node has both words and subtrees")
        if not children:
            if not words:
                raise fail("empty leaf")
            # NNI keeps the part after the last space of a leaf such as "8 1\/2".
            word = words[-1].replace("{", "-LCB-").replace("}", "-RCB-")
            return Tree(label, [], word)
        return Tree(label, children)

    tree = node()
    if pos != len(tokens):
        raise fail("text after the tree")
    return tree


def tree_examples(tree: Tree, spec: TaskSpec, phrases: bool, lowercase: bool) -> list[Example]:
    """Examples from one tree: the sentence, or (``phrases``) every node plus the root again.

    The phrase list follows NNI: every node of the tree (single words too) and then the whole
    sentence a second time, not deduplicated. Phrases whose label maps to ``None`` (neutral for
    binary SST) are dropped.
    """
    nodes = [*tree.nodes(), tree] if phrases else [tree]
    out = []
    for n in nodes:
        label = spec.tree_label_map[n.label]
        tokens = n.leaves()
        if label is None or not tokens:
            continue
        if lowercase:
            tokens = [t.lower() for t in tokens]
        out.append(Example(tokens, None, label))
    return out


def read_trees(
    path: str | Path, spec: TaskSpec, phrases: bool = False, lowercase: bool = False
) -> list[Example]:
    """Read a PTB tree file (one tree per line) into sentence or phrase examples.

    NNI expands the training *and* dev files into phrases; here the caller decides per split
    (``GlueDataModule`` expands train by default, dev only with ``dev_phrases=True``, test never).
    """
    path = Path(path)
    examples: list[Example] = []
    trees = 0
    for number, line in _lines(path):
        tree = parse_tree(line, where=f"{path}:{number}")
        examples.extend(tree_examples(tree, spec, phrases, lowercase))
        trees += 1
    if trees == 0:
        raise DataError(
            f"{path}: no trees (empty or truncated file): download it again, {spec.source_hint}"
        )
    return examples
