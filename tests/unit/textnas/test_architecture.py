"""Tests for search_spaces.text.architecture and search_spaces.text.encodings.

Fixtures in tests/fixtures/textnas/ are copies of the real public files:
- final_arc.json: microsoft/nni examples/nas/legacy/textnas/arc/final_arc.json
  (commit 03ebe2135a935abbec3716a9230fee690cfdb074), byte for byte.
- fixed_arc_sst2.txt: the value of $fixed_arc built in microsoft/TextNAS eval_arc_sst2.sh
  (commit e1f7fd98fe5c833e044ca1bca3f42549afa9ab16); eval_arc_sst5.sh builds the same string.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from search_spaces.text import (
    OP_NAMES,
    STEM,
    Architecture,
    ArchitectureError,
    LayerSpec,
    canonical_op,
    from_nni_json,
    from_official_string,
    load_any,
    nni_key_layout,
    official_string_length,
    shipped_architectures,
    to_nni_json,
    to_official_string,
)
from tests.helpers.textnas import op_counts, random_arch, space_size_log10

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "textnas"
NNI_JSON = FIXTURES / "final_arc.json"
OFFICIAL_TXT = FIXTURES / "fixed_arc_sst2.txt"

# Independent transcription of docs/textnas.md, "The released architecture" (op <- input [skips]).
RELEASED_TEXT = """
L0 maxpool<-stem  L1 attn<-0  L2 conv7<-0  L3 biGRU<-2 [1,2]  L4 conv3<-2 [1]  L5 conv3<-4 [2,4]
L6 conv1<-5 [2,3,4,5]  L7 biGRU<-2 [1,2]  L8 maxpool<-4 [1,3,4,6,7]  L9 maxpool<-6 [5,7,8]
L10 attn<-5 [0,1,4,7,8]  L11 avgpool<-6 [0,3,4,5,6]  L12 conv3<-10 [0,1,3,5,8]
L13 conv5<-11 [0,1,6,9,10,12]  L14 conv1<-12 [2,6,7,8,10,11]  L15 conv7<-14 [0,6,10,11,14]
L16 conv5<-14 [9,10,12,14]  L17 avgpool<-16 [1,2,3,4,7,9,14]  L18 conv7<-15 [5,13,14,15,17]
L19 conv7<-16 [3,10,14]  L20 maxpool<-16 [0,1,10,11,14,15,16,17]
L21 attn<-16 [1,2,3,7,9,10,11,12,14]  L22 attn<-21 [2,3,4,5,7,9,10,15,21]
L23 conv7<-21 [0,3,7,12,16]
"""


def _parse_spec(text: str) -> Architecture:
    layers = []
    for i, m in enumerate(re.finditer(r"L(\d+) (\w+)<-(\w+)(?: \[([\d,]+)\])?", text)):
        idx, op, inp, skips = m.groups()
        assert int(idx) == i
        layers.append(
            LayerSpec(
                STEM if inp == "stem" else int(inp),
                op,
                tuple(int(s) for s in skips.split(",")) if skips else (),
            )
        )
    return Architecture(tuple(layers), k=5)


EXPECTED = _parse_spec(RELEASED_TEXT)


@pytest.fixture(scope="module")
def released() -> Architecture:
    return Architecture.released()


# ------------------------------------------------------------------ released arch


def test_released_matches_reference(released: Architecture) -> None:
    assert released == EXPECTED
    assert released.layers == EXPECTED.layers
    assert released.name == "textnas_released"
    assert "final_arc.json" in released.source and "TextNAS" in released.source
    assert released.num_layers == 24
    assert released.k == 5


def test_released_statistics(released: Architecture) -> None:
    assert op_counts(released) == {
        "conv1": 2,
        "conv3": 3,
        "conv5": 2,
        "conv7": 5,
        "avg_pool": 2,
        "max_pool": 4,
        "rnn": 2,
        "attention": 4,
    }
    assert released.num_skips() == 101
    assert released.num_possible_skips() == 276
    assert released.skip_rate() == pytest.approx(101 / 276)


def test_describe_and_str(released: Architecture) -> None:
    text = released.describe()
    assert text.startswith("L0 max_pool<-stem  L1 attention<-0  L2 conv7<-0  L3 rnn<-2 [1,2]")
    assert text.endswith("L23 conv7<-21 [0,3,7,12,16]")
    assert _parse_spec(text) == released
    s = str(released)
    assert "textnas_released" in s and "24 layers" in s and "101/276" in s


def test_load_any_names(released: Architecture) -> None:
    assert "textnas_released" in shipped_architectures()
    assert Architecture.load_any("released") == released
    assert Architecture.load_any("textnas_released") == released
    assert load_any("released") == released  # Architecture.load_any delegates to encodings
    with pytest.raises(ArchitectureError, match="textnas_released"):
        Architecture.load_any("no_such_architecture")


# --------------------------------------------------------------- real fixtures


def test_real_nni_json_decodes_to_released() -> None:
    arch = from_nni_json(NNI_JSON)
    assert arch == EXPECTED
    assert Architecture.load_any(NNI_JSON) == EXPECTED
    assert from_nni_json(json.loads(NNI_JSON.read_text())) == EXPECTED
    assert from_nni_json(NNI_JSON, num_layers=None) == EXPECTED


def test_real_nni_json_reencodes_exactly() -> None:
    real = json.loads(NNI_JSON.read_text())
    ours = to_nni_json(EXPECTED)
    assert list(ours) == list(real)  # same keys in the same (creation) order
    assert ours == real


def test_real_official_string_decodes_to_released() -> None:
    text = OFFICIAL_TXT.read_text()
    assert len(text.split()) == official_string_length(24) == 324
    assert from_official_string(text) == EXPECTED
    assert Architecture.load_any(OFFICIAL_TXT) == EXPECTED


def test_real_official_string_uses_fallback_inputs() -> None:
    # Layers 1 and 3 of the real string carry relative ids 1 and 3, which are >= the number
    # of available layers and fall back to the previous layer; everything else is canonical.
    real = OFFICIAL_TXT.read_text().split()
    canon = to_official_string(EXPECTED).split()
    diffs = [i for i, (a, b) in enumerate(zip(real, canon)) if a != b]
    start = [i * (i + 3) // 2 for i in range(24)]  # offset of layer i's input field
    assert diffs == [start[1], start[3]] == [2, 9]
    assert (real[2], real[9]) == ("1", "3")
    assert (canon[2], canon[9]) == ("0", "0")


# ------------------------------------------------------------------- roundtrips


def test_yaml_roundtrip(tmp_path: Path, released: Architecture) -> None:
    path = released.save(tmp_path / "sub" / "arch.yaml")
    text = path.read_text()
    assert "- {op: max_pool, input: stem, skips: []}" in text
    loaded = Architecture.load(path)
    assert loaded == released
    assert loaded.name == released.name and loaded.source == released.source
    assert Architecture.load_any(path) == released


def test_save_by_extension(tmp_path: Path, released: Architecture) -> None:
    assert Architecture.load_any(released.save(tmp_path / "a.json")) == released
    assert Architecture.load_any(released.save(tmp_path / "a.txt")) == released
    assert Architecture.load_any(released.save(tmp_path / "a.yml")) == released


def test_nni_json_roundtrip_and_keys(released: Architecture) -> None:
    obj = to_nni_json(released)
    assert len(obj) == 70
    keys = list(obj)
    assert keys[:7] == [
        "LayerChoice1",
        "InputChoice2",
        "LayerChoice3",
        "InputChoice4",
        "InputChoice5",
        "LayerChoice6",
        "InputChoice7",
    ]
    assert keys[-1] == "InputChoice70"
    assert from_nni_json(obj) == released
    assert from_nni_json(json.dumps(obj)) == released
    # 0/1 integer lists are accepted as multi-hot too
    as_ints = {key: [int(v) for v in value] for key, value in obj.items()}
    assert from_nni_json(as_ints) == released


def test_nni_readable_roundtrip(released: Architecture) -> None:
    readable = to_nni_json(released, readable=True)
    assert readable["LayerChoice1"] == 5
    assert readable["InputChoice2"] == "layer_0"
    assert readable["InputChoice4"] == []
    assert readable["InputChoice13"] == "layer_1"  # single skip: NNI drops the brackets
    assert readable["InputChoice10"] == ["layer_1", "layer_2"]
    assert from_nni_json(readable) == released
    named = dict(readable, LayerChoice1="maxpool", LayerChoice3=["attn"])
    assert from_nni_json(named) == released


def test_nni_key_layout_and_offset(released: Architecture) -> None:
    layout = nni_key_layout(24, 5)
    assert len(layout) == 70
    assert layout[0] == ("LayerChoice1", 0, "op")
    assert layout[1:4] == [
        ("InputChoice2", 1, "input"),
        ("LayerChoice3", 1, "op"),
        ("InputChoice4", 1, "skip"),
    ]
    shifted = to_nni_json(released, offset=70)  # model built twice in one NNI process
    assert "LayerChoice71" in shifted
    assert from_nni_json(shifted) == released
    with pytest.raises(ArchitectureError, match="unexpected keys"):
        from_nni_json(shifted, offset=0)


def test_official_roundtrip(released: Architecture) -> None:
    s = to_official_string(released)
    assert len(s.split()) == 324
    assert s.startswith("0 5 0 7 0 1 3 0 0 0 6 0 1 1")
    assert from_official_string(s) == released


def test_official_single_path_roundtrip() -> None:
    arch = random_arch(10, k=1, seed=3)
    s = to_official_string(arch)
    assert len(s.split()) == official_string_length(10, multi_path=False) == 55
    assert from_official_string(s, num_layers=10, k=1) == arch
    with pytest.raises(ArchitectureError, match="multi_path"):
        to_official_string(EXPECTED, multi_path=False)


def test_official_relative_input_semantics() -> None:
    # 3 layers, multi_path: "r op skips..." per layer; r = 0 is the previous layer.
    arch = from_official_string("0 4  0 1 0  1 2 1 0", num_layers=3, k=5)
    assert [spec.input for spec in arch.layers] == [STEM, 0, 0]
    assert [spec.op for spec in arch.layers] == ["avg_pool", "conv3", "conv5"]
    assert arch.layers[2].skips == (0,)
    # out-of-range relative ids fall back to the previous layer (official behaviour)
    fallback = from_official_string("7 4  9 1 0  2 2 1 0", num_layers=3, k=5)
    assert [spec.input for spec in fallback.layers] == [STEM, 0, 1]
    # with k=2, layer 2 can reach back 2 layers: r=1 -> layer 0, r=2 -> fallback to layer 1
    assert from_official_string("0 4 0 1 0 1 2 1 0", 3, k=2).layers[2].input == 0


# -------------------------------------------------------------------- validation


def _layers(*specs: tuple) -> tuple[LayerSpec, ...]:
    return tuple(LayerSpec(*spec) for spec in specs)


def test_input_out_of_range() -> None:
    layers = list(EXPECTED.layers[:6])
    layers[5] = LayerSpec(9, "conv3", ())
    with pytest.raises(ArchitectureError) as info:
        Architecture(tuple(layers))
    assert str(info.value) == (
        "layer 5: input 9 is not one of the previous 5 layers (0..4 allowed: 0, 1, 2, 3, 4)"
    )
    layers[5] = LayerSpec(0, "conv3", ())
    with pytest.raises(
        ArchitectureError, match=r"layer 5: input 0 .* previous 4 layers \(1\.\.4 allowed"
    ):
        Architecture(tuple(layers), k=4)  # only 1..4 with k = 4
    with pytest.raises(ArchitectureError, match="layer 0: input must be the stem"):
        Architecture(_layers((0, "conv1", ())))
    with pytest.raises(ArchitectureError, match="layer 1: input stem"):
        Architecture(_layers((STEM, "conv1", ()), (STEM, "conv1", ())))


def test_unknown_op() -> None:
    with pytest.raises(ArchitectureError, match=r"layer 3: unknown op 'conv9' \(valid: conv1,"):
        Architecture(_layers((STEM, "conv1"), (0, "conv1"), (1, "conv1"), (2, "conv9")))


def test_skip_to_later_layer() -> None:
    with pytest.raises(ArchitectureError, match="layer 2: skip to layer 4 is not an earlier layer"):
        Architecture(_layers((STEM, "conv1"), (0, "conv1"), (1, "conv1", (0, 4))))
    with pytest.raises(ArchitectureError, match="layer 2: skip to layer 2 is not an earlier"):
        Architecture(_layers((STEM, "conv1"), (0, "conv1"), (1, "conv1", (2,))))
    with pytest.raises(ArchitectureError, match="layer 2: duplicate skips"):
        Architecture(_layers((STEM, "conv1"), (0, "conv1"), (1, "conv1", (0, 0))))


def test_wrong_layer_count(released: Architecture) -> None:
    with pytest.raises(ArchitectureError, match="24 layers but 12 were expected"):
        released.validate(num_layers=12)
    assert released.validate(num_layers=24, k=5) is released
    with pytest.raises(
        ArchitectureError,
        match=r"layer 2: input 0 is not one of the previous 1 layers \(1\.\.1 allowed: 1\)",
    ):
        released.validate(k=1)
    data = released.to_dict()
    data["num_layers"] = 23
    with pytest.raises(ArchitectureError, match="num_layers is 23 but 24 layers"):
        Architecture.from_dict(data)
    with pytest.raises(ArchitectureError, match="324 numbers; 12 layers need 90"):
        from_official_string(OFFICIAL_TXT.read_text(), num_layers=12)


def test_bad_yaml_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("layers: [ {op: conv1, input: stem\n")
    with pytest.raises(ArchitectureError, match=r"bad\.yaml: invalid YAML"):
        Architecture.load(bad)
    with pytest.raises(ArchitectureError, match="missing.yaml: cannot read"):
        Architecture.load(tmp_path / "missing.yaml")
    wrong_op = tmp_path / "wrong_op.yaml"
    wrong_op.write_text(
        "layers:\n  - {op: conv1, input: stem, skips: []}\n  - {op: conv9, input: 0, skips: []}\n"
    )
    with pytest.raises(ArchitectureError, match=r"wrong_op\.yaml: layer 1: unknown op 'conv9'"):
        Architecture.load(wrong_op)
    no_layers = tmp_path / "no_layers.yaml"
    no_layers.write_text("name: x\n")
    with pytest.raises(ArchitectureError, match="no_layers.yaml: missing 'layers'"):
        Architecture.load(no_layers)
    extra = tmp_path / "extra.yaml"
    extra.write_text("layers:\n  - {op: conv1, input: stem, skip: [0]}\n")
    with pytest.raises(ArchitectureError, match=r"layer 0: unknown fields \['skip'\]"):
        Architecture.load(extra)
    nni = tmp_path / "nni.yaml"
    nni.write_text(NNI_JSON.read_text())
    with pytest.raises(ArchitectureError, match="NNI JSON"):
        Architecture.load(nni)


def test_nni_errors(released: Architecture) -> None:
    obj = to_nni_json(released)
    missing = dict(obj)
    del missing["InputChoice20"]
    with pytest.raises(ArchitectureError, match=r"missing key InputChoice20 \(layer 7 input\)"):
        from_nni_json(missing)
    short = dict(obj, InputChoice19=[False, True])
    with pytest.raises(ArchitectureError, match=r"InputChoice19 \(layer 6 skip\): expected 6"):
        from_nni_json(short)
    two_ops = dict(obj, LayerChoice3=[True, False, False, False, False, False, False, True])
    with pytest.raises(ArchitectureError, match=r"LayerChoice3 \(layer 1 op\): exactly one op"):
        from_nni_json(two_ops)
    no_input = dict(obj, InputChoice20=[False] * 5)
    with pytest.raises(ArchitectureError, match=r"InputChoice20 \(layer 7 input\): exactly one"):
        from_nni_json(no_input)
    with pytest.raises(ArchitectureError, match="unexpected keys"):
        from_nni_json(obj, num_layers=12)
    with pytest.raises(
        ArchitectureError, match=r"InputChoice5 \(layer 2 input\): expected 1 values, got 2.*k=1"
    ):
        from_nni_json(obj, k=1)
    with pytest.raises(ArchitectureError, match=r"LayerChoice1 \(layer 0 op\): unknown op"):
        from_nni_json(dict(obj, LayerChoice1="conv9"))


def test_nni_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "arch.json"
    bad.write_text("{not json")
    with pytest.raises(ArchitectureError, match=r"arch\.json: invalid JSON"):
        from_nni_json(bad)
    obj = json.loads(NNI_JSON.read_text())
    obj["LayerChoice6"] = [False] * 8
    bad.write_text(json.dumps(obj))
    with pytest.raises(ArchitectureError, match=r"arch\.json: LayerChoice6 \(layer 2 op\)"):
        Architecture.load_any(bad)


def test_official_errors() -> None:
    values = to_official_string(EXPECTED).split()
    values[3] = "9"  # layer 1's op id
    with pytest.raises(ArchitectureError, match="layer 1: unknown op id 9"):
        from_official_string(" ".join(values))
    values = to_official_string(EXPECTED).split()
    values[4] = "2"  # layer 1's skip flag
    with pytest.raises(ArchitectureError, match="layer 1: skip flags must be 0/1"):
        from_official_string(" ".join(values))
    with pytest.raises(ArchitectureError, match="not an integer"):
        from_official_string("0 x")


# ------------------------------------------------------------------ ops and misc


def test_op_aliases() -> None:
    for alias, op in [
        ("maxpool", "max_pool"),
        ("max-pool", "max_pool"),
        ("MaxPool", "max_pool"),
        ("avgpool", "avg_pool"),
        ("gru", "rnn"),
        ("bigru", "rnn"),
        ("biGRU", "rnn"),
        ("attn", "attention"),
        ("self_attention", "attention"),
        ("conv_1", "conv1"),
        ("conv7x7", "conv7"),
        (5, "max_pool"),
        ("7", "attention"),
    ]:
        assert canonical_op(alias) == op
    assert LayerSpec(STEM, "biGRU").op == "rnn"
    assert LayerSpec(0, "conv3", [3, 1]).skips == (1, 3)
    with pytest.raises(ArchitectureError):
        canonical_op("conv9")
    data = {"layers": [{"op": "maxpool", "input": "stem"}, {"op": "attn", "input": 0}]}
    arch = Architecture.from_dict(data)
    assert [spec.op for spec in arch.layers] == ["max_pool", "attention"]
    assert [spec.op_index for spec in arch.layers] == [5, 7]
    assert OP_NAMES.index("attention") == 7


def test_random_architectures_are_valid_and_roundtrip() -> None:
    for seed in range(20):
        for k in (1, 5):
            arch = random_arch(24, k=k, seed=seed)
            assert arch.validate(num_layers=24, k=k) is arch
            assert from_official_string(to_official_string(arch), k=k) == arch
            assert from_nni_json(to_nni_json(arch), k=k) == arch
    assert random_arch(24, seed=7) == random_arch(24, seed=7)
    assert random_arch(24, seed=7) != random_arch(24, seed=8)
    assert random_arch(24, seed=0, skip_prob=0.0).num_skips() == 0
    assert random_arch(24, seed=0, skip_prob=1.0).num_skips() == 276
    only = random_arch(12, seed=1, ops=("conv3", "maxpool"))
    assert set(op_counts(only)[op] > 0 for op in ("conv3", "max_pool")) == {True}
    assert sum(op_counts(only).values()) == 12
    rates = [random_arch(24, seed=s).skip_rate() for s in range(30)]
    assert 0.45 < sum(rates) / len(rates) < 0.55


def test_space_size() -> None:
    assert space_size_log10(24, 5, 8) == pytest.approx(119.4, abs=0.05)
    assert space_size_log10(24, 1, 8) == pytest.approx(104.8, abs=0.05)
    # tiny case by hand: 2 layers, k=5 -> 8 * (8 * 1 * 2) = 128
    assert 10 ** space_size_log10(2, 5, 8) == pytest.approx(128)
    # 4 layers, k=2 -> 8 * (8*1*2) * (8*2*4) * (8*2*8)
    assert 10 ** space_size_log10(4, 2, 8) == pytest.approx(8 * 16 * 64 * 128)
