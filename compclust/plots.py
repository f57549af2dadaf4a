"""Reading a trained map by eye: the pictures users know from MiniSom, somoclu and R's kohonen.

Read-outs (plain NumPy, no matplotlib): ``u_matrix``, ``hit_map``, ``component_planes``,
``label_map`` (majority class and class shares per unit), ``grid_edges`` (the mesh drawn over the
data), ``training_frames`` (one run trained in chunks, its weights after each).

Pictures: ``plot_u_matrix`` (optionally with each sample's class marked on its best unit),
``plot_hit_map``, ``plot_component_planes``, ``plot_label_map`` (majority, pie or bar per unit),
``plot_map_on_data`` and ``plot_training_frames`` (the map over the data or its first two
principal components), ``plot_blobs_3d`` (neurolab's competitive-layer demo),
``plot_training_curves`` (one run, or a sweep's mean and 95% band over seeds per setting),
``plot_final_metrics`` (box, violin or strip over seeds and settings) and
``plot_weights_as_images`` (units laid out on their grid, centroids in rows).

The read-outs are plain NumPy, so they work without matplotlib. The ``plot_*`` functions import matplotlib only when called, so
``import compclust`` never touches it. They draw on a bare ``matplotlib.figure.Figure`` (not
registered with pyplot: no global state, nothing to close in a loop) unless given an ``ax``.

Grid pictures follow MiniSom's orientation: the first grid axis runs left to right, the second
bottom to top, so rectangular and hexagonal maps of one shape look alike.
"""
from __future__ import annotations

import os
from typing import NamedTuple
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


def _single_picture(spec: Spec, values: np.ndarray, ax, cmap: str, title: str, label: str, annotate=False,
                    panel_size=(4.0, 3.6)):
    grid = _grid_of(spec)
    n_panels = _n_panels(grid)
    if ax is None:
        fig, axes = _new_figure(1, n_panels, (panel_size[0], 1.6 * panel_size[1] / 3.6) if grid.ndim == 1
                                else panel_size)
        axes = list(axes[0])
    elif n_panels > 1:
        raise ValueError(f"a 3-D grid is drawn as {n_panels} panels (one per slice); call with ax=None")
    else:
        fig, axes = ax.figure, [ax]
    _draw(axes, grid, values, cmap, title, label, annotate)
    return fig


def plot_u_matrix(spec: Spec, weights, ax=None, *, data=None, labels=None, class_names=None,
                  max_markers: int = 2000, seed: int = 0):
    """The U-matrix as a picture (dark = far from its neighbours = cluster border, MiniSom's
    ``bone_r``): hexagons on a hexagonal grid, squares on a rectangular one, a strip for a line,
    one panel per slice of a 3-D grid. Returns the Figure.

    data, labels: optionally mark every sample (at most ``max_markers``, a random subset beyond
    that) on its best unit, jittered inside the cell, coloured by its class (MiniSom's iris picture).
    """
    grid = _grid_of(spec)
    title = "U-matrix (toroidal)" if grid.toroidal else "U-matrix"
    fig = _single_picture(spec, u_matrix(spec, weights), ax, "bone_r", title, "mean distance to neighbours",
                          panel_size=(4.0, 3.6) if data is None else (6.0, 5.2))
    if data is not None:
        if grid.ndim == 3:
            raise ValueError("sample markers are drawn on 1-D and 2-D grids; a 3-D grid has one panel per slice")
        winners = np.asarray(bmu(spec, weights, data))
        classes = np.zeros(len(winners), int) if labels is None else _int_labels(labels, len(winners))
        rng = np.random.default_rng(seed)
        keep = np.arange(len(winners)) if len(winners) <= max_markers else \
            np.sort(rng.choice(len(winners), max_markers, replace=False))
        centres = _plane_positions(grid)[winners[keep]]
        spread = 0.22 if grid.topology == "hexagonal" else 0.3
        xy = centres + rng.uniform(-spread, spread, centres.shape)
        if grid.ndim == 1:
            xy[:, 1] = rng.uniform(-0.35, 0.35, len(keep))
        target = ax if ax is not None else fig.axes[0]
        n_classes = int(classes.max()) + 1
        colours = _class_colours(n_classes)
        markers = ["o", "s", "D", "^", "v", "P", "X", "*", "<", ">"]
        for c in range(n_classes):
            chosen = classes[keep] == c
            if chosen.any():
                target.scatter(*xy[chosen].T, s=12, marker=markers[c % len(markers)], facecolor="none",
                               edgecolor=colours[c], linewidth=1.0, label=_class_name(class_names, c))
        if labels is not None:
            target.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=7, frameon=False,
                          ncol=min(n_classes, 10), columnspacing=0.8, handletextpad=0.2)
    return fig


def plot_hit_map(spec: Spec, weights, data, ax=None):
    """Best-match counts per unit (dead units show as 0). Returns the Figure."""
    return _single_picture(spec, hit_map(spec, weights, data), ax, "Blues", "hit map", "samples",
                           annotate=True)


