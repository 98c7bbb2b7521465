"""Word vocabulary and GloVe embedding initialisation.

Id 0 is ``<pad>``, id 1 is ``<unk>``; the other tokens follow in sorted order, so the same
training data always gives the same ids. The token list is all that is needed to rebuild a
vocabulary, which is how it is stored in checkpoints.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from datamodules.errors import DataError

log = logging.getLogger(__name__)

GLOVE_URL = "https://nlp.stanford.edu/projects/glove/"
GLOVE_FILE = "glove.840B.300d.zip"


class Vocabulary:
    """A mapping token <-> id with ``<pad>`` = 0 and ``<unk>`` = 1.

    Example::

        vocab = Vocabulary.build([["a", "b"], ["b", "c"]])
        vocab.encode(["b", "z"])  # [3, 1]
    """

    PAD = "<pad>"
    UNK = "<unk>"
    PAD_ID = 0
    UNK_ID = 1

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        if tokens[:2] != [self.PAD, self.UNK]:
            raise DataError(
                f"a vocabulary must start with {self.PAD!r}, {self.UNK!r}; got {tokens[:2]}: "
                "the stored vocabulary is damaged, rebuild it from the training data"
            )
        self._tokens = tokens
        self._ids = {token: i for i, token in enumerate(tokens)}
        if len(self._ids) != len(tokens):
            duplicates = sorted(t for t, n in Counter(tokens).items() if n > 1)[:5]
            raise DataError(f"the vocabulary lists tokens twice: {duplicates}")

    @classmethod
    def build(cls, token_lists: Iterable[list[str]], min_count: int = 1) -> Vocabulary:
        """Collect the tokens seen at least ``min_count`` times, sorted for determinism."""
        counts: Counter[str] = Counter()
        for tokens in token_lists:
            counts.update(tokens)
        specials = {cls.PAD, cls.UNK}
        kept = sorted(t for t, n in counts.items() if n >= min_count and t not in specials)
        return cls([cls.PAD, cls.UNK, *kept])

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Ids of ``tokens``; unknown tokens become ``UNK_ID``."""
        ids = self._ids
        return [ids.get(t, self.UNK_ID) for t in tokens]

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._tokens == other._tokens

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens)"

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of ``ids`` (the inverse of :meth:`encode` up to ``<unk>``); an id outside the
        vocabulary is a ``ValueError``."""
        tokens = self._tokens
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(tokens):
                raise ValueError(f"id {i} is outside the vocabulary of {len(tokens)} tokens")
            out.append(tokens[i])
        return out

    def index(self, token: str) -> int:
        """The id of ``token`` (``UNK_ID`` if unknown)."""
        return self._ids.get(token, self.UNK_ID)

    @property
    def tokens(self) -> list[str]:
        """All tokens in id order (a copy)."""
        return list(self._tokens)

    def to_list(self) -> list[str]:
        """The token list, for saving in a checkpoint."""
        return list(self._tokens)

    @classmethod
    def from_list(cls, tokens: Sequence[str]) -> Vocabulary:
        """Rebuild a vocabulary saved with :meth:`to_list`."""
        return cls(tokens)


def load_glove(path: str | Path, vocab: Vocabulary, dim: int = 300, seed: int = 0) -> torch.Tensor:
    """An embedding matrix ``(len(vocab), dim)`` initialised from a GloVe text file.

    As in TextNAS: rows start U[-0.25, 0.25) from a generator seeded with ``seed``, row 0
    (``<pad>``) is zero, and each token with an exact, case-sensitive match in the file gets
    the GloVe vector (the first occurrence if the file lists a token twice); ``<unk>`` stays
    random. The file is
    streamed and only vocabulary rows are kept, so the 5 GB ``glove.840B.300d.txt`` needs no
    more memory than the result. Lines are split from the right, since 840B tokens can contain
    spaces. Lines that are not UTF-8 are skipped with one warning naming the file and the first
    such line (their token cannot equal a vocabulary token, which were all read as UTF-8).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise DataError(
            f"data.glove={path}: this is a folder, not a file; set data.glove to the GloVe .txt "
            f"file ({GLOVE_FILE} unzipped)"
        )
    if not path.is_file():
        raise DataError(
            f"GloVe file {path.resolve()} not found: download {GLOVE_FILE} from {GLOVE_URL}, "
            "unzip it and set data.glove to the .txt file (or data.glove=null for random "
            "embeddings)"
        )
    generator = torch.Generator().manual_seed(seed)
    weights = torch.empty(len(vocab), dim).uniform_(-0.25, 0.25, generator=generator)
    weights[Vocabulary.PAD_ID] = 0.0
    missing = set(vocab.tokens) - {Vocabulary.PAD, Vocabulary.UNK}
    found = 0
    not_utf8, first_not_utf8 = 0, 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                # Such a token cannot equal a vocabulary token (those were read as UTF-8).
                not_utf8 += 1
                first_not_utf8 = first_not_utf8 or number
                continue
            parts = line.rstrip().rsplit(" ", dim)
            if len(parts) != dim + 1 or (number == 1 and len(line.split()) != dim + 1):
                values = len(line.split()) - 1
                raise DataError(
                    f"{path}:{number}: expected a token and {dim} values, found {values} "
                    f"values: set the embedding size to the file's ({GLOVE_FILE} is 300-d)"
                )
            token = parts[0]
            if token not in missing:
                continue
            try:
                vector = np.asarray(parts[1:], dtype=np.float32)
            except ValueError:
                raise DataError(f"{path}:{number}: the values are not all numbers") from None
            bad = np.flatnonzero(~np.isfinite(vector))
            if bad.size:
                raise DataError(
                    f"{path}:{number}: the vector of {token!r} holds a non-finite value "
                    f"({parts[1 + bad[0]]!r}) at index {int(bad[0])}; every value must be a "
                    "finite number"
                )
            weights[vocab.index(token)] = torch.from_numpy(vector)
            missing.discard(token)
            found += 1
            if not missing:
                break
    if not_utf8:
        log.warning(
            "%s:%d: not UTF-8, skipped (%d such lines in all%s): no vocabulary token can match "
            "them; re-save the file as UTF-8 to use them",
            path,
            first_not_utf8,
            not_utf8,
            "" if missing else ", up to the last vocabulary token found",
        )
    log.info("GloVe %s: %d of %d vocabulary tokens found", path.name, found, len(vocab) - 1)
    return weights
