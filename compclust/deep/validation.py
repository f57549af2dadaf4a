"""Checks on what users hand to the deep-clustering pipeline, before anything compiles."""
from __future__ import annotations

import numpy as np

from ..validation import check_data


def check_deep_data(data, image_shape=None):
    """``data`` as a finite float32 ``[N, D]`` array; ``[N, *image_shape]`` images are flattened. A
    clear ``ValueError`` names the problem: wrong rank, image shape that does not match, NaN/inf,
    empty data."""
    array = np.asarray(data) if not hasattr(data, "shape") else data
    if image_shape is not None and array.ndim == 1 + len(image_shape):
        if tuple(array.shape[1:]) != tuple(image_shape):
            raise ValueError(f"images have shape {tuple(array.shape[1:])}, expected image_shape={tuple(image_shape)}")
        array = array.reshape((array.shape[0], -1))
    if array.ndim != 2:
        raise ValueError(f"data must be [N, D] (or [N, *image_shape] images), got shape {tuple(array.shape)}")
    if image_shape is not None and array.shape[1] != int(np.prod(image_shape)):
        raise ValueError(f"rows have {array.shape[1]} features, but image_shape={tuple(image_shape)} "
                         f"has {int(np.prod(image_shape))} pixels")
    return check_data(array)


def check_n_clusters(n_clusters, n_samples: int) -> int:
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)) or n_clusters < 1:
        raise ValueError(f"n_clusters must be a positive integer, got {n_clusters!r}")
    if n_clusters > n_samples:
        raise ValueError(f"n_clusters={n_clusters} is larger than the number of samples, {n_samples}")
    return int(n_clusters)
