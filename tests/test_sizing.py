"""Pool sizing (issue 14, part 2): the CMA placement model, scenario files, the bytes per memory
class, ``devalloc size`` and the exhausted-area error (with a stand-in heap)."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devalloc.cli import main
from devalloc.constraints import MemoryRules
from devalloc.errors import NoPlanError, OutOfMemoryError, UsageError
from devalloc.pipeline import load_pipeline
from devalloc.sizing import CmaModel, load_scenario, memory_class, size_files, size_pipeline
from devalloc.sizing.cma import get_order, page_align
from devalloc.sizing.compute import explain
from devalloc.sizing.live import CmaExhaustedError, hold_cma_buffers
from devalloc.sizing.observe import observed_class, size_observed

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MIB = 1 << 20


def test_get_order_and_page_align_follow_the_kernel() -> None:
    assert [get_order(n) for n in (1, 4096, 4097, 8192, 8193, MIB, MIB + 1)] == [
        0,
        0,
        1,
        1,
        2,
        8,
        9,
    ]
    assert [page_align(n) for n in (1, 4096, 4097)] == [4096, 4096, 8192]


def test_alignment_is_the_order_of_the_size_capped_by_config_cma_alignment() -> None:
    model = CmaModel()
    assert model.alignment(4096) == 4096
    assert model.alignment(5000) == 8192
    assert model.alignment(300 * 1024) == 512 * 1024
    assert model.alignment(int(3.2 * MIB)) == MIB  # order 10, capped at 8: 1 MiB
    assert CmaModel(alignment_order=12).alignment(int(3.2 * MIB)) == 4 * MIB


def test_first_fit_fills_the_holes_alignment_leaves() -> None:
    model = CmaModel(reserved=4096)
    placed = model.place([MIB, 8192, MIB + 4096, 4096])
    assert [p.slot_start for p in placed] == [MIB, 8192, 2 * MIB, 4096]
    assert [p.padding for p in placed] == [MIB - 4096, 4096, 0, 0]
    # 1 MiB + 4 KiB needs order 9 (capped at 8): its slot starts on a MiB, the tail wastes the rest
    assert model.area([MIB, 8192, MIB + 4096, 4096]) == 4 * MIB


def _bitmap_reference(sizes: list[int], reserved: int, order_cap: int) -> list[int]:
    """An independent page bitmap with the kernel's bitmap_find_next_zero_area_off (offset 0)."""
    bitmap: list[bool] = [True] * (page_align(reserved) // 4096) if reserved else []
    starts = []
    for size in sizes:
        pages = page_align(size) // 4096
        mask = (1 << min(get_order(size), order_cap)) - 1
        index = 0
        while True:
            while index < len(bitmap) and bitmap[index]:
                index += 1
            index = (index + mask) & ~mask
            end = index + pages
            if end > len(bitmap):
                bitmap.extend([False] * (end - len(bitmap)))
            busy = [i for i in range(index, end) if bitmap[i]]
            if not busy:
                break
            index = busy[-1] + 1
        for i in range(index, end):
            bitmap[i] = True
        starts.append(index * 4096)
    return starts


@settings(max_examples=150, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 3 * MIB), min_size=1, max_size=12),
    reserved=st.integers(0, MIB),
    cap=st.integers(0, 9),
)
def test_the_model_places_like_the_kernel_bitmap_and_its_area_is_tight(
    sizes: list[int], reserved: int, cap: int
) -> None:
    model = CmaModel(reserved=reserved, alignment_order=cap)
    placed = model.place(sizes)
    assert [p.slot_start for p in placed] == _bitmap_reference(sizes, reserved, cap)
    area = model.area(sizes)
    ends = [p.end for p in placed]
    assert area % model.granule == 0
    assert max(ends) <= area  # everything fits at the answer
    assert max(ends) > area - model.granule  # one granule less leaves a buffer without room


