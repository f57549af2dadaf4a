"""Scaling the data as the seeds do, reversibly, so centroids can be reported in original units.

A fitted Scaler is ``x_scaled = (x - offset) / scale``; a feature with no spread gets scale 1
(never a division by zero), so it maps to 0 and back.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .validation import check_data

METHODS = ("minmax", "global_norm", "standard")


class Scaler(NamedTuple):
    method: str
    offset: np.ndarray  # [D] float64
    scale: np.ndarray   # [D] float64, all > 0


def fit_scaler(data, method: str = "minmax") -> Scaler:
    """minmax: each feature to [0, 1] (the Kohonen tutorial); global_norm: divide everything by the
    Frobenius norm of the data (the neurolab demo); standard: zero mean, unit variance per feature."""
    if method not in METHODS:
        raise ValueError(f"unknown scaling {method!r}; choose from {METHODS}")
    array = np.asarray(check_data(data, dtype=None), np.float64)
    n_features = array.shape[1]
    if method == "minmax":
        offset, spread = array.min(axis=0), np.ptp(array, axis=0)
    elif method == "global_norm":
        offset, spread = np.zeros(n_features), np.full(n_features, np.linalg.norm(array))
    else:
        offset, spread = array.mean(axis=0), array.std(axis=0)
    scale = np.where(spread > 0, spread, 1.0)
    return Scaler(method, offset, scale)


def _checked(scaler: Scaler, data):
    array = np.asarray(check_data(data, dtype=None), np.float64)
    if array.shape[1] != scaler.offset.shape[0]:
        raise ValueError(f"data has {array.shape[1]} features but the scaler was fitted on {scaler.offset.shape[0]}")
    return array


def transform(scaler: Scaler, data) -> np.ndarray:
    """Apply a fitted scaling to ``[N, D]`` data (float32, ready for ``fit``)."""
    return ((_checked(scaler, data) - scaler.offset) / scaler.scale).astype(np.float32)


def inverse_transform(scaler: Scaler, data) -> np.ndarray:
    """Back to the original units, e.g. ``inverse_transform(scaler, result.state.weights)``."""
    return _checked(scaler, data) * scaler.scale + scaler.offset
