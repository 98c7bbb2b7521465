"""The one exception the data layer raises for problems a user can fix."""

from __future__ import annotations

from pathlib import Path


class DataError(Exception):
    """A problem with the data on disk or the data settings, explained for the user.

    The message says what is wrong (naming the file, and the line where there is one) and how
    to fix it. The command line prints it as a single line without a traceback, so everything
    the user needs goes into the message.
    """


def check_not_a_file(root: str | Path, holds: str, key: str = "data.root") -> None:
    """A DataError when ``root`` is a file: ``key`` names a folder (the one that ``holds``)."""
    path = Path(root).expanduser()
    if path.exists() and not path.is_dir():
        raise DataError(
            f"{key}={root}: this is a file, not a folder; set {key} to the folder that holds "
            f"{holds}"
        )
