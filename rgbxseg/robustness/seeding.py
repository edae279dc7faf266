"""Per-sample random streams that are identical in every process, run and machine.

A robustness benchmark must corrupt sample k the same way whether it is loaded by the main process or
by DataLoader worker 3, today or next month. So a stream is derived from a stable *key* of the sample
and never from state the transform accumulates:

* the key is ``meta["id"]`` (every rgbxseg dataset sets it); without one it is a digest of the image
  bytes. A call counter is not used: each DataLoader worker holds its own copy of the transform, so a
  counter would depend on which worker happened to load which sample.
* the key, a seed and a tag (what the stream is for) are hashed with :mod:`hashlib` (BLAKE2b), never
  with Python's :func:`hash`, which is salted per process for strings.
"""

from __future__ import annotations

import hashlib

import numpy as np

from rgbxseg.data.sample import RawSample


def sample_key(sample: RawSample) -> str:
    """The stable identity of ``sample``: ``meta["id"]``, else a digest of its image."""
    sample_id = sample.meta.get("id")
    if sample_id is not None:
        return f"id:{sample_id}"
    image = np.ascontiguousarray(sample.image)
    digest = hashlib.blake2b(image.tobytes(), digest_size=16)
    digest.update(f"{image.dtype}{image.shape}".encode())
    return f"image:{digest.hexdigest()}"


def sample_rng(seed: int, tag: str, key: str) -> np.random.Generator:
    """A generator determined by (``seed``, ``tag``, ``key``) alone."""
    digest = hashlib.blake2b(f"{int(seed)}\x1f{tag}\x1f{key}".encode(), digest_size=16).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))
