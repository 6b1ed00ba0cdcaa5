"""What every CLI command shares: exit codes, the one-line-error parser, argument types.

Example:
    >>> parse = int_at_least(1)
    >>> parse("0x10")
    16
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NO_PLAN = 3

#: The type of the object ``register(sub)`` receives.
if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    SubParsers = argparse._SubParsersAction


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are :class:`UsageError`: one line, exit status 2."""

    def error(self, message: str) -> Any:  # argparse's own exits print usage; keep it one line
        raise UsageError(message)


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer (decimal or 0x...) no smaller than ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}: {text!r}")
        return value

    return parse


def int_or_text(text: str) -> str | int:
    """``text`` as an integer when it is one (decimal or 0x...), else unchanged."""
    try:
        return int(text, 0)
    except ValueError:
        return text


def print_json(data: object) -> None:
    """Print ``data`` as indented JSON (the ``--json`` output of every command)."""
    print(json.dumps(data, indent=2))


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """Add the ``--json`` flag every reporting command has."""
    parser.add_argument("--json", action="store_true", help="machine-readable output")
