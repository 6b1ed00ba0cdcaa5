"""tests/vm/prove-sizing.sh with a stand-in VM launcher: it boots at the answer and one granule
below, reads the guest's JUnit report, and exits non-zero when a boot does not give what it
should (the real boots are in tests/kernel/test_sizing.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "tests" / "vm" / "prove-sizing.sh"

#: A stand-in run.sh: records its arguments and writes the report a guest would, fitting when
#: cma= is at least FIT_MIB (or as MODE says: "flaky" gives no report on the first boot).
_RUNNER = """#!/usr/bin/env python3
import os, re, sys
args = sys.argv[1:]
with open(os.environ["RECORD"], "a") as record:
    record.write(" ".join(args) + "\\n")
append = args[args.index("--append") + 1]
cma = int(re.search(r"cma=(\\d+)M", append).group(1))
mode = os.environ.get("MODE", "")
marker = os.environ["RECORD"] + ".booted"
if mode == "flaky" and not os.path.exists(marker):
    open(marker, "w").close()
    print("Kernel panic - not syncing: stand-in")
    sys.exit(1)
fit = cma >= int(os.environ["FIT_MIB"])
expect = "fit" if fit else "exhausted"
if mode == "lies":
    expect = "fit"
props = {"expect": expect, "cma_total": cma << 20, "cma_taken_at_boot": 565248}
if fit:
    props.update(alloc_total_ms=12.5, alloc_median_ms=4.1)
else:
    props["error"] = "the CMA area is exhausted: 2097152 bytes short"
rows = "".join(f'<property name="{k}" value="{v}"/>' for k, v in props.items())
with open(os.environ["DEVALLOC_VM_REPORT"], "w") as report:
    report.write(
        '<testsuites><testsuite><testcase name="t"><properties>'
        + rows + "</properties></testcase></testsuite></testsuites>"
    )
"""


def _run(tmp_path: Path, mode: str, fit_mib: int) -> tuple[subprocess.CompletedProcess[str], str]:
    runner = tmp_path / "run.sh"
    runner.write_text(_RUNNER.replace("python3", sys.executable, 1), encoding="utf-8")
    runner.chmod(0o755)
    record = tmp_path / "record"
    env = {
        **os.environ,
        "DEVALLOC_PROVE_RUNNER": str(runner),
        "DEVALLOC_VM_PYTHON": sys.executable,
        "RECORD": str(record),
        "FIT_MIB": str(fit_mib),
        "MODE": mode,
    }
    done = subprocess.run(
        [str(SCRIPT), "--boots", "2", "examples/scenarios/hd-encode.toml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done, record.read_text(encoding="utf-8") if record.exists() else ""


def test_two_boots_at_the_answer_and_one_a_granule_below(tmp_path: Path) -> None:
    done, record = _run(tmp_path, "", fit_mib=26)
    assert done.returncode == 0, done.stdout + done.stderr
    boots = record.splitlines()
    assert len(boots) == 3
    assert [b.split("--append ")[1].split()[0] for b in boots] == ["cma=26M", "cma=26M", "cma=24M"]
    assert all("devalloc_sizing=examples/scenarios/hd-encode.toml" in b for b in boots)
    assert all(b.endswith("-m kernel tests/kernel/test_sizing.py") for b in boots)
    assert "cma=24M (exhausted): ok exhausted" in done.stdout
    assert "alloc_ms=12.5" in done.stdout
    summary = "devalloc cma_bytes=27262976 (cma=26M) naive contiguous w*h*bpp*count=24883200"
    assert summary in done.stdout
    assert "boots: 26M:ok 26M:ok 24M:ok" in done.stdout


def test_a_wrong_verdict_fails_the_proof(tmp_path: Path) -> None:
    done, _record = _run(tmp_path, "lies", fit_mib=26)  # "fits" one granule below too
    assert done.returncode == 1
    assert "cma=24M (exhausted): FAILED fit" in done.stdout
    done, _record = _run(tmp_path, "", fit_mib=28)  # the answer itself is too small
    assert done.returncode == 1
    assert "cma=26M (fit): FAILED exhausted" in done.stdout


def test_a_vm_that_gives_no_report_is_booted_again_once(tmp_path: Path) -> None:
    done, record = _run(tmp_path, "flaky", fit_mib=26)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(record.splitlines()) == 4
    assert "the VM gave no report (try 1" in done.stdout
    assert "Kernel panic" in done.stdout
