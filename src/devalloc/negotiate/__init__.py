"""Negotiation: the constraints of every device that touches a buffer -> one plan, or conflicts.

Example:
    >>> from devalloc.constraints import Constraints, MemoryRules
    >>> from devalloc.formats import LayoutRules, fourcc_code
    >>> nv12, xr24 = fourcc_code("NV12"), fourcc_code("XR24")
    >>> camera = Constraints("camera", "capture", ((nv12, 0), (xr24, 0)), access="write")
    >>> display = Constraints(
    ...     "display", "primary", ((xr24, 0), (nv12, 0)), LayoutRules(pitch_align=64),
    ...     memory=MemoryRules(contiguous=True, dma_bits=32), access="read")
    >>> plan = negotiate([camera, display], 1920, 1080, cpu_access="w")
    >>> plan.format.name, plan.layout.size, plan.memory.contiguous, plan.cache.sync
    ('NV12', 3110400, True, 'required')
    >>> result = try_negotiate([camera, display], 8192, 1080, ["RGB565"])
    >>> [c.attribute for c in result]
    ['format']

Formats and modifiers: the candidates are the (format, modifier) pairs that every device lists;
a modifier is kept only if every device lists that exact pair (LINEAR is not implied, INVALID
never matches an explicit modifier). The application's ``formats`` keep only pairs of those
fourccs.

Ranking (deterministic, independent of the order of the devices):
    1. the application's candidate order (when ``formats`` is given);
    2. the sum over devices of the pair's position in that device's list (0 = favourite);
    3. the worst (largest) such position;
    4. the fourcc code, then the modifier value.

The best pair whose layout passes the limits (pitch within every device's min/max pitch, one
buffer or one per plane as every device wants) is the plan; when it fails, the next pair is
tried. Devices are sorted by label first, so the result does not depend on their order.

The combining rules, the cache/sync policy, the conflict kinds and the copy-path rule are in
``docs/negotiation.md``, :mod:`devalloc.negotiate.combine` and :mod:`devalloc.negotiate.copy`.
On failure :func:`negotiate` raises :class:`NegotiationError` (a
:class:`~devalloc.errors.NoPlanError`) carrying the conflicts and, when one exists, a
:class:`CopyPath` (``copy_path``; ``copy_note`` says why there is none).
"""

from __future__ import annotations

from .api import NegotiationError as NegotiationError
from .api import negotiate as negotiate
from .combine import cache_policy as cache_policy
from .copy import CopyPath as CopyPath
from .copy import propose_copy_path as propose_copy_path
from .core import ATTRIBUTES as ATTRIBUTES
from .core import MAX_COPY_PATH_DEVICES as MAX_COPY_PATH_DEVICES
from .core import acceptable_pairs as acceptable_pairs
from .core import try_negotiate as try_negotiate
from .plan import APPLICATION as APPLICATION
from .plan import CachePolicy as CachePolicy
from .plan import CombinedRules as CombinedRules
from .plan import Conflict as Conflict
from .plan import Plan as Plan
from .plan import Provenance as Provenance
from .plan import heap_hint as heap_hint
