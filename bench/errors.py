"""The one exception type the command line turns into a single clear line and exit code 2."""


class BenchError(Exception):
    """Bad input or an impossible request; the message is one line that says what to do."""
