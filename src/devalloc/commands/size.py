"""``devalloc size``: the memory a product's pipelines need, per memory class, and the CMA area.

Example:
    $ devalloc size examples/render-encode.toml examples/webcam-display-copy.toml
    $ devalloc size examples/scenarios/video-call.toml --json
    $ devalloc size examples/scenarios/video-call.toml --explain --plot sizing.svg
    $ devalloc ps --json > busy.json; devalloc size --observed busy.json

Pipeline files given together run at the same time; a scenario file lists alternative
combinations, and the answer is the worst case over them (``docs/sizing.md``). Exit status: 0;
2 for bad input (a missing or invalid file, ``--plot`` without matplotlib); 3 when a pipeline
has neither a plan nor a copy path.
"""

from __future__ import annotations

import argparse
import importlib
import json
import textwrap
from pathlib import Path
from typing import Any

from .._toml import read_text_file
from ..errors import UsageError
from ..sizing.cma import CMA_ALIGNMENT_ORDER, CmaModel
from ..sizing.compute import FULL_KERNEL_CMA_RESERVED, Sizing, explain, size_files
from ..sizing.observe import size_observed
from ._common import EXIT_OK, SubParsers, add_json_flag, int_at_least, print_json

__all__ = ["plot", "register"]

_EPILOG = """\
FILE is a pipeline file (examples/*.toml) or a scenario file (examples/scenarios/*.toml).

examples:
  devalloc size examples/render-encode.toml examples/webcam-display-copy.toml
  devalloc size examples/scenarios/video-call.toml --explain
  devalloc size examples/scenarios/video-call.toml --json --plot sizing.svg

exit status: 0 sized, 2 bad input (or --plot without matplotlib), 3 a pipeline has no plan
"""

_INSTALL = "pip install 'devalloc[plot]' (or: pip install matplotlib)"


def register(sub: SubParsers) -> None:
    """Add ``size`` to the CLI."""
    parser = sub.add_parser(
        "size",
        help="size the memory pools (CMA, carveouts, system) for pipelines that run together",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="*", metavar="FILE", help="pipeline or scenario files")
    parser.add_argument(
        "--observed",
        action="append",
        default=[],
        metavar="PS.json",
        help="size from what a real run held instead: devalloc ps --json snapshots (the peak)",
    )
    parser.add_argument(
        "--cma-heap",
        action="append",
        default=[],
        metavar="NAME",
        help="with --observed: another exporter name that is a CMA heap (reserved, linux,cma"
        " and cma_heap are known)",
    )
    parser.add_argument("--explain", action="store_true", help="where every byte comes from")
    parser.add_argument(
        "--plot",
        metavar="OUT",
        help="draw a stacked bar per combination and memory class (.svg or .png; needs matplotlib)",
    )
    parser.add_argument(
        "--cma-reserved",
        type=int_at_least(0),
        default=FULL_KERNEL_CMA_RESERVED,
        metavar="BYTES",
        help="bytes the kernel takes from the CMA area at boot (CmaTotal - CmaFree after boot;"
        f" default {FULL_KERNEL_CMA_RESERVED}, measured on devalloc's full test kernel)",
    )
    parser.add_argument(
        "--cma-alignment",
        type=int_at_least(0),
        default=CMA_ALIGNMENT_ORDER,
        metavar="ORDER",
        help=f"CONFIG_CMA_ALIGNMENT of the kernel (default {CMA_ALIGNMENT_ORDER})",
    )
    add_json_flag(parser)
    parser.set_defaults(func=_run)


def _matplotlib() -> Any:
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        raise UsageError(f"--plot needs matplotlib, which is not installed: {_INSTALL}") from None
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def plot(sizing: Sizing, out: Path, pyplot: Any) -> None:
    """A stacked bar per combination (memory classes stacked, MiB) and the CMA area as a marker.

    Raises:
        UsageError: ``out`` is not a .svg or .png path.
    """
    names = [textwrap.fill(c.name, 22) for c in sizing.combinations]
    figure, axes = pyplot.subplots(figsize=(max(6.0, 2.2 * len(names)), 4.5))
    bottoms = [0.0] * len(names)
    for cls in sizing.classes:
        values = [c.classes.get(cls, 0) / (1 << 20) for c in sizing.combinations]
        axes.bar(names, values, bottom=bottoms, label=cls)
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    areas = [c.cma_bytes / (1 << 20) for c in sizing.combinations]
    axes.scatter(names, areas, marker="_", s=900, color="black", label="CMA area", zorder=3)
    axes.set_ylabel("MiB")
    axes.set_title(f"devalloc size: {sizing.kernel_cmdline or 'no CMA area needed'}")
    axes.legend()
    figure.tight_layout()
    figure.savefig(out)
    pyplot.close(figure)


