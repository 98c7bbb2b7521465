"""Shared fixtures of the end-to-end tests: generated data sets, a tiny architecture, helpers.

The TextNAS tests point every run at data written into temporary folders: the synthetic
sentiment corpus (GLUE SST-2 TSVs and PTB trees) and tiny files in the real formats of the
other GLUE tasks (as GLUE's ``download_glue_data.py`` writes them).
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from datamodules.text.synthetic import write_synthetic_sst
from search_spaces.text import Architecture
from tests.helpers.textnas import random_arch

REPO = Path(__file__).resolve().parents[2]

#: Overrides that make a TextNAS run take a few seconds on a CPU.
TINY = [
    "model.width=8",
    "model.embed_dim=16",
    "data.batch_size=16",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.num_sanity_val_steps=0",
    "trainer.enable_progress_bar=false",
    "logger.wandb.mode=disabled",
]
#: Overrides for evaluation runs (everything else comes from the checkpoint).
QUIET = ["trainer.enable_progress_bar=false", "logger.wandb.mode=disabled"]

#: Tasks whose data is the synthetic corpus (SST-2 TSVs or the PTB trees).
SYNTHETIC_TASKS = ("sst2", "sst5", "sst2_trees")


def tiny(output_dir: Path, *extra: str) -> list[str]:
    """The tiny overrides plus ``output_dir`` and ``extra``."""
    return [*TINY, f"output_dir={output_dir}", *extra]


def tree_hashes(root: Path) -> dict[str, str]:
    """``relative path -> sha256`` of every file under ``root``; folders map to ``"<dir>"``."""
    out: dict[str, str] = {}
    for path in sorted(Path(root).rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_dir():
            out[rel] = "<dir>"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def cli_env(**extra: str) -> dict[str, str]:
    """Environment of a ``python -m experiments`` subprocess: W&B off, one intra-op thread."""
    env = {**os.environ, "WANDB_MODE": "disabled", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    for var in ("SUITE_DEBUG", "SUITE_RUN_DIR", "SUITE_CONFIG_PATH", "LOCAL_RANK", "RANK"):
        env.pop(var, None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def python() -> str:
    """The interpreter running the tests (the project's venv)."""
    return sys.executable


# ---------------------------------------------------------------------------------------------
# Architecture
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_arch_obj() -> Architecture:
    """A random 4-layer architecture that uses both the GRU and the attention op."""
    for seed in range(1000):
        arch = random_arch(4, seed=seed)
        ops = {layer.op for layer in arch.layers}
        if {"rnn", "attention"} <= ops and arch.num_skips() >= 1:
            return arch
    raise AssertionError("no small random architecture with rnn and attention")


@pytest.fixture(scope="session")
def tiny_arch(tiny_arch_obj: Architecture, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_arch_obj`` as a YAML file (for ``model.architecture=...``)."""
    return tiny_arch_obj.save(tmp_path_factory.mktemp("arch") / "tiny.yaml")


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sst_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic SST corpus: SST-2 TSVs and PTB trees (read-only for the tests)."""
    return write_synthetic_sst(
        tmp_path_factory.mktemp("synthetic-sst"), n_train=120, n_dev=48, n_test=48, seed=0
    )


_WORDS = (
    "the a cat dog man woman child film city river bank old new red small big quickly "
    "slowly runs sleeps reads sees likes \"quoted\" it's o'clock 3.5 well-known , ."
).split()


def _sentence(rng: random.Random, n: int | None = None) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n or rng.randint(3, 9)))


def _pair(rng: random.Random, same: bool) -> tuple[str, str]:
    first = _sentence(rng)
    second = " ".join(first.split()[: rng.randint(2, 4)]) if same else _sentence(rng)
    return first, second


def _write(path: Path, lines: list[str], bom: bool = False) -> None:
    text = "\n".join(lines) + "\n"
    path.write_text(("\ufeff" if bom else "") + text, encoding="utf-8")