def plot_component_planes(spec: Spec, weights, feature_names=None, max_planes: int = 16, *, features=None):
    """One picture per input feature (the first ``max_planes``, or those in ``features``: indices or
    names); each plane has its own colour scale, titled by the feature's name; 3-D grids get a row
    of slices each. Returns the Figure.
    """
    planes = component_planes(spec, weights)
    grid = spec.grid
    if feature_names is None:
        feature_names = [f"feature {d}" for d in range(planes.shape[0])]
    elif len(feature_names) != planes.shape[0]:
        raise ValueError(f"got {len(feature_names)} feature names for {planes.shape[0]} features")
    feature_names = [str(name) for name in feature_names]
    if features is not None:
        chosen = []
        for f in features:
            if isinstance(f, str):
                if f not in feature_names:
                    raise ValueError(f"no feature named {f!r}")
                chosen.append(feature_names.index(f))
            elif not 0 <= int(f) < planes.shape[0]:
                raise ValueError(f"feature index {f} out of range for {planes.shape[0]} features")
            else:
                chosen.append(int(f))
        planes = planes[chosen]
        feature_names = [feature_names[d] for d in chosen]
    n_planes = min(planes.shape[0], int(max_planes))
    if n_planes < 1:
        raise ValueError(f"max_planes must be at least 1, got {max_planes}")
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


