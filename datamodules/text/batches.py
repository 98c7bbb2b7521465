"""Encoded text examples and their padding collator (what :class:`GlueDataModule` batches).

A batch is a dict::

    {"ids": LongTensor (B, L), "mask": BoolTensor (B, L),      # True = real token
     "ids_b": LongTensor (B, L_b), "mask_b": BoolTensor (B, L_b),  # pair tasks only
     "label": LongTensor (B,) | FloatTensor (B,),              # absent for unlabelled test data
     "index": LongTensor (B,)}                                 # example index in its split
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from datamodules.text.readers import Example
from datamodules.text.vocab import Vocabulary

__all__ = ["EncodedTextDataset", "TextCollator"]


class EncodedTextDataset(Dataset):
    """Examples of one split as id lists (truncated to ``max_length``) and labels."""

    def __init__(
        self, examples: Sequence[Example], vocab: Vocabulary, max_length: int, labels: bool
    ) -> None:
        self.ids_a = [_encode(ex.text_a, vocab, max_length) for ex in examples]
        self.ids_b = (
            [_encode(ex.text_b, vocab, max_length) for ex in examples]
            if examples and examples[0].text_b is not None
            else None
        )
        self.labels = [ex.label for ex in examples] if labels else None

    def __len__(self) -> int:
        return len(self.ids_a)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {"index": index, "ids": self.ids_a[index]}
        if self.ids_b is not None:
            item["ids_b"] = self.ids_b[index]
        if self.labels is not None:
            item["label"] = self.labels[index]
        return item

    def lengths(self) -> list[int]:
        """Tokens per example (both texts for pairs), for length bucketing."""
        if self.ids_b is None:
            return [len(ids) for ids in self.ids_a]
        return [len(a) + len(b) for a, b in zip(self.ids_a, self.ids_b)]


def _encode(tokens: Sequence[str] | None, vocab: Vocabulary, max_length: int) -> list[int]:
    ids = vocab.encode((tokens or [])[:max_length])
    return ids or [Vocabulary.UNK_ID]


def _pad(
    sequences: Sequence[Sequence[int]], length: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists with ``PAD_ID`` to the longest one, or to ``length`` when given (no
    list may be longer); the mask is True on real tokens."""
    lengths = torch.tensor([len(seq) for seq in sequences])
    width = int(lengths.max()) if length is None else length
    if width < int(lengths.max()):
        raise ValueError(f"a sequence of {int(lengths.max())} ids does not fit length {width}")
    ids = torch.full((len(sequences), width), Vocabulary.PAD_ID, dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    mask = torch.arange(ids.size(1))[None, :] < lengths[:, None]
    return ids, mask


class TextCollator:
    """Pads a list of dataset items into a batch dict (see the module docstring).

    ``pad_to``: pad every batch to this length (``max_length``) instead of its longest text.
    """

    def __init__(self, regression: bool, pad_to: int | None = None) -> None:
        self.label_dtype = torch.float32 if regression else torch.long
        self.pad_to = pad_to

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        batch["ids"], batch["mask"] = _pad([item["ids"] for item in items], self.pad_to)
        if "ids_b" in items[0]:
            batch["ids_b"], batch["mask_b"] = _pad([item["ids_b"] for item in items], self.pad_to)
        if "label" in items[0]:
            batch["label"] = torch.tensor([item["label"] for item in items], dtype=self.label_dtype)
        batch["index"] = torch.tensor([item["index"] for item in items], dtype=torch.long)
        return batch
