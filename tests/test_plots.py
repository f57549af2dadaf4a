"""compclust.plots: hand-computed U-matrices, hit maps against bmu, and pictures that get written."""
import os
import subprocess
import sys

import numpy as np
import pytest

import compclust
from compclust import plots, topology

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def brute_u_matrix(spec, weights):
    """Independent transcription: full pairwise distances, averaged over each unit's neighbours."""
    weights = np.asarray(weights, np.float64)
    adjacent = topology.neighbour_matrix(spec.grid)
    pairwise = np.linalg.norm(weights[:, None] - weights[None], axis=-1)
    return ((pairwise * adjacent).sum(1) / np.maximum(adjacent.sum(1), 1)).reshape(spec.grid.shape)


def test_u_matrix_line_by_hand():
    # Weights 0, 1, 3 on a line of three units: ends see one neighbour, the middle one two.
    spec = compclust.som((3,))
    np.testing.assert_allclose(plots.u_matrix(spec, [[0.0], [1.0], [3.0]]), [1.0, 1.5, 2.0])
    # On a ring the ends are neighbours too: unit 0 sees 1 and 3, unit 2 sees 2 and 3.
    ring = compclust.som((3,), toroidal=True)
    np.testing.assert_allclose(plots.u_matrix(ring, [[0.0], [1.0], [3.0]]), [2.0, 1.5, 2.5])


def test_u_matrix_square_by_hand():
    # 2x2 grid with weights on the corners of a unit square: every unit sees the other three
    # (diagonals included), two at distance 1 and one at sqrt(2).
    spec = compclust.som((2, 2))
    weights = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]  # unit k = C-order index (i, j) -> [i, j]
    np.testing.assert_allclose(plots.u_matrix(spec, weights), np.full((2, 2), (2.0 + np.sqrt(2.0)) / 3.0))


@pytest.mark.parametrize("topology_name, toroidal, neighbours", [
    ("hexagonal", False, 6), ("rectangular", False, 8), ("hexagonal", True, 6), ("rectangular", True, 8)])
def test_u_matrix_reflects_neighbour_counts(topology_name, toroidal, neighbours):
    # One unit sticks out by 1, the rest are 0: it scores 1, and each neighbour scores 1 / its neighbour count.
    spec = compclust.som((6, 6), topology=topology_name, toroidal=toroidal)
    spike = np.ravel_multi_index((2, 2), (6, 6))
    weights = np.zeros((spec.n_units, 1))
    weights[spike] = 1.0
    u = plots.u_matrix(spec, weights).ravel()
    adjacent = topology.neighbour_matrix(spec.grid)
    assert adjacent[spike].sum() == neighbours
    assert u[spike] == pytest.approx(1.0)
    for k in np.flatnonzero(adjacent[spike]):
        assert u[k] == pytest.approx(1.0 / adjacent[k].sum())
    assert np.all(u[~adjacent[spike] & (np.arange(spec.n_units) != spike)] == 0.0)


def test_hexagonal_unit_spacing_gives_flat_u_matrix():
    # Weights equal to the hexagonal positions: every neighbour lies exactly 1 away.
    spec = compclust.som((5, 4), topology="hexagonal")
    np.testing.assert_allclose(plots.u_matrix(spec, topology.coordinates(spec.grid)), np.ones((5, 4)))


@pytest.mark.parametrize("spec", [compclust.som((7,)), compclust.som((4, 5)), compclust.som((4, 4), toroidal=True),
                                  compclust.som((5, 4), topology="hexagonal"),
                                  compclust.som((4, 4), topology="hexagonal", toroidal=True),
                                  compclust.som((3, 3, 2)), compclust.som((1,))])
def test_u_matrix_matches_brute_force(spec):
    weights = np.random.default_rng(0).normal(size=(spec.n_units, 3))
    u = plots.u_matrix(spec, weights)
    assert u.shape == spec.grid.shape
    np.testing.assert_allclose(u, brute_u_matrix(spec, weights))


