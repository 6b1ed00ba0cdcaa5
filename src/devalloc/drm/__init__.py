"""DRM: the device wrapper (:mod:`.device`: caps, PRIME, dumb buffers, planes, ADDFB2) and KMS
(:mod:`.kms`: atomic modesets, property blobs, writeback).

Example:
    >>> from devalloc.drm import drm_nodes
    >>> isinstance(drm_nodes(), list)
    True
"""

from __future__ import annotations

from .device import DRI_DIR as DRI_DIR
from .device import PLANE_TYPES as PLANE_TYPES
from .device import DeviceObject as DeviceObject
from .device import DrmDevice as DrmDevice
from .device import DrmPlane as DrmPlane
from .device import DrmProperty as DrmProperty
from .device import DrmResources as DrmResources
from .device import DrmVersion as DrmVersion
from .device import DumbBuffer as DumbBuffer
from .device import DumbLayout as DumbLayout
from .device import Framebuffer as Framebuffer
from .device import GemHandle as GemHandle
from .device import drm_driver_name as drm_driver_name
from .device import drm_nodes as drm_nodes
from .device import drm_nodes_of_driver as drm_nodes_of_driver
