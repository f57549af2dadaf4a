"""Data sets for demos, tests and benchmarks: the neurolab blob demo, scikit-learn's digits
(shipped inside scikit-learn, no download) and MNIST read from IDX files."""
from __future__ import annotations

import numpy as np

# neurolab's competitive-layer demo (example/newc.py): five 3-D centres, 100 points each.
BLOB_CENTRES = np.array([[1, 2, 1], [2, 5, 2], [-3, 3, 0], [5, -1, -1], [-2, -2, -2]], dtype=np.float64)


def make_blobs(key_seed: int = 0, n_per_blob: int = 100, noise: float = 0.8, centres=BLOB_CENTRES):
    """The neurolab demo's data: ``centre + noise * N(0, 1)`` for each centre, blob after blob.

    Returns ``(points [n_blobs * n_per_blob, D] float64, labels [N] int)``; generated with NumPy's
    ``default_rng(key_seed)`` so the same seed gives the same points on every machine.
    """
    centres = np.asarray(centres, np.float64)
    rng = np.random.default_rng(key_seed)
    points = np.concatenate([c + noise * rng.standard_normal((n_per_blob, centres.shape[1])) for c in centres])
    labels = np.repeat(np.arange(len(centres)), n_per_blob)
    return points, labels


def load_digits():
    """scikit-learn's 8x8 digits: ``(images [1797, 64] float64 in 0..16, labels [1797])``."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    return bunch.data, bunch.target
