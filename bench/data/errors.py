"""The one exception the data layer raises."""

from __future__ import annotations

from bench.errors import BenchError


class DataError(BenchError):
    """A corpus could not be fetched, built or read.

    The message is always one line a person can act on: which file or package is missing or wrong, and what
    to install or which folder to pass instead. The builders print nothing themselves; the command line
    catches it (as a :class:`BenchError`) and prints that line once, with exit code 2.
    """
