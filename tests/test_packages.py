"""The package layout: subsystem packages, and the old import paths of moved modules."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import devalloc

ROOT = Path(devalloc.__file__).parent


def test_moved_modules_keep_their_old_import_paths() -> None:
    import devalloc.drm.kms as new_kms
    import devalloc.v4l2.m2m as new_m2m

    # The old names, as user code spells them (importlib keeps mypy from resolving them statically).
    assert importlib.import_module("devalloc.kms") is new_kms
    assert importlib.import_module("devalloc.m2m") is new_m2m
    assert importlib.import_module("devalloc.m2m").M2mSession is new_m2m.M2mSession


def test_old_import_paths_work_in_a_fresh_interpreter() -> None:
    code = "from devalloc.kms import KmsDevice; from devalloc.m2m import M2mSession; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_subsystem_wrappers_live_in_their_packages() -> None:
    for name in ("drm.py", "kms.py", "v4l2.py", "m2m.py"):
        assert not (ROOT / name).exists(), name
    from devalloc.drm import DrmDevice
    from devalloc.v4l2 import V4l2Device

    assert DrmDevice.__module__ == "devalloc.drm.device"
    assert V4l2Device.__module__ == "devalloc.v4l2.device"


def test_unknown_submodules_are_still_import_errors() -> None:
    try:
        importlib.import_module("devalloc.no_such_module")
    except ModuleNotFoundError:
        pass
    else:
        raise AssertionError("devalloc.no_such_module imported")
