"""The one way labloop turns names and numbers into a seed: the same in every process and every resumed run.

Why not ``hash()``: Python salts the hash of a string per process, so a seed drawn from it would differ
after a restart. sha256 of the parts joined with ``:`` does not; the first ``bits // 8`` bytes of the
digest, read little-endian, are the seed.
"""

from __future__ import annotations

import hashlib

import numpy as np


def stable_seed(*parts: object, bits: int = 64) -> int:
    """A ``bits``-bit seed from ``parts`` (each written with ``str``, joined with ``:``)."""
    if bits <= 0 or bits % 8 or bits > 256:
        raise ValueError(f"bits must be a multiple of 8 from 8 to 256, not {bits}")
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[: bits // 8], "little")


def stable_rng(*parts: object) -> np.random.Generator:
    """A numpy generator seeded by :func:`stable_seed` of ``parts`` (64 bits)."""
    return np.random.default_rng(stable_seed(*parts))