def test_hit_map_counts_match_bmu():
    rng = np.random.default_rng(1)
    spec = compclust.som((3, 4), topology="hexagonal")
    weights = rng.normal(size=(spec.n_units, 2)).astype(np.float32)
    data = rng.normal(size=(200, 2)).astype(np.float32)
    hits = plots.hit_map(spec, weights, data)
    assert hits.shape == (3, 4)
    assert hits.sum() == len(data)
    expected = np.bincount(np.asarray(compclust.bmu(spec, weights, data)), minlength=spec.n_units)
    np.testing.assert_array_equal(hits.ravel(), expected)


def test_component_planes_shape_and_values():
    spec = compclust.som((2, 3, 4))
    weights = np.random.default_rng(2).normal(size=(spec.n_units, 5))
    planes = plots.component_planes(spec, weights)
    assert planes.shape == (5, 2, 3, 4)
    assert planes[3, 1, 2, 0] == weights[np.ravel_multi_index((1, 2, 0), (2, 3, 4)), 3]
    assert plots.component_planes(compclust.som((6,)), weights[:6]).shape == (5, 6)


def test_layer_without_grid_is_rejected():
    spec = compclust.competitive_layer(4)
    weights, data = np.zeros((4, 2)), np.zeros((3, 2))
    for call in (lambda: plots.u_matrix(spec, weights), lambda: plots.hit_map(spec, weights, data),
                 lambda: plots.component_planes(spec, weights), lambda: plots.plot_u_matrix(spec, weights)):
        with pytest.raises(ValueError, match="grid"):
            call()


def test_wrong_weights_shape_is_rejected():
    with pytest.raises(ValueError, match="weights must have shape"):
        plots.u_matrix(compclust.som((2, 2)), np.zeros((5, 2)))


@pytest.mark.parametrize("name, spec", [("rect", compclust.som((4, 5))),
                                        ("hex", compclust.som((4, 5), topology="hexagonal")),
                                        ("line", compclust.som((6,))), ("cube", compclust.som((3, 3, 2)))])
def test_pictures_are_written(tmp_path, name, spec):
    rng = np.random.default_rng(3)
    weights = rng.random((spec.n_units, 3)).astype(np.float32)
    data = rng.random((50, 3)).astype(np.float32)
    figures = {"u": plots.plot_u_matrix(spec, weights), "hits": plots.plot_hit_map(spec, weights, data),
               "planes": plots.plot_component_planes(spec, weights, feature_names=["r", "g", "b"], max_planes=2)}
    for kind, fig in figures.items():
        path = tmp_path / "pictures" / f"{name}_{kind}.png"
        assert plots.save_figure(fig, path) == str(path)
        assert path.read_bytes()[:8] == PNG_MAGIC
    assert sorted(os.listdir(tmp_path / "pictures")) == sorted(f"{name}_{k}.png" for k in figures)  # no temp files


def test_plot_on_given_axes_and_3d_needs_own_figure():
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot()
    assert plots.plot_u_matrix(compclust.som((3, 3)), np.zeros((9, 2)), ax=ax) is fig
    with pytest.raises(ValueError, match="3-D"):
        plots.plot_u_matrix(compclust.som((2, 2, 2)), np.zeros((8, 2)), ax=ax)


def test_save_figure_replaces_existing_file(tmp_path):
    path = tmp_path / "picture.png"
    path.write_bytes(b"old")
    plots.save_figure(plots.plot_u_matrix(compclust.som((2, 2)), np.eye(4)), path)
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert os.listdir(tmp_path) == ["picture.png"]


def test_blobs_picture(tmp_path):
    centres = compclust.data.BLOB_CENTRES
    points, _ = compclust.data.make_blobs(0, n_per_blob=10)
    path = plots.plot_blobs_3d(points, centres, {"a": centres + 0.1, "b": centres - 0.1}, tmp_path / "b.png")
    assert open(path, "rb").read(8) == PNG_MAGIC
    with pytest.raises(ValueError, match="shape"):
        plots.plot_blobs_3d(points[:, :2], centres, centres, tmp_path / "bad.png")


def test_importing_compclust_does_not_import_matplotlib():
    code = "import sys, compclust, compclust.plots; assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(__file__)))


