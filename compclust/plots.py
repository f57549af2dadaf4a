"""Reading a trained map by eye: U-matrix, hit map and component planes, as arrays and as pictures.

The read-outs (``u_matrix``, ``hit_map``, ``component_planes``) are plain NumPy, so they work
without matplotlib. The ``plot_*`` functions import matplotlib only when called, so
``import compclust`` never touches it. They draw on a bare ``matplotlib.figure.Figure`` (not
registered with pyplot: no global state, nothing to close in a loop) unless given an ``ax``.

Grid pictures follow MiniSom's orientation: the first grid axis runs left to right, the second
bottom to top, so rectangular and hexagonal maps of one shape look alike.
"""
from __future__ import annotations

import os
from io import BytesIO

import numpy as np

from . import topology
from .io import atomic_write_bytes
from .metrics import bmu
from .spec import Grid, Spec

HEX_RADIUS = 1.0 / np.sqrt(3.0)  # centre-to-corner radius of hexagons whose centres lie 1 apart


# ---------------------------------------------------------------------------------------------
# Read-outs (NumPy only)
# ---------------------------------------------------------------------------------------------

def _grid_of(spec: Spec) -> Grid:
    if spec.grid is None:
        raise ValueError("U-matrix, hit map and component planes need a grid; a competitive layer has none")
    return spec.grid


def _weights_of(spec: Spec, weights) -> np.ndarray:
    weights = np.asarray(weights, np.float64)
    if weights.ndim != 2 or weights.shape[0] != spec.n_units:
        raise ValueError(f"weights must have shape ({spec.n_units}, n_features), got {weights.shape}")
    return weights


def u_matrix(spec: Spec, weights) -> np.ndarray:
    """Each unit's mean Euclidean distance to its grid neighbours, shaped like ``spec.grid.shape``.

    High values mark cluster borders. Neighbours come from ``topology.neighbour_matrix``, so
    hexagonal (six neighbours) and toroidal (wrapped edges) grids are handled; a unit with no
    neighbour (a 1-unit grid) gets 0. Only neighbour pairs are measured, never all K x K.
    """
    grid = _grid_of(spec)
    weights = _weights_of(spec, weights)
    first, second = np.nonzero(topology.neighbour_matrix(grid))
    gaps = np.linalg.norm(weights[first] - weights[second], axis=1)
    totals = np.bincount(first, weights=gaps, minlength=spec.n_units)
    counts = np.bincount(first, minlength=spec.n_units)
    return (totals / np.maximum(counts, 1)).reshape(grid.shape)


def hit_map(spec: Spec, weights, data) -> np.ndarray:
    """How many samples each unit is the best match of (``compclust.bmu``), grid-shaped int counts."""
    grid = _grid_of(spec)
    winners = np.asarray(bmu(spec, weights, data))
    return np.bincount(winners, minlength=spec.n_units).reshape(grid.shape)


def component_planes(spec: Spec, weights) -> np.ndarray:
    """One grid-shaped plane per input feature, ``[D, *grid.shape]``: where on the map a feature is high."""
    grid = _grid_of(spec)
    weights = _weights_of(spec, weights)
    return np.ascontiguousarray(weights.T).reshape(weights.shape[1], *grid.shape)


# ---------------------------------------------------------------------------------------------
# Pictures (matplotlib imported inside)
# ---------------------------------------------------------------------------------------------

def _n_panels(grid: Grid) -> int:
    """A 3-D grid is drawn as one panel per slice along its last axis."""
    return grid.shape[2] if grid.ndim == 3 else 1


