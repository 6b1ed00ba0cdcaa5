"""The CLI's refusals (issue 12): deep TOML, undecodable and overlong arguments, negative sizes, a
failing ``examples`` run, and commands that stay registered when the package directory cannot be
listed. Each is exit 2 (or the documented status) with one line on stderr and no traceback."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from typing import Any

import pytest

from devalloc import cli, commands

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str], status: int = 2) -> str:
    """Run ``devalloc ARGV``; check the status and that stderr is one line; return that line."""
    assert cli.main(argv) == status
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def deep(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "deep.toml"
    path.write_text("foo = " + "[" * 600 + "]" * 600 + "\n")
    return path


def test_a_deeply_nested_device_file_is_exit_2(
    deep: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _refused(["negotiate", "-d", str(deep), "--size", "10x10"], capsys)
    assert line == (
        f"devalloc: error: {deep}:1: arrays and inline tables nested more than 32 deep;"
        " device and pipeline files need a few levels"
    )
    line = _refused(["alloc", "-d", f"{deep}:x", "--size", "10x10", "--cpu-only"], capsys)
    assert line.startswith(f"devalloc: error: {deep}:1: arrays and inline tables nested")


def test_a_deeply_nested_pipeline_file_is_exit_2(
    deep: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _refused(["examples", str(deep), "--no-live"], capsys)
    assert line.startswith(f"devalloc: error: {deep}:1: arrays and inline tables nested")


def test_a_pipeline_naming_a_deep_device_file_names_both(
    deep: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipe = deep.parent / "pipe.toml"
    pipe.write_text(
        'name = "p"\nwidth = 64\nheight = 64\n[[devices]]\nprofile = "deep.toml"\nusage = "x"\n'
    )
    line = _refused(["examples", str(pipe), "--no-live"], capsys)
    assert line.startswith(f"devalloc: error: {pipe}:5: {deep}:1: arrays and inline tables")


def test_an_undecodable_dmabuf_name_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    name = os.fsdecode(b"\xff")  # what Python makes of the byte 0xff in argv
    argv = ["alloc", "-d", "rk3399-vop:primary", "--size", "64x64", "--cpu-only", "--name", name]
    line = _refused(argv, capsys)
    assert line == r"devalloc: error: argument --name: not UTF-8 text: '\udcff'"


def test_an_undecodable_dmabuf_name_from_a_real_command_line() -> None:
    """The same through a real argv of bytes (no traceback, exit 2)."""
    code = "import sys; from devalloc.cli import main; sys.exit(main())"
    argv = [sys.executable, "-c", code, "alloc", "-d", "rk3399-vop:primary", "--size", "64x64"]
    proc = subprocess.run(
        [os.fsencode(a) for a in argv] + [b"--cpu-only", b"--name", b"\xff"],
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == b"devalloc: error: argument --name: not UTF-8 text: '\\udcff'\n"


@pytest.mark.parametrize(
    "arg",
    ["\ud800", "a\0b"],
    ids=["surrogate-no-argv-holds", "nul"],
)
def test_arguments_no_command_line_can_hold_are_exit_2(
    arg: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _refused(["negotiate", "-d", arg, "--size", "64x64"], capsys)
    assert line.startswith("devalloc: error: argument 3 ")


def test_a_device_name_too_long_for_a_file_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    name = "a" * 300
    line = _refused(["negotiate", "-d", name, "--size", "64x64"], capsys)
    assert line == (
        f"devalloc: error: {name[:60]!r}... (300 characters): not a usable device file path"
        " (file name too long)"
    )
    line = _refused(["negotiate", "-d", f"{name}:primary", "--size", "64x64"], capsys)
    assert line.endswith("not a usable device file path (file name too long)")


@pytest.mark.parametrize(
    "argv",
    [
        ["negotiate", "-d", "rk3399-vop:primary", "--size", "-5x3"],
        ["negotiate", "--size", "-5x3", "-d", "rk3399-vop:primary", "--json"],
        ["layout", "NV12", "-5x3", "--json"],
        ["layout", "NV12", "-5x3", "--pitch-align", "64"],
        ["alloc", "-d", "rk3399-vop:primary", "--size", "-5x3", "--cpu-only"],
    ],
)
def test_a_negative_size_is_reported_as_a_bad_size(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    line = _refused(argv, capsys)
    assert line == (
        "devalloc: error: size '-5x3' is not WIDTHxHEIGHT with positive integers (1920x1080)"
    )


def test_negative_numbers_are_still_values(capsys: pytest.CaptureFixture[str]) -> None:
    line = _refused(["layout", "NV12", "64x64", "--pitch-align", "-5"], capsys)
    assert line == "devalloc: error: argument --pitch-align: must be at least 1: '-5'"
    line = _refused(["modifier", "-5"], capsys)
    assert "out of range" in line


def test_an_unknown_option_is_still_reported(capsys: pytest.CaptureFixture[str]) -> None:
    line = _refused(["layout", "NV12", "64x64", "--nope"], capsys)
    assert line == "devalloc: error: unrecognized arguments: --nope"


def test_a_control_character_in_an_argument_stays_on_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = _refused(["formats", "\x0c\n"], capsys)
    assert line == r"devalloc: error: unrecognized arguments: \x0c\n"


def test_examples_that_fail_say_so_on_stderr(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (EXAMPLES / "decode-display.toml").read_text()
    assert 'expect = "plan"' in text
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(text.replace('expect = "plan"', 'expect = "conflict"'))
    assert cli.main(["examples", str(wrong), "--no-live"]) == 1
    out, err = capsys.readouterr()
    assert "FAILED: expected conflict, got plan" in out
    assert err == (
        "devalloc: examples: 1 of 1 pipelines did not give what their file expects:"
        " decode-display\n"
    )


def test_examples_of_an_empty_path_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    # Path("") is Path("."): without the check this ran every *.toml of the current directory
    line = _refused(["examples", "", "--no-live"], capsys)
    assert line == "devalloc: error: a pipeline file path is empty"


@pytest.mark.parametrize(
    "argv",
    [
        ["ps", "--proc", "/nonexistent"],
        ["ps", "--proc", ""],
        ["devices", "--dev", "/dev/null"],
        ["heaps", "--proc", "/dev/null"],
    ],
)
def test_a_root_that_is_not_a_directory_is_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    line = _refused(argv, capsys)
    assert line.startswith(f"devalloc: error: argument {argv[1]}: ")


#: The arguments a command cannot parse without.
_REQUIRED = {name: ["-d", "vgem", "--size", "64x64"] for name in ("alloc", "negotiate")}


def _command_modules() -> set[str]:
    folder = pathlib.Path(commands.__file__).parent
    return {p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")}


def test_every_command_module_is_registered() -> None:
    assert {m.__name__.rpartition(".")[2] for m in cli.COMMANDS} == _command_modules()


def test_commands_do_not_depend_on_listing_the_package_directory(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A clone inside a 0700 directory, run after dropping privileges, cannot list
    devalloc/commands/; every command must still be there (issue 12, defect 10)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(commands.__file__)))
    names = _command_modules()  # listed before the directory becomes unreadable
    assert "heaps" in names
    real_listdir = os.listdir
    real_scandir = os.scandir

    def refused(path: str) -> bool:
        return os.path.abspath(path).startswith(package)

    def listdir(path: str = ".") -> list[str]:
        if refused(path):
            raise PermissionError(13, "Permission denied", path)
        return real_listdir(path)

    def scandir(path: str = ".") -> Any:
        if refused(path):
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "listdir", listdir)
    monkeypatch.setattr(os, "scandir", scandir)
    parser = cli.build_parser()
    for name in names:
        args = parser.parse_args([name, *_REQUIRED.get(name, [])])
        assert args.func.__module__ == f"devalloc.commands.{name}"
    assert cli.main(["heaps", "--json"]) == 0
    assert '"heaps"' in capsys.readouterr().out
