"""The test VM's report summary: it must fail a run with no tests, a failure or a skip."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

SUMMARY = pathlib.Path(__file__).parent / "vm" / "summary.py"


def _report(tmp_path: pathlib.Path, tests: int, failures: int, skipped: int) -> pathlib.Path:
    cases = "".join(
        f'<testcase classname="k" name="t{i}">'
        + ('<skipped message="no heap"/>' if i < skipped else "")
        + "</testcase>"
        for i in range(tests)
    )
    xml = (
        f'<testsuites><testsuite name="pytest" tests="{tests}" failures="{failures}" errors="0"'
        f' skipped="{skipped}"><properties><property name="kernel" value="6.12.0-test"/>'
        f"</properties>{cases}</testsuite></testsuites>"
    )
    path = tmp_path / "report.xml"
    path.write_text(xml)
    return path


@pytest.mark.parametrize(
    ("tests", "failures", "skipped", "rc", "line"),
    [
        (5, 0, 0, 0, "kernel: 5 passed, 0 failed, 0 skipped"),
        (5, 1, 0, 1, "kernel: 4 passed, 1 failed, 0 skipped"),
        (5, 0, 2, 1, "kernel: 3 passed, 0 failed, 2 skipped"),
        (0, 0, 0, 1, "kernel: 0 passed, 0 failed, 0 skipped"),
    ],
)
def test_summary(
    tmp_path: pathlib.Path, tests: int, failures: int, skipped: int, rc: int, line: str
) -> None:
    report = _report(tmp_path, tests, failures, skipped)
    proc = subprocess.run(
        [sys.executable, str(SUMMARY), str(report), "fallback"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == rc
    assert line in proc.stdout.splitlines()
    assert "kernel 6.12.0-test" in proc.stdout
    if skipped:
        assert "SKIPPED in the VM: k::t0: no heap" in proc.stdout
