"""A small synthetic sentiment corpus whose labels need composition, in the SST and GLUE formats.

Each sentence is built from one or two clauses. A clause gets its score (-2 .. 2, i.e. the
five SST classes 0 .. 4) from one polarity word, changed by the words around it:

- intensifiers ("very", "really", ...) push a score of +-1 to +-2 (they matter for 5 classes);
- negators ("not", "never", "hardly") flip the sign and weaken it to +-1 ("not great" = -1,
  "not bad" = +1);
- "X , but Y" and "although X , Y" take Y's score; "Y , although X" takes Y's score;
- "X and Y" adds the two scores (clipped to -2 .. 2), so mixed clauses can be neutral.

Negation is frequent and independent of the polarity word, and the clause a contrast word
discards is usually of the opposite polarity, so every single word is only weakly correlated
with the label: a bag-of-words model stays well below a model that reads word order.
Labels are a deterministic function of the tokens (:func:`oracle_score`), with no noise.

Files written to ``root`` (the same layout as the real data sets):

- ``train.txt``, ``dev.txt``, ``test.txt``: one binarised PTB tree per line, a label 0-4 on
  every node, as in Stanford's ``trainDevTestTrees_PTB.zip``;
- ``train.tsv`` (``sentence<TAB>label``): like GLUE SST-2, the *unique phrases* of the training
  trees whose label is not neutral, binarised (0-1 -> 0, 3-4 -> 1), so it has more rows than
  there are training trees;
- ``dev.tsv`` (``sentence<TAB>label``): the non-neutral dev sentences;
- ``test.tsv`` (``index<TAB>sentence``, no labels): the non-neutral test sentences;
- ``labels_test.tsv`` (``index<TAB>label``): the hidden binary test labels, for tests.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from datamodules.errors import check_not_a_file

# ---------------------------------------------------------------------------------------------
# Lexicon
# ---------------------------------------------------------------------------------------------

DETERMINERS = ("the", "this", "its", "that")
MODIFIERS = ("new", "latest", "french", "second", "final", "original")
NOUNS = (
    "movie",
    "film",
    "story",
    "plot",
    "script",
    "acting",
    "cast",
    "ending",
    "soundtrack",
    "dialogue",
    "direction",
    "premise",
    "humor",
    "pacing",
    "sequel",
    "score",
)
COPULAS = ("is", "was", "feels", "seems", "looks", "remains")
SUBJECTS = ("i", "we", "critics", "audiences", "viewers", "everyone")

ADJECTIVES: dict[str, int] = {
    **dict.fromkeys(("good", "nice", "fun", "clever", "charming", "decent", "pleasant"), 1),
    **dict.fromkeys(("solid", "enjoyable", "funny", "smart", "sweet"), 1),
    **dict.fromkeys(("great", "brilliant", "wonderful", "superb", "excellent", "moving"), 2),
    **dict.fromkeys(("bad", "dull", "weak", "silly", "bland", "flat", "messy"), -1),
    **dict.fromkeys(("clumsy", "tired", "thin", "sloppy"), -1),
    **dict.fromkeys(("awful", "terrible", "dreadful", "boring", "painful", "horrible"), -2),
    **dict.fromkeys(("long", "short", "familiar", "quiet", "simple", "loud", "different"), 0),
}
VERBS: dict[str, int] = {
    **dict.fromkeys(("loved", "adored"), 2),
    **dict.fromkeys(("enjoyed", "liked", "admired", "appreciated"), 1),
    **dict.fromkeys(("disliked", "resented", "regretted"), -1),
    **dict.fromkeys(("hated", "loathed"), -2),
    **dict.fromkeys(("watched", "saw", "remembered", "discussed"), 0),
}
ADJ_INTENSIFIERS = ("very", "extremely", "really", "truly", "so", "incredibly")
VERB_INTENSIFIERS = ("really", "truly", "deeply", "thoroughly")
ADJ_NEGATORS = ("not", "never", "hardly")
VERB_NEGATORS = ("never", "hardly")

POLARITY: dict[str, int] = {**ADJECTIVES, **VERBS}
INTENSIFIERS = frozenset(ADJ_INTENSIFIERS + VERB_INTENSIFIERS)
NEGATORS = frozenset(ADJ_NEGATORS + VERB_NEGATORS)

# Generation probabilities (tuned so that bag-of-words stays near 60 % on the binary task).
P_NEGATE = 0.45
P_INTENSIFY = 0.3
P_NEUTRAL_WORD = 0.08
P_MODIFIER = 0.3
P_CONTRAST_OPPOSITE = 0.8
SENTENCE_TYPES = (
    ("simple", 0.4),
    ("but", 0.2),
    ("although_first", 0.1),
    ("although_after", 0.1),
    ("and", 0.2),
)

SPLIT_FILES = (
    "train.txt",
    "dev.txt",
    "test.txt",
    "train.tsv",
    "dev.tsv",
    "test.tsv",
    "labels_test.tsv",
)


# ---------------------------------------------------------------------------------------------
# Composition rules
# ---------------------------------------------------------------------------------------------


def _sign(score: int) -> int:
    return (score > 0) - (score < 0)


def intensify(score: int) -> int:
    """An intensifier makes a non-neutral score strong: +-1 -> +-2, +-2 stays, 0 stays."""
    return 2 * _sign(score)


def negate(score: int) -> int:
    """A negator flips the sign and leaves a weak score: +-1, +-2 -> -+1, 0 stays."""
    return -_sign(score)


def conjoin(left: int, right: int) -> int:
    """'X and Y' adds the scores, clipped to -2 .. 2."""
    return max(-2, min(2, left + right))


def oracle_score(tokens: Sequence[str]) -> int:
    """The score (-2 .. 2) of any phrase of the corpus, read off its flat token sequence.

    This re-derives, without the tree, the labels the generator puts on every node; tests use
    it to check that labels are a function of the tokens and that every node is consistent.
    """
    toks = list(tokens)
    while toks and toks[-1] in (".", ","):
        toks.pop()
    while toks and toks[0] == ",":
        toks.pop(0)
    if not toks:
        return 0
    if "but" in toks:
        return oracle_score(toks[toks.index("but") + 1 :])
    if toks[0] == "although":
        rest = toks[1:]
        return oracle_score(rest[rest.index(",") + 1 :] if "," in rest else rest)
    if "although" in toks:
        return oracle_score(toks[: toks.index("although")])
    if "and" in toks:
        cut = toks.index("and")
        return conjoin(oracle_score(toks[:cut]), oracle_score(toks[cut + 1 :]))
    score = sum(POLARITY.get(t, 0) for t in toks)
    if any(t in INTENSIFIERS for t in toks):
        score = intensify(score)
    if any(t in NEGATORS for t in toks):
        score = negate(score)
    return score


# ---------------------------------------------------------------------------------------------
# Trees
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """A node of a binarised sentiment tree: a leaf holds a word, an inner node two children."""

    score: int
    word: str | None = None
    left: Node | None = None
    right: Node | None = None

    @property
    def label(self) -> int:
        """The SST class 0 .. 4."""
        return self.score + 2

    def tokens(self) -> list[str]:
        """The leaves, left to right."""
        if self.word is not None:
            return [self.word]
        assert self.left is not None and self.right is not None
        return self.left.tokens() + self.right.tokens()

    def nodes(self) -> list[Node]:
        """Every node, pre-order."""
        if self.word is not None:
            return [self]
        assert self.left is not None and self.right is not None
        return [self, *self.left.nodes(), *self.right.nodes()]

    def to_ptb(self) -> str:
        """PTB bracketing, e.g. ``(1 (2 not) (3 good))``."""
        if self.word is not None:
            return f"({self.label} {self.word})"
        assert self.left is not None and self.right is not None
        return f"({self.label} {self.left.to_ptb()} {self.right.to_ptb()})"


def _leaf(word: str) -> Node:
    return Node(POLARITY.get(word, 0), word=word)


def _pair(score: int, left: Node, right: Node) -> Node:
    return Node(score, left=left, right=right)


def _right_branching(words: Sequence[str]) -> Node:
    node = _leaf(words[-1])
    for word in reversed(words[:-1]):
        node = _pair(0, _leaf(word), node)
    return node


class _Generator:
    """Draws clauses and sentences from one seeded ``random.Random``."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(f"synthetic-sst:{seed}")

    def _pick_word(self, lexicon: dict[str, int], target: int, negated: bool) -> str:
        """A polarity word that gives ``target`` once negation is applied."""
        if target == 0:
            wanted = [w for w, s in lexicon.items() if s == 0]
        elif negated:
            wanted = [w for w, s in lexicon.items() if _sign(s) == -_sign(target)]
        else:
            wanted = [w for w, s in lexicon.items() if _sign(s) == _sign(target)]
        return self.rng.choice(wanted)

    def _noun_phrase(self) -> Node:
        words = [self.rng.choice(DETERMINERS)]
        if self.rng.random() < P_MODIFIER:
            words.append(self.rng.choice(MODIFIERS))
        words.append(self.rng.choice(NOUNS))
        return _right_branching(words)

    def clause(self, sign: int) -> Node:
        """A clause whose score has the given sign (0 = neutral)."""
        rng = self.rng
        negated = sign != 0 and rng.random() < P_NEGATE
        intensified = rng.random() < P_INTENSIFY
        if rng.random() < 0.6:  # "the movie is (not) (very) good"
            core = _leaf(self._pick_word(ADJECTIVES, sign, negated))
            intensifiers, negators = ADJ_INTENSIFIERS, ADJ_NEGATORS
        else:  # "i (never) (really) liked the movie"
            verb = _leaf(self._pick_word(VERBS, sign, negated))
            core = _pair(verb.score, verb, self._noun_phrase())
            intensifiers, negators = VERB_INTENSIFIERS, VERB_NEGATORS
        if intensified:
            core = _pair(intensify(core.score), _leaf(rng.choice(intensifiers)), core)
        if negated:
            core = _pair(negate(core.score), _leaf(rng.choice(negators)), core)
        if intensifiers is ADJ_INTENSIFIERS:
            verb_phrase = _pair(core.score, _leaf(rng.choice(COPULAS)), core)
            return _pair(core.score, self._noun_phrase(), verb_phrase)
        return _pair(core.score, _leaf(rng.choice(SUBJECTS)), core)

    def _sign(self) -> int:
        return 0 if self.rng.random() < P_NEUTRAL_WORD else self.rng.choice((-1, 1))

    def _other(self, sign: int) -> int:
        """The sign of the clause a contrast discards: usually the opposite one."""
        if sign != 0 and self.rng.random() < P_CONTRAST_OPPOSITE:
            return -sign
        return self._sign()

    def sentence(self) -> Node:
        """One sentence tree, period included."""
        rng = self.rng
        kind = rng.choices([k for k, _ in SENTENCE_TYPES], [w for _, w in SENTENCE_TYPES])[0]
        main_sign = self._sign()
        main = self.clause(main_sign)
        if kind == "simple":
            body = main
        elif kind == "but":  # (X (, (but Y)))
            other = self.clause(self._other(main_sign))
            tail = _pair(main.score, _leaf(","), _pair(main.score, _leaf("but"), main))
            body = _pair(main.score, other, tail)
        elif kind == "although_first":  # ((although X) (, Y))
            other = self.clause(self._other(main_sign))
            sub = _pair(other.score, _leaf("although"), other)
            body = _pair(main.score, sub, _pair(main.score, _leaf(","), main))
        elif kind == "although_after":  # (Y (, (although X)))
            other = self.clause(self._other(main_sign))
            sub = _pair(other.score, _leaf("although"), other)
            body = _pair(main.score, main, _pair(other.score, _leaf(","), sub))
        else:  # (X (and Y))
            other = self.clause(self._sign())
            body = _pair(
                conjoin(main.score, other.score),
                main,
                _pair(other.score, _leaf("and"), other),
            )
        return _pair(body.score, body, _leaf("."))


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def _binary(label: int) -> int:
    return 0 if label < 2 else 1