# ---------------------------------------------------------------------------------------------
# The pictures of issue 8: label map, map over the data, frames, curves, distributions, images
# ---------------------------------------------------------------------------------------------

def rendered(fig, path):
    """Save ``fig`` as PNG and return its pixels ``[H, W, 3]``, checking the picture is not blank."""
    from matplotlib.image import imread

    plots.save_figure(fig, path)
    assert open(path, "rb").read(8) == PNG_MAGIC
    pixels = imread(path)[..., :3]
    ink = np.any(pixels < 0.9, axis=-1).mean()  # share of pixels that are not (near) white
    assert ink > 0.01, f"{path} looks blank ({ink:.4f} of its pixels are drawn)"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 8, f"{path} has almost no colours"
    return pixels


def small_map(spec, n=60, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((spec.n_units, d)).astype(np.float32), rng.random((n, d)).astype(np.float32),
            rng.integers(0, 3, n))


GRIDS = {"rect": compclust.som((4, 3)), "hex": compclust.som((4, 4), topology="hexagonal"),
         "torus": compclust.som((4, 4), topology="hexagonal", toroidal=True), "line": compclust.som((5,)),
         "cube": compclust.som((3, 2, 2))}


@pytest.mark.parametrize("name", list(GRIDS))
def test_every_grid_picture_renders(tmp_path, name):
    spec = GRIDS[name]
    weights, data, labels = small_map(spec)
    figures = {
        "u": plots.plot_u_matrix(spec, weights),
        "hits": plots.plot_hit_map(spec, weights, data),
        "planes": plots.plot_component_planes(spec, weights, feature_names=["r", "g", "b"], features=["g", 0]),
        "majority": plots.plot_label_map(spec, weights, data, labels, class_names=["a", "b", "c"]),
        "pie": plots.plot_label_map(spec, weights, data, labels, style="pie"),
        "bar": plots.plot_label_map(spec, weights, data, labels, style="bar"),
        "on_data": plots.plot_map_on_data(spec, weights, data, labels),
        "images": plots.plot_weights_as_images(np.repeat(weights, 3, axis=1)[:, :9], (3, 3), spec),
    }
    if spec.grid.ndim < 3:
        figures["u_marked"] = plots.plot_u_matrix(spec, weights, data=data, labels=labels)
    for kind, fig in figures.items():
        rendered(fig, tmp_path / f"{name}_{kind}.png")


def test_pictures_without_grid_render(tmp_path):
    spec = compclust.competitive_layer(4)
    weights, data, labels = small_map(spec, d=4)
    rendered(plots.plot_map_on_data(spec, weights, data, labels, projection=(0, 2)), tmp_path / "layer.png")
    rendered(plots.plot_weights_as_images(weights, (2, 2), titles=[f"n={k}" for k in range(4)], n_cols=3),
             tmp_path / "centroids.png")
    rounds = np.random.default_rng(1).random((3, 4, 4))
    rendered(plots.plot_weights_as_images(rounds, (2, 2, 1), row_labels=["r1", "r2", "r3"]), tmp_path / "rounds.png")
    with pytest.raises(ValueError, match="image_shape"):
        plots.plot_weights_as_images(weights, (3, 3))
    with pytest.raises(ValueError, match="grid"):
        plots.plot_label_map(spec, weights, data, labels)


