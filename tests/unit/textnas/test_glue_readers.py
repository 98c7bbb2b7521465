"""GLUE TSV readers on small files in the real formats, quirks included."""

from __future__ import annotations

from pathlib import Path

import pytest

from datamodules.errors import DataError
from datamodules.text.readers import read_split, split_path, tokenize
from datamodules.text.tasks import TASKS, get_task


def write(path: Path, lines: list[str], bom: bool = False, crlf: bool = False) -> Path:
    """Write ``lines`` as a file, optionally with a UTF-8 BOM and CRLF line ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = ("\r\n" if crlf else "\n").join(lines) + ("\r\n" if crlf else "\n")
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
    return path


def tsv(*rows: tuple[str, ...]) -> list[str]:
    return ["\t".join(row) for row in rows]


# ------------------------------------------------------------------------------ per task


def test_sst2_whitespace_tokens_quotes_and_unlabelled_test(tmp_path: Path) -> None:
    write(tmp_path / "train.tsv", ["sentence\tlabel", 'it \'s a "charming" film \t1', "dull \t0"])
    write(tmp_path / "dev.tsv", ["sentence\tlabel", "a great movie . \t1"], crlf=True)
    write(tmp_path / "test.tsv", ["index\tsentence", '0\tuneasy "mishmash" .', "1\tfine ."])
    spec = TASKS["sst2"]
    train = read_split(spec, tmp_path, "train")
    assert [ex.text_a for ex in train] == [["it", "'s", "a", '"charming"', "film"], ["dull"]]
    assert [ex.label for ex in train] == [1, 0]
    assert all(ex.text_b is None for ex in train)
    dev = read_split(spec, tmp_path, "dev")
    assert dev[0].text_a == ["a", "great", "movie", "."] and dev[0].label == 1
    test = read_split(spec, tmp_path, "test")
    assert [ex.text_a for ex in test] == [["uneasy", '"mishmash"', "."], ["fine", "."]]
    assert all(ex.label is None for ex in test)


def test_cola_has_no_header_in_train_but_one_in_test(tmp_path: Path) -> None:
    write(
        tmp_path / "train.tsv",
        tsv(
            ("gj04", "1", "", "Our friends won't buy this analysis, let alone the next one."),
            ("gj04", "0", "*", 'They drank the "pub".'),
        ),
    )
    write(tmp_path / "test.tsv", ["index\tsentence", "0\tBill whistled past the house."])
    spec = TASKS["cola"]
    train = read_split(spec, tmp_path, "train")
    assert len(train) == 2  # the first row is data, not a header
    assert train[0].label == 1 and train[1].label == 0
    assert train[0].text_a == [
        "Our",
        "friends",
        "won't",
        "buy",
        "this",
        "analysis",
        ",",
        "let",
        "alone",
        "the",
        "next",
        "one",
        ".",
    ]
    assert train[1].text_a == ["They", "drank", "the", '"', "pub", '"', "."]
    lowered = read_split(spec, tmp_path, "train", lowercase=True)
    assert lowered[0].text_a[0] == "our"
    test = read_split(spec, tmp_path, "test")
    assert test[0].text_a == ["Bill", "whistled", "past", "the", "house", "."]
    assert test[0].label is None


def test_mrpc_bom_crlf_label_in_first_column(tmp_path: Path) -> None:
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"
    rows = tsv(
        ("1", "702876", "702977", 'He said "yes".', "He agreed."),
        ("0", "2108705", "2108831", "Shares rose 3.5 percent.", "Stocks fell."),
    )
    write(tmp_path / "train.tsv", [header, *rows], bom=True, crlf=True)
    write(
        tmp_path / "test.tsv",
        ["index\t#1 ID\t#2 ID\t#1 String\t#2 String", "0\t1089874\t1089925\tA b.\tC d."],
    )
    spec = TASKS["mrpc"]
    train = read_split(spec, tmp_path, "train")
    assert [ex.label for ex in train] == [1, 0]
    assert train[0].text_a == ["He", "said", '"', "yes", '"', "."]
    assert train[0].text_b == ["He", "agreed", "."]
    assert train[1].text_a == ["Shares", "rose", "3.5", "percent", "."]
    test = read_split(spec, tmp_path, "test")
    assert test[0].text_a == ["A", "b", "."] and test[0].text_b == ["C", "d", "."]
    assert test[0].label is None


def test_qqp_skips_malformed_rows(tmp_path: Path) -> None:
    header = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"
    rows = tsv(
        ("1", "3", "4", "How do I learn Python?", "What is the best way to learn Python?", "1"),
        ("2", "5", "6", "Why is the sky", ""),  # a question broken across two lines ...
        ("blue?", "Why is grass green?", "0"),  # ... gives two short rows
        ("3", "7", "8", "Is it?", "Is it not?", "0"),
    )
    write(tmp_path / "train.tsv", [header, *rows])
    write(tmp_path / "test.tsv", ["id\tquestion1\tquestion2", "0\tWhat?\tWhy?"])
    spec = TASKS["qqp"]
    train = read_split(spec, tmp_path, "train")
    assert [ex.label for ex in train] == [1, 0]
    assert train[1].text_a == ["Is", "it", "?"]
    test = read_split(spec, tmp_path, "test")
    assert test[0].text_a == ["What", "?"] and test[0].text_b == ["Why", "?"]


def test_stsb_float_scores(tmp_path: Path) -> None:
    cols = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2"
    rows = tsv(
        (
            "0",
            "main-captions",
            "MSRvid",
            "2012test",
            "0001",
            "none",
            "none",
            "A plane is taking off.",
            "An air plane is taking off.",
            "5.000",
        ),
        (
            "1",
            "main-captions",
            "MSRvid",
            "2012test",
            "0004",
            "none",
            "none",
            "A man plays a flute.",
            "A man plays a guitar.",
            "0.750",
        ),
    )
    write(tmp_path / "train.tsv", [cols + "\tscore", *rows])
    test_row = "0\tmain-captions\tMSRvid\t2012test\t0024\tnone\tnone\tA girl sings.\tA boy sings."
    write(tmp_path / "test.tsv", [cols, test_row])
    spec = TASKS["stsb"]
    assert spec.regression and spec.num_classes == 1
    train = read_split(spec, tmp_path, "train")
    assert [ex.label for ex in train] == [5.0, 0.75]
    assert train[1].text_b == ["A", "man", "plays", "a", "guitar", "."]
    test = read_split(spec, tmp_path, "test")
    assert test[0].text_a == ["A", "girl", "sings", "."] and test[0].label is None


MNLI_BASE = (
    "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
    "sentence1_parse\tsentence2_parse\tsentence1\tsentence2"
)


def _mnli_row(index: int, premise: str, hypothesis: str, *labels: str) -> str:
    parses = "\t".join(["( x )"] * 4)
    return f"{index}\t{index}\t{index}e\tfiction\t{parses}\t{premise}\t{hypothesis}" + "".join(
        f"\t{label}" for label in labels
    )


def test_mnli_two_dev_sets_gold_label_last(tmp_path: Path) -> None:
    write(
        tmp_path / "train.tsv",
        [
            MNLI_BASE + "\tlabel1\tgold_label",
            _mnli_row(0, "A cat sat.", "An animal sat.", "entailment", "entailment"),
            _mnli_row(1, "It rains.", "It is dry.", "contradiction", "contradiction"),
        ],
    )
    dev_header = MNLI_BASE + "\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label"
    votes = ("neutral", "entailment", "neutral", "neutral", "contradiction")
    write(tmp_path / "dev_matched.tsv", [dev_header, _mnli_row(2, "A.", "B.", *votes, "neutral")])
    write(
        tmp_path / "dev_mismatched.tsv",
        [dev_header, _mnli_row(3, "C.", "D.", *votes, "contradiction")],
    )
    write(tmp_path / "test_matched.tsv", [MNLI_BASE, _mnli_row(4, "E.", "F.")])
    spec = TASKS["mnli"]
    assert spec.val_splits == ("dev_matched", "dev_mismatched")
    train = read_split(spec, tmp_path, "train")
    assert [ex.label for ex in train] == [0, 2]  # HF order: entailment, neutral, contradiction
    assert train[0].text_a == ["A", "cat", "sat", "."]
    assert train[0].text_b == ["An", "animal", "sat", "."]
    assert read_split(spec, tmp_path, "dev_matched")[0].label == 1
    assert read_split(spec, tmp_path, "dev_mismatched")[0].label == 2
    test = read_split(spec, tmp_path, "test_matched")
    assert test[0].text_b == ["F", "."] and test[0].label is None


@pytest.mark.parametrize(
    ("task", "header", "labels", "ids"),
    [
        ("qnli", "index\tquestion\tsentence\tlabel", ["entailment", "not_entailment"], [0, 1]),
        ("rte", "index\tsentence1\tsentence2\tlabel", ["not_entailment", "entailment"], [1, 0]),
        ("wnli", "index\tsentence1\tsentence2\tlabel", ["0", "1"], [0, 1]),
    ],
)
def test_nli_pair_tasks(
    tmp_path: Path, task: str, header: str, labels: list[str], ids: list[int]
) -> None:
    rows = [f"{i}\tWho is {i}?\tThis is {i}.\t{label}" for i, label in enumerate(labels)]
    write(tmp_path / "train.tsv", [header, *rows])
    write(tmp_path / "test.tsv", [header.rsplit("\t", 1)[0], "0\tWho?\tNobody."])
    spec = TASKS[task]
    train = read_split(spec, tmp_path, "train")
    assert [ex.label for ex in train] == ids
    assert train[1].text_a == ["Who", "is", "1", "?"]
    assert train[1].text_b == ["This", "is", "1", "."]
    assert read_split(spec, tmp_path, "test")[0].label is None


def test_task_directory_below_root(tmp_path: Path) -> None:
    write(tmp_path / "SST-2" / "train.tsv", ["sentence\tlabel", "good \t1"])
    assert split_path(TASKS["sst2"], tmp_path, "train") == tmp_path / "SST-2" / "train.tsv"
    assert read_split(TASKS["sst2"], tmp_path, "train")[0].label == 1


def test_label_orders_follow_huggingface() -> None:
    assert TASKS["mnli"].label_names == ("entailment", "neutral", "contradiction")
    assert TASKS["rte"].label_names == ("entailment", "not_entailment")
    assert TASKS["wnli"].class_names == ("not_entailment", "entailment")
    assert TASKS["cola"].metrics[0] == "mcc" and TASKS["stsb"].metrics == ("pearson", "spearman")
    assert TASKS["mrpc"].metrics == ("f1", "accuracy") and TASKS["sst5"].num_classes == 5
    assert all(spec.pair for name, spec in TASKS.items() if name in {"mrpc", "qqp", "rte"})


def test_regex_tokenizer() -> None:
    assert tokenize("Isn't it 1,000.5 well-made?!", "regex") == [
        "Isn't",
        "it",
        "1,000.5",
        "well-made",
        "?",
        "!",
    ]
    assert tokenize("A  b\tC", "whitespace", lowercase=True) == ["a", "b", "c"]


# ------------------------------------------------------------------------------ errors


def test_missing_file_names_path_and_source(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"train\.tsv.*gluebenchmark\.com/tasks"):
        read_split(TASKS["rte"], tmp_path, "train")
    with pytest.raises(DataError, match=r"train\.txt.*trainDevTestTrees_PTB\.zip"):
        read_split(TASKS["sst5"], tmp_path, "train")


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere.*does not exist"):
        read_split(TASKS["sst2"], tmp_path / "nowhere", "train")


def test_wrong_column_count_names_file_and_line(tmp_path: Path) -> None:
    header = "index\tsentence1\tsentence2\tlabel"
    write(tmp_path / "train.tsv", [header, "0\ta\tb\tentailment", "1\ta\tb\tc\tentailment"])
    with pytest.raises(DataError, match=r"train\.tsv:3: expected 4 columns, found 5"):
        read_split(TASKS["rte"], tmp_path, "train")


def test_headerless_wrong_column_count(tmp_path: Path) -> None:
    write(tmp_path / "dev.tsv", ["gj04\t1\t\tFine.", "gj04\t1\tOnly three"])
    with pytest.raises(DataError, match=r"dev\.tsv:2: expected 4 columns, found 3"):
        read_split(TASKS["cola"], tmp_path, "dev")


def test_truncated_file(tmp_path: Path) -> None:
    write(tmp_path / "dev.tsv", ["sentence\tlabel"])
    with pytest.raises(DataError, match=r"dev\.tsv: no data rows"):
        read_split(TASKS["sst2"], tmp_path, "dev")
    (tmp_path / "train.tsv").write_text("")
    with pytest.raises(DataError, match=r"train\.tsv: no data rows"):
        read_split(TASKS["cola"], tmp_path, "train")


def test_unknown_label(tmp_path: Path) -> None:
    header = "index\tquestion\tsentence\tlabel"
    write(tmp_path / "dev.tsv", [header, "0\tq\ts\tentailment", "1\tq\ts\tneutral"])
    with pytest.raises(DataError, match=r"dev\.tsv:3: unknown label 'neutral'"):
        read_split(TASKS["qnli"], tmp_path, "dev")


def test_bad_score_and_missing_header(tmp_path: Path) -> None:
    cols = "\t".join(f"c{i}" for i in range(9))
    write(tmp_path / "dev.tsv", [cols + "\tscore", "\t".join(["x"] * 9) + "\tabc"])
    with pytest.raises(DataError, match=r"dev\.tsv:2: label 'abc' is not a number"):
        read_split(TASKS["stsb"], tmp_path, "dev")
    write(tmp_path / "train.tsv", ["good \t1", "bad \t0"])
    with pytest.raises(DataError, match=r"train\.tsv:1: the first line looks like data"):
        read_split(TASKS["sst2"], tmp_path, "train")


def test_unknown_task_lists_valid_ones() -> None:
    with pytest.raises(DataError, match=r"unknown task 'sst3'.*mnli.*sst2.*sst5"):
        get_task("sst3")


def test_bytes_that_are_not_utf8_name_file_and_line(tmp_path: Path) -> None:
    header = b"sentence\tlabel\n"
    path = tmp_path / "train.tsv"
    path.write_bytes(header + b"a fine film\t1\n" + b"a caf\xe9 scene\t0\n")  # Latin-1 e-acute
    with pytest.raises(DataError, match=r"train\.tsv:3: not UTF-8 .*re-save the file as UTF-8"):
        read_split(TASKS["sst2"], tmp_path, "train")
    # BOM and CRLF still fine, and real UTF-8 decodes
    path.write_bytes(b"\xef\xbb\xbf" + header.replace(b"\n", b"\r\n") + "café\t0\r\n".encode())
    assert read_split(TASKS["sst2"], tmp_path, "train")[0].text_a == ["café"]


def test_not_utf8_is_one_line_without_a_chained_traceback(tmp_path: Path) -> None:
    """The CLI prints a DataError as one ``error:`` line: no UnicodeDecodeError behind it."""
    (tmp_path / "dev.tsv").write_bytes(b"sentence\tlabel\nok\t1\n\xff\xfe\t0\n")
    with pytest.raises(DataError) as info:
        read_split(TASKS["sst2"], tmp_path, "dev")
    assert info.value.__cause__ is None and "\n" not in str(info.value)
    assert "dev.tsv:3:" in str(info.value)