def _human(sizing: Sizing) -> list[str]:
    lines = [f"worst case over {len(sizing.combinations)} combination(s), per memory class:"]
    for cls, value in sizing.classes.items():
        lines.append(f"  {cls:<12} {value:>12} bytes ({value / (1 << 20):8.2f} MiB)")
    if sizing.worst is None:
        lines.append("CMA area: none needed (no buffer must be physically contiguous)")
    else:
        model = sizing.model
        lines.append(
            f"CMA area: {sizing.cma_bytes} bytes ({sizing.cma_mib} MiB), for"
            f" {sizing.worst.name!r}; modelled: first fit, alignment order capped at"
            f" {model.alignment_order}, {model.reserved} bytes taken at boot, {model.granule >> 20}"
            " MiB steps"
        )
        lines.append(f"  kernel command line: {sizing.kernel_cmdline}")
        lines.append(f"  Kconfig: {sizing.kconfig}")
        lines.append("  device tree:")
        lines.extend("    " + line for line in sizing.device_tree().splitlines())
    carveouts = sizing.carveouts()
    for location, value in carveouts.items():
        lines.append(f"carveout {location}: {value} bytes")
    if not carveouts:
        lines.append("carveouts: none needed")
    lines.append("BufferPool per pipeline (buffer bytes x count):")
    for name, groups in sizing.pools.items():
        for group in groups:
            sizes = " + ".join(str(s) for s in group["buffer_bytes"])  # type: ignore[attr-defined]
            lines.append(
                f"  {name} {group['role']} ({group['class']}): {sizes} bytes x {group['count']}"
            )
    lines.append("per combination: devalloc's bytes (all classes) vs naive w x h x bpp x count:")
    for comb in sizing.combinations:
        total = sum(comb.classes.values())
        lines.append(
            f"  {comb.name}: {total} vs {comb.naive}; CMA area {comb.cma_bytes}"
            + (f" [{comb.scenario}]" if comb.scenario else "")
        )
    return lines


def _observed(args: argparse.Namespace) -> int:
    if args.files or args.plot or args.explain:
        raise UsageError("--observed sizes from snapshots alone: leave out FILE, --plot, --explain")
    snapshots = []
    for path in args.observed:
        try:
            snapshots.append(json.loads(read_text_file(path, "devalloc ps --json snapshot")))
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
        except RecursionError:  # json recurses once per level: never a traceback
            raise UsageError(f"{path}: not a devalloc ps snapshot (nested too deep)") from None
    model = CmaModel(args.cma_reserved, args.cma_alignment)
    observed = size_observed(snapshots, model, frozenset(args.cma_heap))
    if args.json:
        print_json(observed.to_json())
        return EXIT_OK
    print(f"observed peak over {len(snapshots)} snapshot(s), per memory class:")
    for cls, value in observed.classes.items():
        print(f"  {cls:<12} {value:>12} bytes ({value / (1 << 20):8.2f} MiB)")
    print(f"CMA area for the observed CMA buffers: {observed.cma_bytes} bytes")
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    if args.observed:
        return _observed(args)
    if not args.files:
        raise UsageError("devalloc size needs pipeline or scenario files (or --observed PS.json)")
    pyplot = None
    out: Path | None = None
    if args.plot is not None:
        out = Path(args.plot)
        if out.suffix.lower() not in (".svg", ".png"):
            raise UsageError(f"--plot writes .svg or .png, not {args.plot!r}")
        pyplot = _matplotlib()
    sizing = size_files(args.files, reserved=args.cma_reserved, alignment_order=args.cma_alignment)
    if out is not None:
        plot(sizing, out, pyplot)
    if args.json:
        data = sizing.to_json()
        if args.explain:
            data["explain"] = explain(sizing)
        if out is not None:
            data["plot"] = str(out)
        print_json(data)
        return EXIT_OK
    for line in _human(sizing):
        print(line)
    if args.explain:
        print("where every byte comes from:")
        for line in explain(sizing):
            print("  " + line)
    if out is not None:
        print(f"plot: {out}")
    return EXIT_OK
