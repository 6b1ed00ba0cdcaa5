"""Where keys are in a TOML text, and reading TOML files, for error messages that name lines.

Example:
    >>> lines = key_lines('a = 1\\n[[devices]]\\nprofile = "x"\\n[[devices]]\\nusage = "y"\\n')
    >>> lines[("a",)], lines[("devices", 0, "profile")], lines[("devices", 1, "usage")]
    (1, 3, 5)

tomllib gives values, not positions; device files and pipeline files both want "file:line: unknown
key ..." errors, so this finds the line where each key path first appears: table headers (arrays
of tables numbered, ``[[devices]]`` -> ``("devices", 0)``), dotted keys, inline tables, and it
skips the continuation lines of multi-line arrays, inline tables and strings.

It is also the one edge where device and pipeline files come in, so the checks a hostile file
needs live here: :func:`parse_toml` refuses a text that is not a ``str``, is longer than
:data:`MAX_TEXT`, holds a lone surrogate, or nests deeper than :data:`MAX_NESTING` (tomllib
recurses once per level and would die with RecursionError), and turns every tomllib failure into
a :class:`~devalloc.errors.UsageError`; :func:`path_kind` and :func:`read_text_file` turn a path
of the wrong type, with a NUL, too long or looping into one, and read at most :data:`MAX_TEXT`
bytes of regular files only (never a FIFO or a device node).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tomllib
from pathlib import Path
from typing import Any, Final, Literal

from .errors import UsageError, error_from_oserror

#: Longest device or pipeline file accepted (bytes of a file, characters of a text); the bundled
#: ones are under 8 KiB.
MAX_TEXT: Final = 1 << 20
#: Deepest nesting of arrays and inline tables, and most ``.`` outside strings on one line
#: (dotted keys; tomllib's cost grows with the square of a key's parts), accepted.
MAX_NESTING: Final = 32
#: errnos saying that a path cannot name a file at all: the caller's mistake, not the system's.
_BAD_PATH_ERRNOS: Final = {errno.ENAMETOOLONG: "file name too long", errno.ELOOP: "symlink loop"}
_MISSING_ERRNOS: Final = (errno.ENOENT, errno.ENOTDIR)
#: Characters of a caller's value shown in an error message.
_SHOWN: Final = 60
#: A source name longer than this (PATH_MAX) is cut in messages.
_LONGEST_SOURCE: Final = 4096

#: A key's place in the document: ``("usages", "primary", "layout")``, ``("devices", 0, "usage")``.
KeyPath = tuple[str | int, ...]

_KEY_PART = r'(?:[A-Za-z0-9_-]+|"[^"\\]*(?:\\.[^"\\]*)*"|\'[^\']*\')'
_KEY_LINE = re.compile(rf"^\s*({_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*=")
_INLINE_KEY = re.compile(rf"[{{,]\s*({_KEY_PART})\s*=")
_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\[\]]+?)\s*\]\]?\s*(?:#.*)?$")
_PART = re.compile(_KEY_PART)


def split_key(text: str) -> tuple[str, ...]:
    """The parts of a (dotted, possibly quoted) TOML key."""
    parts = []
    for match in _PART.finditer(text):
        part = match.group(0)
        parts.append(part[1:-1] if part[:1] in "\"'" else part)
    return tuple(parts)


def _bracket_balance(text: str) -> tuple[int, str | None]:
    """Open brackets minus closed ones outside strings and comments, and an unclosed multi-line
    string delimiter if the text opens one."""
    depth = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "#":
            break
        if text.startswith('"""', i) or text.startswith("'''", i):
            delim = text[i : i + 3]
            end = text.find(delim, i + 3)
            if end < 0:
                return depth, delim
            i = end + 3
            continue
        if ch in "\"'":
            end = i + 1
            while end < len(text) and text[end] != ch:
                end += 2 if ch == '"' and text[end] == "\\" else 1
            i = end + 1
            continue
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        i += 1
    return depth, None