def test_invalid_model_parameters_are_usage_errors() -> None:
    for kwargs in ({"reserved": -1}, {"alignment_order": 13}, {"granule": 3000}):
        with pytest.raises(UsageError):
            CmaModel(**kwargs)
    with pytest.raises(UsageError, match="positive integer"):
        CmaModel().place([0])


def test_memory_classes() -> None:
    assert memory_class(MemoryRules(contiguous=True, dma_bits=32)) == "contiguous"
    assert memory_class(MemoryRules(dma_bits=32)) == "below-4g"
    assert memory_class(MemoryRules()) == "system"
    assert memory_class(MemoryRules(protected=True, contiguous=True)) == "protected"
    assert memory_class(MemoryRules(location="vram:card0")) == "carveout:vram:card0"


def test_render_encode_in_exact_bytes_beside_the_naive_estimate() -> None:
    sizing = size_files([EXAMPLES / "render-encode.toml"], reserved=0)
    (comb,) = sizing.combinations
    (pipe,) = comb.pipelines
    # ABGR8888 1920x1080, height padded to 1088 rows by the encoder: 7680 x 1088 bytes, 3 frames
    assert sizing.classes == {"contiguous": 3 * 7680 * 1088}
    assert pipe.naive() == 1920 * 1080 * 4 * 3
    # each 8355840-byte frame starts on a MiB: 0, 8, 16 MiB -> ends at 24 MiB - 32768 -> 24 MiB
    assert [p.slot_start for p in comb.placements] == [0, 8 * MIB, 16 * MIB]
    assert sizing.cma_bytes == 24 * MIB
    assert sizing.kernel_cmdline == "cma=24M"
    assert sizing.kconfig == "CONFIG_CMA_SIZE_MBYTES=24"
    tree = sizing.device_tree()
    assert 'compatible = "shared-dma-pool";' in tree
    assert "reusable;" in tree
    assert "size = <0x0 0x01800000>;" in tree
    assert "alloc-ranges = <0x0 0x0 0x0 0x40000000>;" in tree  # the encoder's 30-bit DMA
    assert sizing.pools["render-encode"] == [
        {"role": "plan", "class": "contiguous", "buffer_bytes": [8355840], "count": 3}
    ]


def test_a_scenario_takes_the_worst_combination_per_class() -> None:
    sizing = size_files([EXAMPLES / "scenarios" / "video-call.toml"])
    names = [c.name for c in sizing.combinations]
    assert len(names) == 3
    assert sizing.worst is not None
    assert sizing.worst.name == names[2]  # every pipeline at once
    for cls, value in sizing.classes.items():
        assert value == max(c.classes.get(cls, 0) for c in sizing.combinations)
    assert sizing.cma_bytes == max(c.cma_bytes for c in sizing.combinations)
    # pinned too: the two lines above compute the answer the way size_files does
    assert sizing.classes == {"contiguous": 39813120, "below-4g": 33177600, "system": 7372800}
    assert sizing.cma_bytes == 42 * MIB
    data: dict[str, Any] = json.loads(json.dumps(sizing.to_json()))  # plain JSON throughout
    assert data["classes"] == sizing.classes
    assert data["cma_bytes"] == sizing.cma_bytes
    worst = next(c for c in data["combinations"] if c["name"] == data["worst"])
    # the webcam's own YUYV frames are system memory: 1280 x 720 x 2 bytes x 4
    assert worst["naive_classes"]["system"] == 1280 * 720 * 2 * 4
    assert sum(worst["naive_classes"].values()) == worst["naive_bytes"]
    # the copy path: the webcam's own buffers are system memory, the panel's contiguous
    copy = next(p for p in sizing.worst.pipelines if p.name == "webcam-display-copy")
    assert [(g.role, g.memory_class) for g in copy.groups] == [
        ("source", "system"),
        ("destination", "contiguous"),
    ]


