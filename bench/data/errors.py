"""The one exception the data layer raises."""

from __future__ import annotations


class DataError(Exception):
    """A corpus could not be fetched, built or read.

    The message is always one line a person can act on: which file or package is missing or wrong, and what
    to install or which folder to pass instead. Callers print ``str(err)``; the builders print nothing
    themselves, so the line appears once.
    """