def key_lines(text: str) -> dict[KeyPath, int]:
    """Where each key path first appears in a TOML text (1-based line numbers)."""
    found: dict[KeyPath, int] = {}
    table: KeyPath = ()
    arrays: dict[tuple[str, ...], int] = {}
    depth = 0
    open_string: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if open_string is not None:
            if open_string in line:
                open_string = None
            continue
        if depth > 0:
            depth = max(0, depth + _bracket_balance(line)[0])
            continue
        header = _HEADER.match(line)
        if header is not None:
            names = split_key(header.group(2))
            if header.group(1) == "[[" and names:
                arrays[names] = arrays.get(names, -1) + 1
                table = (*names, arrays[names])
            else:
                table = names
            for end in range(1, len(table) + 1):
                found.setdefault(table[:end], number)
            continue
        key = _KEY_LINE.match(line)
        if key is None:
            continue
        parts = split_key(key.group(1))
        for end in range(1, len(parts) + 1):
            found.setdefault((*table, *parts[:end]), number)
        rest = line[key.end() :]
        if rest.lstrip().startswith("{"):
            for inner in _INLINE_KEY.finditer(rest):
                found.setdefault((*table, *parts, *split_key(inner.group(1))), number)
        depth, open_string = _bracket_balance(rest)
        depth = max(0, depth)
    return found


def shown(value: object) -> str:
    """``repr(value)``, cut to a readable length for an error message."""
    if isinstance(value, str | bytes) and len(value) > _SHOWN:
        unit = "characters" if isinstance(value, str) else "bytes"
        return f"{value[:_SHOWN]!r}... ({len(value)} {unit})"
    text = repr(value) if isinstance(value, str | bytes | int | float | os.PathLike) else ""
    return text if text and len(text) <= 2 * _SHOWN else f"a {type(value).__name__}"


def check_path(path: object, what: str) -> Path:
    """``path`` as a :class:`~pathlib.Path`, checked to be one the system can look up.

    Raises:
        UsageError: not a ``str`` or a ``str`` :class:`os.PathLike`, empty, or it holds a NUL.
    """
    name = os.fspath(path) if isinstance(path, os.PathLike) else path
    if not isinstance(name, str):
        raise UsageError(f"a {what} path is a str or a pathlib.Path, not {shown(path)}")
    if not name:
        raise UsageError(f"a {what} path is empty")
    if "\0" in name:
        raise UsageError(f"{what} path {shown(name)} holds a NUL character")
    return Path(name)  # not before the check: Path("") is Path(".")


def _bad_path(exc: OSError, path: Path, what: str) -> UsageError | None:
    reason = _BAD_PATH_ERRNOS.get(exc.errno or 0)
    if reason is None:
        return None
    return UsageError(f"{shown(str(path))}: not a usable {what} path ({reason})")


