"""``python -m devalloc.service serve|service ...``: the service's commands without the full CLI.

Example:
    $ python -m devalloc.service serve --socket /tmp/devalloc.sock
    $ python -m devalloc.service service status --socket /tmp/devalloc.sock
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import cast

from ..commands import serve, service
from ..commands._common import EXIT_FAILURE, EXIT_USAGE, Parser, SubParsers, one_line
from ..errors import DevallocError, UsageError


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``serve`` or ``service status`` (the same code as ``devalloc serve``...)."""
    parser: argparse.ArgumentParser = Parser(prog="python -m devalloc.service")
    sub = cast(
        SubParsers, parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    )
    serve.register(sub)
    service.register(sub)
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        result: int = args.func(args)
        return result
    except UsageError as exc:
        print(f"devalloc: error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except (DevallocError, OSError) as exc:
        print(f"devalloc: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
