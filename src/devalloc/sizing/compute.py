"""Pool sizing: the bytes each memory class needs for pipelines that run at once, the CMA area
that serves them, and what an integrator pastes (``cma=``, a device-tree node, Kconfig).

Example:
    >>> from pathlib import Path
    >>> examples = Path(__file__).resolve().parents[3] / "examples"
    >>> result = size_files([examples / "render-encode.toml"])
    >>> result.classes["contiguous"], result.cma_bytes, result.kernel_cmdline
    (25067520, 27262976, 'cma=26M')

For each pipeline file, negotiation gives the plan (or, for a copy path, both plans) and the
buffer count (``Plan.count``: what every device holds at once plus slack, or the file's fixed
``count``); each buffer is ``PAGE_ALIGN(size)`` bytes of one memory class:

- ``protected``: the plan needs protected memory (a secure heap);
- ``carveout:<location>``: device-local memory (``location`` other than system/any);
- ``contiguous``: physically contiguous (a CMA area);
- ``below-4g``: scattered pages below 4 GiB (``dma_bits`` of 32 or less);
- ``system``: scattered pages anywhere.

Pipelines given together run at once: their bytes add up. A scenario's combinations are
alternatives: each class takes its worst combination, and the CMA area the worst placement
(:class:`~devalloc.sizing.cma.CmaModel`, buffers allocated in file order, a pipeline's buffers
one after the other, after what the kernel already took).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from .._toml import check_path, parse_toml, read_text_file
from ..constraints import MemoryRules
from ..errors import NoPlanError, UsageError
from ..negotiate import NegotiationError, Plan, negotiate
from ..pipeline import Pipeline, loads_pipeline
from .cma import CMA_ALIGNMENT_ORDER, CMA_GRANULE, CmaModel, Placement, page_align
from .scenario import Combination, Scenario, is_scenario, loads_scenario

__all__ = [
    "CLASSES",
    "FULL_KERNEL_CMA_RESERVED",
    "Group",
    "PipelineSize",
    "SizedCombination",
    "Sizing",
    "explain",
    "memory_class",
    "size_files",
    "size_pipeline",
]

#: The fixed memory classes, in report order (``carveout:<location>`` ones come after).
CLASSES: Final[tuple[str, ...]] = ("contiguous", "below-4g", "system", "protected")
#: CmaTotal - CmaFree right after boot on the project's full test kernel (Linux 6.12.117, cma=24M
#: and cma=23M, one boot each; tests/kernel/test_sizing.py records it on every boot): 138 pages, all
#: within the first MiB of the area. Pass another kernel's own measurement with --cma-reserved.
FULL_KERNEL_CMA_RESERVED: Final = 565248


def memory_class(memory: MemoryRules) -> str:
    """The memory class a plan's buffers come from (see the module)."""
    if memory.protected:
        return "protected"
    if memory.location not in ("system", "any"):
        return f"carveout:{memory.location}"
    if memory.contiguous:
        return "contiguous"
    if memory.dma_bits <= 32:
        return "below-4g"
    return "system"


@dataclass(frozen=True)
class Group:
    """The buffers of one plan of a pipeline (a copy path has two groups).

    Attributes:
        role: ``"plan"``, or ``"source"`` / ``"destination"`` of a copy path.
        plan: the negotiated plan.
        memory_class: where its buffers come from.
        buffer_sizes: the layout's bytes per buffer of one image (one per plane buffer).
    """

    role: str
    plan: Plan
    memory_class: str
    buffer_sizes: tuple[int, ...]

    @property
    def count(self) -> int:
        """How many images (the plan's negotiated count)."""
        return self.plan.count

    @property
    def allocated(self) -> tuple[int, ...]:
        """Each buffer of one image as the heap allocates it (``PAGE_ALIGN``)."""
        return tuple(page_align(s) for s in self.buffer_sizes)

    @property
    def total(self) -> int:
        """Bytes of every buffer of every image."""
        return sum(self.allocated) * self.count

    def describe(self) -> str:
        """``"NV12 LINEAR 1920x1080, 1 buffer(s) of 3133440 bytes"``."""
        plan = self.plan
        sizes = " + ".join(str(s) for s in self.buffer_sizes)
        return (
            f"{plan.format.name} {plan.modifier.name} {plan.width}x{plan.height},"
            f" {len(self.buffer_sizes)} buffer(s) of {sizes} bytes"
        )