def _new_figure(n_rows: int, n_cols: int, panel_size=(4.0, 3.6)):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(panel_size[0] * n_cols, panel_size[1] * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    return fig, axes


def _draw_plane(ax, grid: Grid, values: np.ndarray, cmap: str, vmin, vmax, annotate: bool):
    """Draw a 1-D or 2-D grid of values on one Axes; returns the mappable for a colourbar."""
    if grid.ndim == 1:
        image = ax.imshow(values[None, :], cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto",
                          origin="lower", interpolation="nearest")
        ax.set_yticks([])
        ax.set_xlabel("unit")
        positions = np.stack([np.arange(values.size), np.zeros(values.size)], axis=1)
    elif grid.topology == "hexagonal":
        from matplotlib.collections import PatchCollection
        from matplotlib.patches import RegularPolygon

        positions = topology.coordinates(grid)
        hexagons = [RegularPolygon(tuple(xy), numVertices=6, radius=HEX_RADIUS) for xy in positions]
        image = PatchCollection(hexagons, cmap=cmap, edgecolor="white", linewidth=0.5)
        image.set_array(values.ravel())
        image.set_clim(vmin, vmax)
        ax.add_collection(image)
        ax.set_xlim(positions[:, 0].min() - 1.0, positions[:, 0].max() + 1.0)
        ax.set_ylim(positions[:, 1].min() - 1.0, positions[:, 1].max() + 1.0)
        ax.set_aspect("equal")
    else:
        image = ax.imshow(values.T, cmap=cmap, vmin=vmin, vmax=vmax, origin="lower", interpolation="nearest")
        positions = np.indices(values.shape).reshape(2, -1).T
    if grid.ndim == 2:
        ax.set_xlabel("grid axis 0")
        ax.set_ylabel("grid axis 1")
    if grid.topology == "rectangular":  # grid indices are whole numbers
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if grid.ndim == 2:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if annotate and values.size <= 150:
        for (x, y), value in zip(positions, values.ravel()):
            red, green, blue, _ = image.cmap(image.norm(value))
            dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5  # white text on dark cells
            ax.text(x, y, f"{value:g}", ha="center", va="center", fontsize=7, color="white" if dark else "black")
    return image


def _draw(axes, grid: Grid, values: np.ndarray, cmap: str, title: str, label: str, annotate=False):
    """Draw grid-shaped values over ``axes`` (one per panel) with one shared colourbar."""
    vmin, vmax = float(np.min(values)), float(np.max(values))
    if grid.ndim == 3:
        plane_grid = Grid(grid.shape[:2], grid.topology, grid.toroidal)
        for s, ax in enumerate(axes):
            image = _draw_plane(ax, plane_grid, values[:, :, s], cmap, vmin, vmax, annotate)
            ax.set_title(f"{title} [:, :, {s}]", fontsize=9)
    else:
        image = _draw_plane(axes[0], grid, values, cmap, vmin, vmax, annotate)
        axes[0].set_title(title, fontsize=9)
    axes[0].figure.colorbar(image, ax=list(axes), label=label, shrink=0.8)


def _single_picture(spec: Spec, values: np.ndarray, ax, cmap: str, title: str, label: str, annotate=False):
    grid = _grid_of(spec)
    n_panels = _n_panels(grid)
    if ax is None:
        fig, axes = _new_figure(1, n_panels, (4.0, 1.6) if grid.ndim == 1 else (4.0, 3.6))
        axes = list(axes[0])
    elif n_panels > 1:
        raise ValueError(f"a 3-D grid is drawn as {n_panels} panels (one per slice); call with ax=None")
    else:
        fig, axes = ax.figure, [ax]
    _draw(axes, grid, values, cmap, title, label, annotate)
    return fig


def plot_u_matrix(spec: Spec, weights, ax=None):
    """The U-matrix as a picture (light = far from its neighbours = cluster border). Returns the Figure."""
    return _single_picture(spec, u_matrix(spec, weights), ax, "bone_r", "U-matrix",
                           "mean distance to neighbours")


def plot_hit_map(spec: Spec, weights, data, ax=None):
    """Best-match counts per unit (dead units show as 0). Returns the Figure."""
    return _single_picture(spec, hit_map(spec, weights, data), ax, "Blues", "hit map", "samples",
                           annotate=True)


def plot_component_planes(spec: Spec, weights, feature_names=None, max_planes: int = 16):
    """One picture per input feature (the first ``max_planes``); 3-D grids get a row of slices each.

    Returns the Figure.
    """
    planes = component_planes(spec, weights)
    grid = spec.grid
    n_planes = min(planes.shape[0], int(max_planes))
    if n_planes < 1:
        raise ValueError(f"max_planes must be at least 1, got {max_planes}")
    if feature_names is None:
        feature_names = [f"feature {d}" for d in range(planes.shape[0])]
    elif len(feature_names) != planes.shape[0]:
        raise ValueError(f"got {len(feature_names)} feature names for {planes.shape[0]} features")
    if grid.ndim == 3:  # one row of slices per feature
        fig, axes = _new_figure(n_planes, _n_panels(grid), (3.2, 2.8))
        panels = [list(row) for row in axes]
    else:
        n_cols = min(n_planes, 4)
        n_rows = -(-n_planes // n_cols)
        fig, axes = _new_figure(n_rows, n_cols, (3.2, 1.4) if grid.ndim == 1 else (3.2, 2.8))
        flat = list(axes.ravel())
        panels = [[ax] for ax in flat[:n_planes]]
        for ax in flat[n_planes:]:
            ax.set_axis_off()
    for d in range(n_planes):
        _draw(panels[d], grid, planes[d], "viridis", str(feature_names[d]), "weight")
    return fig


def plot_blobs_3d(points, true_centres, found_centres, path, title: str = "competitive layer on 3-D blobs"):
    """The neurolab demo picture: data, true centres and recovered centres in 3-D, saved to ``path``.

    found_centres: one ``[K, 3]`` array, or a mapping ``{label: [K, 3]}`` to compare several runs.
    Returns the path written.
    """
    from matplotlib.figure import Figure

    points = np.asarray(points, np.float64)
    true_centres = np.asarray(true_centres, np.float64)
    if not isinstance(found_centres, dict):
        found_centres = {"recovered": found_centres}
    for array, what in [(points, "points"), (true_centres, "true_centres")] + \
            [(np.asarray(v), f"found_centres[{k!r}]") for k, v in found_centres.items()]:
        if array.ndim != 2 or array.shape[1] != 3:
            raise ValueError(f"{what} must have shape (n, 3), got {array.shape}")
    fig = Figure(figsize=(7.0, 6.0), layout="constrained")
    ax = fig.add_subplot(projection="3d")
    ax.scatter(*points.T, s=4, c="0.6", alpha=0.5, label="data")
    ax.scatter(*true_centres.T, s=140, c="black", marker="*", depthshade=False, label="true centres")
    markers = ["o", "^", "s", "D", "v", "P"]
    for i, (label, centres) in enumerate(found_centres.items()):
        centres = np.asarray(centres, np.float64)
        ax.scatter(*centres.T, s=60, marker=markers[i % len(markers)], edgecolor="black", depthshade=False,
                   label=label)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_zlabel("z")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    save_figure(fig, path)
    return str(path)


def save_figure(fig, path, dpi: int = 120) -> str:
    """Write ``fig`` to ``path`` atomically (``compclust.io.atomic_write_bytes``: temp file, then rename).

    A reader never sees a half-written image, and an interrupted run leaves the old file intact.
    The format follows the extension (PNG when there is none); PNGs are rendered by Agg.
    """
    path = os.fspath(path)
    buffer = BytesIO()
    fig.savefig(buffer, format=os.path.splitext(path)[1].lstrip(".").lower() or "png", dpi=dpi)
    atomic_write_bytes(path, buffer.getvalue())
    return path
