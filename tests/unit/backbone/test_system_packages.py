"""``.ci/system-packages``: the system libraries of system-packages.txt, checked by the Makefile
(a missing one is named with its apt package) and installed by ``.ci/run``."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / ".ci" / "system-packages"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_a_missing_package_is_named_with_its_apt_package(tmp_path):
    listing = tmp_path / "packages.txt"
    listing.write_text(
        "# comment line\n"
        "nosuch-lib-1  false   # a system that needs it\n"
        "bash          command -v bash\n"
        "\n"
        "nosuch-tool   test -e /nonexistent/path\n"
    )
    proc = _run("check", str(listing))
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "error: the system package 'nosuch-lib-1' is missing "
        "(Debian/Ubuntu: sudo apt-get install nosuch-lib-1)",
        "error: the system package 'nosuch-tool' is missing "
        "(Debian/Ubuntu: sudo apt-get install nosuch-tool)",
    ]
    assert _run("list", str(listing)).stdout.split() == ["nosuch-lib-1", "bash", "nosuch-tool"]


def test_present_packages_pass_and_bad_lines_are_errors(tmp_path):
    ok = tmp_path / "ok.txt"
    ok.write_text("bash  command -v bash\n")
    assert _run("check", str(ok)).returncode == 0
    bad = tmp_path / "bad.txt"
    bad.write_text("libfoo\n")
    proc = _run("check", str(bad))
    assert proc.returncode == 2 and "has no check command" in proc.stderr
    assert _run("check", str(tmp_path / "missing.txt")).returncode == 2


def test_the_projects_list_is_satisfied_where_the_tests_run():
    """CI installs the list before `make test`; here every package must be present."""
    proc = _run("check")
    assert proc.returncode == 0, proc.stderr
    assert (REPO / "system-packages.txt").is_file()
    assert "system-packages install" in (REPO / ".ci" / "run").read_text()
    assert "system-packages check" in (REPO / "Makefile").read_text()