def plot_blobs_3d(points, true_centres, found_centres, path=None, title: str = "competitive layer on 3-D blobs",
                  *, ax=None, labels=None):
    """The neurolab demo picture: data, true centres (stars) and found centres in 3-D.

    found_centres: one ``[K, 3]`` array, or a mapping ``{label: [K, 3]}`` to compare several runs.
    labels: optional class of every point, to colour the blobs.
    ax: a 3-D Axes (``fig.add_subplot(projection="3d")``) to draw on; None makes a Figure.
    Returns the path written when ``path`` is given, else the Figure.
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
    if ax is None:
        fig = Figure(figsize=(7.0, 6.0), layout="constrained")
        ax = fig.add_subplot(projection="3d")
    elif getattr(ax, "name", "") != "3d":
        raise ValueError("plot_blobs_3d draws on a 3-D Axes: fig.add_subplot(projection='3d')")
    else:
        fig = ax.figure
    if labels is None:
        ax.scatter(*points.T, s=4, c="0.6", alpha=0.5, label="data")
    else:
        classes = _int_labels(labels, len(points))
        ax.scatter(*points.T, s=6, c=_class_colours(int(classes.max()) + 1)[classes], alpha=0.6, label="data")
    ax.scatter(*true_centres.T, s=160, c="black", marker="*", depthshade=False, label="true centres")
    markers = ["o", "^", "s", "D", "v", "P"]
    colours = ["tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown"]
    for i, (label, centres) in enumerate(found_centres.items()):
        centres = np.asarray(centres, np.float64)
        ax.scatter(*centres.T, s=60, marker=markers[i % len(markers)], c=colours[i % len(colours)],
                   edgecolor="black", depthshade=False, label=label)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_zlabel("z")
    ax.set_title(title)
    handles, names = ax.get_legend_handles_labels()
    if labels is not None:  # the data's handle in neutral grey, not the first blob's colour
        from matplotlib.lines import Line2D

        handles[0] = Line2D([], [], ls="", marker="o", markersize=3, color="0.5")
        names[0] = "data (coloured by class)"
    ax.legend(handles, names, loc="upper left", fontsize=8)
    if path is None:
        return fig
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


# ---------------------------------------------------------------------------------------------
# Shared helpers for the pictures below
# ---------------------------------------------------------------------------------------------

def _int_labels(labels, n: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), one per sample, got {labels.shape}")
    if labels.size and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0):
        raise ValueError("labels must be non-negative integer classes")
    return labels.astype(np.int64)


def _class_colours(n_classes: int) -> np.ndarray:
    """``[C, 4]`` RGBA: tab10 up to 10 classes (the colours MiniSom's and scikit-learn's examples use),
    tab20 up to 20, evenly spaced hues beyond."""
    from matplotlib import colormaps

    if n_classes <= 10:
        return colormaps["tab10"](np.arange(n_classes))
    if n_classes <= 20:
        return colormaps["tab20"](np.arange(n_classes))
    return colormaps["hsv"](np.linspace(0.0, 1.0, n_classes, endpoint=False))


def _class_name(class_names, c: int) -> str:
    return str(c) if class_names is None else str(class_names[c])


def _plane_positions(grid: Grid) -> np.ndarray:
    """Where each unit of a 1-D or 2-D grid is drawn, ``[K, 2]``: x along the first grid axis, y along
    the second (MiniSom's orientation); a line lies on y = 0; hexagonal grids use MiniSom's layout."""
    if grid.ndim == 1:
        return np.stack([np.arange(grid.shape[0], dtype=np.float64), np.zeros(grid.shape[0])], axis=1)
    return np.asarray(topology.coordinates(grid), np.float64)


def cell_patches(grid: Grid, positions=None, **kwargs):
    """The cell of every unit of a 1-D or 2-D grid as matplotlib patches (unit k's cell first):
    pointy-top hexagons of circumradius ``1/sqrt(3)`` on a hexagonal grid (neighbours 1 apart
    share an edge, as in MiniSom's and R kohonen's hexagonal plots), unit squares otherwise."""
    from matplotlib.patches import Rectangle, RegularPolygon

    positions = _plane_positions(grid) if positions is None else positions
    if grid.topology == "hexagonal":
        return [RegularPolygon(tuple(xy), numVertices=6, radius=HEX_RADIUS, orientation=0.0, **kwargs)
                for xy in positions]
    return [Rectangle((x - 0.5, y - 0.5), 1.0, 1.0, **kwargs) for x, y in positions]


def _frame_grid(ax, grid: Grid, positions):
    margin = 0.75
    ax.set_xlim(positions[:, 0].min() - margin, positions[:, 0].max() + margin)
    ax.set_ylim(positions[:, 1].min() - margin, positions[:, 1].max() + margin)
    ax.set_aspect("equal")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if grid.ndim == 1:
        ax.set_yticks([])
        ax.set_xlabel("unit")
    else:
        if grid.topology == "rectangular":
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("grid axis 0")
        ax.set_ylabel("grid axis 1")


def _panels_for(grid: Grid, ax, panel_size=(4.4, 3.8)):
    """``(fig, [(plane grid, unit indices, Axes)])``: one panel for a 1-D or 2-D grid, one per slice
    of a 3-D grid (the last axis)."""
    if grid.ndim == 3:
        if ax is not None:
            raise ValueError(f"a 3-D grid is drawn as {grid.shape[2]} panels (one per slice); call with ax=None")
        fig, axes = _new_figure(1, grid.shape[2], panel_size)
        plane = Grid(grid.shape[:2], grid.topology, grid.toroidal)
        units = np.arange(grid.n_units).reshape(grid.shape)
        return fig, [(plane, units[:, :, s].ravel(), a, f" [:, :, {s}]") for s, a in enumerate(axes[0])]
    if ax is None:
        fig, axes = _new_figure(1, 1, (panel_size[0], 1.8) if grid.ndim == 1 else panel_size)
        ax = axes[0, 0]
    return ax.figure, [(grid, np.arange(grid.n_units), ax, "")]


# ---------------------------------------------------------------------------------------------
# Label map
# ---------------------------------------------------------------------------------------------

class LabelMap(NamedTuple):
    majority: np.ndarray  # grid-shaped int: each unit's most frequent class (lowest on ties), -1 if it won nothing
    shares: np.ndarray    # [*grid.shape, C] float: fraction of each unit's samples in each class (0 if none)
    hits: np.ndarray      # grid-shaped int: samples won


def label_map(spec: Spec, weights, data, labels, n_classes: int | None = None) -> LabelMap:
    """Which classes each unit wins: its majority class, the class shares and its hit count.

    Ties go to the lowest class, as ``compclust.majority_labels``; a unit that wins no sample has
    majority -1. For a competitive layer (no grid) the arrays are ``[K]`` and ``[K, C]``.
    """
    weights = _weights_of(spec, weights)
    winners = np.asarray(bmu(spec, weights, data))
    labels = _int_labels(labels, len(winners))
    n_classes = int(labels.max()) + 1 if n_classes is None else int(n_classes)
    if labels.size and labels.max() >= n_classes:
        raise ValueError(f"label {labels.max()} is not below n_classes={n_classes}")
    table = np.zeros((spec.n_units, n_classes), np.int64)
    np.add.at(table, (winners, labels), 1)
    hits = table.sum(axis=1)
    majority = np.where(hits > 0, table.argmax(axis=1), -1)
    shares = table / np.maximum(hits, 1)[:, None]
    shape = spec.grid.shape if spec.grid is not None else (spec.n_units,)
    return LabelMap(majority.reshape(shape), shares.reshape(*shape, n_classes), hits.reshape(shape))


def plot_label_map(spec: Spec, weights, data, labels, *, style: str = "majority", class_names=None,
                   n_classes: int | None = None, ax=None, annotate: bool = True):
    """Which class each unit stands for, drawn on its grid cell (hexagons or squares).

    style: "majority": each cell in its majority class's colour (faded toward white as its purity
      falls), the class written inside; "pie": a pie of the class shares in every cell (MiniSom's
      pie-chart example); "bar": a small bar per class in every cell. Units that win no sample stay
      white. Colours: tab10 (tab20 beyond 10 classes). Returns the Figure.
    """
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Patch, Rectangle, Wedge

    if style not in ("majority", "pie", "bar"):
        raise ValueError(f"style must be 'majority', 'pie' or 'bar', got {style!r}")
    grid = _grid_of(spec)
    read = label_map(spec, weights, data, labels, n_classes)
    n_classes = read.shares.shape[-1]
    majority, hits = read.majority.ravel(), read.hits.ravel()
    shares = read.shares.reshape(-1, n_classes)
    colours = _class_colours(n_classes)
    fig, panels = _panels_for(grid, ax)
    for plane, units, axis, suffix in panels:
        positions = _plane_positions(plane)
        faces = np.ones((len(units), 4))
        if style == "majority":
            won = majority[units] >= 0
            purity = shares[units, np.maximum(majority[units], 0)]
            mix = (0.25 + 0.75 * purity)[:, None]
            faces[won, :3] = mix[won] * colours[majority[units][won], :3] + (1 - mix[won])
        cells = PatchCollection(cell_patches(plane, positions), facecolor=faces, edgecolor="0.75", linewidth=0.6)
        axis.add_collection(cells)
        half = 0.42 if plane.topology == "hexagonal" else 0.45
        glyphs, glyph_colours = [], []
        for cell, k in enumerate(units):
            x, y = positions[cell]
            if hits[k] == 0:
                continue
            if style == "majority":
                if annotate and len(units) <= 400:
                    red, green, blue = faces[cell, :3]
                    dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
                    axis.text(x, y, _class_name(class_names, majority[k]), ha="center", va="center",
                              fontsize=7 if len(units) <= 150 else 5, color="white" if dark else "black")
            elif style == "pie":
                start = 90.0
                for c in np.flatnonzero(shares[k]):
                    sweep_deg = 360.0 * shares[k, c]
                    glyphs.append(Wedge((x, y), half, start, start + sweep_deg))
                    glyph_colours.append(colours[c])
                    start += sweep_deg
            else:
                width = 2 * half / n_classes
                for c in np.flatnonzero(shares[k]):
                    glyphs.append(Rectangle((x - half + c * width, y - half), width, 2 * half * shares[k, c]))
                    glyph_colours.append(colours[c])
        if glyphs:
            axis.add_collection(PatchCollection(glyphs, facecolor=glyph_colours, edgecolor="none"))
        _frame_grid(axis, plane, positions)
        axis.set_title(f"label map ({style}){suffix}", fontsize=9)
    handles = [Patch(facecolor=colours[c], label=_class_name(class_names, c)) for c in range(n_classes)]
    panels[-1][2].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7,
                         frameon=False, title="class", title_fontsize=8)
    return fig


# ---------------------------------------------------------------------------------------------
# The map over the data, and a training run as frames
# ---------------------------------------------------------------------------------------------

def grid_edges(grid: Grid) -> np.ndarray:
    """``[E, 2]`` int pairs ``(a, b)``, ``a < b``, of units joined by a line when the map is drawn
    over the data: the six neighbours on a hexagonal grid; on a rectangular grid the units one step
    apart along one axis (the mesh of Kohonen's pictures; ``topology.neighbour_matrix`` also counts
    diagonals). A torus's wrap-around edges are left out: they would cross the whole picture."""
    first, second = np.nonzero(np.triu(topology.neighbour_matrix(grid)))
    coords = topology.coordinates(grid)
    gap = np.abs(coords[first] - coords[second])
    if grid.topology == "hexagonal":
        keep = np.abs(np.linalg.norm(gap, axis=1) - 1.0) < 1e-6
    else:
        keep = np.abs(gap.sum(axis=1) - 1.0) < 1e-6
    return np.stack([first[keep], second[keep]], axis=1)


class Projection(NamedTuple):
    mean: np.ndarray        # [D]
    components: np.ndarray  # [2, D]
    names: tuple            # axis labels
    explained: np.ndarray | None  # [2] fraction of the variance, PCA only


def projection_of(data, projection="pca", max_rows: int = 20000, feature_names=None) -> Projection:
    """How ``data [N, D]`` is drawn in 2-D: itself when D = 2; two chosen features ``(i, j)``; or the
    first two principal components ("pca", fitted on at most ``max_rows`` rows)."""
    data = np.asarray(data, np.float64)
    if data.ndim != 2:
        raise ValueError(f"data must have shape (n_samples, n_features), got {data.shape}")
    n_features = data.shape[1]
    names = feature_names or [f"feature {d}" for d in range(n_features)]
    if n_features == 1:
        return Projection(np.zeros(1), np.array([[1.0], [0.0]]), (names[0], ""), None)
    if n_features == 2 and projection == "pca":
        projection = (0, 1)
    if isinstance(projection, str):
        if projection != "pca":
            raise ValueError(f"projection must be 'pca' or two feature indices, got {projection!r}")
        rows = data if len(data) <= max_rows else data[np.linspace(0, len(data) - 1, max_rows).astype(int)]
        mean = rows.mean(axis=0)
        _, singular, vt = np.linalg.svd(rows - mean, full_matrices=False)
        explained = singular[:2] ** 2 / max(np.sum(singular ** 2), 1e-300)
        signs = np.where(vt[:2].sum(axis=1) < 0, -1.0, 1.0)[:, None]  # a fixed sign for every call
        return Projection(mean, vt[:2] * signs, ("PC 1", "PC 2"), explained)
    i, j = (int(v) for v in projection)
    components = np.zeros((2, n_features))
    components[0, i] = components[1, j] = 1.0
    return Projection(np.zeros(n_features), components, (names[i], names[j]), None)


def _project(projection: Projection, points) -> np.ndarray:
    return (np.asarray(points, np.float64) - projection.mean) @ projection.components.T


def plot_map_on_data(spec: Spec, weights, data, labels=None, *, ax=None, projection="pca", class_names=None,
                     title: str | None = None, max_points: int = 5000, seed: int = 0):
    """The units over the data in 2-D (the data itself, two features ``projection=(i, j)``, or its
    first two principal components), joined along the grid's edges (``grid_edges``); a competitive
    layer's units are drawn without edges. Points are coloured by ``labels`` when given. Returns the
    Axes' Figure (draws on ``ax`` when given)."""
    if ax is None:
        fig, axes = _new_figure(1, 1, (5.2, 4.4))
        ax = axes[0, 0]
    proj = projection if isinstance(projection, Projection) else projection_of(data, projection)
    _draw_map_on_data(ax, spec, weights, data, labels, proj, class_names, max_points, seed)
    ax.set_title(title if title is not None else "map over the data", fontsize=9)
    return ax.figure


def _draw_map_on_data(ax, spec, weights, data, labels, proj, class_names, max_points, seed, legend=True):
    from matplotlib.collections import LineCollection

    weights = _weights_of(spec, weights)
    data = np.asarray(data, np.float64)
    rng = np.random.default_rng(seed)
    keep = np.arange(len(data)) if len(data) <= max_points else np.sort(rng.choice(len(data), max_points, False))
    xy = _project(proj, data[keep])
    if labels is None:
        ax.scatter(*xy.T, s=7, c="0.6", alpha=0.6, linewidths=0)
    else:
        classes = _int_labels(labels, len(data))[keep]
        colours = _class_colours(int(classes.max()) + 1)
        for c in np.unique(classes):
            ax.scatter(*xy[classes == c].T, s=8, color=colours[c], alpha=0.6, linewidths=0,
                       label=_class_name(class_names, c))
        if legend:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False, markerscale=2.5)
    units = _project(proj, weights)
    if spec.grid is not None:
        edges = grid_edges(spec.grid)
        ax.add_collection(LineCollection(units[edges], colors="black", linewidths=0.9, alpha=0.8))
    ax.scatter(*units.T, s=18 if spec.n_units <= 100 else 8, c="tab:red", edgecolor="black", linewidths=0.4,
               zorder=3)
    ax.set_xlabel(proj.names[0] + ("" if proj.explained is None else f" ({100 * proj.explained[0]:.0f}% var.)"))
    ax.set_ylabel(proj.names[1] + ("" if proj.explained is None else f" ({100 * proj.explained[1]:.0f}% var.)"))


