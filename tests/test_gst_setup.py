"""What the dev install must provide so no optional test skips in CI: numpy (Buffer.planes) and
GStreamer's bindings (devalloc.gst.bridge), matplotlib (devalloc size --plot); and
scripts/setup.sh's options."""

from __future__ import annotations

import importlib
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STRICT = os.environ.get("DEVALLOC_STRICT") == "1"


@pytest.mark.parametrize("module", ["numpy", "devalloc.gst.bridge", "matplotlib"])
def test_dev_install_provides(module: str) -> None:
    """CI (DEVALLOC_STRICT=1, after scripts/setup.sh --dev) has every optional dependency."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        if STRICT:
            pytest.fail(f"scripts/setup.sh --dev must install what {module} needs: {exc}")
        pytest.skip(f"{module} is not importable here: {exc}")


def test_setup_refuses_unknown_options() -> None:
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts/setup.sh"), "--gstreamer"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "setup: unknown option --gstreamer (--dev, --gst)"
