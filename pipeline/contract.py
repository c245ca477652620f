"""What a cached feature is: the sizes every stage agrees on, and how two trunk fingerprints compare.

This module imports nothing heavy (no torch): store writer processes import `pipeline.store`, which
needs these facts, and must start in well under a second.
"""

from __future__ import annotations

INPUT_SIZE = 224  # frames and ground-truth maps are cached at INPUT_SIZE x INPUT_SIZE
FEATURE_SHAPE = (512, 14, 14)  # VGG-16 relu5_3 of one INPUT_SIZE frame: (channels, y, x)


def fingerprint_mismatch(expected: dict, found: dict) -> str | None:
    """None when two trunk fingerprints match, else a sentence naming the fields that differ.

    A field `expected` holds as None is not compared: a checkpoint imported from Keras names its
    trunk preset but not the weights file the user will pass (`pipeline.trunk.trunk_fingerprint`)."""
    keys = sorted(set(expected) | set(found))
    differing = [k for k in keys if expected.get(k) != found.get(k) and not (k in expected and expected[k] is None)]
    if not differing:
        return None
    return "; ".join(f"{k}: {expected.get(k)!r} vs {found.get(k)!r}" for k in differing)
