"""Each primitive against a NumPy transcription of its formula (tests/reference.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import compclust as cc
from compclust import activations, kernels, schedules, topology, winners
from compclust.spec import ACTIVATIONS, GRID_KERNELS, SCHEDULES

import reference as ref

KERNELS = GRID_KERNELS + ("delta",)  # the kernels on a grid distance (Neural Gas ranks: its own tests)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_matches_numpy(name, rng):
    W, x = rng.normal(size=(7, 5)), rng.normal(size=5)
    got = activations.ACTIVATION_FNS[name](jnp.asarray(W.T, jnp.float32), jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(got, ref.ACTIVATIONS[name](W, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_batch_activation_matches_single(name, rng):
    W, X = rng.normal(size=(6, 4)).astype(np.float32), rng.normal(size=(9, 4)).astype(np.float32)
    batch = activations.batch_activation(name, jnp.asarray(W), jnp.asarray(X))
    rows = np.stack([ref.ACTIVATIONS[name](W.astype(float), x.astype(float)) for x in X])
    np.testing.assert_allclose(batch, rows, rtol=1e-4, atol=1e-4)


def test_nearest_centroid_linear_unit_picks_the_nearest(rng):
    W, X = rng.normal(size=(8, 3)), rng.normal(size=(200, 3))
    nearest = np.argmin(((X[:, None] - W[None]) ** 2).sum(-1), axis=1)
    by_unit = np.argmax(activations.batch_activation("nearest_centroid", jnp.asarray(W, jnp.float32),
                                                     jnp.asarray(X, jnp.float32)), axis=1)
    np.testing.assert_array_equal(by_unit, nearest)


@pytest.mark.parametrize("name", KERNELS)
@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.5])
def test_kernel_matches_numpy(name, sigma):
    d2 = np.array([0.0, 0.25, 0.75, 1.0, 2.0, 4.0, 8.0, 25.0])
    got = kernels.neighbourhood(name, jnp.asarray(d2, jnp.float32), jnp.float32(sigma))
    np.testing.assert_allclose(got, ref.KERNELS[name](d2, sigma), rtol=1e-5, atol=1e-6)
    assert got[0] == 1.0  # the winner always gets weight 1


@pytest.mark.parametrize("name", KERNELS)
def test_kernel_at_zero_radius_is_only_the_winner(name):
    got = kernels.neighbourhood(name, jnp.asarray([0.0, 1.0, 2.0, 9.0]), jnp.float32(0.0))
    np.testing.assert_array_equal(got, [1.0, 0.0, 0.0, 0.0])


def test_kernels_match_minisom_gaussian_and_mexican_hat():
    from minisom import MiniSom

    som = MiniSom(6, 5, 2, sigma=1.7, neighborhood_function="gaussian")
    coords = topology.coordinates(cc.som((6, 5)).grid)
    for fn, name in ((som._gaussian, "gaussian"), (som._mexican_hat, "mexican_hat")):
        want = fn((2, 3), 1.7).ravel()
        d2 = ((coords - coords[2 * 5 + 3]) ** 2).sum(1)
        np.testing.assert_allclose(kernels.neighbourhood(name, jnp.asarray(d2, jnp.float32), 1.7), want,
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_matches_numpy(name):
    T = 1000
    for t in (0, 1, 250, 999):
        got = schedules.value(name, jnp.float32(0.5), jnp.float32(0.02), jnp.float32(t), T)
        np.testing.assert_allclose(got, ref.SCHEDULES[name](0.5, 0.02, t, T), rtol=1e-5)


def test_schedules_reproduce_minisom_decays():
    from minisom import MiniSom

    som, T = MiniSom(2, 2, 1), 500
    for t in (0, 7, 123, 499):
        tt = jnp.float32(t)
        np.testing.assert_allclose(schedules.asymptotic(0.5, 0.0, tt, T), som._asymptotic_decay(0.5, t, T), rtol=1e-6)
        np.testing.assert_allclose(schedules.linear(0.5, 0.0, tt, T), som._linear_decay_to_zero(0.5, t, T), rtol=1e-6,
                                   atol=1e-7)
        np.testing.assert_allclose(schedules.inverse_time(0.5, 0.5 / 101, tt, T),
                                   som._inverse_decay_to_zero(0.5, t, T), rtol=1e-5)
        np.testing.assert_allclose(schedules.inverse_time(3.0, 1.0, tt, T), som._inverse_decay_to_one(3.0, t, T), rtol=1e-6)
        np.testing.assert_allclose(schedules.linear(3.0, 1.0, tt, T), som._linear_decay_to_one(3.0, t, T), rtol=1e-6)


def test_optax_schedule_can_be_passed():
    import optax

    sched = optax.cosine_decay_schedule(0.5, 100)
    assert np.isclose(schedules.value(sched, 9.0, 9.0, jnp.float32(50), 100), sched(50))


def test_hard_winner_breaks_ties_to_lowest_index():
    assert winners.hard_winner(jnp.array([1.0, 3.0, 3.0, -1.0])) == 1


def test_softmax_winner_samples_softmax_probabilities():
    act = jnp.array([0.0, 1.0, 2.0])
    keys = jax.random.split(jax.random.key(0), 20000)
    draws = jax.vmap(lambda k: winners.softmax_winner(k, act, 1.0))(keys)
    freq = np.bincount(np.asarray(draws), minlength=3) / 20000
    np.testing.assert_allclose(freq, jax.nn.softmax(act), atol=0.015)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=2, max_size=12, unique=True), st.integers(0, 2**31 - 1))
def test_softmax_winner_at_zero_temperature_is_hard(values, seed):
    act = jnp.asarray(values, jnp.float32)
    if np.sort(np.asarray(act))[-1] - np.sort(np.asarray(act))[-2] < 1e-3:
        return  # a float32 near-tie; the limit is only defined for a unique maximum
    assert winners.softmax_winner(jax.random.key(seed), act, 1e-6) == winners.hard_winner(act)


def test_conscience_and_desieno_winners():
    assert winners.conscience_winner(jnp.array([1.0, 1.5, 3.0]), jnp.array([2.0, 1.0, 1.0])) == 1
    freq = jnp.array([0.9, 0.05, 0.05])
    # unit 0 is nearest but wins too often: the bias hands the win to unit 1
    assert winners.desieno_winner(jnp.array([-1.0, -1.2, -5.0]), freq, 10.0) == 1
    np.testing.assert_allclose(winners.desieno_frequencies(freq, jnp.array([-1.0, -1.2, -5.0]), 0.1),
                               freq + 0.1 * (np.array([1, 0, 0]) - freq), rtol=1e-6)


@pytest.mark.parametrize("shape", [(7, 6), (5, 4), (4, 5), (3, 3)])
def test_hexagonal_coordinates_match_minisom(shape):
    from minisom import MiniSom

    som = MiniSom(shape[0], shape[1], 2, topology="hexagonal")
    xx, yy = som.get_euclidean_coordinates()
    coords = topology.coordinates(cc.som(shape, topology="hexagonal").grid)
    np.testing.assert_allclose(coords, np.stack([xx.ravel(), yy.ravel()], 1))
    np.testing.assert_allclose(coords, ref.grid_coords(shape, hexagonal=True))


@pytest.mark.parametrize("shape,topo,toroidal,n_neighbours", [
    ((5,), "rectangular", False, [1, 2, 2, 2, 1]),
    ((5,), "rectangular", True, [2] * 5),
    ((3, 4), "rectangular", True, [8] * 12),
    ((3, 3, 3), "rectangular", True, [26] * 27),
    ((6, 4), "hexagonal", True, [6] * 24),
])
def test_neighbour_counts(shape, topo, toroidal, n_neighbours):
    grid = cc.Grid(shape, topo, toroidal)
    np.testing.assert_array_equal(topology.neighbour_matrix(grid).sum(1), n_neighbours)


def test_neighbours_on_an_open_grid():
    rect = topology.neighbour_matrix(cc.Grid((3, 3))).sum(1).reshape(3, 3)
    np.testing.assert_array_equal(rect, [[3, 5, 3], [5, 8, 5], [3, 5, 3]])
    hexa = topology.neighbour_matrix(cc.Grid((4, 4), "hexagonal")).sum(1)
    assert hexa.max() == 6 and hexa.min() >= 2


def test_toroidal_grid_distance_wraps():
    grid = cc.Grid((5, 4), toroidal=True)
    d2 = np.asarray(topology.sq_distances_from(grid, 0))
    want = ref.grid_sq_dist(ref.grid_coords((5, 4)), 0, periods=np.array([5.0, 4.0]))
    np.testing.assert_allclose(d2, want)
    assert d2[4 * 4] == 1.0  # unit (4, 0) is next to (0, 0) across the edge


def test_pca_initializer_matches_minisom_up_to_sign(rng):
    from minisom import MiniSom

    X = rng.normal(size=(300, 4)) @ np.diag([3.0, 2.0, 0.5, 0.1])
    som = MiniSom(5, 4, 4)
    som.pca_weights_init(X)
    ours = np.asarray(cc.init(jax.random.key(0), X, cc.som((5, 4)), method="pca").weights).reshape(5, 4, 4)
    mean = X.mean(0)
    for axis in (0, 1):  # each principal direction may come out with either sign
        theirs_dir = np.diff(som._weights, axis=axis).mean(axis=(0, 1))
        ours_dir = np.diff(ours, axis=axis).mean(axis=(0, 1))
        assert np.allclose(theirs_dir, ours_dir, atol=1e-4) or np.allclose(theirs_dir, -ours_dir, atol=1e-4)
    np.testing.assert_allclose(ours.mean(axis=(0, 1)), mean, atol=1e-4)


def test_kmeans_plus_plus_and_random_samples_pick_distinct_data_points(rng):
    X = rng.normal(size=(50, 3)).astype(np.float32)
    for method in ("kmeans++", "random_samples"):
        W = np.asarray(cc.init(jax.random.key(1), X, cc.competitive_layer(10), method=method).weights)
        assert len({tuple(w) for w in W}) == 10
        assert all(any(np.array_equal(w, x) for x in X) for w in W)


def test_kmeans_plus_plus_spreads_over_separated_clusters():
    X = np.concatenate([np.full((30, 2), c, np.float32) for c in (0.0, 10.0, 20.0)])
    W = np.asarray(cc.init(jax.random.key(3), X, cc.competitive_layer(3), method="kmeans++").weights)
    assert sorted(W[:, 0].tolist()) == [0.0, 10.0, 20.0]


def test_uniform_initializer_is_small(rng):
    W = cc.init(jax.random.key(0), rng.normal(size=(20, 3)), cc.competitive_layer(4), method="uniform").weights
    assert W.shape == (4, 3) and float(jnp.abs(W).max()) <= 0.01


@pytest.mark.parametrize("spec", [cc.som((10, 10)), cc.som((6, 7), topology="hexagonal"), cc.som((5, 5), toroidal=True),
                                  cc.som((3, 3, 3)), cc.som((12,)), cc.som((12, 12)), cc.competitive_layer(10),
                                  cc.competitive_layer(1)], ids=lambda s: f"{s.grid and s.grid.shape}-{s.n_units}")
def test_measure_rows_finds_what_assign_rows_finds(spec, rng):
    """The measurement's units-major layout (K <= 128) and assign_rows: the same best units and
    runner-up adjacency, with ties (duplicated units) going to the lowest index; errors to rounding."""
    from compclust import metrics
    X = jnp.asarray(rng.random((300, 40)).astype(np.float32))
    W = np.asarray(X[:spec.n_units]) + 0.01
    W[-1] = W[0]  # a duplicated unit: every row nearest it is a tie between the two
    X = X.at[0].set(W[0])  # and one row sits on it exactly
    a = jax.jit(metrics.measure_rows, static_argnums=0)(spec, jnp.asarray(W), X)
    b = jax.jit(metrics.assign_rows, static_argnums=0)(spec, jnp.asarray(W), X)
    np.testing.assert_array_equal(a.best, b.best)
    np.testing.assert_array_equal(a.not_adjacent, b.not_adjacent)
    np.testing.assert_allclose(a.sq_error, b.sq_error, rtol=1e-5, atol=1e-5)
    assert a.sq_dist is None and int(a.best[0]) == 0