@dataclass(frozen=True)
class PipelineSize:
    """One pipeline's buffers.

    Attributes:
        pipeline: the pipeline file.
        groups: one group per plan.
    """

    pipeline: Pipeline
    groups: tuple[Group, ...]

    @property
    def name(self) -> str:
        """The pipeline's name."""
        return self.pipeline.name

    def naive_by_class(self) -> dict[str, int]:
        """The integrator's rule of thumb per memory class: width x height x bytes per pixel x
        count, per group (no alignment, no padding rows, no page rounding)."""
        found: dict[str, int] = {}
        for group in self.groups:
            fmt = group.plan.format
            bits = sum(
                b / ((fmt.hsub * fmt.vsub) if i else 1) for i, b in enumerate(fmt.bits_per_pixel)
            )
            value = int(self.pipeline.width * self.pipeline.height * bits / 8 * group.count)
            found[group.memory_class] = found.get(group.memory_class, 0) + value
        return found

    def naive(self) -> int:
        """The rule of thumb over every class."""
        return sum(self.naive_by_class().values())

    def bytes_by_class(self) -> dict[str, int]:
        """Memory class -> bytes."""
        found: dict[str, int] = {}
        for group in self.groups:
            found[group.memory_class] = found.get(group.memory_class, 0) + group.total
        return found


@dataclass(frozen=True)
class SizedCombination:
    """Pipelines that run at once, sized.

    Attributes:
        name: the combination's name.
        scenario: the scenario it belongs to ("" for files given on the command line).
        pipelines: each pipeline's buffers, in order.
        classes: memory class -> bytes.
        cma_order: the CMA buffers in allocation order: (pipeline, group role, bytes).
        placements: where the CMA model puts each of them.
        cma_bytes: the smallest CMA area that serves them.
    """

    name: str
    scenario: str
    pipelines: tuple[PipelineSize, ...]
    classes: dict[str, int]
    cma_order: tuple[tuple[str, str, int], ...]
    placements: tuple[Placement, ...]
    cma_bytes: int

    @property
    def naive(self) -> int:
        """The sum of the pipelines' naive estimates."""
        return sum(p.naive() for p in self.pipelines)

    def naive_by_class(self) -> dict[str, int]:
        """The pipelines' naive estimates per memory class."""
        found: dict[str, int] = {}
        for pipe in self.pipelines:
            for cls, value in pipe.naive_by_class().items():
                found[cls] = found.get(cls, 0) + value
        return _ordered_classes(found)


