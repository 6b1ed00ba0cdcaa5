"""``python -m devalloc.service serve|service ...``: the service's commands alone.

Example:
    $ python -m devalloc.service serve --socket /tmp/devalloc.sock
    $ python -m devalloc.service service status --socket /tmp/devalloc.sock
    $ python -m devalloc.service --debug service status

The command runs through :func:`devalloc.cli.main`, so parsing, ``--debug``, the one-line errors
and the exit statuses are the ``devalloc`` command's own; this module only keeps the other
commands out.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Final, cast

from .. import cli
from ..commands import serve, service
from ..commands._common import EXIT_OK, EXIT_USAGE, Parser, SubParsers, one_line

__all__ = ["COMMANDS", "main"]

#: The commands this entry runs (the others are ``devalloc``'s).
COMMANDS: Final = ("serve", "service")
_PROG: Final = "python -m devalloc.service"
_HELP: Final = ("-h", "--help")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``serve`` or ``service ...`` as ``devalloc`` does; refuse the other commands."""
    args = list(sys.argv[1:] if argv is None else argv)
    # The CLI's options before the command are flags (--debug, --json), so the command is the
    # first argument that is not an option. Anything that is not a string goes to cli.main,
    # whose argument check refuses it.
    command = next((a for a in args if not isinstance(a, str) or not a.startswith("-")), None)
    if command in COMMANDS or not isinstance(command, str | None):
        return cli.main(args)
    if command is None and any(a in _HELP for a in args):
        _parser().print_help()
        return EXIT_OK
    what = "no command" if command is None else f"not {one_line(command)!r}"
    print(
        f"devalloc: error: {_PROG} runs one of: {', '.join(COMMANDS)} ({what}); the other"
        " commands are devalloc's",
        file=sys.stderr,
    )
    return EXIT_USAGE


def _parser() -> Parser:
    """A parser of the commands this entry runs (for its help)."""
    parser = Parser(prog=_PROG, description="The devalloc service's commands.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = cast(
        SubParsers,
        parser.add_subparsers(dest="command", metavar="{serve,service}", parser_class=Parser),
    )
    serve.register(sub)
    service.register(sub)
    return parser


if __name__ == "__main__":
    sys.exit(main())
