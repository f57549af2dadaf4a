"""Neural Gas (online, batch, minibatch) and the minibatch SOM against NumPy transcriptions; the
minibatch rule at B = 1 is the online rule; the sample order of minibatch epochs."""
import jax
import numpy as np
import pytest

import compclust as cc
from compclust import loop

import reference as ref
import reference_batch as rb


def _problem(rng, n=30, d=3, k=6, n_epochs=2):
    X = rng.normal(size=(n, d)).astype(np.float32)
    W0 = rng.normal(size=(k, d)).astype(np.float32)
    return X, W0, np.stack([rng.permutation(n) for _ in range(n_epochs)])


NG_HP = dict(lr=0.5, lr_final=0.02, sigma=3.0, sigma_final=0.2)


@pytest.mark.parametrize("lr_schedule,sigma_schedule", [("exponential", "exponential"), ("linear", "inverse_time")])
def test_online_neural_gas_matches_numpy_reference(rng, lr_schedule, sigma_schedule):
    X, W0, order = _problem(rng)
    spec = cc.neural_gas(6, lr_schedule=lr_schedule, sigma_schedule=sigma_schedule)
    r = cc.fit(jax.random.key(0), X, spec, cc.Hparams(**NG_HP), 2, init=W0, order=order)
    want = rb.neural_gas_online_fit(X, W0, order, lr_schedule=lr_schedule, sigma_schedule=sigma_schedule, **NG_HP)
    np.testing.assert_allclose(r.state.weights, want, atol=2e-5)


@pytest.mark.parametrize("sigma_schedule", ["exponential", "asymptotic"])
def test_batch_neural_gas_matches_numpy_reference(rng, sigma_schedule):
    X, W0, _ = _problem(rng)
    spec = cc.neural_gas(6, algorithm="batch", sigma_schedule=sigma_schedule)
    r = cc.fit(jax.random.key(0), X, spec, cc.Hparams(**NG_HP), 4, init=W0)
    want = rb.neural_gas_batch_fit(X, W0, 4, sigma=3.0, sigma_final=0.2, sigma_schedule=sigma_schedule)
    np.testing.assert_allclose(r.state.weights, want, atol=2e-5)
    np.testing.assert_allclose(r.metrics.quantization_error[-1], rb.quantization_error(X, want), rtol=1e-5)
    np.testing.assert_allclose(r.metrics.sigma, [rb.epoch_value(sigma_schedule, 3.0, 0.2, e, 4) for e in range(4)],
                               rtol=1e-6)


@pytest.mark.parametrize("batch_size", [4, 30])
def test_minibatch_neural_gas_matches_numpy_reference(rng, batch_size):
    X, W0, order = _problem(rng)
    spec = cc.neural_gas(6, algorithm="minibatch", batch_size=batch_size)
    r = cc.fit(jax.random.key(0), X, spec, cc.Hparams(**NG_HP), 2, init=W0, order=order)
    want = rb.minibatch_fit(X, W0, order, batch_size, rb.neural_gas_weights, lr_schedule="exponential",
                            sigma_schedule="exponential", **NG_HP)
    np.testing.assert_allclose(r.state.weights, want, atol=2e-5)


def test_neural_gas_ranks_break_ties_by_unit_index():
    # Two units at the same place: the lower index is rank 0 (moves by lr), the other rank 1.
    X = np.array([[1.0, 0.0]], np.float32)
    W0 = np.array([[0.0, 0.0], [0.0, 0.0]], np.float32)
    spec = cc.neural_gas(2, lr_schedule="constant", sigma_schedule="constant")
    r = cc.fit(jax.random.key(0), X, spec, cc.Hparams(lr=0.5, sigma=1.0), 1, init=W0, order=np.arange(1))
    np.testing.assert_allclose(r.state.weights, [[0.5, 0.0], [0.5 * np.exp(-1.0), 0.0]], rtol=1e-6)


def test_neural_gas_with_vanishing_lambda_is_winner_take_all(rng):
    X, W0, order = _problem(rng)
    wta = cc.fit(jax.random.key(0), X, cc.competitive_layer(6), cc.Hparams(lr=0.3), 2, init=W0, order=order)
    ng = cc.fit(jax.random.key(0), X, cc.neural_gas(6, lr_schedule="constant", sigma_schedule="constant"),
                cc.Hparams(lr=0.3, sigma=1e-7), 2, init=W0, order=order)
    np.testing.assert_allclose(ng.state.weights, wta.state.weights, atol=1e-6)


def test_batch_neural_gas_with_vanishing_lambda_is_lloyd_without_empty_clusters(rng):
    X = rng.normal(size=(40, 2)).astype(np.float32)
    W0 = X[:4]
    ng = cc.fit(jax.random.key(0), X, cc.neural_gas(4, algorithm="batch", sigma_schedule="constant"),
                cc.Hparams(sigma=1e-7), 3, init=W0)
    km = cc.fit(jax.random.key(0), X, cc.kmeans(4), cc.Hparams(), 3, init=W0)
    assert int(km.metrics.dead_units.max()) == 0
    np.testing.assert_allclose(ng.state.weights, km.state.weights, atol=1e-5)


