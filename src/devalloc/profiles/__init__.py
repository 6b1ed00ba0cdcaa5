"""The device profiles that ship with devalloc: one TOML device file per device.

Example:
    >>> from devalloc.profiles import profile_names, profile_path
    >>> "rk3399-vop" in profile_names()
    True
    >>> profile_path("rk3399-vop").name
    'rk3399-vop.toml'

Each ``<name>.toml`` here is a device file (schema: :mod:`devalloc.constraints`) whose every
constraint carries a comment naming its public source. ``devalloc.constraints.load_constraints``
accepts these names wherever it takes a device file (``rk3399-vop:primary``).
"""

from __future__ import annotations

import difflib
from pathlib import Path

from .._toml import shown
from ..errors import UsageError

__all__ = ["PROFILE_DIR", "profile_names", "profile_path"]

#: The directory that holds the bundled device files.
PROFILE_DIR = Path(__file__).resolve().parent


def profile_names() -> list[str]:
    """The names of the bundled profiles (file stems), sorted."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml") if p.is_file())


def profile_path(name: str) -> Path:
    """The device file of the bundled profile ``name``.

    Args:
        name: a profile name as :func:`profile_names` lists it (``"rk3399-vop"``).

    Raises:
        UsageError: no bundled profile has that name; the message lists the known ones.
    """
    names = profile_names()
    if not isinstance(name, str) or name not in names:
        close = (
            difflib.get_close_matches(name, names, n=3, cutoff=0.5) if isinstance(name, str) else []
        )
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise UsageError(
            f"no bundled device profile named {shown(name)}{hint}"
            f" (bundled: {', '.join(names) if names else 'none'})"
        )
    return PROFILE_DIR / f"{name}.toml"
