"""Summarise the JUnit report of a test-VM run, by the rule of the kernel it ran on.

Usage: python summary.py [--kernel stock|full] REPORT.xml KERNEL_VERSION

Exit 0 only when tests ran, at least one passed, none failed, and no skip broke the kernel's rule:

- full: the kernel has every capability the tests can ask for, so nothing may skip.
- stock (the default): a skip whose reason says a capability is absent from this kernel (it starts
  with ``capability absent from this kernel:``, as tests/conftest.py writes it) is expected and
  listed; any other skip fails the run.
- both: a test that needs a kernel boot option (``vivid.allocators=1``, ``vkms.enable_overlay=1``)
  skips with a reason starting ``boot option:`` when booted without it; that is expected, because
  scripts/test-all.sh runs those tests again in passes booted with their options.

It also fails when the guest says it ran on another kernel kind than the runner booted (the report's
``vm_kernel`` property).
"""

from __future__ import annotations

import argparse
import re
import sys
import xml.etree.ElementTree as ET
from collections import Counter

#: tests/conftest.py's CAPABILITY_SKIP_PREFIX, then the absent capabilities' names.
#: A test that needs a kernel boot option (e.g. vivid.allocators=1) skips with this prefix in the
#: passes booted without it; scripts/test-all.sh runs those tests in passes booted with it.
BOOT_OPTION_SKIP = "boot option: "
CAPABILITY_SKIP = re.compile(r"capability absent from this kernel: ([a-z0-9_]+(?:, [a-z0-9_]+)*)")
KINDS = ("stock", "full")


def main(report: str, kernel: str, kind: str = "stock") -> int:
    """Print the summary of ``report`` and return the run's exit status (0 or 1)."""
    root = ET.parse(report).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    passed = total - failed - skipped
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    guest_kernel = props.get("kernel", kernel)
    print(f"vm: kernel {guest_kernel} ({kind}): report {report}")

    expected: Counter[str] = Counter()
    unexpected = 0
    boot_option = 0
    for case in root.iter("testcase"):
        for child in case:
            if child.tag != "skipped":
                continue
            test = f"{case.get('classname')}::{case.get('name')}"
            reason = child.get("message") or ""
            match = CAPABILITY_SKIP.match(reason)
            if reason.startswith(BOOT_OPTION_SKIP):
                boot_option += 1
                print(
                    f"vm: skipped in this boot (runs in a pass with its option): {test}: {reason}"
                )
            elif kind == "stock" and match:
                expected.update(match.group(1).split(", "))
                print(f"vm: skipped as expected on the stock kernel: {test}: {reason}")
            else:
                unexpected += 1
                print(f"vm: SKIPPED in the VM: {test}: {reason}")

    line = f"kernel ({kind}): {passed} passed, {failed} failed, {skipped} skipped"
    if skipped and (kind == "stock" or boot_option):
        absent = ", ".join(f"{name} x{n}" for name, n in sorted(expected.items()))
        line += f" ({skipped - unexpected} expected: absent from the {kind} kernel: {absent or '-'}"
        line += f"; needing a boot option: {boot_option})" if boot_option else ")"
    print(line)

    status = 0
    guest_kind = props.get("vm_kernel")
    if guest_kind is not None and guest_kind != kind:
        print(f"vm: FAILED: the runner booted the {kind} kernel but the guest ran as {guest_kind}")
        status = 1
    if total == 0:
        print("vm: FAILED: no kernel test ran in the VM")
        return 1
    if failed:
        print("vm: FAILED: every kernel test must pass in the VM")
        status = 1
    if unexpected:
        rule = (
            "nothing may skip on the full kernel"
            if kind == "full"
            else "on the stock kernel only tests that need a capability it lacks may skip"
        )
        print(f"vm: FAILED: {unexpected} unexpected skip(s): {rule}")
        status = 1
    if passed == 0 and not failed:
        print("vm: FAILED: no kernel test passed in the VM")
        status = 1
    return status


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Summarise a test-VM JUnit report.")
    parser.add_argument("--kernel", choices=KINDS, default="stock", help="the VM's kernel")
    parser.add_argument("report", help="the JUnit XML report")
    parser.add_argument("version", help="the kernel version, if the report does not record it")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = _parse(sys.argv[1:])
    sys.exit(main(args.report, args.version, args.kernel))