def generate_trees(n: int, seed: int) -> list[Node]:
    """``n`` sentence trees drawn from the grammar, deterministic for ``seed``."""
    gen = _Generator(seed)
    return [gen.sentence() for _ in range(n)]


def write_synthetic_sst(
    root: str | Path,
    n_train: int = 2000,
    n_dev: int = 400,
    n_test: int = 400,
    seed: int = 0,
) -> Path:
    """Write the corpus (trees and SST-2 TSVs, see the module docstring) into ``root``.

    ``n_train``, ``n_dev`` and ``n_test`` count sentence trees; the SST-2 TSVs keep only the
    non-neutral ones (and ``train.tsv`` their unique phrases). The three splits use separate
    random streams, so changing one size leaves the other splits unchanged.
    """
    out = Path(root)
    out.mkdir(parents=True, exist_ok=True)
    splits = {
        "train": generate_trees(n_train, seed * 3 + 0),
        "dev": generate_trees(n_dev, seed * 3 + 1),
        "test": generate_trees(n_test, seed * 3 + 2),
    }
    for split, trees in splits.items():
        _write_lines(out / f"{split}.txt", [tree.to_ptb() for tree in trees])

    # GLUE SST-2 train: unique non-neutral phrases of the training trees, in a seeded order.
    phrases: dict[str, int] = {}
    for tree in splits["train"]:
        for node in tree.nodes():
            if node.label != 2:
                phrases.setdefault(" ".join(node.tokens()), _binary(node.label))
    rows = list(phrases.items())
    random.Random(f"synthetic-sst-order:{seed}").shuffle(rows)
    _write_lines(out / "train.tsv", ["sentence\tlabel", *(f"{s} \t{y}" for s, y in rows)])

    dev = [t for t in splits["dev"] if t.label != 2]
    dev_rows = (f"{' '.join(t.tokens())} \t{_binary(t.label)}" for t in dev)
    _write_lines(out / "dev.tsv", ["sentence\tlabel", *dev_rows])

    test = [t for t in splits["test"] if t.label != 2]
    test_rows = (f"{i}\t{' '.join(t.tokens())}" for i, t in enumerate(test))
    _write_lines(out / "test.tsv", ["index\tsentence", *test_rows])
    label_rows = (f"{i}\t{_binary(t.label)}" for i, t in enumerate(test))
    _write_lines(out / "labels_test.tsv", ["index\tlabel", *label_rows])
    return out


def ensure_synthetic_sst(root: str | Path, **kwargs: int) -> Path:
    """Write the corpus into ``root`` unless all its files are already there.

    Existing files are kept as they are, whatever settings they were written with.
    """
    out = Path(root)
    check_not_a_file(root, "the generated corpus (written there when missing)")
    if all((out / name).is_file() for name in SPLIT_FILES):
        return out
    return write_synthetic_sst(out, **kwargs)


def _write_lines(path: Path, lines: Iterable[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(f"{line}\n")
