"""Tests for the alphaGAN genotype: edge layout, YAML round trip, validation, shipped files."""

from __future__ import annotations

from pathlib import Path

import pytest

from search_spaces.gan import (
    ALPHA_SHAPES,
    EDGE_NAMES,
    NORMAL_OPS,
    UP_OPS,
    Genotype,
    GenotypeError,
    load_genotype,
    shipped_genotypes,
    space_size,
)

# Independent transcription of the reference's models/genotypes.py (yuesongtian/AlphaGAN):
# per cell (normal N0 N1 N2, up UP0 UP1), then skip_2 and skip_3 (x4, x2).
REFERENCE = {
    "alphagan_l": (
        [
            ("conv_5x5", "conv_5x5", "sep_conv_5x5"),
            ("conv_5x5", "conv_1x1", "conv_3x3"),
            ("conv_1x1", "conv_5x5", "sep_conv_3x3"),
        ],
        [("deconv", "bilinear"), ("deconv", "bilinear"), ("nearest", "bilinear")],
        ("nearest",),
        ("bilinear", "nearest"),
    ),
    "alphagan_s": (
        [
            ("conv_1x1", "sep_conv_3x3", "conv_1x1"),
            ("sep_conv_5x5", "sep_conv_3x3", "sep_conv_3x3"),
            ("sep_conv_5x5", "sep_conv_3x3", "sep_conv_3x3"),
        ],
        [("bilinear", "deconv"), ("deconv", "deconv"), ("deconv", "nearest")],
        ("nearest",),
        ("deconv", "bilinear"),
    ),
}

VALID = """\
bottom_width: 4
cells:
  - {normal: [conv_5x5, conv_5x5, sep_conv_5x5], up: [deconv, bilinear]}
  - normal: [conv_5x5, conv_1x1, conv_3x3]
    up: [deconv, bilinear]
  - {normal: [conv_1x1, conv_5x5, sep_conv_3x3], up: [nearest, bilinear]}
skips:
  cell2: [nearest]
  cell3: [bilinear, nearest]
"""