class TrainingFrames(NamedTuple):
    epochs: np.ndarray    # [F] int: epochs trained when each frame was taken (the first is 0)
    weights: np.ndarray   # [F, K, D]: the weights at those epochs
    metrics: object       # EpochMetrics over the whole run, each field [n_epochs]
    state: object         # the final State (to go on training with fit(resume=...))


def training_frames(key, data, spec: Spec, hparams, n_epochs: int, n_frames: int = 4, *,
                    init="random_samples") -> TrainingFrames:
    """Train one run in ``n_frames - 1`` chunks (``compclust.fit(resume=..., total_epochs=n_epochs)``,
    so the schedules span the whole run) and keep the weights before the first epoch and after
    every chunk. Chunks of equal length share one compiled program (choose ``n_frames - 1``
    dividing ``n_epochs``)."""
    import jax

    from .loop import fit, init as init_state

    n_frames = int(n_frames)
    if n_frames < 2 or n_frames - 1 > int(n_epochs):
        raise ValueError(f"n_frames must be between 2 and n_epochs + 1 = {int(n_epochs) + 1}, got {n_frames}")
    bounds = np.unique(np.round(np.linspace(0, int(n_epochs), n_frames)).astype(int))
    keys = jax.random.split(key, len(bounds))
    start = init_state(keys[0], data, spec, method=init) if isinstance(init, str) else None
    first = start.weights if start is not None else init
    frames, chunks, state = [np.asarray(first)], [], None
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        if state is None:
            result = fit(keys[i + 1], data, spec, hparams, int(b - a), init=first, total_epochs=int(n_epochs))
        else:
            result = fit(keys[i + 1], data, spec, hparams, int(b - a), resume=state, total_epochs=int(n_epochs))
        state = result.state
        frames.append(np.asarray(state.weights))
        chunks.append(result.metrics)
    metrics = jax.tree_util.tree_map(lambda *parts: np.concatenate([np.asarray(p) for p in parts]), *chunks)
    return TrainingFrames(bounds, np.stack(frames), metrics, state)


