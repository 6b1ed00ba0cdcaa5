"""Pipeline files (devalloc.pipeline) and the example pipelines in examples/: the loader's strict
errors, and every example negotiating to what its ``expect`` says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devalloc.constraints import BufferCounts, load_constraints
from devalloc.errors import UsageError
from devalloc.formats import MAX_DIMENSION
from devalloc.negotiate import (
    NegotiationError,
    Plan,
    negotiate,
    propose_copy_path,
    try_negotiate,
)
from devalloc.pipeline import (
    Pipeline,
    load_pipeline,
    loads_pipeline,
    pipeline_paths,
)
from devalloc.profiles import profile_names, profile_path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXAMPLE_PATHS = pipeline_paths(EXAMPLES)

MINIMAL = """\
name = "p"
width = 640
height = 480

[[devices]]
profile = "vivid"
usage = "capture"
"""


def _outcome(pipe: Pipeline) -> str:
    """What negotiating the pipeline gives: plan, copy (no plan, a copy path) or conflict."""
    failure: NegotiationError | None = None
    try:
        negotiate(
            pipe.constraints(),
            pipe.width,
            pipe.height,
            pipe.formats,
            cpu_access=pipe.cpu_access,
            counts=pipe.counts(),
            slack=pipe.slack,
        )
    except NegotiationError as exc:
        failure = exc
    if failure is None:
        return "plan"
    assert failure.conflicts
    return "copy" if failure.copy_path is not None else "conflict"


def _error(text: str, tmp_path: Path, name: str = "pipe.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UsageError) as err:
        load_pipeline(path)
    return str(err.value)


# ---------------------------------------------------------------------------------------------
# The examples.


def test_the_examples_cover_the_required_pipelines() -> None:
    names = {p.stem for p in EXAMPLE_PATHS}
    assert {"camera-npu-display", "decode-display", "render-encode"} <= names
    expects = [load_pipeline(p).expect for p in EXAMPLE_PATHS]
    assert {"plan", "copy", "conflict"} <= set(expects)
    assert (EXAMPLES / "README.md").is_file()


@pytest.mark.parametrize("path", EXAMPLE_PATHS, ids=lambda p: p.stem)
def test_every_example_negotiates_as_it_expects(path: Path) -> None:
    pipe = load_pipeline(path)
    assert pipe.name == path.stem
    assert pipe.expect is not None, "every example says what it should give"
    assert _outcome(pipe) == pipe.expect


@pytest.mark.parametrize("path", EXAMPLE_PATHS, ids=lambda p: p.stem)
def test_every_example_is_explained_in_the_readme(path: Path) -> None:
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    assert path.name in readme
    for label in load_pipeline(path).labels:
        assert label in readme


def test_camera_npu_display_shares_xrgb8888_below_4_gib() -> None:
    pipe = load_pipeline(EXAMPLES / "camera-npu-display.toml")
    assert pipe.labels == ("rkisp1:selfpath", "rk3568-rknpu:input-rgbx", "rk3399-vop:primary")
    plan = negotiate(pipe.constraints(), pipe.width, pipe.height)
    assert plan.format.name == "XRGB8888"
    assert plan.modifier.is_linear
    assert plan.memory.dma_bits == 32
    assert not plan.memory.contiguous
    assert plan.layout.planes[0].pitch % 64 == 0  # the NPU's row alignment


def test_decode_display_keeps_macroblock_rows() -> None:
    pipe = load_pipeline(EXAMPLES / "decode-display.toml")
    plan = negotiate(pipe.constraints(), pipe.width, pipe.height, pipe.formats)
    assert plan.format.name == "NV12"
    assert plan.layout.planes[0].rows == 1088
    assert plan.layout.planes[0].pitch % 16 == 0
    assert plan.layout.planes[1].offset == plan.layout.planes[0].size  # one buffer


def test_render_encode_is_contiguous_in_the_low_gib() -> None:
    pipe = load_pipeline(EXAMPLES / "render-encode.toml")
    plan = negotiate(pipe.constraints(), pipe.width, pipe.height)
    assert plan.memory.contiguous
    assert plan.memory.dma_bits == 30
    assert plan.modifier.is_linear  # the encoder reads raster frames only
    assert plan.layout.planes[0].pitch % 64 == 0
    assert plan.layout.planes[0].rows % 16 == 0


def test_the_copy_examples_copy_from_the_camera_to_the_display() -> None:
    for name, source, destination in (
        ("webcam-display-copy", "uvc-webcam:capture", "stm32mp1-ltdc:primary"),
        ("vimc-vkms-copy", "vimc:capture", "vkms:primary"),
    ):
        pipe = load_pipeline(EXAMPLES / f"{name}.toml")
        result = try_negotiate(pipe.constraints(), pipe.width, pipe.height)
        assert not isinstance(result, Plan)
        assert [c.attribute for c in result] == ["format"]
        path = propose_copy_path(pipe.constraints(), pipe.width, pipe.height)
        assert path is not None
        assert path.source_devices == (source,)
        assert path.destination_devices == (destination,)


def test_the_secure_example_conflicts_on_protected_memory() -> None:
    pipe = load_pipeline(EXAMPLES / "secure-decode-cpu-read.toml")
    assert pipe.cpu_access == "r"
    result = try_negotiate(
        pipe.constraints(), pipe.width, pipe.height, pipe.formats, cpu_access=pipe.cpu_access
    )
    assert not isinstance(result, Plan)
    assert [c.attribute for c in result] == ["protected"]
    # without the CPU read the same devices have a plan
    plan = try_negotiate(pipe.constraints(), pipe.width, pipe.height, pipe.formats)
    assert isinstance(plan, Plan)
    assert plan.memory.protected


def test_hevc_scanout_leaves_the_sand_column_height_to_the_exporter() -> None:
    pipe = load_pipeline(EXAMPLES / "hevc-scanout.toml")
    plan = negotiate(pipe.constraints(), pipe.width, pipe.height)
    assert plan.modifier.name == "BROADCOM_SAND128"
    assert plan.layout.opaque
    assert plan.size is None


# ---------------------------------------------------------------------------------------------
# The loader.


def test_a_minimal_pipeline_takes_the_defaults() -> None:
    pipe = loads_pipeline(MINIMAL, "min.toml")
    assert (pipe.name, pipe.width, pipe.height, pipe.size) == ("p", 640, 480, "640x480")
    assert (pipe.formats, pipe.cpu_access, pipe.count, pipe.expect) == (None, "none", 1, None)
    assert pipe.description == ""
    assert pipe.path == "min.toml"
    assert pipe.constraints() == load_constraints("vivid:capture")
    (device,) = pipe.devices
    assert (device.profile, device.usage, device.path) == (
        "vivid",
        "capture",
        profile_path("vivid"),
    )


def test_a_device_without_usage_gives_every_usage_in_file_order() -> None:
    pipe = loads_pipeline(MINIMAL.replace('usage = "capture"\n', ""))
    assert pipe.labels == ("vivid:capture", "vivid:output")
    assert pipe.devices[0].usage is None


def test_formats_are_resolved_to_drm_names_without_duplicates() -> None:
    pipe = loads_pipeline('formats = ["XR24", "nv12", "XRGB8888"]\n' + MINIMAL)
    assert pipe.formats == ("XRGB8888", "NV12")


def test_to_json_names_every_field() -> None:
    pipe = loads_pipeline('expect = "plan"\ncount = 3\n' + MINIMAL, "x.toml")
    data = pipe.to_json()
    assert data["expect"] == "plan"
    assert data["count"] == 3
    assert data["devices"] == [
        {
            "profile": "vivid",
            "usage": "capture",
            "path": str(profile_path("vivid")),
            "labels": ["vivid:capture"],
        }
    ]


def test_a_profile_path_is_relative_to_the_pipeline_file(tmp_path: Path) -> None:
    devices = tmp_path / "devices"
    devices.mkdir()
    (devices / "cam.toml").write_text(
        'device = "cam"\n[usages.capture]\naccess = "write"\nformats = ["NV12"]\n',
        encoding="utf-8",
    )
    (tmp_path / "pipe.toml").write_text(
        MINIMAL + '\n[[devices]]\nprofile = "devices/cam.toml"\n', encoding="utf-8"
    )
    pipe = load_pipeline(tmp_path / "pipe.toml")
    assert pipe.labels == ("vivid:capture", "cam:capture")
    assert pipe.devices[1].path == devices / "cam.toml"


def test_a_local_file_named_like_a_bundled_profile_wins(tmp_path: Path) -> None:
    (tmp_path / "vivid").write_text(
        'device = "myvivid"\n[usages.capture]\nformats = ["YUYV"]\n', encoding="utf-8"
    )
    (tmp_path / "pipe.toml").write_text(MINIMAL, encoding="utf-8")
    assert load_pipeline(tmp_path / "pipe.toml").labels == ("myvivid:capture",)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL + "colour = 1\n", r"pipe.toml:8: unknown key devices\[0\].colour"),
        ('nmae = "x"\n' + MINIMAL, r"pipe.toml:1: unknown key nmae \(did you mean name\?\)"),
        (
            MINIMAL + '\n[[devices]]\nprofile = "vgem"\nusge = "import"\n',
            r"pipe.toml:11: unknown key devices\[1\].usge \(did you mean usage\?\)",
        ),
        (MINIMAL + "[extra]\nx = 1\n", r"pipe.toml:8: unknown key extra"),
        (MINIMAL.replace('name = "p"\n', ""), r"pipe.toml: missing key name"),
        (MINIMAL.replace("width = 640\n", ""), r"pipe.toml: missing key width"),
        (MINIMAL.replace("width = 640", "width = 0"), r"pipe.toml:2: width must be from 1 to"),
        (MINIMAL.replace("width = 640", "width = true"), r"pipe.toml:2: width must be an integer"),
        (MINIMAL.replace("height = 480", 'height = "480"'), r"pipe.toml:3: height must be an"),
        (MINIMAL.replace('name = "p"', 'name = "a b"'), r"pipe.toml:1: name must be a name"),
        ("count = 0\n" + MINIMAL, r"pipe.toml:1: count must be from 1"),
        ('cpu_access = "x"\n' + MINIMAL, r"pipe.toml:1: cpu_access must be one of none, r, w, rw"),
        ('expect = "yes"\n' + MINIMAL, r"pipe.toml:1: expect must be one of plan, copy, conflict"),
        ('formats = ["NV99"]\n' + MINIMAL, r"pipe.toml:1: formats \[0\]: unknown pixel format"),
        ("formats = []\n" + MINIMAL, r"pipe.toml:1: formats must be a non-empty list"),
        ('formats = "NV12"\n' + MINIMAL, r"pipe.toml:1: formats must be a non-empty list"),
        (MINIMAL.split("[[devices]]")[0], r"pipe.toml: missing \[\[devices\]\]"),
        (MINIMAL.split("[[devices]]")[0] + "devices = []\n", r"pipe.toml:5: devices must be one"),
        (
            MINIMAL.replace('usage = "capture"', 'usage = "scanout"'),
            r"pipe.toml:7: devices\[0\].usage 'scanout': device vivid \(vivid.toml\) has no such"
            r" usage; its usages: capture, output",
        ),
        (
            MINIMAL.replace('profile = "vivid"', 'profile = "vivdi"'),
            r"pipe.toml:6: devices\[0\].profile 'vivdi': no bundled device profile named"
            r" 'vivdi'; closest: vivid",
        ),
        (
            MINIMAL.replace('profile = "vivid"', 'profile = "nope/cam.toml"'),
            r"pipe.toml:6: devices\[0\].profile 'nope/cam.toml': no such device file",
        ),
        (
            MINIMAL.replace('profile = "vivid"', 'profile = "vivid:output"'),
            r"pipe.toml:6: devices\[0\].profile 'vivid:output': write the usage on its own line",
        ),
        (MINIMAL.replace('profile = "vivid"', "profile = 3"), r"pipe.toml:6: devices\[0\].profile"),
        (
            MINIMAL.replace('profile = "vivid"\n', ""),
            r"pipe.toml:5: missing key devices\[0\].profile",
        ),
        (
            MINIMAL + '\n[[devices]]\nprofile = "vivid"\n',
            r"pipe.toml:9: devices\[1\] gives vivid:capture again \(already from devices\[0\]\)",
        ),
        ("name = \n", r"pipe.toml: invalid TOML"),
    ],
)
def test_bad_pipelines_are_refused_with_file_line_and_key(
    text: str, expected: str, tmp_path: Path
) -> None:
    message = _error(text, tmp_path)
    assert message.startswith(str(tmp_path / "pipe.toml")[: -len("pipe.toml")])
    assert re.search(expected, message), message


def test_a_broken_device_file_is_reported_with_the_pipeline_line(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(
        'device = "bad"\n[usages.x]\nformats = ["NV12"]\ncolour = 1\n', encoding="utf-8"
    )
    message = _error(MINIMAL + '\n[[devices]]\nprofile = "bad.toml"\n', tmp_path)
    assert "pipe.toml:10: " in message
    assert "bad.toml:4: unknown key usages.x.colour" in message


def test_a_missing_pipeline_file_and_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such pipeline file"):
        load_pipeline(tmp_path / "none.toml")
    with pytest.raises(UsageError, match="not a directory of pipeline files"):
        pipeline_paths(tmp_path / "none")


def test_pipeline_paths_lists_toml_files_sorted(tmp_path: Path) -> None:
    for name in ("b.toml", "a.toml", "notes.md"):
        (tmp_path / name).write_text("", encoding="utf-8")
    (tmp_path / "dir.toml").mkdir()
    assert pipeline_paths(tmp_path) == [tmp_path / "a.toml", tmp_path / "b.toml"]


# ---------------------------------------------------------------------------------------------
# Properties.

_KEY_NAMES = st.from_regex(r"[a-z][a-z_]{0,11}", fullmatch=True).filter(
    lambda k: (
        k not in {"name", "description", "width", "height", "formats", "cpu_access"}
        and k not in {"count", "expect", "devices", "profile", "usage"}
    )
)


@settings(max_examples=60, deadline=None)
@given(
    key=_KEY_NAMES,
    extra_devices=st.integers(min_value=0, max_value=3),
    in_device=st.booleans(),
    blank_lines=st.integers(min_value=0, max_value=3),
)
def test_an_unknown_key_is_reported_at_its_own_line(
    key: str, extra_devices: int, in_device: bool, blank_lines: int
) -> None:
    """Wherever an unknown key is written (top level or any [[devices]] table), the error
    names that line and the key's path."""
    names = profile_names()
    lines = ['name = "p"', "# a comment line", "width = 64", "height = 48"]
    tables: list[list[str]] = []
    for i in range(extra_devices + 1):
        tables.append(["", *[""] * blank_lines, "[[devices]]", f'profile = "{names[i]}"'])
    target = len(tables) - 1
    if in_device:
        tables[target].append(f"{key} = 1  # not a key devices take")
    else:
        lines.append(f"{key} = [1,")
        lines.append("  2]")
    text_lines = lines + [line for table in tables for line in table]
    wanted = next(i for i, s in enumerate(text_lines, start=1) if s.startswith(f"{key} ="))
    path = f"devices[{target}].{key}" if in_device else key
    with pytest.raises(UsageError) as err:
        loads_pipeline("\n".join(text_lines) + "\n", "p.toml")
    assert str(err.value).startswith(f"p.toml:{wanted}: unknown key {path}")


