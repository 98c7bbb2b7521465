"""``python -m experiments genotype EXPERIMENT FILE``: a genotype checked against an experiment
and drawn; every bad genotype is one error line naming the file (and line and edge), exit 2,
nothing written."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from experiments.__main__ import cli
from search_spaces.gan import load_genotype
from search_spaces.gan.genotype import shipped_genotypes
from tests.e2e.conftest import cli_env, python

SHIPPED = Path(shipped_genotypes()["alphagan_l"]).read_text()


def _errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def test_a_shipped_genotype_is_checked_and_drawn(tmp_path, capsys) -> None:
    assert cli(["genotype", "alphagan_search_cifar10", "alphagan_l", f"output_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "cell1.normal0  conv_5x5" in out and "cell3.skip1    nearest" in out
    (run,) = (tmp_path / "alphagan_search_cifar10").iterdir()
    assert run.name.endswith("-genotype")
    assert load_genotype(run / "genotype.yaml") == load_genotype("alphagan_l")
    assert (run / "genotype.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("text", "experiment", "words"),
    [
        (
            SHIPPED.replace("sep_conv_5x5", "conv_9x9"),
            "alphagan_search_cifar10",
            ["bad.yaml", "line 5", "cell1.normal2", "conv_9x9"],
        ),
        (
            SHIPPED.replace("[nearest, bilinear]}", "[nearest]}"),
            "alphagan_search_cifar10",
            ["bad.yaml", "cell3", "up"],
        ),
        (SHIPPED, "alphagan_search_stl10", ["bad.yaml", "bottom_width 4", "6", "retarget(6)"]),
    ],
    ids=["unknown-op", "missing-edge", "another-bottom-width"],
)
def test_a_bad_genotype_is_one_error_and_writes_nothing(
    text, experiment, words, tmp_path, capsys
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    out_dir = tmp_path / "out"
    assert cli(["genotype", experiment, str(bad), f"output_dir={out_dir}"]) == 2
    (line,) = _errors(capsys)
    for word in words:
        assert word in line, line
    assert not out_dir.exists()
    assert bad.read_text() == text


def test_no_genotype_and_a_missing_file_are_errors(tmp_path, capsys) -> None:
    assert cli(["genotype", "alphagan_search_cifar10", f"output_dir={tmp_path}"]) == 2
    (line,) = _errors(capsys)
    assert "alphagan_l" in line and "alphagan_s" in line, line
    assert cli(["genotype", "alphagan_search_cifar10", "nope.yaml", f"output_dir={tmp_path}"]) == 2
    (line,) = _errors(capsys)
    assert "nope.yaml" in line, line
    assert not any(tmp_path.iterdir())


def test_subprocess_bad_genotype_has_no_traceback(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SHIPPED.replace("conv_1x1, conv_3x3", "conv_1x1, identity"))
    proc = subprocess.run(
        [
            python(),
            "-m",
            "experiments",
            "genotype",
            "alphagan_search_cifar10",
            str(bad),
            f"output_dir={tmp_path / 'out'}",
        ],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "identity" in errors[0] and "cell2.normal2" in errors[0]
    assert "Traceback" not in proc.stderr