def test_pipeline_files_given_together_run_at_once() -> None:
    alone = size_files([EXAMPLES / "render-encode.toml"])
    both = size_files([EXAMPLES / "render-encode.toml", EXAMPLES / "webcam-display-copy.toml"])
    (comb,) = both.combinations
    assert comb.name == "render-encode + webcam-display-copy"
    assert both.classes["contiguous"] == alone.classes["contiguous"] + 4 * 3686400
    assert both.cma_bytes > alone.cma_bytes


def test_small_buffers_waste_most_of_their_slot() -> None:
    sizing = size_files([EXAMPLES / "scenarios" / "small-panel.toml"], reserved=0)
    ui_only = sizing.combinations[0]
    # 1536000 bytes (800x480 ARGB8888): order 9, capped at 8: one per 1 MiB step, 2 MiB each
    assert [p.slot_start for p in ui_only.placements] == [0, 2 * MIB, 4 * MIB]
    assert ui_only.cma_bytes == 6 * MIB
    lines = explain(sizing)
    assert any("bytes of alignment waste before it" in line for line in lines)
    assert any(line.startswith("worst case for CMA: UI over the camera preview") for line in lines)


def test_what_cannot_be_sized_says_why() -> None:
    with pytest.raises(NoPlanError, match="cannot size"):
        size_files([EXAMPLES / "secure-decode-cpu-read.toml"])
    with pytest.raises(UsageError, match="the exporter decides its size"):
        size_files([EXAMPLES / "hevc-scanout.toml"])
    with pytest.raises(UsageError, match="at least one"):
        size_files([])


def _write(folder: Path, text: str) -> Path:
    path = folder / "s.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('scenario = "x"\n', r"at least one \[\[combinations\]\]"),
        ('scenario = "a b"\n', r"s.toml:1: scenario must be a name"),
        (
            'scenario = "x"\n[[combinations]]\nname = "n"\npipelines = []\n',
            "names no pipeline file",
        ),
        (
            'scenario = "x"\n[[combinations]]\nname = "n"\npipelines = ["a.toml", "a.toml"]\n',
            "repeats a file",
        ),
        (
            'scenario = "x"\nsenario = 1\n[[combinations]]\nname = "n"\npipelines = ["a"]\n',
            r"unknown key senario \(did you mean scenario\?\)",
        ),
        ('scenario = "x"\n[[combinations]]\nname = "n"\npipeline = ["a.toml"]\n', "unknown key"),
    ],
)
def test_scenario_file_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load_scenario(_write(tmp_path, text))


def test_a_combination_must_list_pipelines_not_scenarios(tmp_path: Path) -> None:
    inner = tmp_path / "inner.toml"
    inner.write_text('scenario = "i"\n[[combinations]]\nname = "n"\npipelines = ["x.toml"]\n')
    outer = _write(
        tmp_path, 'scenario = "o"\n[[combinations]]\nname = "n"\npipelines = ["inner.toml"]\n'
    )
    with pytest.raises(UsageError, match="is a scenario file; a combination lists pipeline files"):
        size_files([outer])