@settings(max_examples=40, deadline=None)
@given(
    width=st.integers(min_value=1, max_value=MAX_DIMENSION),
    height=st.integers(min_value=1, max_value=MAX_DIMENSION),
    count=st.integers(min_value=1, max_value=64),
    cpu=st.sampled_from(["none", "r", "w", "rw"]),
    expect=st.sampled_from([None, "plan", "copy", "conflict"]),
    formats=st.lists(st.sampled_from(["NV12", "YUYV", "XRGB8888", "RGB565"]), unique=True),
    profiles=st.lists(st.sampled_from(profile_names()), min_size=1, max_size=4, unique=True),
)
def test_what_is_written_is_what_loads(
    width: int,
    height: int,
    count: int,
    cpu: str,
    expect: str | None,
    formats: list[str],
    profiles: list[str],
) -> None:
    text = [f'name = "gen"\nwidth = {width}\nheight = {height}\ncount = {count}']
    text.append(f'cpu_access = "{cpu}"')
    if expect is not None:
        text.append(f'expect = "{expect}"')
    if formats:
        text.append("formats = [" + ", ".join(f'"{f}"' for f in formats) + "]")
    for name in profiles:
        text.append(f'[[devices]]\nprofile = "{name}"')
    pipe = loads_pipeline("\n".join(text) + "\n")
    assert (pipe.width, pipe.height, pipe.count, pipe.cpu_access) == (width, height, count, cpu)
    assert pipe.expect == expect
    assert pipe.formats == (tuple(formats) if formats else None)
    assert [d.profile for d in pipe.devices] == profiles
    expected = [c.label for name in profiles for c in load_constraints(name)]
    assert list(pipe.labels) == expected