def write_glue_task(
    root: Path, task: str, n_train: int = 48, n_dev: int = 24, seed: int = 0
) -> Path:
    """Tiny files of GLUE task ``task`` in the real layout (headers, columns, label strings)."""
    rng = random.Random(f"{task}:{seed}")
    root.mkdir(parents=True, exist_ok=True)
    nli = ("entailment", "not_entailment")

    def rows(n: int, make: Callable[[int, bool], str]) -> list[str]:
        return [make(i, i % 2 == 0) for i in range(n)]

    if task == "cola":  # no header; source, label, original mark, sentence

        def row(i: int, pos: bool) -> str:
            return f"gj04\t{int(pos)}\t{'' if pos else '*'}\t{_sentence(rng)}"

        _write(root / "train.tsv", rows(n_train, row))
        _write(root / "dev.tsv", rows(n_dev, row))
        _write(
            root / "test.tsv", ["index\tsentence", *(f"{i}\t{_sentence(rng)}" for i in range(8))]
        )
    elif task == "mrpc":  # Quality first; train starts with a BOM
        head = "#1 ID\t#2 ID\t#1 String\t#2 String"

        def row(i: int, pos: bool) -> str:
            a, b = _pair(rng, pos)
            return f"{int(pos)}\t{1000 + i}\t{2000 + i}\t{a}\t{b}"

        _write(root / "train.tsv", [f"Quality\t{head}", *rows(n_train, row)], bom=True)
        _write(root / "dev.tsv", [f"Quality\t{head}", *rows(n_dev, row)])
        test = [
            f"{i}\t{1000 + i}\t{2000 + i}\t{_sentence(rng)}\t{_sentence(rng)}" for i in range(8)
        ]
        _write(root / "test.tsv", [f"index\t{head}", *test])
    elif task == "qqp":  # one malformed row (a question broken across lines) is skipped

        def row(i: int, pos: bool) -> str:
            a, b = _pair(rng, pos)
            return f"{i}\t{2 * i}\t{2 * i + 1}\t{a}\t{b}\t{int(pos)}"

        header = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"
        train = rows(n_train, row)
        train.insert(5, "77\t154\t155\twhat is the broken")
        _write(root / "train.tsv", [header, *train])
        _write(root / "dev.tsv", [header, *rows(n_dev, row)])
        test = [f"{i}\t{_sentence(rng)}\t{_sentence(rng)}" for i in range(8)]
        _write(root / "test.tsv", ["id\tquestion1\tquestion2", *test])
    elif task == "stsb":  # ten columns, float score last
        head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2"

        def row(i: int, pos: bool) -> str:
            a, b = _pair(rng, pos)
            score = rng.uniform(3.0, 5.0) if pos else rng.uniform(0.0, 2.0)
            return (
                f"{i}\tmain-captions\tMSRvid\t2012test\t{i:04d}\tnone\tnone\t{a}\t{b}\t{score:.3f}"
            )

        _write(root / "train.tsv", [f"{head}\tscore", *rows(n_train, row)])
        _write(root / "dev.tsv", [f"{head}\tscore", *rows(n_dev, row)])
        test = [
            f"{i}\tmain-forums\tf\t2015\t{i:04d}\tnone\tnone\t{_sentence(rng)}\t{_sentence(rng)}"
            for i in range(8)
        ]
        _write(root / "test.tsv", [head, *test])
    elif task == "mnli":  # parses, label1 (train) or label1..label5 (dev), gold_label last
        labels = ("entailment", "neutral", "contradiction")
        head = (
            "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
            "sentence1_parse\tsentence2_parse\tsentence1\tsentence2"
        )

        def fields(i: int) -> tuple[str, str]:
            a, b = _pair(rng, i % 3 == 0)
            parses = f"( {a} )\t( {b} )\t(ROOT (S {a}))\t(ROOT (S {b}))"
            return f"{i}\t{31193 + i}\t{31193 + i}n\tfiction\t{parses}\t{a}\t{b}", labels[i % 3]

        def train_row(i: int, _: bool) -> str:
            text, label = fields(i)
            return f"{text}\t{label}\t{label}"

        def dev_row(i: int, _: bool) -> str:
            text, label = fields(i)
            return f"{text}\t{label}\t{label}\t{label}\t{labels[(i + 1) % 3]}\t{label}\t{label}"

        _write(root / "train.tsv", [f"{head}\tlabel1\tgold_label", *rows(n_train, train_row)])
        dev_head = f"{head}\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label"
        for split in ("dev_matched", "dev_mismatched"):
            _write(root / f"{split}.tsv", [dev_head, *rows(n_dev, dev_row)])
        for split in ("test_matched", "test_mismatched"):
            _write(root / f"{split}.tsv", [head, *(fields(i)[0] for i in range(8))])
    elif task in ("qnli", "rte", "wnli"):  # index, two texts, label
        names = ("not_entailment", "entailment") if task == "wnli" else nli
        cols = "question\tsentence" if task == "qnli" else "sentence1\tsentence2"

        def row(i: int, pos: bool) -> str:
            a, b = _pair(rng, pos)
            label = ("0", "1")[pos] if task == "wnli" else names[0 if pos else 1]
            return f"{i}\t{a}\t{b}\t{label}"

        _write(root / "train.tsv", [f"index\t{cols}\tlabel", *rows(n_train, row)])
        _write(root / "dev.tsv", [f"index\t{cols}\tlabel", *rows(n_dev, row)])
        test = [f"{i}\t{_sentence(rng)}\t{_sentence(rng)}" for i in range(8)]
        _write(root / "test.tsv", [f"index\t{cols}", *test])
    else:
        raise ValueError(f"no tiny GLUE writer for task {task!r}")
    return root


@pytest.fixture(scope="session")
def task_data(sst_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``task_data(task)``: a data folder for any text task (written once per session)."""
    cache: dict[str, Path] = {}

    def get(task: str) -> Path:
        if task in SYNTHETIC_TASKS:
            return sst_dir
        if task not in cache:
            cache[task] = write_glue_task(tmp_path_factory.mktemp(f"glue-{task}"), task)
        return cache[task]

    return get
