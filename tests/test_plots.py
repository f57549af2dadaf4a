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
