"""Where keys are in a TOML text, and reading TOML files, for error messages that name lines.

Example:
    >>> lines = key_lines('a = 1\\n[[devices]]\\nprofile = "x"\\n[[devices]]\\nusage = "y"\\n')
    >>> lines[("a",)], lines[("devices", 0, "profile")], lines[("devices", 1, "usage")]
    (1, 3, 5)

tomllib gives values, not positions; device files and pipeline files both want "file:line: unknown
key ..." errors, so this finds the line where each key path first appears: table headers (arrays
of tables numbered, ``[[devices]]`` -> ``("devices", 0)``), dotted keys, inline tables, and it
skips the continuation lines of multi-line arrays, inline tables and strings.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import UsageError, error_from_oserror

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


def read_text_file(path: str | Path, what: str) -> str:
    """The UTF-8 text of ``what`` (e.g. "device file") at ``path``.

    Raises:
        UsageError: no such file, a directory, or not UTF-8.
        KernelError: the file exists but cannot be read (e.g. permission denied).
    """
    source = str(path)
    try:
        return Path(path).read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise UsageError(f"{source}: no such {what}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{source}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise error_from_oserror(exc, f"read {what} {source}", path=source) from exc