@dataclass(frozen=True)
class Sizing:
    """The answer: every combination, the worst case per class and the CMA area.

    Attributes:
        combinations: every combination sized.
        classes: memory class -> the most bytes any combination needs of it.
        cma_bytes: the smallest CMA area that serves every combination (0: none needs one).
        worst: the combination that needs the largest CMA area (None when none needs one).
        model: the CMA model used.
        dma_bits: the narrowest DMA reach of a contiguous buffer (the CMA area must lie below
            2^dma_bits), with the devices that need it.
    """

    combinations: tuple[SizedCombination, ...]
    classes: dict[str, int]
    cma_bytes: int
    worst: SizedCombination | None
    model: CmaModel
    dma_bits: tuple[int, tuple[str, ...]] = (64, ())
    pools: dict[str, list[dict[str, object]]] = field(default_factory=dict)

    @property
    def cma_mib(self) -> int:
        """The CMA area in MiB (a multiple of 2)."""
        return self.cma_bytes >> 20

    @property
    def kernel_cmdline(self) -> str:
        """``cma=<N>M`` for the kernel command line ("" when no CMA area is needed)."""
        return f"cma={self.cma_mib}M" if self.cma_bytes else ""

    @property
    def kconfig(self) -> str:
        """``CONFIG_CMA_SIZE_MBYTES=<N>`` ("" when no CMA area is needed)."""
        return f"CONFIG_CMA_SIZE_MBYTES={self.cma_mib}" if self.cma_bytes else ""

    def device_tree(self) -> str:
        """A ``reserved-memory`` node for the CMA area (``shared-dma-pool``, ``reusable``, the
        default CMA area), limited below the narrowest device's DMA reach ("" when no CMA area
        is needed)."""
        size = self.cma_bytes
        if not size:
            return ""
        lines = [
            "reserved-memory {",
            "\t#address-cells = <2>;",
            "\t#size-cells = <2>;",
            "\tranges;",
            "",
            "\tlinux,cma {",
            '\t\tcompatible = "shared-dma-pool";',
            "\t\treusable;",
            f"\t\tsize = <0x{size >> 32:x} 0x{size & 0xFFFFFFFF:08x}>;",
            f"\t\talignment = <0x0 0x{CMA_GRANULE:08x}>;",
        ]
        bits, devices = self.dma_bits
        if bits < 64:
            limit = 1 << bits
            lines.append(
                f"\t\talloc-ranges = <0x0 0x0 0x{limit >> 32:x} 0x{limit & 0xFFFFFFFF:08x}>;"
                f" /* {bits}-bit DMA: {', '.join(devices)} */"
            )
        lines += ["\t\tlinux,cma-default;", "\t};", "};"]
        return "\n".join(lines)

    def carveouts(self) -> dict[str, int]:
        """Device-local memory id -> bytes (the ``carveout:<location>`` classes)."""
        return {
            name.partition(":")[2]: value
            for name, value in self.classes.items()
            if name.startswith("carveout:")
        }

    def to_json(self) -> dict[str, object]:
        """``classes``, ``cma_bytes``, the outputs, and every combination with its buffers."""
        return {
            "classes": self.classes,
            "cma_bytes": self.cma_bytes,
            "cma_mib": self.cma_mib,
            "kernel_cmdline": self.kernel_cmdline,
            "kconfig": self.kconfig,
            "device_tree": self.device_tree(),
            "carveouts": self.carveouts(),
            "cma_dma_bits": self.dma_bits[0],
            "model": {
                "reserved": self.model.reserved,
                "alignment_order": self.model.alignment_order,
                "granule": self.model.granule,
            },
            "worst": self.worst.name if self.worst else None,
            "pools": self.pools,
            "combinations": [_combination_json(c) for c in self.combinations],
        }


def _combination_json(comb: SizedCombination) -> dict[str, object]:
    return {
        "name": comb.name,
        "scenario": comb.scenario,
        "classes": comb.classes,
        "cma_bytes": comb.cma_bytes,
        "naive_bytes": comb.naive,
        "naive_classes": comb.naive_by_class(),
        "cma_buffers": [size for _p, _r, size in comb.cma_order],
        "pipelines": [
            {
                "name": p.name,
                "naive_bytes": p.naive(),
                "classes": p.bytes_by_class(),
                "groups": [
                    {
                        "role": g.role,
                        "class": g.memory_class,
                        "format": g.plan.format.name,
                        "modifier": g.plan.modifier.name,
                        "devices": list(g.plan.devices),
                        "buffer_sizes": list(g.buffer_sizes),
                        "allocated": list(g.allocated),
                        "count": g.count,
                        "bytes": g.total,
                    }
                    for g in p.groups
                ],
            }
            for p in comb.pipelines
        ],
        "placements": [
            {
                "pipeline": comb.cma_order[p.index][0],
                "size": p.size,
                "offset": p.slot_start,
                "align": p.align,
                "padding": p.padding,
            }
            for p in comb.placements
        ],
    }


def _group(role: str, plan: Plan, pipe: Pipeline) -> Group:
    if plan.layout.size is None:
        raise UsageError(
            f"{pipe.path or pipe.name}: cannot size {plan.format.name}"
            f" {plan.modifier.name}: {plan.layout.note} (the exporter decides its size); give"
            " the pipeline a format or modifier with a known layout"
        )
    return Group(role, plan, memory_class(plan.memory), tuple(plan.layout.buffer_sizes))


