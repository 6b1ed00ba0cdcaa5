"""Fuzzing the command line (hypothesis): any sub-command with any flags and values -> exit 0, 2
or 3, never a traceback, and a refusal is one line on stderr.

The CLI runs in-process (``devalloc.cli.main(argv)``), so a few hundred command lines take
seconds. Values come from pools that mix good ones with bad ones (negative, zero, huge and
malformed sizes and numbers, unknown formats and devices, deep and broken device and pipeline
files, 300-character names, undecodable bytes as ``os.fsdecode`` gives them from a real argv,
text no argv can hold) and random bytes; what could take long or much memory on the host is
bounded in the pools (small good sizes, counts of at most 4, bench cells of 1 ms; the size caps of
the library are tested where they live). Derandomized, no example database: CI sees the same
command lines every run.
"""

from __future__ import annotations

import contextlib
import io
import os
import pathlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devalloc import cli

from .test_fuzz_toml import FUZZ as TOML_FUZZ

ROOT = pathlib.Path(__file__).resolve().parent.parent
NEGOTIATE_DATA = ROOT / "tests" / "data" / "negotiate"

#: The loaders' fuzz settings (derandomized, no database), with more examples: each is cheap.
FUZZ = settings(TOML_FUZZ, max_examples=400)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Device and pipeline files, good and bad, that the pools name."""
    root = tmp_path_factory.mktemp("cli-fuzz")
    deep = root / "deep.toml"
    deep.write_text("foo = " + "[" * 600 + "]" * 600 + "\n")
    broken = root / "broken.toml"
    broken.write_bytes(b'device = "x\xff"\n[usages.a\n')
    pipe = root / "pipe.toml"
    pipe.write_text((ROOT / "examples" / "decode-display.toml").read_text())
    wrong = root / "wrong-expect.toml"
    wrong.write_text(pipe.read_text().replace('expect = "plan"', 'expect = "conflict"'))
    return {
        "deep": str(deep),
        "broken": str(broken),
        "pipe": str(pipe),
        "wrong": str(wrong),
        "dir": str(root),
        "display": str(NEGOTIATE_DATA / "display.toml"),
    }


_RAW = st.binary(min_size=0, max_size=12).filter(lambda b: b"\0" not in b).map(os.fsdecode)
#: Text that no real argv holds (lone surrogates outside U+DC80..U+DCFF, NUL) next to plain text.
_ANY_TEXT = st.text(max_size=12)
_LONG = st.sampled_from(["a" * 300, "/" + "b" * 5000, "x" * 300 + ":primary"])

SIZES = st.one_of(
    st.sampled_from(
        [
            "64x64",
            "16x8",
            "1x1",
            "-5x3",
            "5x-3",
            "-5x",
            "0x0",
            "0x10",
            "x",
            "",
            "64",
            "64x",
            "1e3x2",
            "99999999x1",
            "1048577x1",
            "2147483648x2147483648",
            "64X64",
            " 64x64",
            "\udcff",
        ]
    ),
    st.builds("{}x{}".format, st.integers(-3, 200), st.integers(-3, 200)),
)
NUMBERS = st.sampled_from(
    [
        "0",
        "1",
        "2",
        "4",
        "-1",
        "0x10",
        "x",
        "",
        "1.5",
        "nan",
        "inf",
        "1e400",
        "9" * 30,
        "-" + "9" * 30,
        "9" * 5000,
    ]
)
FORMATS = st.sampled_from(
    [
        "NV12",
        "XR24",
        "YUYV",
        "XRGB8888",
        "0x3231564e",
        "nope",
        "",
        "NV1",
        "\udcff",
        "0",
        "-1",
        "9" * 30,
    ]
)
MODIFIERS = st.sampled_from(
    [
        "LINEAR",
        "0",
        "0x0100000000000002",
        "I915_Y_TILED",
        "nope",
        "-5",
        "0x" + "f" * 17,
        "9" * 5000,
        "ARM_AFBC(16x16,YTR,SPARSE)",
        "\udcff",
    ]
)
CPU = st.sampled_from(["none", "r", "w", "rw", "x", ""])


def _devices(files: dict[str, str]) -> st.SearchStrategy[str]:
    named = st.sampled_from(
        [
            "rk3399-vop",
            "rk3399-vop:primary",
            "rk3399-vpu:decode",
            "vgem",
            "vgem:import",
            "rpi4",
            "nope",
            "nope:x",
            ":",
            "a:",
            ":b",
            "",
            "-",
            "/dev/zero",
            "/dev/null",
            "/proc/self/mem",
            ".",
            "..",
        ]
    )
    local = st.sampled_from(
        [
            files["deep"],
            files["broken"],
            files["display"],
            files["display"] + ":primary",
            files["display"] + ":nope",
            files["dir"],
            files["pipe"],
        ]
    )
    return st.one_of(named, local, _LONG, _RAW)


def _paths(files: dict[str, str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from([files["dir"], "/nonexistent", "/dev/null", "/proc", "", files["deep"]]),
        _LONG,
        _RAW,
    )


def _pairs(flags: dict[str, st.SearchStrategy[str] | None]) -> st.SearchStrategy[list[str]]:
    """Some of ``flags`` (a value drawn for each that takes one), in any order, sometimes repeated
    or missing their value."""

    @st.composite
    def build(draw: st.DrawFn) -> list[str]:
        argv: list[str] = []
        for _ in range(draw(st.integers(0, 6))):
            flag = draw(st.sampled_from(sorted(flags)))
            values = flags[flag]
            argv.append(flag)
            if values is not None and draw(st.integers(0, 9)) > 0:
                argv.append(draw(values))
        return argv

    return build()


@st.composite
def command_lines(draw: st.DrawFn, files: dict[str, str]) -> list[str]:
    devices = _devices(files)
    paths = _paths(files)
    common: dict[str, st.SearchStrategy[str] | None] = {"--json": None}
    commands: dict[
        str, tuple[list[st.SearchStrategy[str]], dict[str, st.SearchStrategy[str] | None]]
    ] = {
        "info": ([], {}),
        "formats": ([], {}),
        "modifier": ([MODIFIERS], {}),
        "layout": (
            [FORMATS, SIZES],
            {
                "--modifier": MODIFIERS,
                "--pitch-align": NUMBERS,
                "--height-align": NUMBERS,
                "--offset-align": NUMBERS,
                "--size-align": NUMBERS,
                "--extra-rows": NUMBERS,
                "--multi-buffer": None,
            },
        ),
        "negotiate": (
            [],
            {
                "-d": devices,
                "--device": devices,
                "--size": SIZES,
                "--format": FORMATS,
                "--cpu-access": CPU,
                "--prefer-uncached": None,
                "--explain": None,
            },
        ),
        "alloc": (
            [],
            {
                "-d": devices,
                "--size": SIZES,
                "-f": FORMATS,
                "--count": NUMBERS,
                "--cpu-access": CPU,
                "--cpu-only": None,
                "--name": st.one_of(_RAW, _ANY_TEXT, _LONG, st.just("buf")),
            },
        ),
        "bench": (
            [],
            {
                "--sizes": st.sampled_from(
                    [
                        "4096",
                        "0",
                        "-1",
                        "1073741825",
                        "x",
                        "4096,",
                        ",",
                        "",
                        "9" * 5000,
                        "4096,8192",
                    ]
                ),
                "--seconds": st.sampled_from(
                    ["0.001", "0", "-1", "nan", "inf", "61", "x", "1e400"]
                ),
            },
        ),
        "devices": ([], {"--dev": paths, "--sysfs": paths}),
        "heaps": ([], {"--dev": paths, "--sysfs": paths, "--proc": paths}),
        "ps": (
            [],
            {
                "--pid": NUMBERS,
                "--no-maps": None,
                "--proc": paths,
                "--sysfs": paths,
                "--debugfs": paths,
            },
        ),
        "examples": (
            [
                st.sampled_from(
                    [
                        files["pipe"],
                        files["wrong"],
                        files["deep"],
                        files["broken"],
                        "/nonexistent",
                        files["display"],
                    ]
                )
            ],
            {"--no-live": None},
        ),
    }
    name = draw(st.sampled_from(sorted(commands)))
    positionals, flags = commands[name]
    argv = [name] if draw(st.integers(0, 19)) > 0 else [draw(_RAW)]
    argv += [draw(p) for p in positionals if draw(st.integers(0, 9)) > 0]
    argv += draw(_pairs({**common, **flags}))
    if name == "bench" and "--seconds" not in argv:
        argv += ["--seconds", "0.001", "--sizes", "4096"]
    if name == "examples":
        argv.append("--no-live")
    for _ in range(draw(st.integers(0, 2))):  # noise: an unknown flag, a stray value, any text
        noise = draw(
            st.one_of(st.sampled_from(["--nope", "-x", "--", "-", "--size=-5x3"]), _RAW, _ANY_TEXT)
        )
        argv.insert(draw(st.integers(1, len(argv))), noise)
    return argv


def run(argv: list[str]) -> tuple[int, str, str]:
    """``devalloc ARGV`` in-process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli.main(argv)
        except SystemExit as exc:  # --help prints and exits 0, as argparse does
            status = exc.code if isinstance(exc.code, int) else 0
    return status, out.getvalue(), err.getvalue()


def test_known_command_lines(files: dict[str, str]) -> None:
    """The pools' landmarks, each with its exit status: the fuzz below explores around them."""
    assert run(["negotiate", "-d", "rk3399-vop:primary", "--size", "64x64"])[0] == 0
    assert run(["negotiate", "-d", files["deep"], "--size", "10x10"])[0] == 2
    assert run(["examples", files["pipe"], "--no-live"])[0] == 0
    assert run(["examples", files["wrong"], "--no-live"])[0] == 1  # not what the file expects
    assert run(["layout", "NV12", "-5x3", "--json"])[0] == 2


@FUZZ
@given(data=st.data())
def test_any_command_line_exits_0_2_or_3_without_a_traceback(
    files: dict[str, str], data: st.DataObject
) -> None:
    argv = data.draw(command_lines(files), label="argv")
    status, _out, err = run(argv)
    if "--debug" in argv:  # asks for the traceback
        return
    assert "Traceback" not in err, err
    expected = {0, 2, 3}
    if argv[0] == "examples" and files["wrong"] in argv:
        expected.add(1)  # a pipeline that did not give what its file expects: a failed check
    assert status in expected, (status, err)
    if status != 0:
        lines = err.splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith("devalloc: "), err