# ----------------------------------------------------------------------------- minibatch SOM

@pytest.mark.parametrize("shape,topo,toroidal,batch_size", [((3, 4), "hexagonal", False, 4),
                                                             ((4, 3), "rectangular", True, 7),
                                                             ((6,), "rectangular", False, 30)])
def test_minibatch_som_matches_numpy_reference(rng, shape, topo, toroidal, batch_size):
    X, W0, order = _problem(rng, k=int(np.prod(shape)))
    spec = cc.som(shape, topology=topo, toroidal=toroidal, lr_schedule="linear", sigma_schedule="exponential",
                  algorithm="minibatch", batch_size=batch_size)
    hp = dict(lr=0.6, lr_final=0.05, sigma=1.8, sigma_final=0.3)
    r = cc.fit(jax.random.key(0), X, spec, cc.Hparams(**hp), 2, init=W0, order=order)
    want = rb.minibatch_fit(X, W0, order, batch_size, rb.som_weights_fn(shape, topo, toroidal),
                            lr_schedule="linear", sigma_schedule="exponential", **hp)
    np.testing.assert_allclose(r.state.weights, want, atol=2e-5)
    n_b = rb.n_batches(30, batch_size)  # schedules on the global batch index, T = E * ceil(N / B)
    np.testing.assert_allclose(r.metrics.lr[-1], rb.value("linear", 0.6, 0.05, 2 * n_b - 1, 2 * n_b), rtol=1e-5)


@pytest.mark.parametrize("kernel", ["gaussian", "bubble"])
def test_minibatch_som_of_one_is_the_online_som(rng, kernel):
    X, W0, order = _problem(rng, k=6)
    kw = dict(kernel=kernel, lr_schedule="exponential", sigma_schedule="linear")
    hp = cc.Hparams(lr=0.3, lr_final=0.02, sigma=1.5, sigma_final=0.4)
    online = cc.fit(jax.random.key(0), X, cc.som((3, 2), **kw), hp, 2, init=W0, order=order)
    mini = cc.fit(jax.random.key(0), X, cc.som((3, 2), algorithm="minibatch", batch_size=1, **kw), hp, 2, init=W0,
                  order=order)
    np.testing.assert_allclose(mini.state.weights, online.state.weights, atol=1e-6)
    want = ref.online_fit(X, W0, order, coords=ref.grid_coords((3, 2)), kernel=kernel, lr=0.3, lr_final=0.02,
                          sigma=1.5, sigma_final=0.4, lr_schedule="exponential", sigma_schedule="linear")
    np.testing.assert_allclose(mini.state.weights, want, atol=2e-5)


def test_reference_minibatch_of_one_is_the_reference_online_som(rng):
    # The two transcriptions agree with each other where the rules coincide.
    X, W0, order = _problem(rng, k=6)
    a = rb.minibatch_fit(X, W0, order, 1, rb.som_weights_fn((3, 2)), lr=0.3, sigma=1.5)
    b = ref.online_fit(X, W0, order, coords=ref.grid_coords((3, 2)), kernel="gaussian", lr=0.3, sigma=1.5)
    np.testing.assert_allclose(a, b, atol=1e-12)
    c = rb.minibatch_fit(X, W0, order, 1, rb.neural_gas_weights, **NG_HP, lr_schedule="exponential",
                         sigma_schedule="exponential")
    np.testing.assert_allclose(c, rb.neural_gas_online_fit(X, W0, order, **NG_HP), atol=1e-12)


def test_minibatch_without_an_order_draws_a_fresh_permutation_per_epoch(rng):
    # Without an order the key draws each epoch's permutation: one key repeats, two keys differ; with
    # B = N the update does not depend on the order, so two keys agree.
    X, W0, _ = _problem(rng)
    spec = cc.som((3, 2), algorithm="minibatch", batch_size=4)
    hp = cc.Hparams(lr=0.3, sigma=1.0)
    a = cc.fit(jax.random.key(1), X, spec, hp, 2, init=W0)
    b = cc.fit(jax.random.key(1), X, spec, hp, 2, init=W0)
    c = cc.fit(jax.random.key(2), X, spec, hp, 2, init=W0)
    np.testing.assert_array_equal(a.state.weights, b.state.weights)
    assert not np.allclose(a.state.weights, c.state.weights)
    full = cc.som((3, 2), algorithm="minibatch", batch_size=30)
    d = cc.fit(jax.random.key(1), X, full, hp, 2, init=W0)
    e = cc.fit(jax.random.key(2), X, full, hp, 2, init=W0)
    np.testing.assert_allclose(d.state.weights, e.state.weights, atol=1e-6)


def test_minibatch_order_shape_is_checked(rng):
    X, W0, _ = _problem(rng)
    spec = cc.neural_gas(6, algorithm="minibatch", batch_size=4)
    before = loop.TRACE_COUNT["fit"]
    with pytest.raises(ValueError, match="n_epochs=2"):
        cc.fit(jax.random.key(0), X, spec, cc.Hparams(**NG_HP), 2, init=W0, order=np.zeros((3, 30), int))
    assert loop.TRACE_COUNT["fit"] == before
