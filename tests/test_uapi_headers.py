"""Every struct size, field offset, flag and ioctl number in devalloc.uapi matches the headers.

A C program generated from the uapi modules' ``C_STRUCTS``/``C_CONSTANTS`` is compiled with gcc
against the system's headers (linux-libc-dev for linux/*.h; drm/*.h from libdrm-dev, which ships
the kernel's DRM uapi headers) and its output is compared with the Python side.
"""

from __future__ import annotations

import ctypes
import enum
import os
import pathlib
import shutil
import subprocess
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from devalloc import uapi

STRICT = os.environ.get("DEVALLOC_STRICT") == "1"


def _fields(ctype: Any, base: int, prefix: str) -> Iterator[tuple[str, int]]:
    """(C member designator, Python offset) of every named member, anonymous members flattened."""
    anonymous = set(getattr(ctype, "_anonymous_", ()))
    for entry in ctype._fields_:
        name = entry[0]
        offset = base + getattr(ctype, name).offset
        if name in anonymous:
            yield from _fields(entry[1], offset, prefix)
        else:
            yield prefix + name, offset


def _checks(module: ModuleType) -> tuple[list[str], dict[str, int]]:
    """C printf lines and the expected output for one uapi module."""
    lines: list[str] = []
    expected: dict[str, int] = {}
    for ctype in module.C_STRUCTS:
        cname = ctype._c_type_
        lines.append(f'printf("size|{cname}|%zu\\n", sizeof({cname}));')
        expected[f"size|{cname}"] = ctypes.sizeof(ctype)
        for member, offset in _fields(ctype, 0, ""):
            lines.append(f'printf("offset|{cname}|{member}|%zu\\n", offsetof({cname}, {member}));')
            expected[f"offset|{cname}|{member}"] = offset
        for member in getattr(ctype, "_c_flexible_", ()):
            lines.append(f'printf("offset|{cname}|{member}|%zu\\n", offsetof({cname}, {member}));')
            expected[f"offset|{cname}|{member}"] = ctypes.sizeof(ctype)
    optional: frozenset[str] = getattr(module, "C_OPTIONAL", frozenset())
    for name, value in module.C_CONSTANTS.items():
        line = f'printf("const|{name}|%llu\\n", (unsigned long long)({name}));'
        if name in optional:
            line = f'#ifdef {name}\n{line}\n#else\nprintf("absent|{name}\\n");\n#endif'
        lines.append(line)
        expected[f"const|{name}"] = int(value) % (1 << 64)
    return lines, expected


def _include_dir(tmp: pathlib.Path) -> pathlib.Path:
    """An include dir whose drm/ points at the system's DRM uapi headers."""
    inc = tmp / "include"
    inc.mkdir()
    if not pathlib.Path("/usr/include/drm/drm.h").exists():
        libdrm = pathlib.Path("/usr/include/libdrm")
        if (libdrm / "drm.h").exists():
            (inc / "drm").symlink_to(libdrm)
    return inc


def _compile_and_run(tmp_path: pathlib.Path, modules: tuple[ModuleType, ...]) -> str:
    gcc = shutil.which("gcc")
    if gcc is None:
        if STRICT:
            pytest.fail("gcc is missing: scripts/test-all.sh installs it")
        pytest.skip("gcc is not installed")
    headers = [h for m in modules for h in m.C_HEADERS]
    inc = _include_dir(tmp_path)
    body: list[str] = []
    for module in modules:
        body.extend(_checks(module)[0])
    source = "\n".join(
        [
            "#include <stddef.h>",
            "#include <stdio.h>",
            "#include <fcntl.h>",
            "#include <sys/ioctl.h>",
        ]
        + [f"#include <{h}>" for h in headers]
        + ["int main(void) {", *body, "return 0;", "}"]
    )
    c_file = tmp_path / "check.c"
    c_file.write_text(source)
    exe = tmp_path / "check"
    proc = subprocess.run(
        [gcc, "-std=gnu11", "-Wall", "-Werror", "-I", str(inc), "-o", str(exe), str(c_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        missing = "No such file" in proc.stderr
        if missing and not STRICT:
            pytest.skip(f"kernel headers missing: {proc.stderr.strip().splitlines()[0]}")
        pytest.fail(f"the header check program does not compile:\n{proc.stderr}")
    return subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("module", uapi.MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_uapi_matches_kernel_headers(module: ModuleType, tmp_path: pathlib.Path) -> None:
    output = _compile_and_run(tmp_path, (module,))
    expected = _checks(module)[1]
    actual: dict[str, int] = {}
    absent: list[str] = []
    for line in output.splitlines():
        key, _, value = line.rpartition("|")
        if key == "absent":
            absent.append(value)
        else:
            actual[key] = int(value)
    for name in absent:
        expected.pop(f"const|{name}")
    mismatches = {k: (v, actual.get(k)) for k, v in expected.items() if actual.get(k) != v}
    assert not mismatches, f"python value != header value: {mismatches}"
    assert set(actual) == set(expected)


@pytest.mark.parametrize("module", uapi.MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_every_definition_is_checked(module: ModuleType) -> None:
    """Nothing in a uapi module escapes the header check: every struct and constant is listed."""
    listed_structs = set(module.C_STRUCTS)
    listed_values = {int(v) for v in module.C_CONSTANTS.values()}
    unchecked: list[str] = []
    for name, value in vars(module).items():
        if name.startswith("_") or name.startswith("C_"):
            continue
        if isinstance(value, type) and issubclass(value, ctypes.Structure | ctypes.Union):
            if value.__module__ == module.__name__ and value not in listed_structs:
                unchecked.append(name)
        elif isinstance(value, type) and issubclass(value, enum.IntEnum | enum.IntFlag):
            unchecked.extend(
                f"{name}.{m.name}"
                for m in value.__members__.values()
                if m.name != "NONE" and int(m) not in listed_values
            )
        elif name.isupper() and isinstance(value, int) and name not in module.C_CONSTANTS:
            unchecked.append(name)
    assert not unchecked, f"defined in {module.__name__} but not checked against the headers"