def test_hexagon_geometry_on_a_tiny_map():
    # 3 x 2 hexagonal map: MiniSom's layout puts unit (i, j) at (i - 0.5 [(1 - j) even], j sqrt(3)/2):
    # the bottom row at x = 0, 1, 2, the top row shifted left by half a cell.
    spec = compclust.som((3, 2), topology="hexagonal")
    h = np.sqrt(3.0) / 2.0
    expected = np.array([[0.0, 0.0], [-0.5, h], [1.0, 0.0], [0.5, h], [2.0, 0.0], [1.5, h]])  # unit k = (k // 2, k % 2)
    fig = plots.plot_u_matrix(spec, np.random.default_rng(0).random((6, 2)))
    collection = fig.axes[0].collections[0]
    hexagons = [path.vertices[:-1] for path in collection.get_paths()]  # closed paths repeat the first corner
    assert len(hexagons) == 6 and all(len(v) == 6 for v in hexagons)
    centres = np.array([v.mean(axis=0) for v in hexagons])
    np.testing.assert_allclose(centres, expected, atol=1e-12)
    for vertices, centre in zip(hexagons, centres):
        np.testing.assert_allclose(np.linalg.norm(vertices - centre, axis=1), 1 / np.sqrt(3), atol=1e-12)
        assert np.isclose(vertices[:, 1].max() - centre[1], 1 / np.sqrt(3))  # pointy top
    adjacent = topology.neighbour_matrix(spec.grid)
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    np.testing.assert_allclose(gaps[adjacent], 1.0, atol=1e-12)  # neighbours one apart ...
    assert np.all(gaps[~adjacent & ~np.eye(6, dtype=bool)] > 1.5)  # ... everyone else farther
    for a, b in zip(*np.nonzero(np.triu(adjacent))):  # neighbours share one edge: two corners
        shared = np.isclose(np.linalg.norm(hexagons[a][:, None] - hexagons[b][None], axis=-1), 0, atol=1e-9)
        assert shared.sum() == 2
    assert adjacent.sum(axis=1).tolist() == [3, 2, 4, 4, 2, 3]
    # The same cells carry the label map's colours.
    patches = plots.cell_patches(spec.grid)
    np.testing.assert_allclose([p.get_verts()[:-1].mean(axis=0) for p in patches], expected, atol=1e-12)


def test_label_map_by_hand():
    # A line of 3 units at 0, 1 and 10. Unit 0 wins 0, 0.1, 0.2 (classes 1, 1, 0): majority 1, shares 1/3, 2/3.
    # Unit 1 wins 0.9, 1.0, 1.1, 1.2 (classes 2, 2, 0, 0): a tie goes to the lowest class, 0. Unit 2 wins nothing.
    spec = compclust.som((3,))
    weights = np.array([[0.0], [1.0], [10.0]], np.float32)
    data = np.array([[0.0], [0.1], [0.2], [0.9], [1.0], [1.1], [1.2]], np.float32)
    labels = np.array([1, 1, 0, 2, 2, 0, 0])
    read = plots.label_map(spec, weights, data, labels, n_classes=4)
    np.testing.assert_array_equal(read.majority, [1, 0, -1])
    np.testing.assert_array_equal(read.hits, [3, 4, 0])
    np.testing.assert_allclose(read.shares, [[1 / 3, 2 / 3, 0, 0], [0.5, 0, 0.5, 0], [0, 0, 0, 0]])
    won = read.hits > 0  # agrees with compclust.majority_labels where a unit won something
    expected = np.asarray(compclust.majority_labels(labels, np.asarray(compclust.bmu(spec, weights, data)),
                                                    n_classes=4, n_clusters=3))
    np.testing.assert_array_equal(read.majority[won], expected[won])
    fig = plots.plot_label_map(spec, weights, data, labels)
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert texts == ["0", "1"]  # the empty unit has no label
    square = compclust.som((2, 2))
    assert plots.label_map(square, np.eye(4, 2), np.eye(4, 2), [0, 1, 2, 2]).majority.shape == (2, 2)
    with pytest.raises(ValueError, match="labels"):
        plots.label_map(spec, weights, data, labels[:3])
    with pytest.raises(ValueError, match="style"):
        plots.plot_label_map(spec, weights, data, labels, style="donut")


def test_grid_edges():
    # Rectangular 3 x 3: 12 edges (no diagonals); hexagonal: every neighbour pair; torus: no wrap-around edges.
    assert len(plots.grid_edges(compclust.som((3, 3)).grid)) == 12
    assert len(plots.grid_edges(compclust.som((3, 3), toroidal=True).grid)) == 12
    assert len(plots.grid_edges(compclust.som((4,)).grid)) == 3
    assert len(plots.grid_edges(compclust.som((2, 2, 2)).grid)) == 12
    hexagonal = compclust.som((3, 2), topology="hexagonal").grid
    assert len(plots.grid_edges(hexagonal)) == np.triu(topology.neighbour_matrix(hexagonal)).sum() == 9


