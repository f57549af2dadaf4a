"""Grid geometry: unit coordinates, grid distances (toroidal aware) and who is whose neighbour.

Coordinates are small static NumPy arrays derived from the (hashable) Grid, so they become
compile-time constants of size [K, ndim], never [K, K].
"""
from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from .spec import Grid

HEX_ROW_HEIGHT = np.sqrt(3.0) / 2.0  # MiniSom's Y_HEX_CONV_FACTOR: rows of a hexagonal grid


@functools.lru_cache(maxsize=None)
def coordinates(grid: Grid) -> np.ndarray:
    """Euclidean position of every unit on its grid, ``[K, ndim]`` float64 (unit k = C-order index).

    Hexagonal grids use MiniSom's layout, so kernels and topographic errors agree with it: unit
    ``(i, j)`` sits at ``(i - 0.5 * [(rows - 1 - j) even], j * sqrt(3) / 2)`` with ``rows = shape[1]``.
    """
    index = np.indices(grid.shape).reshape(grid.ndim, -1).T.astype(np.float64)
    if grid.topology == "hexagonal":
        rows = grid.shape[1]
        shifted = (rows - 1 - index[:, 1]) % 2 == 0
        index[:, 0] -= 0.5 * shifted
        index[:, 1] *= HEX_ROW_HEIGHT
    index.setflags(write=False)
    return index


def periods(grid: Grid) -> np.ndarray | None:
    """Length of each axis in coordinate units when the grid wraps around, else None."""
    if not grid.toroidal:
        return None
    lengths = np.asarray(grid.shape, np.float64)
    if grid.topology == "hexagonal":
        lengths[1] *= HEX_ROW_HEIGHT
    return lengths


def axis_offsets(grid: Grid, a, b, xp=jnp):
    """Per-axis |a - b| between coordinates, taking the shorter way round on a torus. ``[..., ndim]``."""
    delta = xp.abs(a - b)
    period = periods(grid)
    if period is not None:
        delta = xp.minimum(delta, period - delta)
    return delta


def sq_distances_from(grid: Grid, unit, dtype=jnp.float32) -> jnp.ndarray:
    """Squared grid distance from unit ``unit`` (a traced int) to every unit: ``[K]`` in ``dtype``
    (the weights' dtype, so a float64 map has float64 hexagonal coordinates)."""
    coords = jnp.asarray(coordinates(grid), dtype)
    delta = axis_offsets(grid, coords, coords[unit])
    return jnp.sum(delta * delta, axis=-1)


def are_neighbours(grid: Grid, a, b, dtype=jnp.float32) -> jnp.ndarray:
    """Whether units ``a`` and ``b`` (int arrays of one shape) are adjacent on the grid.

    Rectangular grids (1-D, 2-D, 3-D): every unit within one step along each axis (diagonals
    included; MiniSom's 1.42 threshold in 2-D). Hexagonal: the six units at distance one.
    """
    coords = jnp.asarray(coordinates(grid), dtype)
    delta = axis_offsets(grid, coords[a], coords[b])
    if grid.topology == "hexagonal":
        return jnp.abs(jnp.sqrt(jnp.sum(delta * delta, axis=-1)) - 1.0) < 1e-4
    return jnp.max(delta, axis=-1) < 1.0 + 1e-4


@functools.lru_cache(maxsize=None)
def neighbour_matrix(grid: Grid) -> np.ndarray:
    """``[K, K]`` bool adjacency (no self loops), for pictures such as the U-matrix. Host-side."""
    coords = coordinates(grid)
    delta = axis_offsets(grid, coords[:, None, :], coords[None, :, :], xp=np)
    if grid.topology == "hexagonal":
        adjacent = np.abs(np.sqrt(np.sum(delta * delta, axis=-1)) - 1.0) < 1e-4
    else:
        adjacent = np.max(delta, axis=-1) < 1.0 + 1e-4
    np.fill_diagonal(adjacent, False)
    return adjacent
