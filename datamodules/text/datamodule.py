"""``GlueDataModule``: GLUE-style TSV tasks and the SST trees as padded id batches.

Batches are dicts::

    {"ids": LongTensor (B, L), "mask": BoolTensor (B, L),      # True = real token
     "ids_b": LongTensor (B, L_b), "mask_b": BoolTensor (B, L_b),  # pair tasks only
     "label": LongTensor (B,) | FloatTensor (B,),              # absent for unlabelled test data
     "index": LongTensor (B,)}                                 # example index in its split

padded with id 0 to the longest sequence of the batch (at most ``max_length``), or with
``pad_to_max_length=True`` every batch to exactly ``max_length`` as the reference code does
(so its BatchNorm statistics see as much padding as the reference's). A text with no tokens
becomes a single ``<unk>`` so every row has at least one real token.

After :meth:`GlueDataModule.setup`, :meth:`GlueDataModule.data_summary` reports every loaded
split's size and label counts and :meth:`GlueDataModule.write_preview` writes a few examples
decoded from the ids the model sees (what ``python -m experiments data`` prints and writes).

The datamodule shards itself across ranks (the Trainer uses ``use_distributed_sampler=False``):
training through :class:`BucketBatchSampler` (or a seeded ``DistributedSampler`` with
``bucket=False``), evaluation through :class:`ShardedEvalBatchSampler`, which hands every
example to exactly one rank. ``batch_size`` is per process.
"""

from __future__ import annotations

import logging
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Optional

import lightning as L
import torch
from torch.utils.data import DataLoader, DistributedSampler

from datamodules.errors import DataError
from datamodules.samplers import BucketBatchSampler, ShardedEvalBatchSampler
from datamodules.text.batches import EncodedTextDataset, TextCollator
from datamodules.text.inspection import TextDataInspection
from datamodules.text.readers import Example, read_split
from datamodules.text.tasks import TaskSpec, get_task
from datamodules.text.vocab import Vocabulary, load_glove

log = logging.getLogger(__name__)


@dataclass
class GlueDataOptions:
    """Every data option of :class:`GlueDataModule` with its default, written once.

    The experiment configs subclass it (``data.*`` keys); the datamodule takes the same names
    as keyword arguments. What each one does is in :class:`GlueDataModule`'s docstring.
    """

    root: str = "data/glue/SST-2"
    task: str = "sst2"
    batch_size: int = 128
    eval_batch_size: Optional[int] = None
    max_length: int = 64
    min_count: int = 1
    lowercase: bool = False
    glove: Optional[str] = None  # path of glove.840B.300d.txt; None = random init
    phrases: bool = True  # SST trees: train on every phrase (NNI), not only sentences
    dev_phrases: bool = False
    use_test_labels: bool = False
    num_workers: int = 0
    bucket: bool = True
    pad_to_max_length: bool = False  # True: every batch padded to max_length (the reference)


