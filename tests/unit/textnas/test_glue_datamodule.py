"""GlueDataModule on the synthetic corpus and on tiny hand-written GLUE files."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch import nn

from datamodules.errors import DataError
from datamodules.text.datamodule import GlueDataModule
from datamodules.text.synthetic import write_synthetic_sst
from datamodules.text.vocab import Vocabulary


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_sst(
        tmp_path_factory.mktemp("synthetic-sst"), n_train=300, n_dev=80, n_test=80
    )


def write_rte(root: Path) -> Path:
    header = "index\tsentence1\tsentence2\tlabel"
    train = [
        "0\tA man is playing a guitar.\tA man plays music.\tentailment",
        "1\tThe cat sleeps.\tThe cat is running fast.\tnot_entailment",
        "2\tIt rains.\tIt is wet outside today.\tentailment",
    ]
    (root / "train.tsv").write_text("\n".join([header, *train]) + "\n")
    (root / "dev.tsv").write_text(f"{header}\n0\tA zebra runs.\tAn animal runs.\tentailment\n")
    (root / "test.tsv").write_text("index\tsentence1\tsentence2\n0\tA man.\tA person.\n")
    return root


def test_setup_batches_and_mask(synthetic_root: Path) -> None:
    dm = GlueDataModule(str(synthetic_root), task="sst2", batch_size=16, max_length=6)
    dm.setup("fit")
    dm.setup("fit")  # idempotent
    assert dm.num_classes == 2 and not dm.is_pair and not dm.is_regression
    assert dm.val_split_names == ["dev"]
    assert dm.stats["train"]["examples"] > 300  # unique phrases, as GLUE's SST-2
    assert set(dm.stats["dev"]["labels"]) == {"negative", "positive"}
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"ids", "mask", "label", "index"}
    assert batch["ids"].dtype == torch.long and batch["mask"].dtype == torch.bool
    assert batch["label"].dtype == torch.long and batch["label"].shape == batch["index"].shape
    assert 0 < batch["ids"].size(0) <= 16
    assert batch["ids"].shape == batch["mask"].shape and batch["ids"].size(1) <= 6
    assert torch.equal(batch["mask"], batch["ids"] != Vocabulary.PAD_ID)
    assert batch["mask"][:, 0].all()  # every row has a real token
    assert batch["mask"].sum(1).max() == batch["ids"].size(1)  # padded to the longest only
    val = dm.val_dataloader()
    seen = torch.cat([b["index"] for b in val])
    assert sorted(seen.tolist()) == list(range(dm.stats["dev"]["examples"]))


def test_vocab_from_train_split_only(tmp_path: Path) -> None:
    dm = GlueDataModule(str(write_rte(tmp_path)), task="rte", batch_size=2)
    dm.setup("fit")
    assert "zebra" not in dm.vocab and "guitar" in dm.vocab
    batch = next(iter(dm.val_dataloader()))
    assert batch["ids"][0, 1].item() == Vocabulary.UNK_ID  # "A zebra runs ."


def test_pair_batches(tmp_path: Path) -> None:
    dm = GlueDataModule(str(write_rte(tmp_path)), task="rte", batch_size=3, bucket=False)
    dm.setup("fit")
    assert dm.is_pair
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"ids", "mask", "ids_b", "mask_b", "label", "index"}
    assert batch["ids_b"].shape == (3, 6)  # "The cat is running fast ." is the longest
    assert torch.equal(batch["mask_b"], batch["ids_b"] != 0)
    assert sorted(batch["label"].tolist()) == [0, 0, 1]
    dm.setup("test")
    test = next(iter(dm.test_dataloader()))
    assert "label" not in test and test["ids_b"].shape == (1, 3)


def test_state_dict_roundtrip_gives_identical_encoding(synthetic_root: Path) -> None:
    dm = GlueDataModule(str(synthetic_root), task="sst5", batch_size=8)
    dm.setup("fit")
    state = dm.state_dict()
    assert state["task"] == "sst5" and state["vocab"][:2] == ["<pad>", "<unk>"]

    restored = GlueDataModule(str(synthetic_root), "sst5", batch_size=8, vocab=state["vocab"])
    restored.setup("validate")
    assert restored.vocab == dm.vocab
    a, b = next(iter(dm.val_dataloader())), next(iter(restored.val_dataloader()))
    assert torch.equal(a["ids"], b["ids"])

    # Lightning restores the state after setup(): a different vocabulary re-encodes.
    other = GlueDataModule(str(synthetic_root), task="sst5", batch_size=8, min_count=50)
    other.setup("fit")
    assert len(other.vocab) < len(dm.vocab)
    other.load_state_dict(state)
    assert other.vocab == dm.vocab
    assert torch.equal(next(iter(other.val_dataloader()))["ids"], a["ids"])
    with pytest.raises(DataError, match="task 'sst5'"):
        GlueDataModule(str(synthetic_root), task="sst2").load_state_dict(state)


def test_mnli_two_val_loaders(tmp_path: Path) -> None:
    base = "\t".join(
        ["index", "promptID", "pairID", "genre", "b1", "b2", "p1", "p2", "sentence1", "sentence2"]
    )
    row = "0\t1\t1e\tfiction\tx\tx\tx\tx\tA cat sat.\tAn animal sat."
    (tmp_path / "train.tsv").write_text(f"{base}\tlabel1\tgold_label\n{row}\tneutral\tneutral\n")
    dev_header = f"{base}\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label"
    votes = "\tentailment" * 5
    for split in ("dev_matched", "dev_mismatched"):
        (tmp_path / f"{split}.tsv").write_text(f"{dev_header}\n{row}{votes}\tentailment\n")
    dm = GlueDataModule(str(tmp_path), task="mnli")
    dm.setup("fit")
    loaders = dm.val_dataloader()
    assert dm.val_split_names == ["dev_matched", "dev_mismatched"]
    assert isinstance(loaders, list) and len(loaders) == 2
    assert next(iter(loaders[1]))["label"].tolist() == [0]
    assert next(iter(dm.train_dataloader()))["label"].tolist() == [1]


def test_stsb_float_labels(tmp_path: Path) -> None:
    cols = "\t".join(f"c{i}" for i in range(9))
    row = "\t".join(["x"] * 7 + ["A man sings.", "A man is singing."])
    for split in ("train", "dev"):
        (tmp_path / f"{split}.tsv").write_text(f"{cols}\tscore\n{row}\t4.200\n")
    dm = GlueDataModule(str(tmp_path), task="stsb")
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert dm.is_regression and dm.num_classes == 1
    assert batch["label"].dtype == torch.float32 and batch["label"].tolist() == [pytest.approx(4.2)]


def test_tree_tasks_and_test_labels(synthetic_root: Path) -> None:
    sentences = GlueDataModule(str(synthetic_root), task="sst5", phrases=False)
    sentences.setup("fit")
    phrases = GlueDataModule(str(synthetic_root), task="sst5")
    phrases.setup("fit")
    assert sentences.stats["train"]["examples"] == 300
    assert phrases.stats["train"]["examples"] > 10 * 300
    assert sentences.num_classes == 5
    hidden = GlueDataModule(str(synthetic_root), task="sst2_trees")
    hidden.setup("test")
    assert "label" not in next(iter(hidden.test_dataloader()))
    shown = GlueDataModule(str(synthetic_root), task="sst2_trees", use_test_labels=True)
    shown.setup("test")
    assert set(next(iter(shown.test_dataloader()))["label"].tolist()) <= {0, 1}


def test_two_ranks_shard_train_and_eval(synthetic_root: Path) -> None:
    shares = []
    for rank in range(2):
        dm = GlueDataModule(str(synthetic_root), task="sst2", batch_size=32)
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)  # type: ignore[assignment]
        dm.setup("fit")
        train = [b["index"].tolist() for b in dm.train_dataloader()]
        val = torch.cat([b["index"] for b in dm.val_dataloader()]).tolist()
        shares.append((train, val))
    assert len(shares[0][0]) == len(shares[1][0])
    assert not set(shares[0][1]) & set(shares[1][1])
    assert len(shares[0][1]) + len(shares[1][1]) == dm.stats["dev"]["examples"]


def test_glove_embedding_matrix(synthetic_root: Path, tmp_path: Path) -> None:
    glove = tmp_path / "glove.txt"
    glove.write_text("good 1 2 3 4\nmovie 5 6 7 8\n")
    dm = GlueDataModule(str(synthetic_root), glove=str(glove), embed_dim=4)
    dm.setup("fit")
    weights = dm.embedding_matrix()
    assert weights is not None and weights.shape == (len(dm.vocab), 4)
    assert weights[dm.vocab.index("good")].tolist() == [1, 2, 3, 4]
    assert GlueDataModule(str(synthetic_root)).embedding_matrix() is None


def test_bad_settings() -> None:
    with pytest.raises(DataError, match="unknown task"):
        GlueDataModule("data", task="imdb")
    with pytest.raises(DataError, match="batch_size"):
        GlueDataModule("data", batch_size=0)


class _BagOfEmbeddings(L.LightningModule):
    """Just enough of a model to run the datamodule through a Trainer."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.embed = nn.EmbeddingBag(vocab_size, 4, mode="mean", padding_idx=0)
        self.head = nn.Linear(4, 2)
        self.seen: list[list[int]] = []

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.embed(batch["ids"]))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.seen.append(batch["index"].tolist())
        return nn.functional.cross_entropy(self(batch), batch["label"])

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.log("val/loss", nn.functional.cross_entropy(self(batch), batch["label"]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_trainer_sets_epochs(synthetic_root: Path) -> None:
    dm = GlueDataModule(str(synthetic_root), task="sst2_trees", batch_size=64, phrases=False)
    dm.setup("fit")
    model = _BagOfEmbeddings(len(dm.vocab))
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        use_distributed_sampler=False,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)
    per_epoch = len(model.seen) // 2
    first, second = model.seen[:per_epoch], model.seen[per_epoch:]
    assert sorted(sum(first, [])) == sorted(sum(second, []))  # same examples
    assert first != second  # in a new order: Lightning called set_epoch(1)
    assert trainer.train_dataloader.batch_sampler.epoch == 1


# ------------------------------------------------------------------ pad_to_max_length


def _same_apart_from_padding(padded: dict, plain: dict, max_length: int) -> None:
    assert torch.equal(padded["index"], plain["index"])
    for ids, mask in (("ids", "mask"), ("ids_b", "mask_b")):
        if ids not in plain:
            continue
        assert padded[ids].shape == (plain[ids].size(0), max_length)
        assert torch.equal(padded[mask], padded[ids] != Vocabulary.PAD_ID)
        width = plain[ids].size(1)
        assert torch.equal(padded[ids][:, :width], plain[ids])
        assert torch.equal(padded[mask][:, :width], plain[mask])
        assert not padded[mask][:, width:].any() and not padded[ids][:, width:].any()


@pytest.mark.parametrize("bucket", [True, False])
def test_pad_to_max_length_train_and_eval(synthetic_root: Path, bucket: bool) -> None:
    kwargs = dict(task="sst2", batch_size=16, max_length=12, bucket=bucket)
    plain = GlueDataModule(str(synthetic_root), **kwargs)
    padded = GlueDataModule(str(synthetic_root), pad_to_max_length=True, **kwargs)
    for dm in (plain, padded):
        dm.setup("fit")
        dm.setup("test")
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        pairs = list(zip(getattr(padded, loader)(), getattr(plain, loader)()))
        assert pairs and len(pairs) == len(getattr(plain, loader)())
        for a, b in pairs:
            _same_apart_from_padding(a, b, 12)
            assert torch.equal(a.get("label", a["index"]), b.get("label", b["index"]))
    # the texts that fill the batch's width in the plain loader still fit: no padding needed
    assert any(b["mask"].all(dim=1).any() for b in padded.val_dataloader())


def test_pad_to_max_length_pairs(tmp_path: Path) -> None:
    root = write_rte(tmp_path)
    plain = GlueDataModule(str(root), task="rte", batch_size=3, max_length=9)
    padded = GlueDataModule(
        str(root), task="rte", batch_size=3, max_length=9, pad_to_max_length=True
    )
    for dm in (plain, padded):
        dm.setup("fit")
    a, b = next(iter(padded.train_dataloader())), next(iter(plain.train_dataloader()))
    assert a["ids"].shape == a["ids_b"].shape == (3, 9)
    _same_apart_from_padding(a, b, 9)


# ------------------------------------------------------------------ data_summary, write_preview


def test_data_summary_shape_and_counts(synthetic_root: Path) -> None:
    dm = GlueDataModule(
        str(synthetic_root),
        task="sst5",
        batch_size=16,
        max_length=8,
        pad_to_max_length=True,
        bucket=False,
    )
    with pytest.raises(RuntimeError, match="setup"):
        dm.data_summary()
    dm.setup("fit")
    summary = dm.data_summary()
    assert list(summary["splits"]) == ["train", "dev"]  # only what setup('fit') read
    train = summary["splits"]["train"]
    assert set(train) == {"size", "labels"}
    assert train["size"] == len(dm.train_dataloader().dataset) == dm.stats["train"]["examples"]
    assert train["size"] > 10 * 300  # the phrase instances training iterates over
    assert list(train["labels"]) == list(dm.task_spec.class_names)
    assert sum(train["labels"].values()) == train["size"]
    seen = torch.cat([b["label"] for b in dm.val_dataloader()]).tolist()
    dev = summary["splits"]["dev"]
    assert dev["labels"] == {name: seen.count(i) for i, name in enumerate(dm.task_spec.class_names)}
    info = summary["info"]
    assert info["vocab_size"] == len(dm.vocab) and info["max_length"] == 8
    assert info["padding"] == "max_length" and info["phrases"] is True
    positions = sum(b["mask"].numel() for b in dm.train_dataloader())
    real = sum(int(b["mask"].sum()) for b in dm.train_dataloader())
    assert info["tokens"]["train"]["padding"] == pytest.approx(1 - real / positions, abs=1e-4)
    assert info["tokens"]["train"]["truncated"] == dm.stats["train"]["truncated"] > 0
    json.dumps(summary)  # plain JSON types only

    dm.setup("test")  # test splits are reported once loaded; tree labels only when used
    assert dm.data_summary()["splits"]["test"] == {"size": 80, "labels": {}}
    shown = GlueDataModule(str(synthetic_root), task="sst5", use_test_labels=True)
    shown.setup("test")
    test = shown.data_summary()["splits"]["test"]
    assert sum(test["labels"].values()) == test["size"] == 80


def test_data_summary_regression_and_pairs(tmp_path: Path) -> None:
    cols = "\t".join(f"c{i}" for i in range(9))
    rows = [
        "\t".join(["x"] * 7 + ["A man sings.", "A man is singing."]) + f"\t{s}"
        for s in ("4.2", "1.0", "2.3")
    ]
    for split in ("train", "dev"):
        (tmp_path / f"{split}.tsv").write_text("\n".join([f"{cols}\tscore", *rows]) + "\n")
    dm = GlueDataModule(str(tmp_path), task="stsb")
    dm.setup("fit")
    labels = dm.data_summary()["splits"]["train"]["labels"]
    assert labels["min"] == 1.0 and labels["max"] == pytest.approx(4.2)
    assert labels["mean"] == pytest.approx(2.5, abs=1e-3) and "std" in labels
    assert dm.data_summary()["info"]["pair"] is True


def test_write_preview_decodes_model_ids(synthetic_root: Path, tmp_path: Path) -> None:
    dm = GlueDataModule(
        str(synthetic_root),
        task="sst2",
        batch_size=8,
        max_length=5,
        min_count=20,
        pad_to_max_length=True,
    )
    dm.setup("fit")
    paths = dm.write_preview(tmp_path / "out")
    assert paths == [tmp_path / "out" / "preview.md"]
    text = paths[0].read_text(encoding="utf-8")
    assert "## train:" in text and "## dev:" in text and "## test" not in text
    assert "<unk>" in text  # min_count=20 leaves rare words out
    assert "<pad>×" in text and "[truncated: 5 of" in text
    assert "label: negative (0)" in text or "label: positive (1)" in text
    # the first training row, exactly as the collator hands it to the model
    item = dm.train_dataloader().dataset[0]
    ids = item["ids"]
    expected = " ".join(dm.vocab.decode(ids)) + (f" <pad>×{5 - len(ids)}" if len(ids) < 5 else "")
    block = text.split("## train:")[1].split("```text\n")[1]
    assert block.splitlines()[1].strip().startswith(expected)


def test_write_preview_pairs_and_unlabelled_test(tmp_path: Path) -> None:
    dm = GlueDataModule(str(write_rte(tmp_path)), task="rte", batch_size=2)
    dm.setup("fit")
    dm.setup("test")
    text = dm.write_preview(tmp_path / "preview")[0].read_text(encoding="utf-8")
    assert "  a: A man is playing a guitar ." in text
    assert "  b: A man plays music . <pad>×" in text  # padded with its batch's longest
    assert "label: entailment (0)" in text and "label: not_entailment (1)" in text
    test = text.split("## test: 1 example\n")[1]
    assert "labels: not used" in test and "label: none (not used)" in test
    assert "  b: A <unk> ." in test  # "person" is not in the training vocabulary


def test_data_defaults_written_once(synthetic_root):
    """The experiment config's data section is GlueDataOptions itself (plus its own switches),
    and the datamodule built with no option takes exactly those defaults."""
    from dataclasses import fields

    from datamodules.text.datamodule import GlueDataOptions
    from experiments.systems.textnas.retrain import TextDataConfig

    assert issubclass(TextDataConfig, GlueDataOptions)
    assert {f.name for f in fields(TextDataConfig)} - {f.name for f in fields(GlueDataOptions)} == {
        "generate"
    }
    dm = GlueDataModule(str(synthetic_root))
    defaults = GlueDataOptions(root=str(synthetic_root))
    for f in fields(GlueDataOptions):
        expected = getattr(defaults, f.name)
        got = dm.hparams[f.name]
        assert got == expected, f.name
    with pytest.raises(TypeError, match="unknown option.*batchsize"):
        GlueDataModule(str(synthetic_root), batchsize=3)
