"""``devalloc bench`` on the host's memfd heap: the report's shape, not its timings."""

from __future__ import annotations

import json

import pytest

from devalloc.cli import main


def test_bench_reports_every_accessible_heap(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--sizes", "4096,65536", "--seconds", "0.01", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    memfd = [r for r in data["results"] if r["kind"] == "memfd"]
    assert [r["size"] for r in memfd] == [4096, 65536]
    for row in memfd:
        assert row["alloc_close_ns"] > 0
        assert row["alloc_close_n"] >= 3
        assert row["write_gbps"] > 0
        assert row["write_vs_memset"] == pytest.approx(row["write_gbps"] / row["memset_gbps"])


@pytest.mark.parametrize("args", [["--sizes", "x"], ["--sizes", "0"], ["--seconds", "0"]])
def test_bench_bad_input(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("devalloc: error:")
    assert "Traceback" not in err
