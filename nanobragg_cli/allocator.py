"""Keep freed kernel temporaries in the process heap (glibc only).

The kernel allocates and frees the same few-MB tensors thousands of times per image. glibc hands
blocks above its mmap threshold back to the kernel on free, so every new tensor is page-faulted
in again, which costs as much as the arithmetic on it. Raising the mmap and trim thresholds once
keeps those blocks in the heap for reuse (peak RSS is unchanged: the chunk budget bounds it).
A single arena lets concurrent chunk workers share those blocks.
"""

import ctypes
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_done = False


def keep_freed_memory(limit: int = 1 << 30) -> bool:
    """Raise glibc's mmap/trim thresholds to ``limit`` bytes; False where not applicable."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        # one arena: chunk workers then reuse each other's freed blocks instead of each thread's
        # arena keeping its own high-water mark
        ok = (libc.mallopt(_M_MMAP_THRESHOLD, limit) == 1 and
              libc.mallopt(_M_TRIM_THRESHOLD, limit) == 1 and libc.mallopt(_M_ARENA_MAX, 1) == 1)
    except (OSError, AttributeError):
        return False
    _done = ok
    return ok