def test_cli_json_explain_and_plot_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = str(EXAMPLES / "scenarios" / "hd-encode.toml")
    assert main(["size", scenario, "--json", "--explain"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["classes"] == {"contiguous": 25067520}
    assert data["cma_bytes"] == 26 * MIB
    assert data["kernel_cmdline"] == "cma=26M"
    assert any("alignment waste" in line for line in data["explain"])
    assert main(["size", scenario]) == 0
    out = capsys.readouterr().out
    assert "kernel command line: cma=26M" in out
    assert "CONFIG_CMA_SIZE_MBYTES=26" in out
    assert main(["size", scenario, "--plot", str(tmp_path / "x.txt")]) == 2
    assert "--plot writes .svg or .png" in capsys.readouterr().err
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # as if not installed
    assert main(["size", scenario, "--plot", str(tmp_path / "x.svg")]) == 2
    err = capsys.readouterr().err
    assert "--plot needs matplotlib" in err
    assert "pip install 'devalloc[plot]'" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "x.svg").exists()
    assert main(["size", str(tmp_path / "missing.toml")]) == 2


def test_cli_plot_draws_a_stacked_bar_when_matplotlib_is_there(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "sizing.svg"
    # In a process of its own, as a user runs it: importing matplotlib.pyplot into a process that
    # already loaded numpy and Debian's GStreamer bindings (the gst tests run earlier in this
    # session) crashes with SIGSEGV inside matplotlib's import, with no devalloc code involved.
    scenario = str(EXAMPLES / "scenarios" / "video-call.toml")
    code = "import sys; from devalloc.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = [sys.executable, "-c", code, "size", scenario, "--plot", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text(encoding="utf-8").lstrip().startswith("<?xml")


class _Buffer:
    def __init__(self, size: int, closed: list[int]) -> None:
        self.size = page_align(size)
        self._closed = closed

    def close(self) -> None:
        self._closed.append(self.size)


class _Heap:
    """A stand-in CMA heap that refuses the allocation after ``room`` buffers."""

    path = "/dev/dma_heap/reserved"

    def __init__(self, room: int) -> None:
        self.room = room
        self.closed: list[int] = []

    def allocate(self, size: int) -> _Buffer:
        if self.room == 0:
            raise OutOfMemoryError(errno.ENOMEM, "allocate", path=self.path)
        self.room -= 1
        return _Buffer(size, self.closed)


def test_an_exhausted_area_says_by_how_much_and_keeps_nothing(tmp_path: Path) -> None:
    sizing = size_files([EXAMPLES / "scenarios" / "hd-encode.toml"])
    assert sizing.worst is not None
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemTotal: 1 kB\nCmaTotal: {24 * 1024} kB\nCmaFree: 1024 kB\n")
    heap = _Heap(room=2)
    with pytest.raises(CmaExhaustedError) as caught:
        hold_cma_buffers(heap, sizing.worst, sizing.cma_bytes, meminfo)  # type: ignore[arg-type]
    error = caught.value
    assert (error.needed, error.total, error.short, error.placed) == (
        26 * MIB,
        24 * MIB,
        2 * MIB,
        2,
    )
    assert error.errno == errno.ENOMEM
    assert "the CMA area is exhausted: buffer #2 of 3" in str(error)
    assert "2097152 bytes short (2.00 MiB)" in str(error)
    assert heap.closed == [8355840, 8355840]  # both held buffers released
    held = hold_cma_buffers(_Heap(room=3), sizing.worst, sizing.cma_bytes, meminfo)  # type: ignore[arg-type]
    assert len(held.buffers) == 3
    assert len(held.latencies) == 3
    held.close()
    assert held.buffers == []


@pytest.mark.parametrize(
    "path", sorted((EXAMPLES / "scenarios" / "pipelines").glob("*.toml")), ids=lambda p: p.stem
)
def test_the_scenario_pipelines_negotiate_as_they_expect(path: Path) -> None:
    pipe = load_pipeline(path)
    assert pipe.name == path.stem
    sized = size_pipeline(pipe)
    roles = [g.role for g in sized.groups]
    assert roles == (["plan"] if pipe.expect == "plan" else ["source", "destination"])


def test_every_shipped_scenario_sizes() -> None:
    for path in sorted((EXAMPLES / "scenarios").glob("*.toml")):
        sizing = size_files([path])
        assert sizing.worst is not None, path
        assert sizing.cma_bytes >= sizing.classes["contiguous"]


def test_pipelines_without_contiguous_buffers_need_no_cma_area(
    capsys: pytest.CaptureFixture[str],
) -> None:
    sizing = size_files([EXAMPLES / "decode-display.toml"])
    # NV12 1920x1088 behind the 32-bit IOMMUs: 6 frames (VPU holds 4, VOP 2; the file's count 6)
    assert sizing.classes == {"below-4g": 6 * 3133440}
    assert (sizing.cma_bytes, sizing.worst) == (0, None)
    assert (sizing.kernel_cmdline, sizing.kconfig, sizing.device_tree()) == ("", "", "")
    assert main(["size", str(EXAMPLES / "decode-display.toml")]) == 0
    assert "CMA area: none needed" in capsys.readouterr().out


def test_sizing_from_observed_snapshots_takes_the_peak(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    quiet = {"buffers": [{"inode": 3, "size": 3 * MIB, "exp_name": "cma_heap"}]}
    busy = {
        "buffers": [
            {"inode": 5, "size": MIB + 1, "exp_name": "cma_heap"},
            {"inode": 4, "size": MIB, "exp_name": "my,cma"},  # a device-tree area's heap
            {"inode": 6, "size": 100, "exp_name": "system"},
            {"inode": 7, "size": 8192, "exp_name": "vkms"},
            {"inode": 8, "size": 0, "exp_name": "cma_heap"},  # a size the scan did not read
        ]
    }
    observed = size_observed([quiet, busy], CmaModel(reserved=0), frozenset({"my,cma"}))
    # the peak per class: the quiet snapshot's 3 MiB of CMA, the busy one's other classes
    assert observed.classes == {"contiguous": 3 * MIB, "system": 4096, "exporter:vkms": 8192}
    # inode order: 1 MiB at 0, then 1 MiB + 1 byte at 1 MiB (its slot is MiB-aligned) -> 4 MiB
    assert observed.snapshots[1] == (
        {"contiguous": 2 * MIB + 4096, "system": 4096, "exporter:vkms": 8192},
        4 * MIB,
    )
    assert observed.cma_bytes == 4 * MIB
    assert observed_class(None) == "exporter:unknown"
    assert observed_class("reserved") == "contiguous"  # Linux 6.12 names buffers after the heap
    assert observed_class("my,cma") == "exporter:my,cma"
    with pytest.raises(UsageError, match="not a devalloc ps --json report"):
        size_observed([{"processes": []}], CmaModel())
    with pytest.raises(UsageError, match="integer inode and size"):
        size_observed([{"buffers": [{"size": "1"}]}], CmaModel())
    with pytest.raises(UsageError, match="at least one"):
        size_observed([], CmaModel())
    snap = tmp_path / "busy.json"
    snap.write_text(json.dumps(busy), encoding="utf-8")
    args = ["size", "--observed", str(snap), "--cma-reserved", "0", "--cma-heap", "my,cma"]
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cma_bytes"] == 4 * MIB
    assert main(["size", "--observed", str(snap)]) == 0
    assert "exporter:vkms" in capsys.readouterr().out
    assert main(["size", "--observed", str(snap), str(EXAMPLES / "render-encode.toml")]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    assert main(["size", "--observed", str(bad)]) == 2
    assert "not JSON" in capsys.readouterr().err
    assert main(["size"]) == 2


@pytest.mark.parametrize(
    ("path", "message"),
    [("", "path is empty"), ("a\0b", "holds a NUL"), (None, "not a NoneType")],
)
def test_size_files_refuses_a_bad_path_with_a_usage_error(path: object, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        size_files([path])  # type: ignore[list-item]


def test_a_scenario_pipeline_path_with_a_nul_is_a_usage_error(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        'scenario = "s"\n[[combinations]]\nname = "a"\npipelines = ["a\\u0000b.toml"]\n'
    )
    with pytest.raises(UsageError, match="holds a NUL"):
        size_files([scenario])


def test_a_deeply_nested_snapshot_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snap = tmp_path / "deep.json"
    snap.write_text("[" * 200_000)
    assert main(["size", "--observed", str(snap)]) == 2
    assert "nested too deep" in capsys.readouterr().err
