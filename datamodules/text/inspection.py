"""What ``python -m experiments data`` reports for a text task: split sizes, label counts,
token statistics, and a preview of examples decoded from the ids the model gets.

:class:`TextDataInspection` is mixed into :class:`~datamodules.text.datamodule.GlueDataModule`;
it reads the datamodule's loaded splits (``_examples``, ``_dataset``), its task spec and vocabulary.
"""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from datamodules.samplers import ShardedEvalBatchSampler
from datamodules.text.batches import EncodedTextDataset
from datamodules.text.readers import Example
from datamodules.text.vocab import Vocabulary


class TextDataInspection:
    """``data_summary()`` and ``write_preview(dir)`` of a text datamodule."""

    def _loaded_splits(self) -> list[str]:
        order = [self._spec.train_split, *self._spec.val_splits, *self._spec.test_splits]
        loaded = [split for split in order if split in self._examples]
        if not loaded:
            raise RuntimeError("no split is loaded: call dm.setup('fit') (or 'test') first")
        return loaded

    def data_summary(self) -> dict[str, Any]:
        """Size and labels of every loaded split, as the model gets them, plus details.

        ``{"splits": {split: {"size": int, "labels": {class name: count}}}, "info": {...}}``
        in the order train, validation, test splits, only those :meth:`setup` has read.
        ``size`` counts the examples the loaders iterate over (SST with ``phrases``: the
        phrase instances). Regression tasks (STS-B) give ``"labels": {"mean", "std", "min",
        "max"}`` of the scores; a split whose labels are not used (GLUE test files, tree test
        files without ``use_test_labels``) gives ``"labels": {}``. ``info`` holds the task, the
        vocabulary size, ``max_length``, the padding mode and per split ``tokens``: mean and
        maximum text length in the file, texts truncated, the share of real tokens that are
        ``<unk>`` and the share of batch positions that are padding (this rank's batches; the
        training split in its first epoch's order).
        """
        splits: dict[str, Any] = {}
        tokens: dict[str, Any] = {}
        for split in self._loaded_splits():
            dataset = self._dataset(split)
            splits[split] = {"size": len(dataset), "labels": self._label_summary(dataset)}
            tokens[split] = self._token_summary(split)
        info: dict[str, Any] = {
            "task": self._spec.name,
            "root": str(self.root),
            "num_classes": self.num_classes,
            "pair": self.is_pair,
            "vocab_size": len(self.vocab),
            "max_length": self.max_length,
            "padding": "max_length" if self.pad_to_max_length else "longest_in_batch",
            "bucket": self.bucket,
            "batch_size": self.batch_size,
            "eval_batch_size": self.eval_batch_size,
            "lowercase": self.lowercase,
            "min_count": self.min_count,
            "glove": self.glove,
        }
        if self._spec.format == "ptb":
            info["phrases"] = self.phrases
            info["dev_phrases"] = self.dev_phrases
        info["tokens"] = tokens
        return {"splits": splits, "info": info}

    def _label_summary(self, dataset: EncodedTextDataset) -> dict[str, Any]:
        if dataset.labels is None:
            return {}
        if self._spec.regression:
            values = [float(v) for v in dataset.labels]
            return {
                "mean": round(statistics.fmean(values), 4),
                "std": round(statistics.pstdev(values), 4),
                "min": min(values),
                "max": max(values),
            }
        counts = Counter(dataset.labels)
        return {name: counts.get(i, 0) for i, name in enumerate(self._spec.class_names)}

    def _token_summary(self, split: str) -> dict[str, Any]:
        examples, dataset = self._examples[split], self._dataset(split)
        columns = [dataset.ids_a] + ([dataset.ids_b] if dataset.ids_b is not None else [])
        real = sum(len(ids) for column in columns for ids in column)
        unk = sum(ids.count(Vocabulary.UNK_ID) for column in columns for ids in column)
        raw = [len(ex.text_a) for ex in examples] + [len(ex.text_b or []) for ex in examples]
        padding = positions = 0
        for batch in self._index_batches(split):
            for column in columns:
                lengths = [len(column[i]) for i in batch]
                width = self.max_length if self.pad_to_max_length else max(lengths)
                positions += width * len(batch)
                padding += width * len(batch) - sum(lengths)
        return {
            "mean": round(statistics.fmean(raw[: len(examples)]), 2),
            "max": max(raw),
            "truncated": self.stats[split]["truncated"],
            "unk": round(unk / max(real, 1), 4),
            "padding": round(padding / positions, 4) if positions else 0.0,
        }

    def _index_batches(self, split: str) -> list[list[int]]:
        """Index lists of ``split``'s batches on this rank (training: the first epoch's)."""
        if split == self._spec.train_split:
            return [list(batch) for batch in self.train_dataloader().batch_sampler]
        rank, world_size = self._rank_and_world_size()
        lengths = self._dataset(split).lengths()
        return list(ShardedEvalBatchSampler(lengths, self.eval_batch_size, rank, world_size))

    def write_preview(self, out_dir: Path, examples_per_split: int = 5) -> list[Path]:
        """Write ``out_dir/preview.md``: a few examples of every loaded split, decoded from the
        ids the model gets, with their label names; return the paths written.

        Per split: the first ``examples_per_split`` examples, plus the first truncated one if
        there is one, padded together by the loaders' collator (to ``max_length`` with
        ``pad_to_max_length``, else to the longest of them), so ``<unk>``, truncation and
        padding show as the model sees them.
        """
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        summary = self.data_summary()
        if self.pad_to_max_length:
            padding = f"every batch is padded to max_length = {self.max_length}"
        else:
            padding = (
                "each batch is padded to its longest text (here: the examples of a split "
                "padded together as one batch)"
            )
        lines = [
            f"# {self._spec.name}: data preview",
            "",
            f"- data.root: {self.root}; vocabulary: {len(self.vocab)} tokens; "
            f"max_length: {self.max_length}; {padding}.",
            "- Each text is decoded from the ids the model gets: <unk> = not in the vocabulary, "
            "<pad>×N = N padding positions (mask False), [truncated: N of M tokens kept] "
            "where max_length cut the text.",
            "",
        ]
        for split, entry in summary["splits"].items():
            lines += self._preview_split(split, entry, examples_per_split)
        path = out_dir / "preview.md"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return [path]

    def _preview_split(self, split: str, entry: dict[str, Any], count: int) -> list[str]:
        dataset, examples = self._dataset(split), self._examples[split]
        described = ", ".join(f"{k}={v}" for k, v in entry["labels"].items()) or "not used"
        size = entry["size"]
        lines = [f"## {split}: {size} example{'s' * (size != 1)}", "", f"labels: {described}", ""]
        chosen = list(range(min(count, len(dataset))))
        cut = (i for i, ex in enumerate(examples) if _longest_text(ex) > self.max_length)
        first_cut = next(cut, None)
        if first_cut is not None and first_cut not in chosen:
            chosen.append(first_cut)
        batch = self._collator()([dataset[i] for i in chosen])
        texts = [("ids", "mask", "text_a")]
        if "ids_b" in batch:
            texts.append(("ids_b", "mask_b", "text_b"))
        lines.append("```text")
        for row, index in enumerate(chosen):
            lines.append(f"[{index}] label: {self._label_text(batch, row)}")
            for ids_key, mask_key, field in texts:
                real = int(batch[mask_key][row].sum())
                decoded = " ".join(self.vocab.decode(batch[ids_key][row, :real].tolist()))
                pads = batch[ids_key].size(1) - real
                if pads:
                    decoded += f" <pad>×{pads}"
                raw = getattr(examples[index], field) or []
                if len(raw) > self.max_length:
                    decoded += f" [truncated: {real} of {len(raw)} tokens kept]"
                prefix = f"  {field[-1]}: " if len(texts) == 2 else "  "
                lines.append(prefix + decoded.replace("```", "'''"))
        lines += ["```", ""]
        return lines

    def _label_text(self, batch: dict[str, torch.Tensor], row: int) -> str:
        if "label" not in batch:
            return "none (not used)"
        value = batch["label"][row].item()
        if self._spec.regression:
            return f"{value:.3f}"
        return f"{self._spec.class_names[int(value)]} ({int(value)})"


def _longest_text(example: Example) -> int:
    return max(len(example.text_a), len(example.text_b or []))
