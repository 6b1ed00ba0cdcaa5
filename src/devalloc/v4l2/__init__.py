"""V4L2: the device wrapper (:mod:`.device`: formats, DMABUF streaming) and mem-to-mem sessions
(:mod:`.m2m`: codecs and converters with two queues).

Example:
    >>> from devalloc.v4l2 import natural_key
    >>> sorted(["video10", "video2"], key=natural_key)
    ['video2', 'video10']
"""

from __future__ import annotations

from .device import SYSFS_V4L2 as SYSFS_V4L2
from .device import DmabufPlane as DmabufPlane
from .device import DmabufQueue as DmabufQueue
from .device import V4l2BufferRequest as V4l2BufferRequest
from .device import V4l2Caps as V4l2Caps
from .device import V4l2Device as V4l2Device
from .device import V4l2FormatDesc as V4l2FormatDesc
from .device import V4l2Frame as V4l2Frame
from .device import V4l2ImageFormat as V4l2ImageFormat
from .device import V4l2PlaneFormat as V4l2PlaneFormat
from .device import natural_key as natural_key
from .device import v4l2_node_driver as v4l2_node_driver
from .device import v4l2_node_name as v4l2_node_name
from .device import v4l2_nodes_of_driver as v4l2_nodes_of_driver
