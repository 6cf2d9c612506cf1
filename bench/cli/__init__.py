"""The command line: ``litebench <command> ...`` or ``python -m bench <command> ...`` (the same commands).

Every parser and argument check lives in this package; each command's code is imported only when that
command runs (``python -m bench models`` loads neither sacreBLEU, sentencepiece nor fvcore). Bad input ends
with one line on stderr and exit code 2; an internal failure, or cluster jobs that failed, with one line and
exit code 1 (``LITEBENCH_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

from bench.cli.parser import COMMANDS, build_parser, join_negative_values
from bench.errors import BenchError
from bench.infra.cluster import JobsFailed

EXIT_USAGE = 2

__all__ = ["COMMANDS", "EXIT_USAGE", "build_parser", "main"]


def _prog() -> str:
    return "litebench" if Path(sys.argv[0]).name == "litebench" else "python -m bench"


def main(argv: list[str] | None = None) -> int:
    argv = join_negative_values(list(sys.argv[1:] if argv is None else argv))
    from models import ConfigError  # the model registry: loaded when a command runs, not by import bench.cli

    try:
        args = build_parser(_prog()).parse_args(argv)
        module, function = COMMANDS[args.command].target.split(":")
        return getattr(importlib.import_module(f"bench.cli.{module}"), function)(args)
    except (BenchError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except JobsFailed as exc:  # cluster jobs failed: named with their logs; what the others wrote is kept
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # a message says where it stopped (an interrupted training: its checkpoint)
        print(str(exc) if str(exc) else "error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an internal failure: still one line, the traceback on request
        if os.environ.get("LITEBENCH_DEBUG"):
            raise
        print(
            f"error: internal failure: {type(exc).__name__}: {exc} (LITEBENCH_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1