def size_pipeline(pipe: Pipeline) -> PipelineSize:
    """Negotiate one pipeline (with its counts) and list its buffers.

    Raises:
        NoPlanError: no plan and no copy path (the conflicts are attached).
        UsageError: a plan whose size only the exporter knows.
    """
    try:
        plan = negotiate(
            pipe.constraints(),
            pipe.width,
            pipe.height,
            pipe.formats,
            cpu_access=pipe.cpu_access,
            known_layout=True,
            counts=pipe.counts(),
            slack=pipe.slack,
        )
    except NegotiationError as exc:
        if exc.copy_path is None:
            raise NoPlanError(
                f"{pipe.path or pipe.name}: cannot size: {exc}", exc.conflicts
            ) from None
        copy = exc.copy_path
        groups = (
            _group("source", copy.source, pipe),
            _group("destination", copy.destination, pipe),
        )
        return PipelineSize(pipe, groups)
    return PipelineSize(pipe, (_group("plan", plan, pipe),))


def _ordered_classes(found: dict[str, int]) -> dict[str, int]:
    names = [c for c in CLASSES if c in found]
    names += sorted(c for c in found if c not in CLASSES)
    return {name: found[name] for name in names}


def _size_combination(
    name: str, scenario: str, pipelines: Sequence[PipelineSize], model: CmaModel
) -> SizedCombination:
    classes: dict[str, int] = {}
    order: list[tuple[str, str, int]] = []
    for pipe in pipelines:
        for cls, value in pipe.bytes_by_class().items():
            classes[cls] = classes.get(cls, 0) + value
        for group in pipe.groups:
            if group.memory_class == "contiguous":
                for _image in range(group.count):
                    order.extend((pipe.name, group.role, size) for size in group.buffer_sizes)
    sizes = [size for _p, _r, size in order]
    placements = tuple(model.place(sizes)) if sizes else ()
    area = model.area(sizes) if sizes else 0
    return SizedCombination(
        name, scenario, tuple(pipelines), _ordered_classes(classes), tuple(order), placements, area
    )


def _read(raw: object, cache: dict[Path, object]) -> object:
    """A pipeline (sized) or a scenario, by what the TOML file holds."""
    path = check_path(raw, "pipeline or scenario file")  # a UsageError, not Path's TypeError
    key = path.resolve()
    if key in cache:
        return cache[key]
    text = read_text_file(path, "pipeline or scenario file")
    data, source = parse_toml(text, str(path), "pipeline or scenario file")
    item: object
    if is_scenario(data):
        item = loads_scenario(text, source)
    else:
        item = size_pipeline(loads_pipeline(text, source, path.parent))
    cache[key] = item
    return item


def _pipeline(path: Path, cache: dict[Path, object], where: str) -> PipelineSize:
    item = _read(path, cache)
    if not isinstance(item, PipelineSize):
        raise UsageError(f"{where}: {path} is a scenario file; a combination lists pipeline files")
    return item


def size_files(
    paths: Sequence[str | Path],
    *,
    reserved: int = FULL_KERNEL_CMA_RESERVED,
    alignment_order: int = CMA_ALIGNMENT_ORDER,
) -> Sizing:
    """Size pipeline files (given together: they run at once, one combination) and scenario files
    (each adds its combinations); the answer is the worst case over every combination.

    Raises:
        UsageError: no file, an unreadable or invalid file, a scenario naming a scenario.
        NoPlanError: a pipeline with neither a plan nor a copy path.
    """
    if isinstance(paths, str | bytes) or not paths:
        raise UsageError("devalloc size needs at least one pipeline or scenario file")
    model = CmaModel(reserved, alignment_order)
    cache: dict[Path, object] = {}
    together: list[PipelineSize] = []
    scenarios: list[Scenario] = []
    for raw in paths:
        item = _read(raw, cache)
        if isinstance(item, Scenario):
            scenarios.append(item)
        else:
            assert isinstance(item, PipelineSize)
            together.append(item)
    combos: list[SizedCombination] = []
    if together:
        name = " + ".join(p.name for p in together)
        combos.append(_size_combination(name, "", together, model))
    for scenario in scenarios:
        for combination in scenario.combinations:
            combos.append(_scenario_combination(scenario, combination, cache, model))
    return _worst_case(combos, model)


