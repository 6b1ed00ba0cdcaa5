"""GStreamer caps strings -> a device usage's constraints (pure: no GStreamer import).

Example:
    >>> c = constraints_from_caps(
    ...     "video/x-raw(memory:DMABuf), format=DMA_DRM,"
    ...     " drm-format={ NV12:0x0100000000000002, NV12 }, width=[ 1, 4096 ]; "
    ...     "video/x-raw, format={ BGRx, I420 }",
    ...     "sink",
    ... )
    >>> [(hex(f), hex(m)) for f, m in c.pairs][:2], c.max_width
    ([('0x3231564e', '0x100000000000002'), ('0x3231564e', '0x0')], None)
    >>> [lookup_format(f).name for f, _m in c.pairs]
    ['NV12', 'NV12', 'XRGB8888', 'YUV420']

An element's caps (``gst-inspect-1.0``, a pad's ``query_caps``, a pipeline's ``caps=``) name what
it takes: ``format`` fields in GStreamer's byte-order names (LINEAR in system memory and in 1.22's
``memory:DMABuf`` caps), and since 1.24 ``format=DMA_DRM`` with ``drm-format`` strings for
(fourcc, modifier) pairs. Formats GStreamer has no DRM name for (``GRAY8``, ``v210``, ...) are
left out and listed in the error when nothing else is left. ``width``/``height`` ranges become
``max_width``/``max_height``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..constraints import Constraints, DeviceAccess
from ..errors import UsageError
from ..formats import (
    GST_FORMATS,
    MAX_DIMENSION,
    parse_drm_format,
)

__all__ = ["CapsStructure", "constraints_from_caps", "parse_caps"]

_MAX_CAPS = 1 << 20


@dataclass(frozen=True)
class CapsStructure:
    """One structure of a caps string: its name, its features and its fields (each a list of
    values: one for a plain value, several for a ``{ list }``, two for a ``[ range ]``)."""

    name: str
    features: tuple[str, ...]
    fields: dict[str, tuple[str, ...]]


def _split(text: str, separator: str) -> list[str]:
    """Split at ``separator`` outside quotes, braces, brackets, angles and parentheses."""
    parts, depth, quoted, start = [], 0, False, 0
    i = 0
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch in "{[<(":
            depth += 1
        elif ch in "}]>)":
            depth -= 1
            if depth < 0:
                raise UsageError(f"caps: unbalanced {ch!r} in {text!r:.80}")
        elif ch == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if quoted or depth:
        raise UsageError(f"caps: unclosed quote or bracket in {text!r:.80}")
    parts.append(text[start:])
    return parts


def _value(text: str) -> tuple[str, ...]:
    text = text.strip()
    if text.startswith("("):  # a type: (string), (int), (GstFraction)
        end = text.find(")")
        text = text[end + 1 :].strip()
    if text[:1] in "{[<" and text[-1:] in "}]>":
        return tuple(v for item in _split(text[1:-1], ",") for v in _value(item))
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return (text[1:-1].replace('\\"', '"').replace("\\ ", " ").replace("\\\\", "\\"),)
    return (text.replace("\\ ", " "),)


def parse_caps(text: str) -> list[CapsStructure]:
    """The structures of a caps string (as ``gst_caps_from_string`` reads its common forms).

    Raises:
        UsageError: not caps text, ``ANY``/``EMPTY``, or a field without ``=``.
    """
    if not isinstance(text, str) or not text.strip() or len(text) > _MAX_CAPS:
        raise UsageError(
            f"caps are non-empty text such as 'video/x-raw, format=NV12', not {text!r:.80}"
        )
    if text.strip() in ("ANY", "EMPTY", "NONE"):
        raise UsageError(f"caps {text.strip()} name no format; give the formats the element takes")
    structures = []
    for chunk in _split(text, ";"):
        if not chunk.strip():
            continue
        head, *fields = _split(chunk.strip(), ",")
        name, _, features = head.strip().partition("(")
        found: dict[str, tuple[str, ...]] = {}
        for item in fields:
            if not item.strip():
                continue
            key, eq, value = item.partition("=")
            if not eq:
                raise UsageError(
                    f"caps: field {item.strip()!r} has no '=' in {chunk.strip()!r:.80}"
                )
            found[key.strip()] = _value(value)
        feature_list = tuple(f.strip() for f in features.rstrip(")").split(",") if f.strip())
        structures.append(CapsStructure(name.strip(), feature_list, found))
    if not structures:
        raise UsageError(f"caps {text!r:.80} hold no structure")
    return structures


def _dimension(values: tuple[str, ...] | None) -> int | None:
    if not values:
        return None
    try:
        largest = max(int(v) for v in values)
    except ValueError:
        raise UsageError(
            f"caps: a width or height is an integer or a range, not {values}"
        ) from None
    return largest if largest < MAX_DIMENSION else None


def constraints_from_caps(
    caps: str,
    device: str,
    usage: str = "caps",
    access: DeviceAccess = "read-write",
    description: str = "",
) -> Constraints:
    """A device usage that takes what ``caps`` names, favourite first (the caps' order).

    Raises:
        UsageError: the caps name no video format devalloc knows (the message lists the ones
            left out), or cannot be read.
    """
    pairs: list[tuple[int, int]] = []
    skipped: list[str] = []
    widths: list[int | None] = []
    heights: list[int | None] = []
    for structure in parse_caps(caps):
        if structure.name != "video/x-raw":
            skipped.append(structure.name)
            continue
        formats = structure.fields.get("format", ())
        found = []
        for name in formats:
            if name == "DMA_DRM":
                for drm_format in structure.fields.get("drm-format", ()):
                    fmt, modifier = parse_drm_format(drm_format)
                    found.append((fmt.fourcc, modifier.value))
            elif name in GST_FORMATS:
                fmt, modifier = GST_FORMATS[name]
                found.append((fmt.fourcc, modifier.value))
            else:
                skipped.append(name)
        if not formats:
            skipped.append(f"{structure.name} without a format")
        if found:
            widths.append(_dimension(structure.fields.get("width")))
            heights.append(_dimension(structure.fields.get("height")))
        pairs.extend(pair for pair in found if pair not in pairs)
    if not pairs:
        raise UsageError(
            f"caps name no video format with a DRM equivalent (left out: {', '.join(skipped)})"
        )
    return Constraints(
        device,
        usage,
        tuple(pairs),
        max_width=None if None in widths else max(w for w in widths if w is not None),
        max_height=None if None in heights else max(h for h in heights if h is not None),
        access=access,
        description=description or f"from GStreamer caps {caps.strip()[:60]!r}",
    )
