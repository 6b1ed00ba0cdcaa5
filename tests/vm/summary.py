"""Summarise the JUnit report of a test-VM run; exit 1 unless tests ran and none failed or skipped.

Usage: python summary.py REPORT.xml KERNEL_VERSION
"""

import sys
import xml.etree.ElementTree as ET


def main(report: str, kernel: str) -> int:
    root = ET.parse(report).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    passed = total - failed - skipped
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    guest_kernel = props.get("kernel", kernel)
    print(f"vm: kernel {guest_kernel}: report {report}")
    for case in root.iter("testcase"):
        for child in case:
            if child.tag == "skipped":
                test = f"{case.get('classname')}::{case.get('name')}"
                print(f"vm: SKIPPED in the VM: {test}: {child.get('message')}")
    print(f"kernel: {passed} passed, {failed} failed, {skipped} skipped")
    if total == 0:
        print("vm: FAILED: no kernel test ran in the VM")
        return 1
    if failed or skipped:
        print("vm: FAILED: every kernel test must run and pass in the VM")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