def _scenario_combination(
    scenario: Scenario, combination: Combination, cache: dict[Path, object], model: CmaModel
) -> SizedCombination:
    where = f"{scenario.path}: combination {combination.name!r}"
    pipes = [_pipeline(path, cache, where) for path in combination.files]
    return _size_combination(combination.name, scenario.name, pipes, model)


def _worst_case(combos: list[SizedCombination], model: CmaModel) -> Sizing:
    classes: dict[str, int] = {}
    for comb in combos:
        for cls, value in comb.classes.items():
            classes[cls] = max(classes.get(cls, 0), value)
    needing = [c for c in combos if c.cma_bytes]
    worst = max(needing, key=lambda c: c.cma_bytes) if needing else None
    bits = 64
    devices: list[str] = []
    pools: dict[str, list[dict[str, object]]] = {}
    for comb in combos:
        for pipe in comb.pipelines:
            pools[pipe.name] = [
                {
                    "role": g.role,
                    "class": g.memory_class,
                    "buffer_bytes": list(g.allocated),
                    "count": g.count,
                }
                for g in pipe.groups
            ]
            for group in pipe.groups:
                if group.memory_class != "contiguous":
                    continue
                reach = group.plan.memory.dma_bits
                if reach < bits:
                    bits, devices = reach, []
                if reach == bits:
                    devices.extend(d for d in group.plan.devices if d not in devices)
    return Sizing(
        tuple(combos),
        _ordered_classes(classes),
        worst.cma_bytes if worst else 0,
        worst,
        model,
        (bits, tuple(devices)),
        pools,
    )


def _mib(value: int) -> str:
    return f"{value} bytes ({value / (1 << 20):.2f} MiB)"


def explain(sizing: Sizing) -> list[str]:
    """Where every byte comes from: per combination, pipeline and group, the layout, the page
    rounding, the count and its provenance, and each CMA buffer's slot and alignment waste."""
    lines: list[str] = []
    model = sizing.model
    for comb in sizing.combinations:
        title = f"{comb.scenario}: {comb.name}" if comb.scenario else comb.name
        lines.append(f"combination {title}")
        for pipe in comb.pipelines:
            lines.append(f"  pipeline {pipe.name} ({pipe.pipeline.size})")
            for group in pipe.groups:
                plan = group.plan
                record = plan.find("count")
                why = record.note if record is not None else "fixed"
                lines.append(
                    f"    {group.role} {', '.join(plan.devices)}: {group.describe()}"
                    f" -> {group.memory_class}"
                )
                rounded = sum(group.allocated) - sum(group.buffer_sizes)
                lines.append(
                    f"      {sum(group.allocated)} bytes per image (layout"
                    f" {sum(group.buffer_sizes)} + {rounded} page rounding) x count"
                    f" {group.count} ({why}) = {group.total}"
                )
            lines.append(f"    naive w x h x bpp x count: {pipe.naive()} bytes")
        for cls, value in comb.classes.items():
            lines.append(f"  {cls}: {_mib(value)}")
        if comb.placements:
            lines.append(
                f"  CMA placement (first fit, alignment order capped at"
                f" {model.alignment_order}, {model.reserved} bytes taken at boot):"
            )
            for placement in comb.placements:
                owner, role, _size = comb.cma_order[placement.index]
                lines.append(
                    f"    #{placement.index} {owner} {role}: {placement.allocated} bytes at"
                    f" offset {placement.slot_start} (aligned to {placement.align},"
                    f" {placement.padding} bytes of alignment waste before it)"
                )
            used = sum(p.allocated for p in comb.placements)
            waste = comb.cma_bytes - used - model.reserved
            lines.append(
                f"  CMA area {_mib(comb.cma_bytes)}: buffers {used}, taken at boot"
                f" {model.reserved}, alignment waste and rounding to {model.granule} bytes {waste}"
            )
    if sizing.worst is not None:
        lines.append(f"worst case for CMA: {sizing.worst.name}: {_mib(sizing.cma_bytes)}")
    return lines