def write(tmp_path: Path, text: str, name: str = "g.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_edge_layout():
    assert len(EDGE_NAMES) == 18 == len(set(EDGE_NAMES))
    assert EDGE_NAMES[:5] == (
        "cell1.up0",
        "cell1.up1",
        "cell1.normal0",
        "cell1.normal1",
        "cell1.normal2",
    )
    assert EDGE_NAMES[-3:] == ("cell3.normal2", "cell3.skip0", "cell3.skip1")
    assert sum(r * c for r, c in ALPHA_SHAPES.values()) == 81
    assert sum(r for r, _ in ALPHA_SHAPES.values()) == len(EDGE_NAMES)
    assert space_size() == 1944**3 * 27 and f"{space_size():.2e}" == "1.98e+11"


@pytest.mark.parametrize("name", ["alphagan_l", "alphagan_s"])
def test_shipped_genotypes_match_the_reference(name):
    assert set(shipped_genotypes()) == {"alphagan_l", "alphagan_s"}
    g = load_genotype(name)
    normal, up, skip2, skip3 = REFERENCE[name]
    assert [g.normal(c) for c in (1, 2, 3)] == normal
    assert [g.up(c) for c in (1, 2, 3)] == up
    assert g.skips(2) == skip2 and g.skips(3) == skip3 and g.skips(1) == ()
    assert g.bottom_width == 4 and g.image_size() == 32
    assert load_genotype(shipped_genotypes()[name]) == g  # by path too


def test_yaml_round_trip(tmp_path):
    import random

    rng = random.Random(0)
    for i in range(5):
        edges = {e: rng.choice(NORMAL_OPS if ".normal" in e else UP_OPS) for e in EDGE_NAMES}
        g = Genotype(edges, bottom_width=rng.choice([4, 6]))
        path = g.save(tmp_path / f"sub/g{i}.yaml", comment="searched\nby a test")
        assert path.read_text().startswith("# searched\n# by a test\n")
        assert Genotype.load(path) == g
    parsed = Genotype.load(write(tmp_path, VALID))
    assert parsed == load_genotype("alphagan_l")  # block and flow style read alike


def test_constructor_orders_and_checks_edges():
    g = load_genotype("alphagan_l")
    shuffled = dict(reversed(list(g.edges.items())))
    assert list(Genotype(shuffled, 4).edges) == list(EDGE_NAMES)
    with pytest.raises(GenotypeError, match="edge cell3.skip1: missing"):
        Genotype({k: v for k, v in g.edges.items() if k != "cell3.skip1"}, 4)
    with pytest.raises(GenotypeError, match="unknown edge 'cell4.up0'"):
        Genotype({**g.edges, "cell4.up0": "deconv"}, 4)
    with pytest.raises(
        GenotypeError,
        match=r"edge cell1.up0: unknown op 'conv_1x1' \(ops: deconv, nearest, bilinear\)",
    ):
        Genotype({**g.edges, "cell1.up0": "conv_1x1"}, 4)
    with pytest.raises(GenotypeError, match="bottom_width must be a positive integer"):
        Genotype(g.edges, 0)


BAD = [
    # (replace this, with that, expected message)
    (
        "conv_5x5, conv_1x1, conv_3x3",
        "conv_5x5, conv_9x9, conv_3x3",
        r"g\.yaml line 4: edge cell2\.normal1: unknown op 'conv_9x9' \(ops: conv_1x1, conv_3x3, "
        r"conv_5x5, sep_conv_3x3, sep_conv_5x5, sep_conv_7x7\)",
    ),
    (
        "up: [deconv, bilinear]\n  - {",
        "up: [deconv, sep_conv_3x3]\n  - {",
        r"line 5: edge cell2\.up1: unknown op 'sep_conv_3x3' \(ops: deconv, nearest, bilinear\)",
    ),
    (
        "conv_5x5, conv_1x1, conv_3x3",
        "conv_5x5, conv_1x1",
        r"line 4: edge cell2\.normal2: missing \(cell2\.normal lists 2 ops, the space has 3\)",
    ),
    (
        "[bilinear, nearest]",
        "[bilinear, nearest, deconv]",
        r"line 9: edge cell3\.skip2: extra edge \(cell3\.skip lists 3 ops, the space has 2\)",
    ),
    ("cell2: [nearest]", "cell2: [nearest, nearest]", r"line 8: edge cell2\.skip1: extra edge"),
    ("  cell2: [nearest]\n", "", r"skips: expected keys cell2, cell3, got \['cell3'\]"),
    (
        "  - {normal: [conv_1x1, conv_5x5, sep_conv_3x3], up: [nearest, bilinear]}\n",
        "",
        r"line 2: cells: 2 cells listed, the space has 3",
    ),
    (
        "bottom_width: 4",
        "bottom_width: four",
        r"line 1: bottom_width must be a positive integer, got 'four'",
    ),
    ("bottom_width: 4", "bottom_width: 4\ncolour: red", r"line 2: unknown key 'colour'"),
    ("bottom_width: 4\n", "", r"missing key 'bottom_width'"),
    (
        "up: [nearest, bilinear]}",
        "up: [nearest, bilinear], down: [x]}",
        r"line 6: cells\[2\] \(cell3\): expected keys normal and up",
    ),
    ("cell2: [nearest]", "cell2: nearest", r"cell2\.skip: expected a list of 1 ops, got 'nearest'"),
    ("cell2: [nearest]", "cell2: [nearest", r"line \d+: not valid YAML"),
]


@pytest.mark.parametrize(("old", "new", "message"), BAD)
def test_bad_files_name_file_line_and_edge(tmp_path, old, new, message):
    assert old in VALID
    path = write(tmp_path, VALID.replace(old, new, 1))
    with pytest.raises(GenotypeError, match=message) as e:
        Genotype.load(path)
    assert str(e.value).startswith(f"genotype {path}")


def test_other_bottom_width_is_an_error_unless_retargeted(tmp_path):
    path = write(tmp_path, VALID)
    with pytest.raises(
        GenotypeError,
        match=r"bottom_width 4 \(32x32 images\) but this network needs bottom_width 6",
    ):
        Genotype.load(path, bottom_width=6)
    with pytest.raises(GenotypeError, match="retarget"):
        load_genotype("alphagan_s", bottom_width=6)
    g = load_genotype("alphagan_s").retarget(6)
    g.check(6)
    assert g.image_size() == 48 and g.edges == load_genotype("alphagan_s").edges


def test_missing_files():
    with pytest.raises(
        GenotypeError,
        match=r"no such file and not a shipped genotype \(shipped: alphagan_l, alphagan_s\)",
    ):
        load_genotype("alphagan_m")
    with pytest.raises(GenotypeError, match="cannot read"):
        Genotype.load("/nonexistent/g.yaml")
    with pytest.raises(GenotypeError, match="expected a mapping"):
        Genotype.from_dict([1, 2], source="x")
