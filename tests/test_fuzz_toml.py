"""Fuzzing the device-file and pipeline-file loaders (hypothesis): any text, any file -> a result
or a one-line UsageError, never another exception.

The inputs are the real files (src/devalloc/profiles/*.toml, examples/*.toml) mutated: byte flips,
deep nesting of arrays and inline tables, long dotted keys, values swapped for other types, huge
numbers, lines deleted or repeated. Each example goes through both edges: the text loader
(``loads_device``/``loads_pipeline``, the bytes decoded with surrogateescape so that lone
surrogates reach it) and the file loader (``load_device_file``/``load_pipeline``, the bytes
written to a file). The runs are derandomized (no example database), so CI sees the same inputs
every time; together they take a few seconds.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devalloc._toml import MAX_NESTING, MAX_TEXT
from devalloc.constraints import (
    Constraints,
    MemoryRules,
    load_constraints,
    load_device_file,
    loads_device,
)
from devalloc.errors import UsageError
from devalloc.pipeline import load_pipeline, loads_pipeline, pipeline_paths
from devalloc.profiles import PROFILE_DIR, profile_path

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DEVICE_FILES = sorted(PROFILE_DIR.glob("*.toml"))
PIPELINE_FILES = sorted(EXAMPLES.glob("*.toml"))

FUZZ = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Values that replace the value of a ``key = value`` line: other types, edge numbers, odd text.
SWAPS = (
    b"true",
    b"-0",
    b"0",
    b"1e400",
    b"-inf",
    b"nan",
    b"0x7fffffffffffffffffffffffffff",
    b"9" * 5000,
    b"-" + b"9" * 30,
    b'""',
    b'"\\u0000"',
    b'"\\udcff"',
    b'"\xff\xfe"',
    b'"' + b"x" * 100_000 + b'"',
    b"[]",
    b"{}",
    b'[1, "a", true]',
    b"{ a = 1, b = [2] }",
    b"1979-05-27T07:32:00Z",
    b'["NV12", "NV12"]',
)


@st.composite
def _nesting(draw: st.DrawFn) -> bytes:
    depth = draw(st.sampled_from([MAX_NESTING, MAX_NESTING + 1, 200, 600, 5000]))
    kind = draw(st.sampled_from(["array", "table", "mixed", "dotted", "header"]))
    if kind == "array":
        return b"foo = " + b"[" * depth + b"]" * depth
    if kind == "table":
        return b"foo = " + b"{a=" * depth + b"1" + b"}" * depth
    if kind == "mixed":
        return b"foo = " + b"[{a=" * depth + b"1" + b"}]" * depth
    if kind == "dotted":
        return b"a" + b".b" * depth + b" = 1"
    return b"[a" + b".b" * depth + b"]"


@st.composite
def _mutated(draw: st.DrawFn, files: list[pathlib.Path]) -> tuple[pathlib.Path, bytes]:
    path = draw(st.sampled_from(files))
    data = bytearray(path.read_bytes())
    for _ in range(draw(st.integers(1, 4))):
        lines = bytes(data).split(b"\n")
        where = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["flip", "nest", "swap", "delete", "repeat", "truncate"]))
        if action == "flip" and data:
            at = draw(st.integers(0, len(data) - 1))
            data[at] = draw(st.integers(0, 255))
            continue
        if action == "nest":
            lines.insert(where, draw(_nesting()))
        elif action == "swap" and b"=" in lines[where]:
            key = lines[where].split(b"=", 1)[0]
            lines[where] = key + b"= " + draw(st.sampled_from(SWAPS))
        elif action == "delete":
            del lines[where]
        elif action == "repeat":
            lines.insert(where, lines[where])
        elif action == "truncate":
            lines = lines[:where]
        data = bytearray(b"\n".join(lines))
    return path, bytes(data)


def _one_line_usage_error(call: Callable[[], object]) -> None:
    """``call`` returns, or raises a UsageError whose message is one line."""
    try:
        call()
    except UsageError as exc:
        message = str(exc)
    else:
        return
    assert message
    assert "\n" not in message, message


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("fuzz")


def test_the_seed_files_load() -> None:
    assert len(DEVICE_FILES) >= 10
    assert len(PIPELINE_FILES) >= 5
    for path in DEVICE_FILES:
        assert load_device_file(path).usages
    for path in PIPELINE_FILES:
        assert load_pipeline(path).devices


@FUZZ
@given(case=_mutated(DEVICE_FILES))
def test_mutated_device_files(scratch: pathlib.Path, case: tuple[pathlib.Path, bytes]) -> None:
    path, data = case
    text = data.decode("utf-8", "surrogateescape")
    _one_line_usage_error(lambda: loads_device(text, path.name))
    target = scratch / path.name
    target.write_bytes(data)
    _one_line_usage_error(lambda: load_device_file(target))
    _one_line_usage_error(lambda: load_constraints(f"{target}:primary"))


@FUZZ
@given(case=_mutated(PIPELINE_FILES))
def test_mutated_pipeline_files(scratch: pathlib.Path, case: tuple[pathlib.Path, bytes]) -> None:
    path, data = case
    text = data.decode("utf-8", "surrogateescape")
    _one_line_usage_error(lambda: loads_pipeline(text, path.name, EXAMPLES))
    target = scratch / path.name
    target.write_bytes(data)
    _one_line_usage_error(lambda: load_pipeline(target))


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 600, 100_000])
@pytest.mark.parametrize(
    "line",
    [
        lambda n: "foo = " + "[" * n + "]" * n,
        lambda n: "foo = " + "{a=" * n + "1" + "}" * n,
        lambda n: "a" + ".b" * n + " = 1",
    ],
    ids=["arrays", "inline-tables", "dotted-key"],
)
def test_deep_nesting_is_a_usage_error_naming_the_file_and_line(
    tmp_path: pathlib.Path, depth: int, line: Callable[[int], str]
) -> None:
    text = 'device = "x"\n' + line(depth) + "\n"
    with pytest.raises(UsageError, match=rf"^deep.toml:2: .*more than {MAX_NESTING}"):
        loads_device(text, "deep.toml")
    with pytest.raises(UsageError, match=rf"^pipe.toml:2: .*more than {MAX_NESTING}"):
        loads_pipeline(text, "pipe.toml")
    deep = tmp_path / "deep.toml"
    deep.write_text(text)
    with pytest.raises(UsageError, match=rf"^{deep}:2: "):
        load_device_file(deep)
    with pytest.raises(UsageError, match=rf"^{deep}:2: "):
        load_pipeline(deep)


def test_nesting_up_to_the_limit_and_brackets_in_strings_and_comments_are_fine() -> None:
    inner = "[" * (MAX_NESTING - 1) + "]" * (MAX_NESTING - 1)
    text = (
        f"foo = {inner}\n"
        f'bar = "{"[" * 100}"\n'
        f"baz = '{'{' * 100}'\n"
        f'qux = """\n{"[" * 100}\n"""\n'
        f"# {'[' * 100}\n"
        f"a{'.b' * MAX_NESTING} = 1\n"
    )
    # it parses (no nesting refusal); the device file schema then refuses the unknown key
    with pytest.raises(UsageError, match=r"^t.toml: missing key device$"):
        loads_device(text, "t.toml")


def test_huge_integer_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"^t.toml: invalid TOML: .*4300"):
        loads_device("device = " + "9" * 5000, "t.toml")


def test_text_longer_than_the_cap(tmp_path: pathlib.Path) -> None:
    big = "#" * MAX_TEXT + "\n"
    with pytest.raises(UsageError, match=rf"longer than {MAX_TEXT} characters"):
        loads_device(big)
    path = tmp_path / "big.toml"
    path.write_text(big)
    with pytest.raises(UsageError, match=rf"larger than {MAX_TEXT} bytes"):
        load_device_file(path)


def test_non_regular_files_are_refused_without_blocking(tmp_path: pathlib.Path) -> None:
    import os

    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="not a regular file"):
        load_device_file(fifo)
    with pytest.raises(UsageError, match="not a regular file"):
        load_pipeline("/dev/zero")
    with pytest.raises(UsageError, match="no such device file"):
        load_device_file(tmp_path)


WRONG = [
    None,
    b"device = 'x'",
    bytearray(b"x"),
    7,
    2**200,
    1.5,
    True,
    {"device": "x"},
    ["device"],
    object(),
    "a\0b",
    "\udcff",
    "x" * 20_000,  # longer than PATH_MAX (formats.closest_names is slow on far longer ones)
    "/" + "a" * 5000,
    "a" * 300 + ":primary",
]


def _calls(value: object) -> list[Callable[[], object]]:
    """Every public loader, ``value`` given in one argument."""
    pipeline_text = PIPELINE_FILES[0].read_text()
    return [
        lambda: loads_device(value),  # type: ignore[arg-type]
        lambda: loads_device('device = "x"', value),  # type: ignore[arg-type]
        lambda: loads_pipeline(value),  # type: ignore[arg-type]
        lambda: loads_pipeline('name = "x"', value),  # type: ignore[arg-type]
        lambda: loads_pipeline(pipeline_text, "p.toml", value),  # type: ignore[arg-type]
        lambda: load_device_file(value),  # type: ignore[arg-type]
        lambda: load_pipeline(value),  # type: ignore[arg-type]
        lambda: load_constraints(value),  # type: ignore[arg-type]
        lambda: pipeline_paths(value),  # type: ignore[arg-type]
        lambda: profile_path(value),  # type: ignore[arg-type]
        lambda: Constraints.from_json(value),  # type: ignore[arg-type]
        lambda: MemoryRules.from_json(value),  # type: ignore[arg-type]
        lambda: Constraints.from_json({"device": "x", "usage": "y", "pairs": value}),
        lambda: Constraints.from_json({"device": "x", "usage": "y", "pairs": [[value, 0]]}),
        lambda: MemoryRules.from_json({value: 1} if _hashable(value) else {}),  # type: ignore[dict-item]
    ]


@pytest.mark.parametrize("value", WRONG, ids=lambda v: type(v).__name__)
def test_public_loaders_give_a_result_or_a_usage_error(value: object) -> None:
    for call in _calls(value):
        _one_line_usage_error(call)


@pytest.mark.parametrize("value", [b"x", bytearray(b"x"), 7, 2**200, {"device": "x"}, object()])
def test_public_loaders_refuse_wrong_types_with_usage_errors(value: object) -> None:
    for call in _calls(value)[:-3]:  # the last three take any value inside valid JSON
        with pytest.raises(UsageError) as info:
            call()
        assert "\n" not in str(info.value)


def test_loads_device_of_none_is_a_usage_error() -> None:
    with pytest.raises(
        UsageError, match=r"^<string>: a device file is TOML text \(str\), not a Non"
    ):
        loads_device(None)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=r"^a device file path is a str or a pathlib.Path, not b"):
        load_device_file(b"x.toml")  # type: ignore[arg-type]


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def test_a_file_name_too_long_is_a_usage_error() -> None:
    long = "a" * 300
    with pytest.raises(UsageError, match="file name too long"):
        load_device_file(long + ".toml")
    with pytest.raises(UsageError, match="file name too long"):
        load_pipeline(long)
    with pytest.raises(UsageError, match="file name too long"):
        load_constraints(long)
    with pytest.raises(UsageError, match="file name too long"):
        load_constraints(long + ":primary")


def test_a_profile_path_with_a_nul_in_a_pipeline_names_the_line() -> None:
    text = PIPELINE_FILES[0].read_text().replace('profile = "', 'profile = "\\u0000', 1)
    with pytest.raises(UsageError, match=r"^p.toml:\d+: devices\[0\].profile .*NUL"):
        loads_pipeline(text, "p.toml", EXAMPLES)