def test_a_pipeline_file_fixes_count_or_leaves_it_to_negotiation() -> None:
    fixed = loads_pipeline("count = 3\nholds = 1\n" + MINIMAL, "x.toml")
    assert (fixed.count_fixed, fixed.counts()) == (True, BufferCounts(1, 3, 3))
    free = loads_pipeline("slack = 0\n" + MINIMAL, "x.toml")
    assert (free.count_fixed, free.slack, free.counts()) == (False, 0, BufferCounts())
    assert free.to_json()["slack"] == 0
    with pytest.raises(UsageError, match=r"x.toml:2: holds 4 is above count 3"):
        loads_pipeline("count = 3\nholds = 4\n" + MINIMAL, "x.toml")


def test_the_camera_example_gets_the_count_its_devices_hold() -> None:
    pipe = load_pipeline(EXAMPLES / "camera-npu-display.toml")
    plan = negotiate(pipe.constraints(), pipe.width, pipe.height, counts=pipe.counts())
    record = plan.find("count")
    assert record is not None
    # rkisp1 holds 2 (curr/next), the VOP 2 (shown + queued): 4 + slack 1, lowered to count 4
    assert plan.count == pipe.count == 4
    assert record.forced_by == ("rk3399-vop:primary", "rkisp1:selfpath", "application")
