"""The training loop: hand-computed cases, NumPy references, properties, determinism, compilation."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import compclust as cc
from compclust import loop
from compclust.spec import ACTIVATIONS, GRID_KERNELS

import reference as ref

KERNELS = GRID_KERNELS + ("delta",)  # the kernels on a grid distance (Neural Gas ranks: its own tests)

FOUR_POINTS = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], np.float32)
TWO_UNITS = np.array([[0, 0], [1, 1]], np.float32)


def test_competitive_layer_four_points_by_hand():
    # x=(0,0): unit 0 (d 0). x=(1,0): tie 1 vs 1 -> lowest index 0 -> (0.5, 0).
    # x=(0,1): 1.25 vs 1 -> unit 1 -> (0.5, 1). x=(1,1): 1.25 vs 0.25 -> unit 1 -> (0.75, 1).
    r = cc.fit(jax.random.key(0), FOUR_POINTS, cc.competitive_layer(2), cc.Hparams(lr=0.5), 1,
               init=TWO_UNITS, order=np.arange(4), trace=True)
    np.testing.assert_array_equal(r.state.weights, [[0.5, 0.0], [0.75, 1.0]])
    np.testing.assert_array_equal(r.trace.winner[0], [0, 0, 1, 1])
    np.testing.assert_allclose(r.trace.distance[0], [0.0, 1.0, 1.0, 0.5])
    assert int(r.state.step) == 4


def test_conscience_layer_four_points_by_hand():
    # c*d: (0, 1.41) -> 0, no move (d=0). (2*1, 1*1) -> 1 moves 0.5*1 toward (1,0): (1, 0.5).
    # (2*1, 2*1.118) -> 0 moves 0.5*1 toward (0,1): (0, 0.5). (3*1.118, 2*0.5) -> 1 moves 0.5*0.5: (1, 0.625).
    r = cc.fit(jax.random.key(0), FOUR_POINTS, cc.competitive_layer(2, winner="conscience"), cc.Hparams(lr=0.5), 1,
               init=TWO_UNITS, order=np.arange(4))
    np.testing.assert_allclose(r.state.weights, [[0.0, 0.5], [1.0, 0.625]], rtol=1e-6)
    np.testing.assert_array_equal(r.state.conscience, [3.0, 3.0])  # 1 + two wins each


def _problem(rng, n=40, d=3, k=12, epochs=2):
    X = rng.normal(size=(n, d)).astype(np.float32)
    W0 = rng.normal(size=(k, d)).astype(np.float32)
    order = np.stack([rng.permutation(n) for _ in range(epochs)])
    return X, W0, order


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("shape,topo,toroidal", [
    ((12,), "rectangular", False), ((4, 3), "rectangular", False), ((4, 3), "rectangular", True),
    ((3, 4), "hexagonal", False), ((3, 4), "hexagonal", True), ((3, 2, 2), "rectangular", True)])
def test_som_matches_numpy_reference(rng, kernel, shape, topo, toroidal):
    X, W0, order = _problem(rng)
    spec = cc.som(shape, topology=topo, toroidal=toroidal, kernel=kernel, lr_schedule="exponential",
                  sigma_schedule="linear")
    hp = cc.Hparams(lr=0.4, lr_final=0.05, sigma=1.8, sigma_final=0.3)
    r = cc.fit(jax.random.key(0), X, spec, hp, 2, init=W0, order=order)
    coords = ref.grid_coords(shape, topo == "hexagonal")
    periods = None
    if toroidal:
        periods = np.array(shape, float) * (np.array([1, np.sqrt(3) / 2]) if topo == "hexagonal" else 1)
    want = ref.online_fit(X, W0, order, coords=coords, periods=periods, kernel=kernel, lr=0.4, lr_final=0.05,
                          sigma=1.8, sigma_final=0.3, lr_schedule="exponential", sigma_schedule="linear")
    np.testing.assert_allclose(r.state.weights, want, atol=2e-5)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_competitive_layer_activations_match_numpy_reference(rng, activation):
    X, W0, order = _problem(rng, k=5)
    r = cc.fit(jax.random.key(0), X, cc.competitive_layer(5, activation=activation, lr_schedule="inverse_time"),
               cc.Hparams(lr=0.3, lr_final=0.01), 2, init=W0, order=order)
    want = ref.online_fit(X, W0, order, activation=activation, lr=0.3, lr_final=0.01, lr_schedule="inverse_time")
    np.testing.assert_allclose(r.state.weights, want, atol=2e-5)


def test_conscience_layer_matches_numpy_reference(rng):
    X, W0, _ = _problem(rng, k=4)
    r = cc.fit(jax.random.key(0), X, cc.competitive_layer(4, winner="conscience"), cc.Hparams(lr=0.05), 3,
               init=W0, order=np.arange(len(X)))
    np.testing.assert_allclose(r.state.weights, ref.conscience_fit(X, W0, 3, lr=0.05), atol=1e-5)


def test_desieno_layer_matches_numpy_reference(rng):
    X, W0, order = _problem(rng, k=4)
    r = cc.fit(jax.random.key(0), X, cc.competitive_layer(4, winner="desieno"),
               cc.Hparams(lr=0.1, bias_scale=3.0, frequency_rate=0.05), 2, init=W0, order=order)
    np.testing.assert_allclose(r.state.weights, ref.desieno_fit(X, W0, order, 0.1, 3.0, 0.05), atol=1e-5)


def test_desieno_conscience_revives_a_dead_unit():
    # Unit 1 starts far away and never wins plain WTA; DeSieno's bias lets it win and move in.
    X = np.random.default_rng(1).normal(size=(200, 2)).astype(np.float32)
    W0 = np.array([[0.0, 0.0], [50.0, 50.0]], np.float32)
    hard = cc.fit(jax.random.key(0), X, cc.competitive_layer(2), cc.Hparams(lr=0.05), 3, init=W0)
    fair = cc.fit(jax.random.key(0), X, cc.competitive_layer(2, winner="desieno"),
                  cc.Hparams(lr=0.05, bias_scale=5000.0, frequency_rate=0.01), 3, init=W0)
    assert int(hard.metrics.dead_units[-1]) == 1 and int(fair.metrics.dead_units[-1]) == 0


def test_bubble_som_with_vanishing_radius_is_winner_take_all(rng):
    X, W0, order = _problem(rng, k=16)
    wta = cc.fit(jax.random.key(0), X, cc.competitive_layer(16), cc.Hparams(lr=0.3), 2, init=W0, order=order)
    for sigma in (1e-3, 0.5, 0.0):
        bubble = cc.fit(jax.random.key(0), X, cc.som((4, 4), kernel="bubble", sigma_schedule="constant",
                                                     lr_schedule="constant"),
                        cc.Hparams(lr=0.3, sigma=max(sigma, 1e-9)), 2, init=W0, order=order)
        np.testing.assert_allclose(bubble.state.weights, wta.state.weights, atol=1e-6)


def test_softmax_winner_at_low_temperature_is_the_hard_winner(rng):
    X, W0, order = _problem(rng, k=6)
    hard = cc.fit(jax.random.key(0), X, cc.competitive_layer(6), cc.Hparams(lr=0.2), 2, init=W0, order=order,
                  trace=True)
    soft = cc.fit(jax.random.key(5), X, cc.competitive_layer(6, winner="softmax"),
                  cc.Hparams(lr=0.2, temperature=1e-7), 2, init=W0, order=order, trace=True)
    np.testing.assert_array_equal(soft.trace.winner, hard.trace.winner)
    np.testing.assert_allclose(soft.state.weights, hard.state.weights, atol=1e-6)


def test_softmax_winner_at_high_temperature_explores(rng):
    X, W0, order = _problem(rng, k=6)
    soft = cc.fit(jax.random.key(5), X, cc.competitive_layer(6, winner="softmax"),
                  cc.Hparams(lr=0.2, temperature=1e6), 2, init=W0, order=order, trace=True)
    counts = np.bincount(np.asarray(soft.trace.winner).ravel(), minlength=6)
    assert counts.min() > 0  # close to uniform: every unit wins sometimes


@pytest.mark.parametrize("winner", ["hard", "softmax", "conscience", "desieno"])
@pytest.mark.parametrize("kernel", ["delta", "gaussian", "mexican_hat"])
def test_every_leaf_stays_finite(rng, winner, kernel):
    X = (rng.normal(size=(60, 4)) * 100).astype(np.float32)
    if winner == "conscience":  # neurolab's step is lr*|x-w|*(x-w): it needs data scaled as its demo does
        X = X / np.linalg.norm(X)
    spec = cc.som((3, 3), kernel=kernel, winner=winner) if kernel != "delta" else \
        cc.competitive_layer(9, winner=winner)
    r = cc.fit(jax.random.key(1), X, spec, cc.Hparams(lr=0.9, sigma=2.0), 3)
    for leaf in jax.tree.leaves((r.state, r.metrics._replace(topographic_error=jnp.zeros(3)))):
        assert bool(jnp.all(jnp.isfinite(leaf)))


def test_same_key_same_bits_and_other_key_differs(rng):
    X = rng.normal(size=(50, 3)).astype(np.float32)
    spec, hp = cc.som((3, 3)), cc.Hparams(lr=0.5, sigma=1.5)
    a = cc.fit(jax.random.key(7), X, spec, hp, 3)
    b = cc.fit(jax.random.key(7), X, spec, hp, 3)
    c = cc.fit(jax.random.key(8), X, spec, hp, 3)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.state.weights, c.state.weights)


# jax's key-reuse checker raises a false positive for any vmap of a scan over split keys (a
# six-line repro: vmap(lambda k: scan(body, c, split(k, 3)))); cf. jax-ml/jax#37795, #37859.
# The fit path, the same code without vmap, is checked everywhere else.
NO_KEY_REUSE_CHECK = jax.debug_key_reuse(False)


@NO_KEY_REUSE_CHECK
def test_sweep_matches_fit_per_seed_and_per_hparam(rng):
    X = rng.normal(size=(40, 3)).astype(np.float32)
    spec = cc.som((3, 2), winner="softmax")
    def keys():  # a fresh array each time: a consumed key must not be reused
        return jax.random.split(jax.random.key(0), 4)

    lrs = np.array([0.1, 0.5, 0.9], np.float32)
    hp = cc.Hparams(lr=lrs, sigma=1.2, temperature=0.5)
    swept = cc.sweep(keys(), X, spec, hp, 2, init="kmeans++")
    assert swept.state.weights.shape == (3, 4, 6, 3)
    assert swept.metrics.quantization_error.shape == (3, 4, 2)
    for name, value in swept.metrics._asdict().items():  # each epoch's metrics travel packed in one row
        assert value.shape == (3, 4, 2) and value.dtype == (np.int32 if name == "dead_units" else np.float32), name
    for j, lr in enumerate(lrs):
        for i in range(4):
            one = cc.fit(keys()[i], X, spec, cc.Hparams(lr=float(lr), sigma=1.2, temperature=0.5), 2, init="kmeans++")
            np.testing.assert_allclose(swept.state.weights[j, i], one.state.weights, atol=1e-5)
            np.testing.assert_allclose(swept.metrics.inertia[j, i], one.metrics.inertia, rtol=1e-4)


@NO_KEY_REUSE_CHECK
def test_sweep_with_an_order_per_seed_matches_fit(rng):
    X = rng.normal(size=(20, 2)).astype(np.float32)
    orders = np.stack([np.stack([rng.permutation(20) for _ in range(2)]) for _ in range(3)])  # [S, E, N]
    W0 = X[:4]

    def keys():
        return jax.random.split(jax.random.key(4), 3)

    swept = cc.sweep(keys(), X, cc.som((2, 2)), cc.Hparams(lr=0.4, sigma=1.0), 2, init=W0, order=orders)
    for i in range(3):
        one = cc.fit(keys()[i], X, cc.som((2, 2)), cc.Hparams(lr=0.4, sigma=1.0), 2, init=W0, order=orders[i])
        np.testing.assert_allclose(swept.state.weights[i], one.state.weights, atol=1e-6)
    with pytest.raises(ValueError, match="n_seeds=3"):
        cc.sweep(keys(), X, cc.som((2, 2)), cc.Hparams(lr=0.4, sigma=1.0), 2, init=W0, order=orders[:2])


@NO_KEY_REUSE_CHECK
def test_sweep_over_seeds_only_and_per_seed_initial_weights(rng):
    X = rng.normal(size=(30, 2)).astype(np.float32)
    def keys():
        return jax.random.split(jax.random.key(1), 3)

    W0 = rng.normal(size=(3, 4, 2)).astype(np.float32)
    swept = cc.sweep(keys(), X, cc.competitive_layer(4), cc.Hparams(lr=0.3), 2, init=W0)
    assert swept.state.weights.shape == (3, 4, 2)
    for i in range(3):
        one = cc.fit(keys()[i], X, cc.competitive_layer(4), cc.Hparams(lr=0.3), 2, init=W0[i])
        np.testing.assert_allclose(swept.state.weights[i], one.state.weights, atol=1e-6)


def test_eager_matches_jitted(rng):
    X, W0, order = _problem(rng, n=12, k=4, epochs=2)
    spec, hp = cc.som((2, 2), kernel="gaussian"), cc.Hparams(lr=0.5, sigma=1.0)
    jitted = cc.fit(jax.random.key(0), X, spec, hp, 2, init=W0, order=order)
    with jax.disable_jit():
        eager = cc.fit(jax.random.key(0), X, spec, hp, 2, init=W0, order=order)
    np.testing.assert_allclose(eager.state.weights, jitted.state.weights, atol=1e-6)
    np.testing.assert_allclose(eager.metrics.quantization_error, jitted.metrics.quantization_error, rtol=1e-5)


def test_new_hparams_and_an_equal_spec_do_not_retrace(rng):
    X = rng.normal(size=(20, 3)).astype(np.float32)
    cc.fit(jax.random.key(0), X, cc.som((2, 3)), cc.Hparams(lr=0.5, sigma=1.0), 2)
    before = loop.TRACE_COUNT["fit"]
    cc.fit(jax.random.key(1), X, cc.som((2, 3)), cc.Hparams(lr=0.1, sigma=2.5, temperature=3), 2)
    cc.fit(jax.random.key(2), X + 1, cc.som([2, 3]), cc.Hparams(lr=np.float32(0.2), sigma=1), 2)
    assert loop.TRACE_COUNT["fit"] == before
    cc.fit(jax.random.key(0), X, cc.som((3, 2)), cc.Hparams(lr=0.5, sigma=1.0), 2)  # another spec compiles
    assert loop.TRACE_COUNT["fit"] == before + 1


def test_epoch_metrics_agree_with_evaluate_and_schedules(rng):
    X = rng.normal(size=(80, 3)).astype(np.float32)
    spec = cc.som((4, 4))
    r = cc.fit(jax.random.key(3), X, spec, cc.Hparams(lr=0.5, sigma=2.0), 3)
    ev = cc.evaluate(spec, r.state.weights, X)
    np.testing.assert_allclose(r.metrics.quantization_error[-1], ev.quantization_error, rtol=1e-5)
    np.testing.assert_allclose(r.metrics.inertia[-1], ev.inertia, rtol=1e-5)
    assert int(r.metrics.dead_units[-1]) == int(ev.dead_units)
    T = 3 * 80
    np.testing.assert_allclose(r.metrics.lr, [0.5 / (1 + 2 * (80 * e - 1) / T) for e in (1, 2, 3)], rtol=1e-5)
    assert np.all(np.diff(r.metrics.sigma) < 0)


def test_online_kmeans_converges_near_sklearn_kmeans():
    from scipy.optimize import linear_sum_assignment
    from sklearn.cluster import KMeans

    points, _ = cc.data.make_blobs(0, n_per_blob=60, noise=0.3)
    X = points.astype(np.float32)
    r = cc.fit(jax.random.key(0), X, cc.competitive_layer(5, lr_schedule="linear"),
               cc.Hparams(lr=0.2, lr_final=0.001), 30, init="kmeans++")
    km = KMeans(5, n_init=10, random_state=0).fit(X)
    cost = np.linalg.norm(np.asarray(r.state.weights)[:, None] - km.cluster_centers_[None], axis=-1)
    rows, cols = linear_sum_assignment(cost)
    assert cost[rows, cols].max() < 0.05
    assert float(r.metrics.inertia[-1]) < 1.01 * km.inertia_


def test_readout_functions(rng):
    X = rng.normal(size=(25, 3)).astype(np.float32)
    spec = cc.som((2, 3))
    W = rng.normal(size=(6, 3)).astype(np.float32)
    d = np.linalg.norm(X[:, None] - W[None], axis=-1)
    np.testing.assert_allclose(cc.distances(W, X), d, rtol=1e-4, atol=1e-4)
    best = np.argmin(d, axis=1)
    np.testing.assert_array_equal(cc.bmu(spec, W, X), best)
    np.testing.assert_array_equal(cc.quantize(spec, W, X), W[best])
    np.testing.assert_array_equal(cc.grid_position(spec, best), np.stack(np.unravel_index(best, (2, 3)), -1))
    np.testing.assert_array_equal(cc.bmu(spec, W, X[0]), best[:1])  # one sample as a 1-D vector


def test_public_step_driven_by_hand_equals_fit(rng):
    X = rng.normal(size=(10, 3)).astype(np.float32)
    spec, hp = cc.som((2, 2)), cc.Hparams(lr=0.5, sigma=1.0)
    state = cc.init(jax.random.key(0), X, spec)
    start = np.asarray(state.weights)
    for x in X:
        state, metrics = cc.step(spec, state, jnp.asarray(x), hp, total_steps=10)
    whole = cc.fit(jax.random.key(1), X, spec, hp, 1, init=start, order=np.arange(10), trace=True)
    np.testing.assert_allclose(state.weights, whole.state.weights, atol=1e-6)
    assert int(state.step) == 10 and int(metrics.winner) == int(whole.trace.winner[0, -1])


def test_topographic_error_is_exactly_zero_on_a_line_where_every_pair_is_adjacent(rng):
    X = rng.normal(size=(30, 3)).astype(np.float32)
    r = cc.fit(jax.random.key(0), X, cc.som((3,), toroidal=True), cc.Hparams(lr=0.5, sigma=1.0), 2)
    np.testing.assert_array_equal(r.metrics.topographic_error, [0.0, 0.0])  # on a 3-ring all units touch


@pytest.mark.parametrize("winner,kernel", [("hard", "gaussian"), ("conscience", "delta"), ("desieno", "delta")])
def test_training_in_chunks_equals_one_run(rng, winner, kernel):
    X = (rng.normal(size=(30, 3)) * 0.1).astype(np.float32)
    spec = cc.som((2, 3), winner=winner) if kernel != "delta" else cc.competitive_layer(6, winner=winner)
    spec = dataclasses.replace(spec, lr_schedule="linear", sigma_schedule="exponential")
    hp = cc.Hparams(lr=0.5, lr_final=0.05, sigma=1.5, sigma_final=0.3, bias_scale=0.5, frequency_rate=0.05)
    order = np.stack([rng.permutation(30) for _ in range(6)])
    W0 = X[:6]
    whole = cc.fit(jax.random.key(0), X, spec, hp, 6, init=W0, order=order)
    first = cc.fit(jax.random.key(1), X, spec, hp, 2, init=W0, order=order[:2], total_epochs=6)
    rest = cc.fit(jax.random.key(2), X, spec, hp, 4, order=order[2:], resume=first.state, total_epochs=6)
    np.testing.assert_allclose(rest.state.weights, whole.state.weights, atol=1e-6)
    np.testing.assert_allclose(rest.state.conscience, whole.state.conscience, atol=1e-6)
    assert int(rest.state.step) == int(whole.state.step) == 180
    np.testing.assert_allclose(np.concatenate([first.metrics.lr, rest.metrics.lr]), whole.metrics.lr, rtol=1e-6)


def test_resume_is_checked(rng):
    X = rng.normal(size=(10, 2)).astype(np.float32)
    spec, hp = cc.som((2, 2)), cc.Hparams(lr=0.5, sigma=1.0)
    first = cc.fit(jax.random.key(0), X, spec, hp, 2, total_epochs=3)
    with pytest.raises(ValueError, match="resume needs total_epochs"):
        cc.fit(jax.random.key(1), X, spec, hp, 1, resume=first.state)
    with pytest.raises(ValueError, match="past the end"):
        cc.fit(jax.random.key(1), X, spec, hp, 2, resume=first.state, total_epochs=3)
    with pytest.raises(ValueError, match="resumed weights have shape"):
        cc.fit(jax.random.key(1), X, cc.som((3, 2)), hp, 1, resume=first.state, total_epochs=3)
    with pytest.raises(ValueError, match="State of an earlier fit"):
        cc.fit(jax.random.key(1), X, spec, hp, 1, resume=first.state.weights, total_epochs=3)


@pytest.mark.skipif(jax.device_count() < 2, reason="needs several devices (the suite has 2: bench modules ask for them)")
def test_a_sweeps_output_can_feed_another_sharded_sweep():
    # A sweep's output carries a sharding of the seed mesh; closed over inside the next sweep's
    # shard_map it clashed with the manual axis (found by compclust.deep's two-level clustering).
    data = np.random.default_rng(0).normal(size=(60, 3)).astype(np.float32)
    n = jax.device_count()
    first = cc.restarts(jax.random.split(jax.random.key(0), n), data, cc.kmeans(8), cc.Hparams(), 3, init="kmeans++")
    again = cc.restarts(jax.random.split(jax.random.key(1), n), first.best.state.weights, cc.kmeans(2), cc.Hparams(), 3,
                        init="kmeans++")
    plain = cc.restarts(jax.random.split(jax.random.key(1), n), np.asarray(first.best.state.weights), cc.kmeans(2),
                        cc.Hparams(), 3, init="kmeans++")
    np.testing.assert_array_equal(again.runs.state.weights, plain.runs.state.weights)
