"""What every CLI command shares: exit codes, the one-line-error parser, argument types.

Example:
    >>> parse = int_at_least(1)
    >>> parse("0x10")
    16
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .._toml import path_kind
from ..constraints import Constraints
from ..errors import DevallocError, UsageError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NO_PLAN = 3

#: The type of the object ``register(sub)`` receives.
if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    SubParsers = argparse._SubParsersAction


#: Arguments that start with "-" but are values, not options: negative numbers (argparse's own
#: rule) and sizes such as "-5x3", so that ``--size -5x3`` and ``layout NV12 -5x3`` reach the size
#: parser, which says what is wrong, instead of argparse's "expected one argument".
_NEGATIVE_VALUE = re.compile(r"^-\d+$|^-\d*\.\d+$|^-\d+x")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are :class:`UsageError`: one line, exit status 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # argparse's (private, but stable since 3.2) test for "a value that looks negative";
        # the CLI has no option that looks like a number, so such arguments are values.
        self._negative_number_matcher = _NEGATIVE_VALUE

    def error(self, message: str) -> Any:  # argparse's own exits print usage; keep it one line
        raise UsageError(message)


def check_argv(argv: Sequence[object]) -> None:
    """Refuse what a real command line cannot hold: a non-string, a NUL, or a lone surrogate
    that is not an undecodable byte (``os.fsdecode`` turns those into U+DC80..U+DCFF, which
    :func:`os.fsencode` turns back; anything else would fail in the first system call).

    Raises:
        UsageError: naming the argument.
    """
    for i, arg in enumerate(argv, start=1):
        if not isinstance(arg, str):
            raise UsageError(f"argument {i} is not a string: {type(arg).__name__}")
        if "\0" in arg:
            raise UsageError(f"argument {i} {arg[:60]!r} holds a NUL character")
        try:
            os.fsencode(arg)
        except UnicodeEncodeError:
            raise UsageError(
                f"argument {i} {arg[:60]!r} is not text this system can pass on"
            ) from None


def one_line(text: str) -> str:
    """``text`` with every character that is not printable (line and page breaks, control
    characters, lone surrogates from undecodable arguments) escaped as Python would write it,
    so that an error that quotes a caller's argument stays one line on stderr."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def utf8_text(text: str) -> str:
    """An argparse type: text that is valid UTF-8 (what the kernel is given as a name).

    An undecodable byte on the command line (``--name $'\\xff'``) reaches Python as a lone
    surrogate; it is refused here, with the argument named, rather than failing deep inside.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(f"not UTF-8 text: {text!r}") from None
    return text


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


def directory(text: str) -> str:
    """An argparse type: the path of an existing directory (e.g. where procfs is mounted)."""
    try:
        kind = path_kind(text, "directory")
    except DevallocError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if kind != "dir":
        raise argparse.ArgumentTypeError(f"not a directory: {text[:60]!r}")
    return text


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


#: A ``-d`` value that starts with this is GStreamer caps, not a device file or live device.
CAPS_PREFIX = "caps:"


def device_usages(specs: Sequence[str] | None) -> list[str | Constraints]:
    """``-d`` values as usages: ``caps:CAPS`` is the device usage those GStreamer caps name
    (device ``capsN``, usage ``caps``, N counting the caps arguments from 1; see
    :func:`devalloc.gst.caps.constraints_from_caps`), anything else stays ``DEVICE[:USAGE]``
    text (a file whose name starts with ``caps:`` is given as ``./caps:...``).

    Raises:
        UsageError: caps that name no video format devalloc knows, or cannot be read.
    """
    from ..gst.caps import constraints_from_caps  # the caps reader: pure Python, no GStreamer

    usages: list[str | Constraints] = []
    count = 0
    for spec in specs or ():
        if spec.startswith(CAPS_PREFIX):
            count += 1
            caps = spec[len(CAPS_PREFIX) :]
            if not caps.strip():
                raise UsageError(
                    f"-d {spec!r}: caps:CAPS needs caps, e.g. caps:video/x-raw,format=NV12"
                )
            usages.append(constraints_from_caps(caps, device=f"caps{count}"))
        else:
            usages.append(spec)
    return usages
