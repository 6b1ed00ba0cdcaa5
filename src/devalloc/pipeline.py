"""Pipeline files: which devices share a buffer, at what size, and what negotiating it should give.

Example:
    >>> from devalloc.negotiate import try_negotiate
    >>> pipe = loads_pipeline('''
    ... name = "decode-display"
    ... width = 1920
    ... height = 1080
    ... expect = "plan"
    ... [[devices]]
    ... profile = "rk3399-vpu"
    ... usage = "decode"
    ... [[devices]]
    ... profile = "rk3399-vop"
    ... usage = "primary"
    ... ''')
    >>> pipe.labels
    ('rk3399-vpu:decode', 'rk3399-vop:primary')
    >>> plan = try_negotiate(pipe.constraints(), pipe.width, pipe.height)
    >>> plan.format.name, plan.layout.planes[0].pitch
    ('NV12', 1920)

A pipeline file (TOML) names the buffer's size, the application's candidate formats and CPU
access, how many buffers it wants, what negotiating it is expected to give (``plan``, ``copy``
or ``conflict``) and one ``[[devices]]`` table per device: ``profile`` is a bundled profile
name (:func:`devalloc.profiles.profile_names`) or a device file path relative to the pipeline
file, ``usage`` one of its usages (all of them when left out). See ``examples/README.md``.

Errors are :class:`~devalloc.errors.UsageError` naming the file, the line and the key
(``camera.toml:9: unknown key devices[0].usge (did you mean usage?)``). Everything here is pure
apart from reading the pipeline file and the device files it names.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, cast

from ._toml import KeyPath, check_path, key_lines, parse_toml, path_kind, read_text_file, shown
from .constraints import (
    CPU_ACCESS_VALUES,
    MAX_BUFFER_COUNT,
    BufferCounts,
    Constraints,
    CpuAccess,
    DeviceProfile,
    load_device_file,
)
from .errors import UsageError
from .formats import MAX_DIMENSION, Modifier, lookup_format
from .negotiate.combine import DEFAULT_SLACK
from .negotiate.core import _application_format as _pin_of
from .profiles import profile_names, profile_path

__all__ = [
    "EXPECT_VALUES",
    "MAX_COUNT",
    "Expect",
    "Pipeline",
    "PipelineDevice",
    "load_pipeline",
    "loads_pipeline",
    "pipeline_paths",
]

Expect = Literal["plan", "copy", "conflict"]

#: What a pipeline file may expect negotiation to give.
EXPECT_VALUES: Final[tuple[Expect, ...]] = ("plan", "copy", "conflict")
#: Most buffers a pipeline may ask for.
MAX_COUNT: Final = MAX_BUFFER_COUNT

_TOP_KEYS: Final = (
    "name",
    "description",
    "width",
    "height",
    "formats",
    "cpu_access",
    "count",
    "holds",
    "slack",
    "expect",
    "devices",
)
_DEVICE_KEYS: Final = ("profile", "usage")
_NAME = re.compile(r"^[^\s:]+$")


@dataclass(frozen=True)
class PipelineDevice:
    """One ``[[devices]]`` entry of a pipeline file.

    Attributes:
        profile: the ``profile`` value as written (a bundled name or a relative path).
        usage: the usage asked for, or None for every usage of the device file.
        path: the device file it resolved to.
        constraints: the constraints it contributes (one per usage), in device-file order.
    """

    profile: str
    usage: str | None
    path: Path
    constraints: tuple[Constraints, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        """``device:usage`` of every constraint this entry contributes."""
        return tuple(c.label for c in self.constraints)


@dataclass(frozen=True)
class Pipeline:
    """A pipeline file: the devices that share a buffer and the request to negotiate.

    Attributes:
        name: the pipeline's name.
        width: image width in pixels.
        height: image height in pixels.
        devices: one entry per ``[[devices]]`` table, in file order.
        description: free text.
        formats: the application's candidate formats (DRM names, best first; ``NAME:0x...`` for
            a pinned (format, modifier) pair); None for any.
        cpu_access: the application's own CPU access.
        count: how many buffers the application wants: fixed when ``count_fixed`` (the file says
            ``count``), else 1 and the plan's negotiated count decides.
        expect: what negotiating is expected to give (``plan``, ``copy``, ``conflict``), or None.
        path: the file it was read from ("" when read from text).
        holds: buffers the application itself holds at once (``holds``; default 0).
        slack: buffers added to what every party holds (``slack``; default 1).
        count_fixed: the file fixes ``count`` (negotiation must give exactly that many).
    """

    name: str
    width: int
    height: int
    devices: tuple[PipelineDevice, ...]
    description: str = ""
    formats: tuple[str, ...] | None = None
    cpu_access: CpuAccess = "none"
    count: int = 1
    expect: Expect | None = None
    path: str = field(default="", compare=False)
    holds: int = 0
    slack: int = DEFAULT_SLACK
    count_fixed: bool = False

    def counts(self) -> BufferCounts:
        """The application's own counts for negotiation: what it holds, and a fixed ``count``
        as both its minimum and its maximum."""
        if self.count_fixed:
            return BufferCounts(self.holds, self.count, self.count)
        return BufferCounts(self.holds)

    def constraints(self) -> list[Constraints]:
        """Every device's constraints, in file order (a device without ``usage`` gives all its
        usages)."""
        return [c for device in self.devices for c in device.constraints]

    @property
    def labels(self) -> tuple[str, ...]:
        """``device:usage`` of every constraint, in file order."""
        return tuple(c.label for c in self.constraints())

    @property
    def size(self) -> str:
        """``WIDTHxHEIGHT``."""
        return f"{self.width}x{self.height}"

    def to_json(self) -> dict[str, object]:
        """The pipeline as JSON: every field, devices as profile/usage/path/labels."""
        return {
            "name": self.name,
            "description": self.description,
            "width": self.width,
            "height": self.height,
            "formats": None if self.formats is None else list(self.formats),
            "cpu_access": self.cpu_access,
            "count": self.count,
            "count_fixed": self.count_fixed,
            "holds": self.holds,
            "slack": self.slack,
            "expect": self.expect,
            "path": self.path,
            "devices": [
                {
                    "profile": d.profile,
                    "usage": d.usage,
                    "path": str(d.path),
                    "labels": list(d.labels),
                }
                for d in self.devices
            ],
        }


# ---------------------------------------------------------------------------------------------
# Where keys are in the text (for error messages).

#: A key's place in the document: top-level keys are ("name",), device keys ("devices", 0, "usage").
_KeyPath = KeyPath


def _dotted(path: _KeyPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


class _Reader:
    """Typed access to one table of the pipeline file, with errors that say where."""

    def __init__(self, source: str, lines: Mapping[_KeyPath, int]) -> None:
        self.source = source
        self.lines = lines

    def where(self, path: _KeyPath) -> str:
        for end in range(len(path), 0, -1):
            number = self.lines.get(path[:end])
            if number is not None:
                return f"{self.source}:{number}: "
        return f"{self.source}: "

    def fail(self, path: _KeyPath, message: str) -> UsageError:
        return UsageError(f"{self.where(path)}{_dotted(path)} {message}")

    def check_keys(self, data: Mapping[str, object], base: _KeyPath, known: Sequence[str]) -> None:
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]}?)" if close else ""
                path = (*base, key)
                raise UsageError(f"{self.where(path)}unknown key {_dotted(path)}{hint}")

    def text(self, data: Mapping[str, object], base: _KeyPath, key: str, required: bool) -> str:
        value = data.get(key)
        if value is None:
            if required:
                raise UsageError(f"{self.where(base)}missing key {_dotted((*base, key))}")
            return ""
        if not isinstance(value, str):
            raise self.fail((*base, key), f"must be a string, not {value!r}")
        return value

    def integer(
        self, data: Mapping[str, object], key: str, low: int, high: int, default: int | None
    ) -> int:
        value = data.get(key)
        if value is None:
            if default is None:
                raise UsageError(f"{self.where(())}missing key {key}")
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail((key,), f"must be an integer, not {value!r}")
        if not low <= value <= high:
            raise self.fail((key,), f"must be from {low} to {high}, not {value}")
        return value


def _resolve_profile(reader: _Reader, base: _KeyPath, profile: str, directory: Path) -> Path:
    """A device file path relative to the pipeline file, else a bundled profile name."""
    where = (*base, "profile")
    candidate = directory / profile
    try:
        kind = path_kind(candidate, "device file")
    except UsageError as exc:
        raise reader.fail(where, str(exc)) from None
    if kind == "file":
        return candidate
    if profile in profile_names():
        return profile_path(profile)
    if ":" in profile and profile.rpartition(":")[0] in profile_names():
        name, _, usage = profile.rpartition(":")
        raise reader.fail(
            where,
            f"{profile!r}: write the usage on its own line: profile = {name!r}, usage = {usage!r}",
        )
    if profile.endswith(".toml") or "/" in profile:
        raise reader.fail(where, f"{profile!r}: no such device file (looked in {directory})")
    try:
        return profile_path(profile)
    except UsageError as exc:
        raise reader.fail(where, f"{profile!r}: {exc}") from None


def _read_device(
    reader: _Reader, item: object, index: int, directory: Path
) -> tuple[PipelineDevice, _KeyPath]:
    base: _KeyPath = ("devices", index)
    if not isinstance(item, Mapping):
        raise reader.fail(base, f"must be a table with profile and usage, not {item!r}")
    reader.check_keys(item, base, _DEVICE_KEYS)
    profile = reader.text(item, base, "profile", required=True)
    if not profile.strip():
        raise reader.fail((*base, "profile"), "is empty")
    usage: str | None = None
    if "usage" in item:
        usage = reader.text(item, base, "usage", required=False)
        if not _NAME.match(usage):
            raise reader.fail((*base, "usage"), f"must be a usage name, not {usage!r}")
    path = _resolve_profile(reader, base, profile, directory)
    try:
        device: DeviceProfile = load_device_file(path)
    except UsageError as exc:
        raise UsageError(f"{reader.where((*base, 'profile'))}{exc}") from None
    if usage is None:
        chosen = tuple(device.usages.values())
    elif usage in device.usages:
        chosen = (device.usages[usage],)
    else:
        raise reader.fail(
            (*base, "usage"),
            f"{usage!r}: device {device.device} ({path.name}) has no such usage;"
            f" its usages: {', '.join(device.usages)}",
        )
    return PipelineDevice(profile, usage, path, chosen), base


def _application_format(item: str) -> str:
    """A format's DRM name; a pinned pair (drm-format ``NV12:0x...``, a tiled GStreamer name such
    as ``NV12_4L4``) as ``NAME:0x<modifier>``, which negotiation reads as a pin (the rule is
    negotiation's own, :func:`~devalloc.negotiate.core._application_format`)."""
    fourcc, pin = _pin_of(item)
    name = lookup_format(fourcc).name
    return name if pin is None else f"{name}:{Modifier(pin[1]).hex}"


def _read_formats(reader: _Reader, data: Mapping[str, object]) -> tuple[str, ...] | None:
    if "formats" not in data:
        return None
    value = data["formats"]
    if not isinstance(value, list) or not value:
        raise reader.fail(("formats",), f"must be a non-empty list of format names, not {value!r}")
    names: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise reader.fail(("formats",), f"[{i}] must be a format name, not {item!r}")
        try:
            names.append(_application_format(item))
        except UsageError as exc:
            raise reader.fail(("formats",), f"[{i}]: {exc}") from None
    return tuple(dict.fromkeys(names))


def loads_pipeline(
    text: str, source: str = "<string>", directory: str | Path | None = None
) -> Pipeline:
    """Read a pipeline file's text.

    Args:
        text: the TOML text.
        source: the file name used in error messages (and recorded as ``Pipeline.path``).
        directory: where relative device-file paths are looked up (default: the current one).

    Raises:
        UsageError: not TOML text (see :func:`devalloc._toml.parse_toml`), invalid TOML, an
            unknown or missing key, a wrong type or value, an unknown format, profile or usage,
            or a device given twice; the message names the file, the line and the key.
    """
    data, source = parse_toml(text, source, "pipeline file")
    reader = _Reader(source, key_lines(text))
    reader.check_keys(data, (), _TOP_KEYS)
    name = reader.text(data, (), "name", required=True)
    if not _NAME.match(name):
        raise reader.fail(("name",), f"must be a name without spaces or ':', not {name!r}")
    description = reader.text(data, (), "description", required=False)
    width = reader.integer(data, "width", 1, MAX_DIMENSION, None)
    height = reader.integer(data, "height", 1, MAX_DIMENSION, None)
    count = reader.integer(data, "count", 1, MAX_COUNT, 1)
    holds = reader.integer(data, "holds", 0, MAX_COUNT, 0)
    slack = reader.integer(data, "slack", 0, MAX_COUNT, DEFAULT_SLACK)
    if "count" in data and holds > count:
        raise reader.fail(("holds",), f"{holds} is above count {count}")
    formats = _read_formats(reader, data)
    cpu_access = data.get("cpu_access", "none")
    if cpu_access not in CPU_ACCESS_VALUES:
        raise reader.fail(
            ("cpu_access",), f"must be one of {', '.join(CPU_ACCESS_VALUES)}, not {cpu_access!r}"
        )
    expect = data.get("expect")
    if expect is not None and expect not in EXPECT_VALUES:
        raise reader.fail(("expect",), f"must be one of {', '.join(EXPECT_VALUES)}, not {expect!r}")
    items = data.get("devices")
    if items is None:
        raise UsageError(f"{source}: missing [[devices]]: a pipeline names at least one device")
    if not isinstance(items, list) or not items:
        raise reader.fail(("devices",), "must be one or more [[devices]] tables")
    folder = Path.cwd() if directory is None else check_path(directory, "pipeline directory")
    devices: list[PipelineDevice] = []
    seen: dict[str, _KeyPath] = {}
    for index, item in enumerate(items):
        device, base = _read_device(reader, item, index, folder)
        for label in device.labels:
            if label in seen:
                raise reader.fail(
                    base,
                    f"gives {label} again (already from {_dotted(seen[label])}); each device"
                    " and usage may appear once",
                )
            seen[label] = base
        devices.append(device)
    return Pipeline(
        name=name,
        width=width,
        height=height,
        devices=tuple(devices),
        description=description,
        formats=formats,
        cpu_access=cast(CpuAccess, cpu_access),
        count=count,
        expect=cast(Expect | None, expect),
        path=source,
        holds=holds,
        slack=slack,
        count_fixed="count" in data,
    )


def load_pipeline(path: str | Path) -> Pipeline:
    """Read a pipeline file; device-file paths in it are relative to its directory.

    Raises:
        UsageError: a path of the wrong type or one that cannot name a file, no such file, or
            anything :func:`loads_pipeline` refuses.
        KernelError: the file exists but cannot be read (e.g. permission denied).
    """
    text = read_text_file(path, "pipeline file")
    source = str(path)
    return loads_pipeline(text, source, Path(source).parent)


def pipeline_paths(directory: str | Path) -> list[Path]:
    """The pipeline files (``*.toml``) in ``directory``, sorted by name.

    Raises:
        UsageError: ``directory`` is not a directory (or not a path).
    """
    folder = check_path(directory, "pipeline directory")
    if path_kind(folder, "pipeline directory") != "dir":
        raise UsageError(f"{shown(str(folder))}: not a directory of pipeline files")
    return sorted(p for p in folder.glob("*.toml") if p.is_file())
