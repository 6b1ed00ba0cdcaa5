"""The test VM's rig on the host: the report summary's kernel-aware rules, the capability skip
reasons it relies on (as pytest really writes them), and capability detection over fake trees.

Example:
    $ .venv/bin/pytest -q tests/test_vm_summary.py
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from xml.sax.saxutils import quoteattr

import pytest

from .conftest import (
    CAPABILITIES,
    CAPABILITY_SKIP_PREFIX,
    VM_KERNEL_PROVIDES,
    Capability,
    KernelRoots,
    capability_skip_reason,
    detect_capability,
)

SUMMARY = pathlib.Path(__file__).parent / "vm" / "summary.py"
REPO = pathlib.Path(__file__).parent.parent

CMA_ABSENT = capability_skip_reason([Capability("cma_heap", CAPABILITIES["cma_heap"], ())])
KMS_VKMS_ABSENT = capability_skip_reason(
    [Capability(n, CAPABILITIES[n], ()) for n in ("kms", "vkms")]
)


def _report(
    tmp_path: pathlib.Path,
    tests: int,
    failures: int,
    skips: list[str],
    vm_kernel: str | None = None,
) -> pathlib.Path:
    cases = "".join(
        f'<testcase classname="k" name="t{i}">'
        + (f"<skipped message={quoteattr(skips[i])}/>" if i < len(skips) else "")
        + "</testcase>"
        for i in range(tests)
    )
    props = '<property name="kernel" value="6.12.0-test"/>'
    if vm_kernel is not None:
        props += f'<property name="vm_kernel" value="{vm_kernel}"/>'
    xml = (
        f'<testsuites><testsuite name="pytest" tests="{tests}" failures="{failures}" errors="0"'
        f' skipped="{len(skips)}"><properties>{props}</properties>{cases}</testsuite></testsuites>'
    )
    path = tmp_path / "report.xml"
    path.write_text(xml)
    return path


def _summary(report: pathlib.Path, *kernel: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SUMMARY), *kernel, str(report), "fallback"],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("kernel", [(), ("--kernel", "stock"), ("--kernel", "full")])
@pytest.mark.parametrize(
    ("tests", "failures", "skips", "rc", "counts"),
    [
        (5, 0, [], 0, "5 passed, 0 failed, 0 skipped"),
        (5, 1, [], 1, "4 passed, 1 failed, 0 skipped"),
        (5, 0, ["no heap", "no heap"], 1, "3 passed, 0 failed, 2 skipped"),
        (0, 0, [], 1, "0 passed, 0 failed, 0 skipped"),
    ],
)
def test_summary_rules_common_to_both_kernels(
    tmp_path: pathlib.Path,
    kernel: tuple[str, ...],
    tests: int,
    failures: int,
    skips: list[str],
    rc: int,
    counts: str,
) -> None:
    kind = kernel[1] if kernel else "stock"
    proc = _summary(_report(tmp_path, tests, failures, skips), *kernel)
    assert proc.returncode == rc, proc.stdout
    lines = proc.stdout.splitlines()
    assert any(line.startswith(f"kernel ({kind}): {counts}") for line in lines), proc.stdout
    assert f"vm: kernel 6.12.0-test ({kind})" in proc.stdout
    if skips:
        assert "vm: SKIPPED in the VM: k::t0: no heap" in lines
        assert "unexpected skip(s)" in proc.stdout


def test_stock_kernel_accepts_and_lists_capability_skips(tmp_path: pathlib.Path) -> None:
    report = _report(tmp_path, 6, 0, [CMA_ABSENT, KMS_VKMS_ABSENT, CMA_ABSENT])
    proc = _summary(report, "--kernel", "stock")
    assert proc.returncode == 0, proc.stdout
    lines = proc.stdout.splitlines()
    assert f"vm: skipped as expected on the stock kernel: k::t0: {CMA_ABSENT}" in lines
    assert f"vm: skipped as expected on the stock kernel: k::t1: {KMS_VKMS_ABSENT}" in lines
    assert (
        "kernel (stock): 3 passed, 0 failed, 3 skipped "
        "(3 expected: absent from the stock kernel: cma_heap x2, kms x1, vkms x1)"
    ) in lines
    assert "FAILED" not in proc.stdout


def test_stock_kernel_fails_a_run_with_one_other_skip(tmp_path: pathlib.Path) -> None:
    report = _report(tmp_path, 4, 0, [CMA_ABSENT, "the device is busy"])
    proc = _summary(report, "--kernel", "stock")
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert "vm: SKIPPED in the VM: k::t1: the device is busy" in lines
    assert "vm: FAILED: 1 unexpected skip(s): on the stock kernel only" in proc.stdout
    assert "(1 expected: absent from the stock kernel: cma_heap x1)" in proc.stdout


def test_full_kernel_accepts_no_capability_skip(tmp_path: pathlib.Path) -> None:
    proc = _summary(_report(tmp_path, 4, 0, [CMA_ABSENT]), "--kernel", "full")
    assert proc.returncode == 1
    assert f"vm: SKIPPED in the VM: k::t0: {CMA_ABSENT}" in proc.stdout.splitlines()
    assert "nothing may skip on the full kernel" in proc.stdout


def test_a_run_where_nothing_passed_fails(tmp_path: pathlib.Path) -> None:
    proc = _summary(_report(tmp_path, 2, 0, [CMA_ABSENT, CMA_ABSENT]), "--kernel", "stock")
    assert proc.returncode == 1
    assert "vm: FAILED: no kernel test passed in the VM" in proc.stdout


@pytest.mark.parametrize(("booted", "guest", "rc"), [("full", "stock", 1), ("full", "full", 0)])
def test_the_guest_must_run_as_the_kernel_the_runner_booted(
    tmp_path: pathlib.Path, booted: str, guest: str, rc: int
) -> None:
    proc = _summary(_report(tmp_path, 3, 0, [], vm_kernel=guest), "--kernel", booted)
    assert proc.returncode == rc, proc.stdout
    assert ("the guest ran as stock" in proc.stdout) == bool(rc)


def test_summary_refuses_an_unknown_kernel(tmp_path: pathlib.Path) -> None:
    proc = _summary(_report(tmp_path, 1, 0, []), "--kernel", "custom")
    assert proc.returncode == 2
    assert "invalid choice: 'custom'" in proc.stderr


def _pytest(tmp_path: pathlib.Path, source: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run pytest on one generated test file, with this repository's conftest's hooks."""
    (tmp_path / "conftest.py").write_text("from tests.conftest import *  # noqa: F403\n")
    (tmp_path / "test_gen.py").write_text(textwrap.dedent(source))
    environ = {
        k: v for k, v in os.environ.items() if k not in ("DEVALLOC_IN_VM", "DEVALLOC_VM_KERNEL")
    }
    args = ["-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path)]
    args += [f"--junitxml={tmp_path / 'report.xml'}", str(tmp_path / "test_gen.py")]
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=tmp_path,
        env={**environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_real_junit_report_of_a_capability_skip_passes_on_stock_only(
    tmp_path: pathlib.Path,
) -> None:
    # pytest's own junitxml, not a hand-written report: the reason must survive its formatting.
    run = _pytest(
        tmp_path,
        f"""
        import pytest

        def test_ok() -> None:
            pass

        def test_cma() -> None:
            pytest.skip({CMA_ABSENT!r})
        """,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    stock = _summary(tmp_path / "report.xml", "--kernel", "stock")
    assert stock.returncode == 0, stock.stdout
    assert "absent from the stock kernel: cma_heap x1" in stock.stdout
    full = _summary(tmp_path / "report.xml", "--kernel", "full")
    assert full.returncode == 1, full.stdout


def test_an_unknown_capability_is_a_collection_error(tmp_path: pathlib.Path) -> None:
    run = _pytest(
        tmp_path,
        """
        import pytest

        @pytest.mark.needs("cma_heap", "cma_heaps")
        def test_typo() -> None:
            pass
        """,
    )
    assert run.returncode == pytest.ExitCode.USAGE_ERROR
    assert "unknown capability 'cma_heaps'" in run.stderr


def test_in_the_vm_the_kernel_kind_must_be_known(tmp_path: pathlib.Path) -> None:
    run = _pytest(
        tmp_path,
        "def test_nothing() -> None:\n    pass\n",
        DEVALLOC_IN_VM="1",
        DEVALLOC_VM_KERNEL="custom",
    )
    assert run.returncode == pytest.ExitCode.USAGE_ERROR
    assert "DEVALLOC_VM_KERNEL='custom'" in run.stderr


def _first_absent_here(names: frozenset[str]) -> str:
    absent = sorted(n for n in names if not detect_capability(n).present)
    if not absent:
        pytest.skip(f"this host has every one of {sorted(names)}: nothing to gate on")
    return absent[0]


@pytest.mark.parametrize(("kind", "optional_outcome"), [("stock", "skipped"), ("full", "error")])
def test_in_the_vm_an_owed_capability_fails_and_an_optional_one_skips(
    tmp_path: pathlib.Path, kind: str, optional_outcome: str
) -> None:
    owed = _first_absent_here(VM_KERNEL_PROVIDES["stock"])
    optional = _first_absent_here(VM_KERNEL_PROVIDES["full"] - VM_KERNEL_PROVIDES["stock"])
    run = _pytest(
        tmp_path,
        f"""
        import pytest

        @pytest.mark.needs({owed!r})
        def test_owed() -> None:
            pass

        @pytest.mark.needs({optional!r})
        def test_optional() -> None:
            pass
        """,
        DEVALLOC_IN_VM="1",
        DEVALLOC_VM_KERNEL=kind,
    )
    cases = {c.get("name"): c for c in ET.parse(tmp_path / "report.xml").getroot().iter("testcase")}
    # A failure in setup (where the marker is applied) is a JUnit error; summary.py counts both.
    owed_failure = cases["test_owed"].find("error")
    assert owed_failure is not None, run.stdout
    assert f"the test VM's {kind} kernel must provide this: {owed}" in str(
        owed_failure.get("message")
    )
    optional_result = cases["test_optional"].find(optional_outcome)
    assert optional_result is not None, run.stdout
    if kind == "stock":
        assert str(optional_result.get("message")).startswith(CAPABILITY_SKIP_PREFIX + optional)


def test_the_full_kernel_must_provide_every_capability() -> None:
    assert VM_KERNEL_PROVIDES["full"] == frozenset(CAPABILITIES)
    assert VM_KERNEL_PROVIDES["stock"] < VM_KERNEL_PROVIDES["full"]


def test_skip_reasons_start_with_the_prefix_and_name_every_capability() -> None:
    assert KMS_VKMS_ABSENT.startswith(CAPABILITY_SKIP_PREFIX + "kms, vkms [looked for ")
    assert CAPABILITIES["vkms"] in KMS_VKMS_ABSENT


# --- detection over a fake kernel tree ------------------------------------------------------


def _tree(tmp_path: pathlib.Path) -> KernelRoots:
    """A fake /sys, /dev and /proc shaped like the full kernel's (as seen in the test VM)."""
    sysfs, dev, proc = tmp_path / "sys", tmp_path / "dev", tmp_path / "proc"
    for d in (dev / "dma_heap", dev / "dri", proc):
        d.mkdir(parents=True)
    for heap in ("system", "reserved"):
        (dev / "dma_heap" / heap).touch()
    (dev / "udmabuf").touch()
    (proc / "config.gz").touch()
    (sysfs / "kernel" / "dmabuf" / "buffers").mkdir(parents=True)
    (sysfs / "kernel" / "debug" / "dma_buf").mkdir(parents=True)
    (sysfs / "kernel" / "debug" / "dma_buf" / "bufinfo").touch()
    drivers = sysfs / "bus" / "platform" / "drivers"
    drm = sysfs / "class" / "drm"
    for name, modalias in (("card0", "vgem"), ("renderD128", "vgem"), ("card1", "vkms")):
        (drm / name / "device").mkdir(parents=True)
        (drm / name / "device" / "modalias").write_text(f"platform:{modalias}\n")
    for connector in ("card1-Virtual-1", "card1-Writeback-1"):
        (drm / connector).mkdir()
    (drm / "version").touch()
    v4l = sysfs / "class" / "video4linux"
    nodes = [
        ("video0", "stateful-encoder", "vicodec"),
        ("video1", "stateful-decoder", "vicodec"),
        ("video2", "stateless-decoder", "vicodec"),
        ("video3", "vim2m", "vim2m"),
        ("video4", "Raw Capture 0", "vimc"),
        ("video6", "RGB/YUV Capture", "vimc"),
        ("video10", "vivid-000-meta-out", "vivid"),
        ("video7", "vivid-000-vid-cap", "vivid"),
        ("video11", "visl", "visl"),
        ("v4l-subdev0", "Sensor A", "vimc"),
        ("radio0", "vivid-000-rad-rx", "vivid"),
    ]
    for node, name, driver in nodes:
        (drivers / driver).mkdir(parents=True, exist_ok=True)
        (v4l / node / "device").mkdir(parents=True)
        (v4l / node / "name").write_text(name + "\n")
        os.symlink(drivers / driver, v4l / node / "device" / "driver")
    return KernelRoots(str(sysfs), str(dev), str(proc))


def test_detection_on_a_full_kernel_tree(tmp_path: pathlib.Path) -> None:
    roots = _tree(tmp_path)
    dev = roots.dev
    found = {name: detect_capability(name, roots).nodes for name in CAPABILITIES}
    assert all(found.values()), {n for n, v in found.items() if not v}
    assert found["cma_heap"] == (f"{dev}/dma_heap/reserved",)
    assert found["system_heap"] == (f"{dev}/dma_heap/system",)
    assert found["vgem"] == (f"{dev}/dri/card0", f"{dev}/dri/renderD128")
    assert found["vkms"] == (f"{dev}/dri/card1",)
    assert found["kms"] == (f"{dev}/dri/card1",)
    assert found["vicodec"] == tuple(f"{dev}/video{i}" for i in (0, 1, 2))
    assert found["vimc"] == (f"{dev}/video4", f"{dev}/video6")  # not the subdevs
    assert found["vivid"] == (f"{dev}/video7", f"{dev}/video10")  # natural order, no radio
    assert found["visl"] == (f"{dev}/video11",)


def test_detection_on_an_empty_tree_finds_nothing(tmp_path: pathlib.Path) -> None:
    roots = KernelRoots(str(tmp_path / "sys"), str(tmp_path / "dev"), str(tmp_path / "proc"))
    for name in CAPABILITIES:
        cap = detect_capability(name, roots)
        assert not cap.present
        assert cap.nodes == ()
        assert cap.description == CAPABILITIES[name]


def test_stock_like_tree_has_no_cma_heap_and_no_kms(tmp_path: pathlib.Path) -> None:
    roots = _tree(tmp_path)
    os.remove(os.path.join(roots.dev, "dma_heap", "reserved"))
    for connector in ("card1-Virtual-1", "card1-Writeback-1"):
        os.rmdir(os.path.join(roots.sysfs, "class", "drm", connector))
    assert not detect_capability("cma_heap", roots).present
    assert not detect_capability("kms", roots).present
    assert detect_capability("system_heap", roots).present
    assert detect_capability("vkms", roots).present  # the device without connectors


def test_v4l2_nodes_without_a_driver_link_are_found_by_name(tmp_path: pathlib.Path) -> None:
    v4l = tmp_path / "sys" / "class" / "video4linux"
    for node, name in (("video0", "vivid-000-vid-cap"), ("video1", "vividness"), ("video2", "")):
        (v4l / node / "device").mkdir(parents=True)
        (v4l / node / "name").write_text(name)
    (v4l / "video3" / "device").mkdir(parents=True)  # no name file at all
    roots = KernelRoots(str(tmp_path / "sys"), str(tmp_path / "dev"), str(tmp_path / "proc"))
    assert detect_capability("vivid", roots).nodes == (str(tmp_path / "dev" / "video0"),)


def test_detection_rejects_an_unknown_name(tmp_path: pathlib.Path) -> None:
    with pytest.raises(KeyError):
        detect_capability("gpu", KernelRoots(str(tmp_path), str(tmp_path), str(tmp_path)))


@pytest.mark.parametrize("kind", ["stock", "full"])
def test_a_boot_option_skip_is_expected_on_both_kernels(tmp_path: pathlib.Path, kind: str) -> None:
    reason = "boot option: vivid.allocators=1 is not set"
    proc = _summary(_report(tmp_path, 3, 0, [reason]), "--kernel", kind)
    assert proc.returncode == 0, proc.stdout
    assert "needing a boot option: 1" in proc.stdout
    # The prefix must lead: the same words elsewhere are an ordinary skip.
    other = _summary(_report(tmp_path, 3, 0, [f"because {reason}"]), "--kernel", kind)
    assert other.returncode == 1
