"""The one exception the data layer raises for problems a user can fix."""

from __future__ import annotations


class DataError(Exception):
    """A problem with the data on disk or the data settings, explained for the user.

    The message says what is wrong (naming the file, and the line where there is one) and how
    to fix it. The command line prints it as a single line without a traceback, so everything
    the user needs goes into the message.
    """
