"""The ``wsmux`` command line: ``tap``, ``demo``, ``record``, ``replay`` and ``bench``."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the ``wsmux`` command line.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 on success, 1 on failure, 2 for a usage error.
    """
    from .bench import add_parser as add_bench_parser
    from .cli import add_parsers

    parser = argparse.ArgumentParser(
        prog="wsmux",
        description="One websocket connection, any number of independent filtered streams.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_parsers(sub)
    add_bench_parser(sub)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