def path_kind(path: object, what: str) -> Literal["file", "dir", "other"] | None:
    """What ``path`` names (following symlinks): a regular file, a directory, something else, or
    nothing (None).

    Raises:
        UsageError: a path of the wrong type, with a NUL, too long, or a symlink loop.
        KernelError: the lookup failed otherwise (e.g. permission denied on a directory).
    """
    checked = check_path(path, what)
    try:
        mode = os.stat(checked).st_mode
    except OSError as exc:
        if exc.errno in _MISSING_ERRNOS:
            return None
        bad = _bad_path(exc, checked, what)
        if bad is not None:
            raise bad from None
        raise error_from_oserror(exc, f"look up {what} {checked}", path=str(checked)) from exc
    if stat.S_ISREG(mode):
        return "file"
    return "dir" if stat.S_ISDIR(mode) else "other"


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = os.read(fd, limit + 1 - total)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def read_text_file(path: object, what: str) -> str:
    """The UTF-8 text of ``what`` (e.g. "device file") at ``path``: a regular file of at most
    :data:`MAX_TEXT` bytes.

    Raises:
        UsageError: a bad path (see :func:`path_kind`), no such file, a directory or another
            non-regular file, larger than :data:`MAX_TEXT`, or not UTF-8.
        KernelError: the file exists but cannot be read (e.g. permission denied).
    """
    checked = check_path(path, what)
    source = str(checked)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
        fd = os.open(checked, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno in _MISSING_ERRNOS:
            raise UsageError(f"{source}: no such {what}") from None
        bad = _bad_path(exc, checked, what)
        if bad is not None:
            raise bad from None
        raise error_from_oserror(exc, f"read {what} {source}", path=source) from exc
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise UsageError(f"{source}: no such {what} (it is a directory)")
        if not stat.S_ISREG(mode):
            raise UsageError(f"{source}: not a regular file; a {what} is a TOML file")
        data = _read_at_most(fd, MAX_TEXT)
    except OSError as exc:
        raise error_from_oserror(exc, f"read {what} {source}", path=source) from exc
    finally:
        os.close(fd)
    if len(data) > MAX_TEXT:
        raise UsageError(f"{source}: larger than {MAX_TEXT} bytes; a {what} is a short TOML file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{source}: not UTF-8 text ({exc.reason})") from None


_NESTING_TOKEN = re.compile(r"\"\"\"|'''|[\"'#\[\]{}.\n]")


def _string_end(text: str, start: int, delim: str) -> int:
    """Just past the string that ``delim`` opens at ``start`` (or the end of its line or of the
    text when it is not closed; tomllib reports that)."""
    i = start + len(delim)
    while i < len(text):
        if text[i] == "\\" and delim[0] == '"':
            i += 2
        elif text[i] == "\n" and len(delim) == 1:
            return i
        elif text.startswith(delim, i):
            return i + len(delim)
        else:
            i += 1
    return len(text)


def check_nesting(text: str, source: str) -> None:
    """Refuse a TOML text that nests arrays and inline tables deeper than :data:`MAX_NESTING`,
    or has more than :data:`MAX_NESTING` dots outside strings on one line.

    Raises:
        UsageError: naming the file and the line.
    """
    depth = dots = 0
    line = 1
    i = 0
    while (match := _NESTING_TOKEN.search(text, i)) is not None:
        token = match.group(0)
        i = match.end()
        if token[0] in "\"'":
            i = _string_end(text, match.start(), token)
            line += text.count("\n", match.start(), i)
        elif token == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif token == "\n":
            line += 1
            dots = 0
        elif token in "[{":
            depth += 1
            if depth > MAX_NESTING:
                raise UsageError(
                    f"{source}:{line}: arrays and inline tables nested more than {MAX_NESTING}"
                    " deep; device and pipeline files need a few levels"
                )
        elif token in "]}":
            depth = max(0, depth - 1)
        else:
            dots += 1
            if dots > MAX_NESTING:
                raise UsageError(
                    f"{source}:{line}: more than {MAX_NESTING} dots outside strings on one line"
                    " (a dotted key that deep); device and pipeline files need a few"
                )


def parse_toml(text: object, source: object, what: str) -> tuple[dict[str, Any], str]:
    """Parse the TOML text of a ``what`` (e.g. "device file") read from ``source``.

    Returns:
        The document, and ``source`` as error messages show it (cut when very long).

    Raises:
        UsageError: ``source`` is not a ``str``; ``text`` is not a ``str``, is longer than
            :data:`MAX_TEXT`, holds a lone surrogate, nests too deep (:func:`check_nesting`),
            or is not valid TOML (an integer too long to convert included); the message names
            ``source``.
    """
    if not isinstance(source, str):
        raise UsageError(f"the source of a {what} is a name (str), not {shown(source)}")
    where = shown(source) if len(source) > _LONGEST_SOURCE else source
    if not isinstance(text, str):
        raise UsageError(f"{where}: a {what} is TOML text (str), not {shown(text)}")
    if len(text) > MAX_TEXT:
        raise UsageError(f"{where}: longer than {MAX_TEXT} characters; a {what} is short")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UsageError(
            f"{where}: not valid Unicode text (a lone surrogate at character {exc.start})"
        ) from None
    check_nesting(text, where)
    try:
        return tomllib.loads(text), where
    except ValueError as exc:  # TOMLDecodeError, and int() of a number too long to convert
        raise UsageError(f"{where}: invalid TOML: {exc}") from None
    except RecursionError:  # check_nesting refuses what would get here; never a traceback
        raise UsageError(f"{where}: invalid TOML: nested too deep") from None
