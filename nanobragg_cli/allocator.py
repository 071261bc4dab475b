"""Keep freed kernel temporaries in the process heap (glibc only).

The kernel allocates and frees the same few-MB tensors thousands of times per image. glibc hands
blocks above its mmap threshold back to the kernel on free, so every new tensor is page-faulted
in again, which costs as much as the arithmetic on it. Raising the mmap and trim thresholds once
keeps those blocks in the heap for reuse. Blocks of ``mmap_limit`` bytes or more (whole-image
arrays: the image, its float32 copy, output buffers) stay mmap'ed, so that freeing one returns
its pages at once instead of leaving a hole in the heap that raises the peak RSS.
A single arena lets concurrent chunk workers share those blocks.
"""

import ctypes
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_done = False


def keep_freed_memory(limit: int = 1 << 30, mmap_limit: int = 32 << 20) -> bool:
    """Raise glibc's trim threshold to ``limit`` and its mmap threshold to ``mmap_limit`` bytes
    (kernel temporaries of a chunk stay below it); False where not applicable."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        # one arena: chunk workers then reuse each other's freed blocks instead of each thread's
        # arena keeping its own high-water mark
        ok = (libc.mallopt(_M_MMAP_THRESHOLD, mmap_limit) == 1 and
              libc.mallopt(_M_TRIM_THRESHOLD, limit) == 1 and libc.mallopt(_M_ARENA_MAX, 1) == 1)
    except (OSError, AttributeError):
        return False
    _done = ok
    return ok


def release_freed_memory() -> bool:
    """Hand the heap's free blocks back to the kernel (glibc ``malloc_trim``): called once a
    render's chunks are done, so that the kept kernel temporaries do not add to the peak RSS of
    what follows (statistics, output files). False where not applicable."""
    if not _done:
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False
