"""Command line: ``python -m bench <command> ...``. Bad input ends with one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from models import ConfigError, get_entry, list_models

from .errors import BenchError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + traceback
        raise BenchError(f"{self.prog}: {message}")


def _print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


# ---------------------------------------------------------------------------------------------- models
def cmd_models(args: argparse.Namespace) -> int:
    rows = []
    for name in list_models(args.pattern):
        e = get_entry(name)
        rows.append({"name": name, "family": e.family, "tasks": list(e.tasks), "description": e.description})
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            print(f"{r['name']:<22} {r['family']:<22} {','.join(r['tasks']):<6} {r['description']}")
    return 0


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "models": (cmd_models, "list the registered architectures"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m bench", description="litebench: architectures at matched MAC budgets")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("models", help=COMMANDS["models"][1])
    p.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. '*lite*'")
    p.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command][0](args)
    except (BenchError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
