"""Keep freed memory in the process (glibc), so that large tensors are reused instead of mapped fresh every step.

glibc's malloc serves allocations above its mmap threshold (which adapts, but never beyond 32 MiB on 64-bit) with
fresh pages from the kernel and returns them on free. One SS4Rec training step at ML-100K shapes (32 windows of
200, 1,349 items) allocates several (6400, 1349) float32 tensors of 34.5 MB (scores, log-softmax, their
gradients), so every step page-faults them in again: about 39,000 minor faults per step, measured as 15-25% of
the step's CPU time on one thread. ``mallopt(M_MMAP_MAX, 0)`` serves every allocation from the heap and a high
``M_TRIM_THRESHOLD`` keeps freed memory there for reuse: the process stays at its peak footprint (which every
step reaches anyway) instead of handing it back between steps.

``SS4REC_MALLOC=default`` leaves glibc's settings alone. Elsewhere (not glibc) this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)
_KEEP = 2**31 - 1  # trim threshold (an int): give the heap top back only beyond 2 GiB free


@functools.cache
def keep_freed_memory() -> bool:
    """Apply the settings above once per process; True when they are in force."""
    if os.environ.get("SS4REC_MALLOC", "").strip().lower() == "default":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not hasattr(libc, "gnu_get_libc_version"):  # another C library's mallopt may mean other things
        return False
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, _KEEP) == 1
    log.debug("glibc malloc: keep freed memory for reuse (%s)", "on" if ok else "failed")
    return ok
