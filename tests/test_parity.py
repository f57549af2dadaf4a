"""Parity with the real anchors, from the same initial weights and sample order (float32 vs their float64)."""
import jax
import numpy as np
import pytest

import compclust as cc

minisom = pytest.importorskip("minisom")
# neurolab 0.3.5 predates NumPy 2: it still calls np.Inf and np.asfarray.
if not hasattr(np, "Inf"):
    np.Inf = np.inf
if not hasattr(np, "asfarray"):
    np.asfarray = lambda a, dtype=float: np.asarray(a, dtype=dtype)
neurolab = pytest.importorskip("neurolab")


def scaled(name):
    from sklearn import datasets

    data = {"digits": datasets.load_digits, "iris": datasets.load_iris, "wine": datasets.load_wine}[name]().data
    return cc.transform(cc.fit_scaler(data, "minmax"), data)


def minisom_online(X, W0, order, shape, **kw):
    """MiniSom's own train loop body, driven in our sample order (as MiniSom.train does)."""
    som = minisom.MiniSom(shape[0], shape[1], X.shape[1], **kw)
    som._weights = W0.reshape(shape[0], shape[1], -1).astype(np.float64).copy()
    T = order.size
    for t, i in enumerate(order.ravel()):
        som.update(X[i], som.winner(X[i]), t, T)
    return som


@pytest.mark.parametrize("data,shape,topo,sigma,lr,epochs", [
    ("digits", (8, 6), "rectangular", 3.0, 0.5, 2),
    ("iris", (7, 6), "hexagonal", 2.0, 0.5, 3),
    ("wine", (5, 5), "hexagonal", 1.5, 0.8, 3),
    ("iris", (10, 1), "rectangular", 2.0, 0.3, 2),
])
def test_online_som_matches_minisom(data, shape, topo, sigma, lr, epochs, engine):
    X = scaled(data)
    rng = np.random.default_rng(1)
    W0 = rng.random((shape[0] * shape[1], X.shape[1])).astype(np.float32)
    order = np.stack([rng.permutation(len(X)) for _ in range(epochs)])
    som = minisom_online(X, W0, order, shape, sigma=sigma, learning_rate=lr, topology=topo)
    spec = cc.som(shape, topology=topo)  # gaussian kernel, asymptotic decays: MiniSom's defaults
    r = cc.fit(jax.random.key(0), X, spec, cc.Hparams(lr=lr, sigma=sigma), epochs, init=W0, order=order)
    np.testing.assert_allclose(r.state.weights, som.get_weights().reshape(-1, X.shape[1]), atol=1e-5)
    X64 = X.astype(np.float64)
    np.testing.assert_allclose(r.metrics.quantization_error[-1], som.quantization_error(X64), rtol=1e-5)
    np.testing.assert_allclose(r.metrics.topographic_error[-1], som.topographic_error(X64), atol=1e-6)


@pytest.mark.parametrize("kernel,lr,sigma,lr_decay,sigma_decay,ours", [
    # The Mexican hat repels units beyond sigma; at larger rates both libraries diverge alike.
    ("mexican_hat", 0.05, 1.2, "linear_decay_to_zero", "linear_decay_to_one", ("linear", 0.0, "linear", 1.0)),
    ("gaussian", 0.4, 2.5, "inverse_decay_to_zero", "inverse_decay_to_one", ("inverse_time", None, "inverse_time", 1.0)),
])
def test_minisom_other_kernels_and_decays(kernel, lr, sigma, lr_decay, sigma_decay, ours, engine):
    X = scaled("iris")
    rng = np.random.default_rng(2)
    W0 = rng.random((36, 4)).astype(np.float32)
    order = np.stack([rng.permutation(len(X)) for _ in range(2)])
    som = minisom_online(X, W0, order, (6, 6), sigma=sigma, learning_rate=lr, neighborhood_function=kernel,
                         decay_function=lr_decay, sigma_decay_function=sigma_decay)
    lr_schedule, lr_final, sigma_schedule, sigma_final = ours
    lr_final = lr / 101 if lr_final is None else lr_final  # MiniSom's inverse decay: lr * C / (C + t), C = T/100
    spec = cc.som((6, 6), kernel=kernel, lr_schedule=lr_schedule, sigma_schedule=sigma_schedule)
    hp = cc.Hparams(lr=lr, lr_final=lr_final, sigma=sigma, sigma_final=sigma_final)
    r = cc.fit(jax.random.key(0), X, spec, hp, 2, init=W0, order=order)
    assert np.abs(som.get_weights()).max() < 10  # a regime that does not diverge
    np.testing.assert_allclose(r.state.weights, som.get_weights().reshape(-1, 4), atol=1e-5)


def test_evaluate_matches_minisom_metrics_on_a_trained_map():
    X = scaled("digits")
    for topo in ("rectangular", "hexagonal"):
        som = minisom.MiniSom(9, 7, 64, sigma=2.0, topology=topo, random_seed=3)
        som.train(X, 3000)
        spec = cc.som((9, 7), topology=topo)
        ev = cc.evaluate(spec, som.get_weights().reshape(-1, 64).astype(np.float32), X)
        np.testing.assert_allclose(ev.quantization_error, som.quantization_error(X), rtol=1e-5)
        np.testing.assert_allclose(ev.topographic_error, som.topographic_error(X), atol=1e-6)


def blobs_for_neurolab(seed=0):
    points, _ = cc.data.make_blobs(seed)
    return points / np.linalg.norm(points)  # the demo divides by the global Frobenius norm


@pytest.mark.parametrize("n_units,epochs,seed", [(5, 30, 0), (3, 12, 1), (8, 10, 2)])
def test_conscience_layer_matches_neurolab_newc(n_units, epochs, seed, engine):
    X = blobs_for_neurolab(seed)
    net = neurolab.net.newc([[X.min(), X.max()]] * 3, n_units)
    np.random.seed(seed)
    start = [np.random.randint(0, len(X)) for _ in range(n_units)]  # train_cwta's own initialisation
    np.random.seed(seed)
    # neurolab checks its epoch limit before learning, so train(epochs=E + 1) makes E learning passes.
    errors = net.train(X, epochs=epochs + 1, show=0)
    assert len(errors) == epochs + 1
    r = cc.fit(jax.random.key(0), X, cc.competitive_layer(n_units, winner="conscience"), cc.Hparams(lr=0.01),
               epochs, init=X[start], order=np.arange(len(X)))
    np.testing.assert_allclose(r.state.weights, net.layers[0].np["w"], atol=1e-5)
