"""What the memory-mapping tests of the store and the embedding cache share."""

from __future__ import annotations

import mmap

import numpy as np


def is_mapped(a: np.ndarray) -> bool:
    """True when ``a``'s memory belongs to a memory map (np.load(mmap_mode=...))."""
    base = a
    while base is not None:
        if isinstance(base, np.memmap | mmap.mmap):
            return True
        base = getattr(base, "base", None)
    return False
