"""Discovery: what the DRM and V4L2 devices of this machine say they accept, as Constraints.

Example:
    >>> found = discover()                                            # doctest: +SKIP
    >>> for dev in found.devices():                                   # doctest: +SKIP
    ...     print(dev.name, [c.usage for c in dev.usages])
    vgem ['import']
    vivid-000-vid-cap ['capture']
    vivid-000-vid-out ['output']
    >>> found.find("vivid-000-vid-cap").usage("capture").layout      # doctest: +SKIP
    LayoutRules(pitch_align=1, ...)

DRM (/dev/dri/card*, renderD*; the nodes of one sysfs device are one device): the driver's name
and version (DRM_IOCTL_VERSION), PRIME import/export (DRM_CAP_PRIME), dumb buffers (GET_CAP, then
a 1x1 CREATE_DUMB on the card node when GET_CAP says no: vgem answers EOPNOTSUPP yet creates them
on card0), and for KMS drivers every plane (universal planes on) with its type and IN_FORMATS
pairs: one usage per plane type (:func:`~devalloc.devices.learn.kms_usages`). A device without
KMS that imports dma-bufs gets an ``import`` usage (:func:`~devalloc.devices.learn.import_usage`).

V4L2 (/dev/video*): VIDIOC_QUERYCAP, each video queue's ENUM_FMT list (mapped to DRM formats with
:func:`devalloc.formats.v4l2_to_drm`; the others are listed as unmapped, not guessed), layout
rules learned from TRY_FMT at :data:`PROBE_SIZES` (:func:`~devalloc.devices.learn.learn_layout`),
the largest size TRY_FMT allows, and DMABUF import from the buffer capabilities (REQBUFS with
count 0). Usages ``capture`` and ``output``; the device id is the node's sysfs name.

What discovery cannot see: whether a V4L2 driver needs physically contiguous memory (vivid with
``allocators=1`` uses vb2-dma-contig and looks the same), a display's pitch alignment, or which
memory a KMS driver can scan out from. :mod:`devalloc.devices.verify` learns those by importing.
Nothing is allocated except the 1x1 dumb-buffer probe, which is freed at once.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..constraints import Constraints
from ..drm import DRI_DIR, DrmDevice, DrmPlane, DrmVersion, drm_nodes
from ..errors import DevallocError, KernelError, NotSupportedError, UsageError
from ..formats import PixelFormat, v4l2_to_drm
from ..formats.fourcc import fourcc_to_str
from ..uapi import drm as _drm
from ..uapi.videodev2 import V4l2BufCap, V4l2BufType, V4l2Cap
from ..v4l2 import (
    SYSFS_V4L2,
    V4l2Caps,
    V4l2Device,
    V4l2FormatDesc,
    natural_key,
    v4l2_node_name,
)
from .learn import (
    LearnedLayout,
    TrySample,
    import_usage,
    kms_usages,
    learn_layout,
    v4l2_usage,
)

__all__ = [
    "MAX_PROBE",
    "PROBE_SIZES",
    "DeviceInfo",
    "Discovery",
    "DrmInfo",
    "V4l2FormatInfo",
    "V4l2Info",
    "V4l2QueueInfo",
    "device_id",
    "discover",
    "discover_drm",
    "discover_v4l2",
]

#: Sizes asked of TRY_FMT to learn layout rules: common ones and odd ones that expose alignment.
PROBE_SIZES: tuple[tuple[int, int], ...] = (
    (640, 480),
    (1280, 720),
    (1920, 1080),
    (322, 242),
    (321, 241),
    (33, 17),
    (17, 9),
)
#: The width and height asked of TRY_FMT to learn the largest a queue allows.
MAX_PROBE = 1 << 15

_VIDEO_QUEUES: tuple[tuple[str, V4l2BufType, V4l2BufType], ...] = (
    ("capture", V4l2BufType.VIDEO_CAPTURE, V4l2BufType.VIDEO_CAPTURE_MPLANE),
    ("output", V4l2BufType.VIDEO_OUTPUT, V4l2BufType.VIDEO_OUTPUT_MPLANE),
)


def device_id(text: str, fallback: str) -> str:
    """A Constraints device id from a driver or sysfs name: whitespace and ``:`` become ``-``
    (ids are names without them); ``fallback`` when nothing is left."""
    cleaned = re.sub(r"[\s:]+", "-", text.strip()).strip("-")
    return cleaned or fallback


def _realpath(path: str) -> str:
    return os.path.realpath(path) if os.path.exists(path) else ""


def _by_path(directory: str, node: str) -> tuple[str, ...]:
    """The links under ``directory`` (udev's by-path) that point at ``node``."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return ()
    target = os.path.realpath(node)
    return tuple(
        os.path.join(directory, n)
        for n in names
        if os.path.realpath(os.path.join(directory, n)) == target
    )


def _problem(exc: DevallocError) -> str:
    return str(exc)


# --- DRM -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DrmInfo:
    """One DRM device (its card and render nodes) as discovered.

    Attributes:
        name: the device id its constraints use (the driver's name; ``-cardN`` is added when
            two devices have the same driver).
        driver: the driver's name (DRM_IOCTL_VERSION, else sysfs).
        version: its DRM_IOCTL_VERSION answer (None when no node could be opened).
        card: the primary node (``/dev/dri/card0``), if any.
        render: the render node (``/dev/dri/renderD128``), if any.
        sysfs: the device's sysfs path (``/sys/devices/platform/vgem``).
        by_path: udev's /dev/dri/by-path links to its nodes (none without udev).
        prime_import: DRM_CAP_PRIME has IMPORT.
        prime_export: DRM_CAP_PRIME has EXPORT.
        dumb: CREATE_DUMB works on the card node.
        dumb_note: how ``dumb`` was established (GET_CAP, or the CREATE_DUMB probe).
        kms: the driver does modesetting (MODE_GETRESOURCES works).
        addfb2_modifiers: DRM_CAP_ADDFB2_MODIFIERS (ADDFB2 accepts explicit modifiers).
        max_width: the largest framebuffer width (MODE_GETRESOURCES), None without KMS.
        max_height: the largest framebuffer height.
        planes: every KMS plane with its pairs.
        unmapped: fourccs the planes list that devalloc has no format entry for (``"Y0L0"``).
        usages: the constraints, one per usage.
        problems: what could not be asked, and why.
    """

    name: str
    driver: str
    version: DrmVersion | None
    card: str | None
    render: str | None
    sysfs: str
    by_path: tuple[str, ...] = ()
    prime_import: bool = False
    prime_export: bool = False
    dumb: bool = False
    dumb_note: str = ""
    kms: bool = False
    addfb2_modifiers: bool = False
    max_width: int | None = None
    max_height: int | None = None
    planes: tuple[DrmPlane, ...] = ()
    unmapped: tuple[str, ...] = ()
    usages: tuple[Constraints, ...] = ()
    problems: tuple[str, ...] = ()
    kind: Literal["drm"] = field(default="drm", init=False)

    @property
    def nodes(self) -> tuple[str, ...]:
        """Its device nodes, card first."""
        return tuple(n for n in (self.card, self.render) if n)

    @property
    def path(self) -> str:
        """The node devalloc uses: the card (KMS and dumb buffers live there), else render."""
        return self.card or self.render or ""

    @property
    def identity(self) -> str:
        """A stable name for the device: its first by-path link, else its sysfs path."""
        return self.by_path[0] if self.by_path else self.sysfs

    def usage(self, name: str) -> Constraints:
        """The constraints of usage ``name``.

        Raises:
            UsageError: the device has no such usage (the message lists its usages).
        """
        return _usage(self.name, self.usages, name)

    def to_json(self) -> dict[str, object]:
        """Everything discovered, with each usage's ``Constraints.to_json()``."""
        version = self.version
        return {
            "kind": self.kind,
            "name": self.name,
            "driver": self.driver,
            "version": (
                None
                if version is None
                else {
                    "name": version.name,
                    "desc": version.desc,
                    "date": version.date,
                    "major": version.major,
                    "minor": version.minor,
                    "patchlevel": version.patchlevel,
                }
            ),
            "card": self.card,
            "render": self.render,
            "sysfs": self.sysfs,
            "by_path": list(self.by_path),
            "identity": self.identity,
            "prime_import": self.prime_import,
            "prime_export": self.prime_export,
            "dumb": self.dumb,
            "dumb_note": self.dumb_note,
            "kms": self.kms,
            "addfb2_modifiers": self.addfb2_modifiers,
            "max_width": self.max_width,
            "max_height": self.max_height,
            "planes": [
                {
                    "id": p.id,
                    "type": p.type,
                    "possible_crtcs": p.possible_crtcs,
                    "formats": [fourcc_to_str(f) for f in p.formats],
                    "in_formats": p.in_formats,
                    "pairs": len(p.pairs),
                }
                for p in self.planes
            ],
            "unmapped": list(self.unmapped),
            "usages": [c.to_json() for c in self.usages],
            "problems": list(self.problems),
        }


def _usage(device: str, usages: Sequence[Constraints], name: str) -> Constraints:
    for c in usages:
        if c.usage == name:
            return c
    known = ", ".join(c.usage for c in usages) or "none"
    raise UsageError(f"device {device} has no usage {name!r}; its usages: {known}")


def _drm_groups(dev_dir: str, sysfs: str) -> list[tuple[str, str | None, str | None]]:
    """(sysfs device path, card node, render node) per DRM device, in node order."""
    groups: dict[str, list[str | None]] = {}
    for node in drm_nodes(dev_dir):
        base = os.path.basename(node)
        device = _realpath(os.path.join(sysfs, "class", "drm", base, "device")) or node
        slot = groups.setdefault(device, [None, None])
        index = 1 if base.startswith("renderD") else 0
        if slot[index] is None:
            slot[index] = node
    return [(device, card, render) for device, (card, render) in groups.items()]


def _sysfs_driver(sysfs_device: str) -> str:
    try:
        return os.path.basename(os.readlink(os.path.join(sysfs_device, "driver")))
    except OSError:
        pass
    try:
        with open(os.path.join(sysfs_device, "modalias"), encoding="ascii") as f:
            return f.read().strip().partition(":")[2]
    except OSError:
        return ""


def _optional_cap(dev: DrmDevice, cap: int) -> int | None:
    try:
        return dev.get_cap(cap)
    except KernelError:
        return None


def _probe_dumb(dev: DrmDevice) -> bool:
    try:
        with dev.create_dumb(1, 1, 32):
            return True
    except KernelError:
        return False


@dataclass
class _DrmFacts:
    version: DrmVersion | None = None
    prime: int = 0
    dumb: bool = False
    dumb_note: str = ""
    kms: bool = False
    addfb2_modifiers: bool = False
    max_width: int | None = None
    max_height: int | None = None
    cursor: tuple[int, int] | None = None
    planes: list[DrmPlane] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _ask_card(card: str, facts: _DrmFacts) -> None:
    with DrmDevice(card) as dev:
        facts.version = dev.version()
        facts.prime = _optional_cap(dev, _drm.DRM_CAP_PRIME) or 0
        said = _optional_cap(dev, _drm.DRM_CAP_DUMB_BUFFER)
        if said:
            facts.dumb, facts.dumb_note = True, "GET_CAP(DUMB_BUFFER) = 1"
        else:
            facts.dumb = _probe_dumb(dev)
            answer = "EOPNOTSUPP" if said is None else "0"
            works = "works" if facts.dumb else "fails too"
            facts.dumb_note = (
                f"GET_CAP(DUMB_BUFFER) answers {answer}; a 1x1 CREATE_DUMB on "
                f"{os.path.basename(card)} {works}"
            )
        try:
            res = dev.resources()
        except NotSupportedError:
            return
        facts.kms = True
        facts.max_width, facts.max_height = res.max_width or None, res.max_height or None
        facts.addfb2_modifiers = bool(_optional_cap(dev, _drm.DRM_CAP_ADDFB2_MODIFIERS))
        width = _optional_cap(dev, _drm.DRM_CAP_CURSOR_WIDTH)
        height = _optional_cap(dev, _drm.DRM_CAP_CURSOR_HEIGHT)
        if width and height:
            facts.cursor = (width, height)
        try:
            facts.planes = dev.planes()
        except (DevallocError, ValueError) as exc:
            facts.problems.append(f"cannot list the planes of {card}: {exc}")


def _drm_device(sysfs_device: str, card: str | None, render: str | None) -> tuple[str, _DrmFacts]:
    facts = _DrmFacts()
    if card is not None:
        try:
            _ask_card(card, facts)
        except DevallocError as exc:
            facts.problems.append(_problem(exc))
    if facts.version is None and render is not None:
        try:
            with DrmDevice(render) as dev:
                facts.version = dev.version()
                facts.prime = _optional_cap(dev, _drm.DRM_CAP_PRIME) or 0
        except DevallocError as exc:
            facts.problems.append(_problem(exc))
    driver = facts.version.name if facts.version else _sysfs_driver(sysfs_device)
    return driver, facts


def discover_drm(dev_dir: str = DRI_DIR, sysfs: str = "/sys") -> list[DrmInfo]:
    """Every DRM device under ``dev_dir`` (see the module doc); never raises for a device that
    cannot be opened: its :attr:`DrmInfo.problems` say why."""
    found: list[tuple[str, str, str | None, str | None, _DrmFacts]] = []
    for sysfs_device, card, render in _drm_groups(dev_dir, sysfs):
        driver, facts = _drm_device(sysfs_device, card, render)
        found.append((sysfs_device, driver, card, render, facts))
    drivers = [driver for _, driver, *_ in found]
    infos: list[DrmInfo] = []
    for sysfs_device, driver, card, render, facts in found:
        node = os.path.basename(card or render or "drm")
        name = device_id(driver, node)
        if drivers.count(driver) > 1:
            name = f"{name}-{node}"
        usages: list[Constraints] = []
        unmapped: list[int] = []
        if facts.kms:
            usages, unmapped = kms_usages(
                name,
                driver,
                [(p.type, p.pairs) for p in facts.planes],
                max_width=facts.max_width,
                max_height=facts.max_height,
                cursor_size=facts.cursor,
            )
        elif facts.prime & _drm.DRM_PRIME_CAP_IMPORT:
            usages = [import_usage(name, driver)]
        links = tuple(
            link
            for n in (card, render)
            if n is not None
            for link in _by_path(os.path.join(dev_dir, "by-path"), n)
        )
        infos.append(
            DrmInfo(
                name=name,
                driver=driver,
                version=facts.version,
                card=card,
                render=render,
                sysfs=sysfs_device,
                by_path=links,
                prime_import=bool(facts.prime & _drm.DRM_PRIME_CAP_IMPORT),
                prime_export=bool(facts.prime & _drm.DRM_PRIME_CAP_EXPORT),
                dumb=facts.dumb,
                dumb_note=facts.dumb_note,
                kms=facts.kms,
                addfb2_modifiers=facts.addfb2_modifiers,
                max_width=facts.max_width,
                max_height=facts.max_height,
                planes=tuple(facts.planes),
                unmapped=tuple(fourcc_to_str(f) for f in unmapped),
                usages=tuple(usages),
                problems=tuple(facts.problems),
            )
        )
    return infos


# --- V4L2 ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class V4l2FormatInfo:
    """One ENUM_FMT entry of a queue and what devalloc made of it.

    Attributes:
        v4l2: the V4L2 fourcc as text, trailing spaces dropped and ``-BE`` added for the
            big-endian variants (``"NM12"``, ``"Y16-BE"``).
        code: the V4L2 fourcc code.
        description: the driver's name for it.
        drm: the DRM format it maps to (None: unmapped).
        multi_planar: one buffer per plane (the ``...M`` formats).
        learned: the layout rules learned from TRY_FMT (None when unmapped or not learnable).
        reason: why it is unmapped or was not learned.
    """

    v4l2: str
    code: int
    description: str
    drm: PixelFormat | None = None
    multi_planar: bool = False
    learned: LearnedLayout | None = None
    reason: str = ""

    def to_json(self) -> dict[str, object]:
        """The entry as JSON (the learned layout included)."""
        return {
            "v4l2": self.v4l2,
            "description": self.description,
            "drm": self.drm.name if self.drm else None,
            "multi_planar": self.multi_planar,
            "learned": self.learned.to_json() if self.learned else None,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class V4l2QueueInfo:
    """One video queue of a V4L2 node.

    Attributes:
        usage: ``"capture"`` or ``"output"``.
        buf_type: its V4L2_BUF_TYPE_*.
        capabilities: V4L2_BUF_CAP_* from REQBUFS(0) (0 when it could not be asked).
        dmabuf: the queue imports dma-bufs (None: unknown, see ``problems`` of the device).
        formats: each ENUM_FMT entry.
        max_width: the largest width TRY_FMT allowed (None: unknown).
        max_height: the largest height TRY_FMT allowed.
    """

    usage: str
    buf_type: int
    capabilities: int
    dmabuf: bool | None
    formats: tuple[V4l2FormatInfo, ...]
    max_width: int | None = None
    max_height: int | None = None

    @property
    def multi_planar_api(self) -> bool:
        """The queue uses the multi-planar API (``*_MPLANE`` buffer type)."""
        return self.buf_type in (
            V4l2BufType.VIDEO_CAPTURE_MPLANE,
            V4l2BufType.VIDEO_OUTPUT_MPLANE,
        )

    @property
    def unmapped(self) -> tuple[str, ...]:
        """The V4L2 formats without a DRM equivalent (their fourcc text)."""
        return tuple(f.v4l2 for f in self.formats if f.drm is None)

    def to_json(self) -> dict[str, object]:
        """The queue as JSON."""
        return {
            "usage": self.usage,
            "buf_type": V4l2BufType(self.buf_type).name,
            "capabilities": [c.name for c in V4l2BufCap if c and c & self.capabilities],
            "dmabuf": self.dmabuf,
            "max_width": self.max_width,
            "max_height": self.max_height,
            "formats": [f.to_json() for f in self.formats],
        }


@dataclass(frozen=True)
class V4l2Info:
    """One V4L2 node as discovered.

    Attributes:
        name: the device id its constraints use (the sysfs name, e.g. ``vivid-000-vid-cap``).
        path: the node.
        caps: its VIDIOC_QUERYCAP answer (None when it could not be opened).
        sysfs: the device's sysfs path.
        by_path: udev's /dev/v4l/by-path links to the node.
        queues: its video queues.
        usages: the constraints, one per queue with mapped formats.
        problems: what could not be asked, and why.
    """

    name: str
    path: str
    caps: V4l2Caps | None
    sysfs: str
    by_path: tuple[str, ...] = ()
    queues: tuple[V4l2QueueInfo, ...] = ()
    usages: tuple[Constraints, ...] = ()
    problems: tuple[str, ...] = ()
    kind: Literal["v4l2"] = field(default="v4l2", init=False)

    @property
    def driver(self) -> str:
        """The driver's name (QUERYCAP), "" when unknown."""
        return self.caps.driver if self.caps else ""

    @property
    def identity(self) -> str:
        """A stable name for the device: its first by-path link, else its sysfs path."""
        return self.by_path[0] if self.by_path else self.sysfs

    def queue(self, usage: str) -> V4l2QueueInfo:
        """The queue of ``usage`` (``capture`` / ``output``).

        Raises:
            UsageError: the node has no such queue.
        """
        for q in self.queues:
            if q.usage == usage:
                return q
        known = ", ".join(q.usage for q in self.queues) or "none"
        raise UsageError(f"V4L2 device {self.name} has no {usage} queue; its queues: {known}")

    def usage(self, name: str) -> Constraints:
        """The constraints of usage ``name``.

        Raises:
            UsageError: the device has no such usage (the message lists its usages).
        """
        return _usage(self.name, self.usages, name)

    def to_json(self) -> dict[str, object]:
        """Everything discovered, with each usage's ``Constraints.to_json()``."""
        caps = self.caps
        return {
            "kind": self.kind,
            "name": self.name,
            "path": self.path,
            "driver": self.driver,
            "card": caps.card if caps else "",
            "bus_info": caps.bus_info if caps else "",
            "device_caps": ([c.name for c in V4l2Cap if c and c & caps.node_caps] if caps else []),
            "multiplanar": caps.is_multiplanar if caps else False,
            "streaming": caps.is_streaming if caps else False,
            "sysfs": self.sysfs,
            "by_path": list(self.by_path),
            "identity": self.identity,
            "queues": [q.to_json() for q in self.queues],
            "usages": [c.to_json() for c in self.usages],
            "problems": list(self.problems),
        }


def _learn_format(
    dev: V4l2Device,
    buf_type: V4l2BufType,
    desc: V4l2FormatDesc,
    fmt: PixelFormat,
    multi: bool,
    sizes: Sequence[tuple[int, int]],
) -> tuple[LearnedLayout | None, str]:
    samples: list[TrySample] = []
    planes = fmt.planes if multi else 1
    for width, height in sizes:
        try:
            got = dev.try_format(buf_type, desc.pixelformat, width, height)
        except KernelError as exc:
            return None, f"TRY_FMT at {width}x{height} failed: {exc}"
        if got.pixelformat != desc.pixelformat or len(got.planes) != planes:
            continue  # the driver swapped the format at this size: not this format's rules
        samples.append(
            TrySample(
                got.width,
                got.height,
                tuple(p.bytesperline for p in got.planes),
                tuple(p.sizeimage for p in got.planes),
            )
        )
    if not samples:
        return None, "TRY_FMT never kept this format"
    try:
        return learn_layout(fmt, samples, multi_buffer=multi), ""
    except UsageError as exc:
        return None, str(exc)


def _queue_info(
    dev: V4l2Device,
    usage: str,
    buf_type: V4l2BufType,
    sizes: Sequence[tuple[int, int]],
    problems: list[str],
) -> V4l2QueueInfo:
    capabilities = 0
    dmabuf: bool | None = None
    try:
        capabilities = int(dev.buffer_capabilities(buf_type))
        dmabuf = bool(capabilities & V4l2BufCap.SUPPORTS_DMABUF)
    except KernelError as exc:
        problems.append(f"buffer capabilities of the {usage} queue: {exc}")
    formats: list[V4l2FormatInfo] = []
    max_size: tuple[int, int] | None = None
    probed = False
    for desc in dev.enum_formats(buf_type):
        text = desc.fourcc.rstrip(" ") + ("-BE" if desc.big_endian else "")
        base = V4l2FormatInfo(text, desc.pixelformat, desc.description)
        if desc.compressed:
            formats.append(_replace_reason(base, "compressed: no plane layout"))
            continue
        if desc.big_endian:
            formats.append(_replace_reason(base, "big-endian variant: no DRM equivalent"))
            continue
        try:
            mapping = v4l2_to_drm(desc.pixelformat)
        except UsageError:
            formats.append(_replace_reason(base, "no DRM format with the same memory layout"))
            continue
        learned, reason = _learn_format(
            dev, buf_type, desc, mapping.drm, mapping.multi_planar, sizes
        )
        formats.append(
            V4l2FormatInfo(
                text,
                desc.pixelformat,
                desc.description,
                mapping.drm,
                mapping.multi_planar,
                learned,
                reason,
            )
        )
        if not probed and learned is not None:
            probed = True
            try:
                got = dev.try_format(buf_type, desc.pixelformat, MAX_PROBE, MAX_PROBE)
            except KernelError as exc:
                problems.append(f"the largest {usage} size: {exc}")
            else:
                max_size = (got.width, got.height)
    return V4l2QueueInfo(
        usage,
        int(buf_type),
        capabilities,
        dmabuf,
        tuple(formats),
        max_size[0] if max_size else None,
        max_size[1] if max_size else None,
    )


def _replace_reason(info: V4l2FormatInfo, reason: str) -> V4l2FormatInfo:
    return V4l2FormatInfo(info.v4l2, info.code, info.description, reason=reason)


def _v4l2_device(
    path: str,
    name: str,
    sysfs_device: str,
    links: tuple[str, ...],
    sizes: Sequence[tuple[int, int]],
) -> V4l2Info:
    problems: list[str] = []
    queues: list[V4l2QueueInfo] = []
    caps: V4l2Caps | None = None
    try:
        with V4l2Device(path) as dev:
            caps = dev.querycap()
            for usage, single, multi in _VIDEO_QUEUES:
                for buf_type in (single, multi):
                    if caps.supports(buf_type):
                        try:
                            queues.append(_queue_info(dev, usage, buf_type, sizes, problems))
                        except DevallocError as exc:
                            problems.append(f"the {usage} queue: {exc}")
                        break
    except DevallocError as exc:
        problems.append(_problem(exc))
    usages: list[Constraints] = []
    for q in queues:
        mapped = [(f.drm, f.multi_planar) for f in q.formats if f.drm is not None]
        learned = [f.learned for f in q.formats if f.learned is not None]
        api = "multi-planar" if q.multi_planar_api else "single-planar"
        dmabuf = {True: "imports dma-bufs", False: "no DMABUF import", None: "DMABUF unknown"}
        constraints = v4l2_usage(
            name,
            q.usage,
            mapped,
            learned,
            max_width=q.max_width,
            max_height=q.max_height,
            description=(
                f"{q.usage} queue of {caps.driver if caps else 'V4L2'} {path} ({api} API, "
                f"{dmabuf[q.dmabuf]}); layout rules learned from TRY_FMT"
            ),
        )
        if constraints is not None:
            usages.append(constraints)
    return V4l2Info(
        name, path, caps, sysfs_device, links, tuple(queues), tuple(usages), tuple(problems)
    )


def _v4l2_nodes(dev: str, sysfs: str) -> Iterator[tuple[str, str, str]]:
    """(node, sysfs name, sysfs device path) for each /dev/videoN, naturally sorted."""
    base = os.path.join(sysfs, SYSFS_V4L2)
    try:
        names = [n for n in os.listdir(base) if re.fullmatch(r"video\d+", n)]
    except OSError:
        names = []
    if not names:
        with contextlib.suppress(OSError):
            names = [n for n in os.listdir(dev) if re.fullmatch(r"video\d+", n)]
    for n in sorted(names, key=natural_key):
        node = os.path.join(dev, n)
        yield node, v4l2_node_name(node, sysfs), _realpath(os.path.join(base, n, "device"))


def discover_v4l2(
    dev: str = "/dev", sysfs: str = "/sys", sizes: Sequence[tuple[int, int]] = PROBE_SIZES
) -> list[V4l2Info]:
    """Every V4L2 node under ``dev`` (see the module doc); a node that cannot be opened is
    listed with the reason in :attr:`V4l2Info.problems`."""
    infos: list[V4l2Info] = []
    seen: set[str] = set()
    for node, sysfs_name, sysfs_device in _v4l2_nodes(dev, sysfs):
        base = os.path.basename(node)
        name = device_id(sysfs_name, base)
        if name in seen:
            name = f"{name}-{base}"
        seen.add(name)
        links = _by_path(os.path.join(dev, "v4l", "by-path"), node)
        infos.append(_v4l2_device(node, name, sysfs_device, links, sizes))
    return infos


# --- both ----------------------------------------------------------------------------------------

DeviceInfo = DrmInfo | V4l2Info


@dataclass(frozen=True)
class Discovery:
    """Every DRM and V4L2 device found.

    Attributes:
        drm: the DRM devices.
        v4l2: the V4L2 nodes.
    """

    drm: tuple[DrmInfo, ...] = ()
    v4l2: tuple[V4l2Info, ...] = ()

    def devices(self) -> list[DeviceInfo]:
        """DRM devices, then V4L2 nodes."""
        return [*self.drm, *self.v4l2]

    def constraints(self) -> list[Constraints]:
        """Every usage of every device."""
        return [c for d in self.devices() for c in d.usages]

    def find(self, name: str) -> DeviceInfo:
        """The device with id ``name`` (or node path).

        Raises:
            UsageError: no such device (the message lists the ids).
        """
        for d in self.devices():
            if name in (d.name, getattr(d, "path", None)) or name in getattr(d, "nodes", ()):
                return d
        known = ", ".join(d.name for d in self.devices()) or "none"
        raise UsageError(f"no discovered device named {name!r}; found: {known}")

    def to_json(self) -> dict[str, object]:
        """``{"drm": [...], "v4l2": [...]}`` with every device's ``to_json()``."""
        return {"drm": [d.to_json() for d in self.drm], "v4l2": [d.to_json() for d in self.v4l2]}


def discover(
    dev: str = "/dev", sysfs: str = "/sys", sizes: Sequence[tuple[int, int]] = PROBE_SIZES
) -> Discovery:
    """Discover every DRM device and V4L2 node (see the module doc)."""
    return Discovery(
        tuple(discover_drm(os.path.join(dev, "dri"), sysfs)),
        tuple(discover_v4l2(dev, sysfs, sizes)),
    )