class GlueDataModule(TextDataInspection, L.LightningDataModule):
    """A GLUE task (TSV files) or the SST trees, with a vocabulary built from the train split.

    Args:
        root: folder with the task's files (or its parent, e.g. ``glue_data/``).
        task: a key of :data:`datamodules.text.tasks.TASKS`.
        batch_size: training batch size per process.
        eval_batch_size: validation/test batch size per process (default ``batch_size``).
        max_length: tokens kept per text (longer texts are truncated).
        min_count: minimum training-split count for a token to enter the vocabulary.
        lowercase: lowercase all text.
        glove: path of a GloVe text file for :meth:`embedding_matrix`, ``None`` = random.
        embed_dim: embedding size (300 for ``glove.840B.300d``).
        phrases: tree tasks: train on every node of every tree plus the root again (NNI).
        num_workers: DataLoader workers.
        bucket: batch training examples of similar length (:class:`BucketBatchSampler`).
            Only the batch composition changes with ``pad_to_max_length`` (no padding saved);
            the reference presets turn it off, as the reference shuffles plainly.
        seed: seed of the data order, the DataLoader generators and the embedding init.
        vocab: a token list (e.g. from a checkpoint) to use instead of building one.
        use_test_labels: keep test labels when the files have them (SST trees).
        dev_phrases: tree tasks: expand the dev trees into phrases too, as NNI does.
        pad_to_max_length: pad every batch (train and eval) to ``max_length``, as NNI and the
            official code do (about 70 % of SST's BatchNorm positions are then padding);
            ``False`` pads to the batch's longest text (cheaper; BatchNorm sees less padding).
    """

    def __init__(
        self,
        root: str | None = None,
        task: str | None = None,
        *,
        embed_dim: int = 300,
        seed: int = 0,
        vocab: list[str] | None = None,
        **options: Any,
    ) -> None:
        """``options`` are :class:`GlueDataOptions` fields (their defaults apply);
        ``embed_dim``, ``seed`` and ``vocab`` come from the model, the run and a checkpoint."""
        super().__init__()
        options.update({k: v for k, v in (("root", root), ("task", task)) if v is not None})
        unknown = sorted(set(options) - set(GlueDataOptions.__dataclass_fields__))
        if unknown:
            raise TypeError(
                f"GlueDataModule: unknown option(s) {', '.join(unknown)}; options: "
                f"{', '.join(GlueDataOptions.__dataclass_fields__)}"
            )
        opts = GlueDataOptions(**options)
        self.save_hyperparameters(
            {**asdict(opts), "embed_dim": embed_dim, "seed": seed}, logger=False
        )
        self._spec = get_task(opts.task)
        for name, value in (
            ("batch_size", opts.batch_size),
            ("max_length", opts.max_length),
            ("min_count", opts.min_count),
        ):
            if value < 1:
                raise DataError(f"data.{name} must be at least 1, got {value}")
        if embed_dim < 1:  # the model's key (model.embed_dim / supernet.embed_dim), not data's
            raise DataError(f"the embedding size (embed_dim) must be at least 1, got {embed_dim}")
        if opts.eval_batch_size is not None and opts.eval_batch_size < 1:
            raise DataError(f"data.eval_batch_size must be at least 1, got {opts.eval_batch_size}")
        for name in GlueDataOptions.__dataclass_fields__:
            setattr(self, name, getattr(opts, name))
        self.eval_batch_size = opts.eval_batch_size or opts.batch_size
        self.embed_dim = embed_dim
        self.seed = seed
        self._vocab = Vocabulary.from_list(vocab) if vocab is not None else None
        self._examples: dict[str, list[Example]] = {}
        self._datasets: dict[str, EncodedTextDataset] = {}
        self._embedding: torch.Tensor | None = None
        self.stats: dict[str, Any] = {}

    @classmethod
    def from_options(
        cls, options: Any, *, embed_dim: int = 300, seed: int = 0, vocab: list[str] | None = None
    ) -> GlueDataModule:
        """The datamodule of a :class:`GlueDataOptions`, or of a config section that holds its
        keys (a config's own extra keys, such as ``generate``, are not data options)."""
        values = {k: getattr(options, k) for k in GlueDataOptions.__dataclass_fields__}
        return cls(embed_dim=embed_dim, seed=seed, vocab=vocab, **values)

    # ------------------------------------------------------------------ properties

    @property
    def task_spec(self) -> TaskSpec:
        """The task's file format and metrics."""
        return self._spec

    @property
    def vocab(self) -> Vocabulary:
        """The vocabulary (built in :meth:`setup` unless given)."""
        if self._vocab is None:
            raise RuntimeError("the vocabulary is built in setup(): call dm.setup('fit') first")
        return self._vocab

    @property
    def num_classes(self) -> int:
        """Model outputs: 1 for regression, else the number of classes."""
        return self._spec.num_classes

    @property
    def is_pair(self) -> bool:
        """Whether examples have two texts (batches carry ``ids_b``/``mask_b``)."""
        return self._spec.pair

    @property
    def is_regression(self) -> bool:
        """Whether the label is a float score (STS-B)."""
        return self._spec.regression

    @property
    def val_split_names(self) -> list[str]:
        """Names of the validation splits, one per val dataloader (in order)."""
        return list(self._spec.val_splits)

    @property
    def has_test_labels(self) -> bool:
        """Whether the test split is scored: tree tasks with ``use_test_labels`` (GLUE test
        files have no labels)."""
        return self.use_test_labels and self._spec.format == "ptb"

    @property
    def test_split_names(self) -> list[str]:
        """Names of the test splits, one per test dataloader (in order)."""
        return list(self._spec.test_splits)

    # ------------------------------------------------------------------ setup

    def setup(self, stage: str | None = None) -> None:
        """Read the splits ``stage`` needs and build the vocabulary; safe to call repeatedly."""
        splits: list[str] = []
        if stage in (None, "fit"):
            splits += [self._spec.train_split, *self._spec.val_splits]
        if stage == "validate":
            splits += list(self._spec.val_splits)
        if stage in (None, "test", "predict"):
            splits += list(self._spec.test_splits)
        if self._vocab is None and self._spec.train_split not in splits:
            splits.insert(0, self._spec.train_split)
        for split in splits:
            self._read(split)
        if self._vocab is None:
            train = self._examples[self._spec.train_split]
            self._vocab = Vocabulary.build(_token_lists(train), self.min_count)
            self._log(f"vocabulary: {len(self._vocab)} tokens from the train split")
        self.stats["vocab_size"] = len(self._vocab)
        for split in splits:
            self._dataset(split)

    def _read(self, split: str) -> list[Example]:
        if split not in self._examples:
            phrases = (split == "train" and self.phrases) or (split == "dev" and self.dev_phrases)
            examples = read_split(self._spec, self.root, split, self.lowercase, phrases)
            self._examples[split] = examples
            self.stats[split] = self._split_stats(examples)
            self._log(f"{split}: {_describe(self.stats[split])}")
        return self._examples[split]

    def _has_labels(self, split: str) -> bool:
        examples = self._examples[split]
        labelled = bool(examples) and examples[0].label is not None
        return labelled and (not split.startswith("test") or self.use_test_labels)

    def _dataset(self, split: str) -> EncodedTextDataset:
        if split not in self._datasets:
            examples = self._read(split)
            self._datasets[split] = EncodedTextDataset(
                examples, self.vocab, self.max_length, self._has_labels(split)
            )
        return self._datasets[split]

    def _split_stats(self, examples: Sequence[Example]) -> dict[str, Any]:
        lengths = [len(ex.text_a) + len(ex.text_b or []) for ex in examples] or [0]
        stats: dict[str, Any] = {
            "examples": len(examples),
            "mean_tokens": round(statistics.fmean(lengths), 2),
            "max_tokens": max(lengths),
            "truncated": sum(
                len(ex.text_a) > self.max_length or len(ex.text_b or []) > self.max_length
                for ex in examples
            ),
        }
        labels = [ex.label for ex in examples if ex.label is not None]
        if labels and self._spec.regression:
            stats["label_mean"] = round(statistics.fmean(labels), 3)
        elif labels:
            counts = Counter(labels)
            stats["labels"] = {
                name: counts.get(i, 0) for i, name in enumerate(self._spec.class_names)
            }
        return stats

    def _log(self, message: str) -> None:
        if self._rank_and_world_size()[0] == 0:
            log.info("%s (%s): %s", self._spec.name, self.root, message)

    # ------------------------------------------------------------------ embeddings, state

    def embedding_matrix(self) -> torch.Tensor | None:
        """GloVe-initialised ``(len(vocab), embed_dim)`` weights, or ``None`` without ``glove``."""
        if self.glove is None:
            return None
        if self._embedding is None or self._embedding.size(0) != len(self.vocab):
            self._embedding = load_glove(self.glove, self.vocab, self.embed_dim, self.seed)
        return self._embedding

    def state_dict(self) -> dict[str, Any]:
        """The vocabulary and task, saved by Lightning in every checkpoint."""
        return {"vocab": self._vocab.to_list() if self._vocab else None, "task": self._spec.name}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the checkpoint's vocabulary (re-encoding splits already loaded)."""
        task = state_dict.get("task", self._spec.name)
        if task != self._spec.name:
            raise DataError(
                f"the checkpoint was trained on task {task!r}, not {self._spec.name!r}: "
                f"set data.task={task}"
            )
        tokens = state_dict.get("vocab")
        if tokens is None:
            return
        vocab = Vocabulary.from_list(tokens)
        if vocab != self._vocab:
            self._vocab = vocab
            self._datasets.clear()
            self._embedding = None
            self.stats["vocab_size"] = len(vocab)

    # ------------------------------------------------------------------ dataloaders

    def _rank_and_world_size(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def _collator(self) -> TextCollator:
        pad_to = self.max_length if self.pad_to_max_length else None
        return TextCollator(self._spec.regression, pad_to)

    def _loader(self, dataset: EncodedTextDataset, **kwargs: Any) -> DataLoader:
        return DataLoader(
            dataset,
            collate_fn=self._collator(),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled, length-bucketed training batches; this rank's share."""
        dataset = self._dataset(self._spec.train_split)
        rank, world_size = self._rank_and_world_size()
        if self.bucket:
            sampler = BucketBatchSampler(
                dataset.lengths(),
                self.batch_size,
                shuffle=True,
                seed=self.seed,
                rank=rank,
                world_size=world_size,
            )
            return self._loader(dataset, batch_sampler=sampler)
        shuffled = DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=self.seed
        )
        return self._loader(dataset, sampler=shuffled, batch_size=self.batch_size)

    def _eval_loaders(self, splits: Sequence[str]) -> DataLoader | list[DataLoader]:
        rank, world_size = self._rank_and_world_size()
        loaders = []
        for split in splits:
            dataset = self._dataset(split)
            sampler = ShardedEvalBatchSampler(
                dataset.lengths(), self.eval_batch_size, rank, world_size
            )
            loaders.append(self._loader(dataset, batch_sampler=sampler))
        return loaders[0] if len(loaders) == 1 else loaders

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """One loader per validation split (a list for MNLI's matched/mismatched)."""
        return self._eval_loaders(self._spec.val_splits)

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        """One loader per test split; labels only with ``use_test_labels`` and labelled files."""
        return self._eval_loaders(self._spec.test_splits)

    def predict_dataloader(self) -> DataLoader | list[DataLoader]:
        """The test splits, as for :meth:`test_dataloader`."""
        return self._eval_loaders(self._spec.test_splits)


def _token_lists(examples: Sequence[Example]) -> list[list[str]]:
    out = []
    for ex in examples:
        out.append(ex.text_a)
        if ex.text_b is not None:
            out.append(ex.text_b)
    return out


def _describe(stats: dict[str, Any]) -> str:
    parts = [f"{stats['examples']} examples", f"{stats['mean_tokens']} tokens on average"]
    if stats["truncated"]:
        parts.append(f"{stats['truncated']} truncated")
    if "labels" in stats:
        parts.append("labels " + ", ".join(f"{k}={v}" for k, v in stats["labels"].items()))
    if "label_mean" in stats:
        parts.append(f"mean score {stats['label_mean']}")
    return "; ".join(parts)
