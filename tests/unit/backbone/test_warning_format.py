"""The entry point prints the suite's own warnings as one ``warning: ...`` line (as it prints
errors), and leaves the libraries' warnings in Python's format with their file and line."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import experiments.__main__ as entry

ROOT = Path(entry.__file__).resolve().parent.parent


def _default(message, category, filename, lineno, line=None):
    return f"DEFAULT {filename}:{lineno}: {category.__name__}: {message}\n"


def test_suite_warnings_are_one_line_and_library_warnings_keep_their_place() -> None:
    fmt = entry._suite_warning_format(_default)
    ours = ROOT / "datamodules" / "face" / "folder.py"
    message = "sequence M3_e01: audio 4.283 s and vertices\n  4.300 s; both cut"
    assert fmt(message, UserWarning, str(ours), 180) == (
        "warning: sequence M3_e01: audio 4.283 s and vertices 4.300 s; both cut\n"
    )
    library = Path(warnings.__file__)
    assert fmt("x", UserWarning, str(library), 3).startswith(f"DEFAULT {library}:3:")
    # not a UserWarning (a deprecation of ours), or a test file: Python's format
    assert fmt("x", DeprecationWarning, str(ours), 3).startswith("DEFAULT")
    assert fmt("x", UserWarning, str(ROOT / "tests" / "conftest.py"), 3).startswith("DEFAULT")
    assert fmt("x", UserWarning, "<string>", 1).startswith("DEFAULT")


def test_the_entry_point_installs_it_once() -> None:
    code = (
        "import warnings, experiments.__main__ as m\n"
        "m._show_suite_warnings(); first = warnings.formatwarning\n"
        "m._show_suite_warnings(); assert warnings.formatwarning is first\n"
        "from datamodules.face import folder\n"
        "warnings.warn_explicit('cut to 128 frames', UserWarning, folder.__file__, 1)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "warning: cut to 128 frames\n"
