"""Scenario files: the alternative combinations of pipelines a product runs.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "s.toml").write_text('''
    ... scenario = "box"
    ... [[combinations]]
    ... name = "encode"
    ... pipelines = ["render-encode.toml"]
    ... ''')
    >>> text = (folder / "s.toml").read_text()
    >>> scenario = loads_scenario(text, str(folder / "s.toml"))
    >>> scenario.name, [c.name for c in scenario.combinations], scenario.combinations[0].paths
    ('box', ['encode'], ('render-encode.toml',))

A scenario file (TOML, see ``docs/sizing.md``)::

    scenario = "media-box"                 # required: a name without spaces or ':'
    description = "..."                    # optional
    [[combinations]]                       # one or more: pipelines that run at the same time
    name = "camera preview + video call"   # required: free text
    pipelines = ["../camera-npu-display.toml", "../webcam-display-copy.toml"]
                                           # pipeline files, relative to the scenario file

Errors are :class:`~devalloc.errors.UsageError` naming the file, the line and the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .._toml import parse_toml, read_text_file
from ..constraints import _NAME, _locator, _Table
from ..errors import UsageError

__all__ = ["Combination", "Scenario", "is_scenario", "load_scenario", "loads_scenario"]

#: The top-level keys that make a TOML file a scenario file rather than a pipeline file.
SCENARIO_KEYS: Final = ("scenario", "combinations")


@dataclass(frozen=True)
class Combination:
    """Pipelines that run at the same time.

    Attributes:
        name: what the product does then ("camera preview + video call").
        paths: the pipeline files as written in the scenario file.
        files: the same, resolved against the scenario file's folder.
    """

    name: str
    paths: tuple[str, ...]
    files: tuple[Path, ...]


@dataclass(frozen=True)
class Scenario:
    """A scenario file: alternative combinations; sizing takes the worst case over them.

    Attributes:
        name: the scenario's name.
        combinations: in file order.
        description: free text.
        path: the file it was read from.
    """

    name: str
    combinations: tuple[Combination, ...]
    description: str = ""
    path: str = ""


def is_scenario(data: Mapping[str, object]) -> bool:
    """A parsed TOML document is a scenario file (it has ``scenario`` or ``combinations``)."""
    return any(key in data for key in SCENARIO_KEYS)


def loads_scenario(text: str, source: str = "<string>") -> Scenario:
    """Read a scenario file's text (pipeline paths are resolved against ``source``'s folder).

    Raises:
        UsageError: invalid TOML, an unknown or missing key, a wrong type, no combinations, an
            empty or repeated pipeline list.
    """
    data, source = parse_toml(text, source, "scenario file")
    where = _locator(source, text)
    top = _Table(data, (), where)
    name = top.text("scenario", required=True)
    if not _NAME.match(name):
        raise top.fail("scenario", f"must be a name without spaces or ':', not {name!r}")
    description = top.text("description")
    items = top.list_of("combinations", dict, "a [[combinations]] table")
    top.finish()
    if not items:
        raise UsageError(f"{source}: a scenario lists at least one [[combinations]] table")
    folder = Path(source).parent
    combinations: list[Combination] = []
    for index, item in enumerate(items):
        table = _Table(item, ("combinations",), where)
        label = table.text("name", required=True).strip()
        if not label:
            raise table.fail("name", "is empty")
        paths = table.list_of("pipelines", str, "a pipeline file path")
        table.finish()
        if not paths:
            raise table.fail("pipelines", f"of combination #{index + 1} names no pipeline file")
        if len(set(paths)) != len(paths):
            raise table.fail(
                "pipelines",
                f"of combination #{index + 1} repeats a file; a pipeline that runs twice needs"
                " a second pipeline file (its own device ids)",
            )
        combinations.append(
            Combination(label, tuple(paths), tuple(folder / path for path in paths))
        )
    return Scenario(name, tuple(combinations), description, source)


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario file.

    Raises:
        UsageError: no such file, or anything :func:`loads_scenario` refuses.
        KernelError: the file exists but cannot be read.
    """
    return loads_scenario(read_text_file(path, "scenario file"), str(path))
