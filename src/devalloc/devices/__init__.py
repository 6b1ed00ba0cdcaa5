"""Live devices: what the kernel says they accept (discovery) and what they really import (verify).

Example:
    >>> from devalloc.devices import discover, verify          # doctest: +SKIP
    >>> found = discover()                                      # doctest: +SKIP
    >>> [c.label for c in found.constraints()]                  # doctest: +SKIP
    ['vgem:import', 'vivid-000-vid-cap:capture', 'vivid-000-vid-out:output']

:mod:`~devalloc.devices.learn` holds the pure rules (TRY_FMT answers -> layout rules, planes ->
usages), :mod:`~devalloc.devices.discover` asks the kernel, :mod:`~devalloc.devices.verify`
imports buffers into the devices and reports per device.
"""

from __future__ import annotations