def plot_training_frames(spec: Spec, frames, data, labels=None, *, n_cols: int | None = None, projection="pca",
                         class_names=None, max_points: int = 3000):
    """``plot_map_on_data`` for every frame of ``training_frames`` (or a list of ``(epoch, weights)``),
    side by side on shared axes and one projection, titled by epoch. Returns the Figure."""
    if isinstance(frames, TrainingFrames):
        pairs = list(zip(frames.epochs, frames.weights))
    else:
        pairs = [(epoch, w) for epoch, w in frames]
    if not pairs:
        raise ValueError("no frames to draw")
    n_cols = min(len(pairs), 4) if n_cols is None else int(n_cols)
    n_rows = -(-len(pairs) // n_cols)
    fig, axes = _new_figure(n_rows, n_cols, (3.6, 3.3))
    proj = projection_of(data, projection)
    flat = list(axes.ravel())
    for i, (epoch, w) in enumerate(pairs):
        _draw_map_on_data(flat[i], spec, w, data, labels, proj, class_names, max_points, 0,
                          legend=i == len(pairs) - 1)
        flat[i].set_title(f"epoch {int(epoch)}", fontsize=9)
    for ax in flat[len(pairs):]:
        ax.set_axis_off()
    first = flat[0]
    for ax in flat[1:len(pairs)]:
        ax.sharex(first)
        ax.sharey(first)
    return fig


# ---------------------------------------------------------------------------------------------
# Training curves and the distribution of final metrics
# ---------------------------------------------------------------------------------------------

CURVES = ("quantization_error", "topographic_error", "inertia", "center_shift")
_PRETTY = {"quantization_error": "quantization error", "topographic_error": "topographic error",
           "inertia": "inertia", "center_shift": "centre shift", "dead_units": "dead units", "lr": "learning rate",
           "sigma": "radius", "loss": "loss", "n_changed": "samples that changed cluster"}


def _field(metrics, name: str):
    if isinstance(metrics, dict):
        return metrics.get(name)
    holder = getattr(metrics, "metrics", metrics)  # a FitResult or DNNKMeansResult carries .metrics
    return getattr(holder, name, None)


def _mean_band(values: np.ndarray, confidence: float):
    """Mean over axis -2 (seeds) and the half-width of its Student-t confidence interval."""
    n = values.shape[-2]
    mean = values.mean(axis=-2)
    if n < 2:
        return mean, np.zeros_like(mean)
    from scipy.stats import t

    sem = values.std(axis=-2, ddof=1) / np.sqrt(n)
    return mean, t.ppf(0.5 + confidence / 2, n - 1) * sem


def plot_training_curves(metrics, which=None, *, settings=None, ax=None, confidence: float = 0.95,
                         log_scale=("center_shift",)):
    """Per-epoch curves (one panel per metric in ``which``; by default those of ``CURVES`` present).

    metrics: a ``FitResult`` / ``EpochMetrics`` (or DNN K-means' result / ``RoundMetrics``) or a
      mapping ``name -> array``. Fields ``[E]``: one run, one line. ``[S, E]`` (a sweep over seeds):
      the mean over seeds with its ``confidence`` band (Student t). ``[H, S, E]`` (a sweep over H
      settings): one mean line and band per setting, labelled by ``settings``.
    ax: one Axes (a single metric) or a sequence of Axes, one per metric; None makes a Figure.
    log_scale: metrics drawn on a log axis (centre shift decays geometrically). Returns the Figure.
    """
    explicit = which is not None
    which = CURVES if which is None else ((which,) if isinstance(which, str) else tuple(which))
    fields = {}
    for name in which:
        value = _field(metrics, name)
        if value is None:
            if explicit:
                raise ValueError(f"metrics have no field {name!r}")
            continue
        fields[name] = np.asarray(value, np.float64)
    if not fields:
        raise ValueError(f"none of {which} found in the metrics")
    if ax is None:
        n_cols = min(len(fields), 4)
        fig, axes = _new_figure(-(-len(fields) // n_cols), n_cols, (3.6, 2.9))
        flat = list(axes.ravel())
        for extra in flat[len(fields):]:
            extra.set_axis_off()
    else:
        flat = list(np.ravel(np.asarray(ax, dtype=object))) if isinstance(ax, (list, tuple, np.ndarray)) else [ax]
        if len(flat) < len(fields):
            raise ValueError(f"got {len(flat)} Axes for {len(fields)} metrics")
        fig = flat[0].figure
    for axis, (name, values) in zip(flat, fields.items()):
        if values.ndim == 1:
            values = values[None, None]
        elif values.ndim == 2:
            values = values[None]
        elif values.ndim != 3:
            raise ValueError(f"{name} must be [epochs], [seeds, epochs] or [settings, seeds, epochs], got "
                             f"shape {values.shape}")
        if settings is not None and len(settings) != values.shape[0]:
            raise ValueError(f"got {len(settings)} setting labels for {values.shape[0]} settings")
        epochs = np.arange(1, values.shape[-1] + 1)
        mean, half = _mean_band(values, confidence)
        for h in range(values.shape[0]):
            label = None if settings is None else str(settings[h])
            line, = axis.plot(epochs, mean[h], lw=1.6, label=label, marker="o" if len(epochs) <= 12 else None,
                              markersize=3)
            if values.shape[1] > 1:
                axis.fill_between(epochs, mean[h] - half[h], mean[h] + half[h], color=line.get_color(), alpha=0.2,
                                  linewidth=0)
        if name in log_scale and np.all(mean > 0):
            from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

            axis.set_yscale("log")
            few_decades = np.log10(mean.max() / mean.min()) < 2.0
            axis.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if few_decades else (1.0,)))
            axis.yaxis.set_major_formatter(FormatStrFormatter("%g"))
            axis.yaxis.set_minor_formatter(NullFormatter())
        axis.set_xlabel("epoch")
        axis.set_title(_PRETTY.get(name, name), fontsize=9)
        axis.grid(alpha=0.3)
        from matplotlib.ticker import MaxNLocator

        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    seeds = fields[next(iter(fields))]
    if seeds.ndim >= 2 and seeds.shape[-2] > 1:
        flat[0].text(0.98, 0.95, f"mean of {seeds.shape[-2]} seeds, {int(100 * confidence)}% band",
                     transform=flat[0].transAxes, ha="right", va="top", fontsize=7, color="0.3")
    if settings is not None:
        flat[len(fields) - 1].legend(fontsize=7, frameon=False)
    return fig


def _finals(results, which, settings, by):
    """``{metric: (setting labels, [per-setting 1-D arrays])}`` from a sweep result, a mapping of
    final values, or table rows (dicts) grouped by ``by``."""
    out = {}
    if isinstance(results, (list, tuple)) and results and isinstance(results[0], dict):  # table rows
        if by is None:
            raise ValueError("table rows need by=<column> naming the setting")
        groups = sorted({row[by] for row in results}, key=lambda v: (str(type(v)), v))
        for name in which:
            values = [np.asarray([float(row[name]) for row in results if row[by] == g]) for g in groups]
            out[name] = ([f"{by}={g:.4g}" if isinstance(g, float) else f"{by}={g}" for g in groups], values)
        return out
    for name in which:
        value = _field(results, name)
        if value is None:
            raise ValueError(f"results have no field {name!r}")
        value = np.asarray(value, np.float64)
        if not isinstance(results, dict) or value.ndim == 3:  # per-epoch fields: take the last epoch
            value = value[..., -1:] if value.ndim == 1 else value[..., -1]
        if value.ndim == 1:
            value = value[None]
        labels = [str(s) for s in settings] if settings is not None else (
            [f"setting {h}" for h in range(value.shape[0])] if value.shape[0] > 1 else [""])
        if len(labels) != value.shape[0]:
            raise ValueError(f"got {len(labels)} setting labels for {value.shape[0]} settings")
        out[name] = (labels, list(value))
    return out


def plot_final_metrics(results, which=("quantization_error", "topographic_error"), *, settings=None, by=None,
                       kind: str = "box", ax=None, seed: int = 0):
    """How the final metrics spread over seeds, one box (violin, or strip of points) per setting.

    results: a sweep's ``FitResult`` / ``EpochMetrics`` (fields ``[S, E]`` or ``[H, S, E]``; the last
      epoch is taken), a mapping ``name -> final values [S]`` or ``[H, S]``, or result-table rows
      (a list of dicts, e.g. read from a sweep's JSON) grouped by the column ``by``.
    kind: "box", "violin" or "strip"; the seeds are drawn as jittered points over box and violin too.
    ax: one Axes (one metric) or a sequence of them; None makes a Figure. Returns the Figure.
    """
    if kind not in ("box", "violin", "strip"):
        raise ValueError(f"kind must be 'box', 'violin' or 'strip', got {kind!r}")
    which = (which,) if isinstance(which, str) else tuple(which)
    finals = _finals(results, which, settings, by)
    if ax is None:
        n_cols = min(len(which), 4)
        fig, axes = _new_figure(-(-len(which) // n_cols), n_cols, (max(3.2, 0.9 * len(finals[which[0]][0]) + 1.6), 3.0))
        flat = list(axes.ravel())
        for extra in flat[len(which):]:
            extra.set_axis_off()
    else:
        flat = list(np.ravel(np.asarray(ax, dtype=object))) if isinstance(ax, (list, tuple, np.ndarray)) else [ax]
        if len(flat) < len(which):
            raise ValueError(f"got {len(flat)} Axes for {len(which)} metrics")
        fig = flat[0].figure
    rng = np.random.default_rng(seed)
    for axis, name in zip(flat, which):
        labels, groups = finals[name]
        positions = np.arange(1, len(groups) + 1)
        colours = [f"C{i % 10}" for i in range(len(groups))]
        if kind == "box":
            parts = axis.boxplot(groups, positions=positions, widths=0.55, showfliers=False, patch_artist=True)
            for patch, colour in zip(parts["boxes"], colours):
                patch.set_facecolor(colour)
                patch.set_alpha(0.35)
            for median in parts["medians"]:
                median.set_color("black")
        elif kind == "violin":
            parts = axis.violinplot(groups, positions=positions, widths=0.7, showmedians=True)
            for body, colour in zip(parts["bodies"], colours):
                body.set_facecolor(colour)
                body.set_alpha(0.35)
        for p, group, colour in zip(positions, groups, colours):
            width = 0.25 if kind != "strip" else 0.3
            axis.scatter(p + rng.uniform(-width, width, len(group)), group, s=7 if kind != "strip" else 10,
                         color=colour, alpha=0.8 if kind == "strip" else 0.6, linewidths=0, zorder=3)
            if kind == "strip":
                axis.hlines(np.mean(group), p - 0.35, p + 0.35, color="black", lw=1.2, zorder=4)
        axis.set_xticks(positions, labels, rotation=30 if max(len(s) for s in labels) > 8 else 0, fontsize=8)
        axis.set_xlim(0.4, len(groups) + 0.6)
        n_seeds = sorted({len(g) for g in groups})
        axis.set_title(f"final {_PRETTY.get(name, name)} ({'/'.join(map(str, n_seeds))} seeds)", fontsize=9)
        axis.grid(axis="y", alpha=0.3)
    return fig


# ---------------------------------------------------------------------------------------------
# Weights as images
# ---------------------------------------------------------------------------------------------

def _mosaic(tiles: np.ndarray, rows: int, cols: int, cell_of) -> np.ndarray:
    """Tiles ``[K, h, w]`` placed on a ``rows x cols`` canvas with a one-pixel NaN gap; ``cell_of(k)``
    gives tile k's (row from the top, column)."""
    h, w = tiles.shape[1:3]
    canvas = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1) + tiles.shape[3:], np.nan)
    for k, tile in enumerate(tiles):
        r, c = cell_of(k)
        canvas[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = tile
    return canvas


def plot_weights_as_images(weights, image_shape, spec: Spec | None = None, *, ax=None, n_cols: int | None = None,
                           cmap: str = "gray_r", titles=None, row_labels=None, vmin=None, vmax=None):
    """Every unit's weights (or centroid) drawn as an image of ``image_shape`` (MNIST ``(28, 28)``,
    digits ``(8, 8)``).

    With a SOM's ``spec`` the images sit on the grid: the first grid axis left to right, the second
    bottom to top (MiniSom's orientation), hexagonal rows shifted by half a cell; a 3-D grid is a
    panel per slice. Without a grid (K-means, a competitive layer, DNN K-means) the images fill rows
    of ``n_cols``, each optionally titled (``titles``, e.g. cluster sizes). ``weights [R, K, D]``
    draws R rows of K (DNN K-means' centroids round by round), labelled by ``row_labels``.
    One colour scale for all images (``vmin``/``vmax``, default the weights' range); ``gray_r``
    draws ink dark on white. Returns the Figure.
    """
    weights = np.asarray(weights, np.float64)
    image_shape = tuple(int(v) for v in np.atleast_1d(image_shape))
    if len(image_shape) == 3 and image_shape[2] == 1:
        image_shape = image_shape[:2]
    if len(image_shape) != 2 or int(np.prod(image_shape)) != weights.shape[-1]:
        raise ValueError(f"image_shape {image_shape} does not hold the {weights.shape[-1]} features of each unit")
    vmin = float(np.nanmin(weights)) if vmin is None else vmin
    vmax = float(np.nanmax(weights)) if vmax is None else vmax
    h, w = image_shape
    style = dict(cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    if weights.ndim == 3:  # rounds x units
        n_rows, n_units = weights.shape[:2]
        tiles = weights.reshape(n_rows * n_units, h, w)
        fig, ax = _own_axes(ax, (0.55 * n_units + 1.0, 0.55 * n_rows + 0.6))
        canvas = _mosaic(tiles, n_rows, n_units, lambda k: divmod(k, n_units))
        ax.imshow(canvas, **style)
        ax.set_xticks([(c + 0.5) * (w + 1) - 1 for c in range(n_units)], [str(c) for c in range(n_units)], fontsize=7)
        labels = row_labels if row_labels is not None else [str(r) for r in range(n_rows)]
        ax.set_yticks([(r + 0.5) * (h + 1) - 1 for r in range(n_rows)], labels, fontsize=7)
        ax.tick_params(length=0)
        ax.set_xlabel("cluster")
        _no_spines(ax)
        return fig
    if weights.ndim != 2:
        raise ValueError(f"weights must be [K, D] or [R, K, D], got shape {weights.shape}")
    if spec is not None and weights.shape[0] != spec.n_units:
        raise ValueError(f"weights have {weights.shape[0]} rows but the spec has {spec.n_units} units")
    tiles = weights.reshape(-1, h, w)
    grid = spec.grid if spec is not None else None
    if grid is None:
        K = len(tiles)
        n_cols = min(K, 10) if n_cols is None else int(n_cols)
        n_rows = -(-K // n_cols)
        pitch = 1.4 if titles is not None else 1.1  # vertical distance between rows of images
        fig, ax = _own_axes(ax, (0.8 * n_cols + 0.4, 0.8 * pitch * n_rows + 0.3))
        if titles is not None and len(titles) != K:
            raise ValueError(f"got {len(titles)} titles for {K} images")
        half = 0.45
        for k, tile in enumerate(tiles):
            r, c = divmod(k, n_cols)
            y = -r * pitch
            ax.imshow(tile, extent=(c - half, c + half, y - half * h / w, y + half * h / w), **style)
            if titles is not None:
                ax.text(c, y + half * h / w + 0.04, str(titles[k]), ha="center", va="bottom", fontsize=7)
        ax.set_xlim(-0.55, n_cols - 0.45)
        ax.set_ylim(-(n_rows - 1) * pitch - 0.55, 0.55 + (0.3 if titles is not None else 0.0))
        ax.set_aspect("equal")
        ax.set_axis_off()
        return fig
    if grid.ndim == 3:
        if ax is not None:
            raise ValueError(f"a 3-D grid is drawn as {grid.shape[2]} panels (one per slice); call with ax=None")
        fig, axes = _new_figure(1, grid.shape[2], (0.45 * grid.shape[0] + 0.8, 0.45 * grid.shape[1] + 0.8))
        units = np.arange(grid.n_units).reshape(grid.shape)
        plane = Grid(grid.shape[:2], grid.topology, grid.toroidal)
        for s, axis in enumerate(axes[0]):
            _images_on_plane(axis, plane, tiles[units[:, :, s].ravel()], style)
            axis.set_title(f"[:, :, {s}]", fontsize=9)
        return fig
    size = (0.45 * grid.shape[0] + 0.8, 0.45 * (grid.shape[1] if grid.ndim == 2 else 1) + 0.8)
    fig, ax = _own_axes(ax, size)
    _images_on_plane(ax, grid, tiles, style)
    return fig


def _own_axes(ax, size):
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=(min(max(size[0], 2.5), 16.0), min(max(size[1], 1.5), 16.0)), layout="constrained")
    return fig, fig.add_subplot()


def _no_spines(ax):
    for spine in ax.spines.values():
        spine.set_visible(False)


def _images_on_plane(ax, grid: Grid, tiles, style):
    """Unit images on a 1-D or 2-D grid, one image per unit at its cell: 0.88 wide on a rectangular
    grid, 0.84 on a hexagonal one (rows sqrt(3)/2 apart, shifted by half a cell, do not touch)."""
    h, w = tiles.shape[1:3]
    if grid.topology == "hexagonal":
        positions = _plane_positions(grid)
        half = 0.42  # rows are sqrt(3)/2 = 0.866 apart
        for (x, y), tile in zip(positions, tiles):
            ax.imshow(tile, extent=(x - half, x + half, y - half * h / w, y + half * h / w), **style)
        ax.set_xlim(positions[:, 0].min() - 0.6, positions[:, 0].max() + 0.6)
        ax.set_ylim(positions[:, 1].min() - 0.6, positions[:, 1].max() + 0.6)
        ax.set_aspect("equal")
        ax.set_xlabel("grid axis 0")
        ax.set_ylabel("grid axis 1")
        return
    positions = _plane_positions(grid)  # unit (i, j) at x = i, y = j: the second axis runs bottom to top
    half = 0.44
    for (x, y), tile in zip(positions, tiles):
        ax.imshow(tile, extent=(x - half, x + half, y - half * h / w, y + half * h / w), **style)
    ax.set_xlim(positions[:, 0].min() - 0.55, positions[:, 0].max() + 0.55)
    ax.set_ylim(positions[:, 1].min() - 0.55, positions[:, 1].max() + 0.55)
    ax.set_aspect("equal")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("grid axis 0" if grid.ndim == 2 else "unit")
    if grid.ndim == 2:
        ax.set_ylabel("grid axis 1")
    else:
        ax.set_yticks([])
