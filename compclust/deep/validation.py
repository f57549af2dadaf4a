"""Checks on what users hand to the deep-clustering pipeline, before anything compiles."""
from __future__ import annotations

import numpy as np

from ..spec import _positive_int
from ..validation import check_data


def check_config(config, ints=(), positive=(), non_negative=()) -> None:
    """The named fields of a (dataclass) config: positive integers, positive finite numbers, finite
    numbers >= 0. A clear ``ValueError`` names the first field that is not."""
    for name in ints:
        _positive_int(getattr(config, name), name)
    for name in positive:
        value = getattr(config, name)
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    for name in non_negative:
        value = getattr(config, name)
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0.0, got {value!r}")


def check_shift(shift, image_shape) -> None:
    """Random image shifts: a whole number of pixels >= 0; when > 0, an ``(H, W)`` or ``(H, W, C)``
    image shape with both sides longer than the shift."""
    if isinstance(shift, (bool, np.bool_)) or not isinstance(shift, (int, np.integer)) or shift < 0:
        raise ValueError(f"shift must be a non-negative integer, got {shift!r}")
    if shift > 0:
        if image_shape is None or len(image_shape) not in (2, 3):
            raise ValueError(f"shift={shift} needs image_shape=(H, W) or (H, W, C), got {image_shape!r}")
        if shift >= min(image_shape[:2]):
            raise ValueError(f"shift={shift} must be smaller than the image, {tuple(image_shape[:2])}")


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


def check_n_clusters(n_clusters, n_samples: int | None = None) -> int:
    """A positive integer K, and (given ``n_samples``) no larger than N."""
    _positive_int(n_clusters, "n_clusters")
    if n_samples is not None and n_clusters > n_samples:
        raise ValueError(f"n_clusters={n_clusters} is larger than the number of samples, {n_samples}")
    return int(n_clusters)