def test_projection():
    data = np.random.default_rng(0).normal(size=(200, 3)) * [5.0, 1.0, 0.1]
    proj = plots.projection_of(data)
    assert abs(proj.components[0, 0]) > 0.99 and proj.explained[0] > 0.9
    assert plots.projection_of(data, (2, 1)).names == ("feature 2", "feature 1")
    assert plots.projection_of(data[:, :2]).explained is None  # 2-D data is drawn as it is


def test_training_frames(tmp_path):
    import jax

    points, labels = compclust.data.make_blobs(0, n_per_blob=8)
    data = compclust.transform(compclust.fit_scaler(points, "minmax"), points).astype(np.float32)
    spec = compclust.som((3, 3))
    frames = plots.training_frames(jax.random.key(0), data, spec, compclust.Hparams(lr=0.5, sigma=1.5), 4, n_frames=3)
    assert frames.epochs.tolist() == [0, 2, 4]
    assert frames.weights.shape == (3, 9, 3)
    assert frames.metrics.quantization_error.shape == (4,)
    np.testing.assert_array_equal(frames.weights[-1], np.asarray(frames.state.weights))
    assert not np.array_equal(frames.weights[0], frames.weights[1])
    rendered(plots.plot_training_frames(spec, frames, data, labels), tmp_path / "frames.png")
    rendered(plots.plot_training_curves(frames.metrics), tmp_path / "curves.png")
    with pytest.raises(ValueError, match="n_frames"):
        plots.training_frames(jax.random.key(0), data, spec, compclust.Hparams(), 2, n_frames=5)


def test_training_curves_and_final_metrics(tmp_path):
    from matplotlib.figure import Figure

    rng = np.random.default_rng(0)
    decay = np.exp(-np.arange(6) / 2.0)
    swept = {name: decay * (1 + rng.random((3, 16, 6))) for name in plots.CURVES}  # [H, S, E]
    fig = plots.plot_training_curves(swept, settings=["a", "b", "c"])
    assert len(fig.axes) == 4 and fig.axes[3].get_yscale() == "log"
    assert [line.get_label() for line in fig.axes[0].lines] == ["a", "b", "c"]
    np.testing.assert_allclose(fig.axes[0].lines[1].get_ydata(), swept["quantization_error"][1].mean(axis=0))
    rendered(fig, tmp_path / "sweep_curves.png")
    rendered(plots.plot_training_curves({"inertia": swept["inertia"][0]}), tmp_path / "seeds.png")  # [S, E]
    one = Figure().add_subplot()
    assert plots.plot_training_curves({"inertia": decay}, "inertia", ax=one) is one.figure
    with pytest.raises(ValueError, match="no field"):
        plots.plot_training_curves(swept, which=["loss"])
    with pytest.raises(ValueError, match="setting labels"):
        plots.plot_training_curves(swept, settings=["a"])
    for kind in ("box", "violin", "strip"):
        rendered(plots.plot_final_metrics(swept, settings=["a", "b", "c"], kind=kind), tmp_path / f"{kind}.png")
    rows = [{"lr": lr, "quantization_error": q} for lr in (0.1, 0.5) for q in rng.random(8)]
    fig = plots.plot_final_metrics(rows, "quantization_error", by="lr")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["lr=0.1", "lr=0.5"]
    with pytest.raises(ValueError, match="kind"):
        plots.plot_final_metrics(swept, kind="pie")


def test_blobs_picture_returns_figure_and_takes_ax(tmp_path):
    from matplotlib.figure import Figure

    points, labels = compclust.data.make_blobs(0, n_per_blob=10)
    centres = compclust.data.BLOB_CENTRES
    rendered(plots.plot_blobs_3d(points, centres, centres + 0.1, labels=labels), tmp_path / "blobs.png")
    ax3d = Figure().add_subplot(projection="3d")
    assert plots.plot_blobs_3d(points, centres, centres, ax=ax3d) is ax3d.figure
    with pytest.raises(ValueError, match="3-D Axes"):
        plots.plot_blobs_3d(points, centres, centres, ax=Figure().add_subplot())
