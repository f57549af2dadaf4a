"""Kohonen's batch map against a NumPy transcription and XPySom; properties; and, for every family,
chunked == unchunked, sweep == fit, determinism, no retrace, and bad input."""
import jax
import numpy as np
import pytest
from sklearn import datasets

import compclust as cc
from compclust import loop

import reference_batch as rb

# jax's key-reuse checker raises a false positive for any vmap of a scan over split keys (see
# tests/test_loop.py); sweeps and restarts are vmapped fits, checked un-vmapped through fit.
NO_KEY_REUSE_CHECK = jax.debug_key_reuse(False)


def pick(tree, i):
    return jax.tree.map(lambda a: a[i], tree)


def _problem(rng, n=40, d=3, k=12):
    return rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(k, d)).astype(np.float32)


# Every grid, each with another per-epoch radius schedule.
GRIDS = [((12,), "rectangular", False, "constant"), ((4, 3), "rectangular", False, "linear"),
         ((4, 3), "rectangular", True, "exponential"), ((3, 4), "hexagonal", False, "inverse_time"),
         ((3, 4), "hexagonal", True, "asymptotic"), ((3, 2, 2), "rectangular", True, "linear")]


def _batch_som_vs_reference(rng, shape, topo, toroidal, kernel, schedule, n_epochs=4, sigma=2.1,
                            positive_only=False):
    X, W0 = _problem(rng, k=int(np.prod(shape)))
    spec = cc.som(shape, topology=topo, toroidal=toroidal, kernel=kernel, sigma_schedule=schedule,
                  algorithm="batch")
    r = cc.fit(jax.random.key(0), X, spec, cc.Hparams(sigma=sigma, sigma_final=0.4), n_epochs, init=W0)
    W, qe, dens = rb.batch_som_fit(X, W0, n_epochs, shape=shape, topology=topo, toroidal=toroidal, kernel=kernel,
                                   sigma=sigma, sigma_final=0.4, sigma_schedule=schedule,
                                   positive_only=positive_only)
    return r, W, qe, dens, X


@pytest.mark.parametrize("shape,topo,toroidal,schedule", GRIDS)
def test_batch_som_grids_and_schedules_match_numpy_reference(rng, shape, topo, toroidal, schedule):
    r, W, qe, _, X = _batch_som_vs_reference(rng, shape, topo, toroidal, "gaussian", schedule)
    np.testing.assert_allclose(r.state.weights, W, atol=2e-5)
    np.testing.assert_allclose(r.metrics.quantization_error, qe, rtol=1e-5)
    # the epoch's metrics are those of the weights after it, as evaluate reads them
    spec = cc.som(shape, topology=topo, toroidal=toroidal, sigma_schedule=schedule, algorithm="batch")
    ev = cc.evaluate(spec, r.state.weights, X)
    np.testing.assert_allclose(ev.quantization_error, r.metrics.quantization_error[-1], rtol=1e-5)
    np.testing.assert_allclose(ev.topographic_error, r.metrics.topographic_error[-1], atol=1e-6)
    np.testing.assert_allclose(r.metrics.inertia[-1], rb.inertia(X, W), rtol=1e-5)
    # per-epoch radius: t = e, T = E - 1, so the last epoch uses sigma_final
    np.testing.assert_allclose(r.metrics.sigma, [rb.epoch_value(schedule, 2.1, 0.4, e, 4) for e in range(4)],
                               rtol=1e-6)


@pytest.mark.parametrize("kernel,shape,topo,toroidal", [
    ("bubble", (3, 4), "hexagonal", True), ("triangle", (4, 3), "rectangular", False),
    ("cut_gaussian", (3, 4), "hexagonal", True), ("mexican_hat", (4, 3), "rectangular", False)])
def test_batch_som_kernels_match_numpy_reference(rng, kernel, shape, topo, toroidal):
    # Radii 1.3 -> 0.4 stay off the grid distances (1, sqrt 2, sqrt 3...) where bubble and cut_gaussian
    # switch, and keep units apart (a radius covering the whole small torus makes all units equal, and
    # the winner then is a tie decided by rounding).
    # The Mexican hat's denominators sum_i h can be negative; compclust then keeps the unit where it is
    # (XPySom divides by them all the same: see test_reference_mexican_hat_is_xpysoms_rule).
    mexican = kernel == "mexican_hat"
    r, W, qe, dens, _ = _batch_som_vs_reference(rng, shape, topo, toroidal, kernel, "exponential", sigma=1.3,
                                                positive_only=mexican)
    if mexican:
        assert dens.min() < 0  # the case where the rule matters does occur
    np.testing.assert_allclose(r.state.weights, W, atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(r.metrics.quantization_error, qe, rtol=1e-5)


def test_batch_som_four_points_by_hand():
    # Units at (0,0) and (1,1) on a line of two, gaussian sigma 1: h = 1 at the winner, a = exp(-1/2)
    # next door. Winners: (0,0) -> 0; (1,0) and (0,1) tie -> 0 (lowest index); (1,1) -> 1.
    # w0 = [(0,0)+(1,0)+(0,1) + a(1,1)] / (3 + a);  w1 = [a((0,0)+(1,0)+(0,1)) + (1,1)] / (3a + 1).
    # One epoch of a linear schedule: T = max(E - 1, 1) = 1 and t = 0, so it runs at sigma, not sigma_final.
    X = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], np.float32)
    W0 = np.array([[0, 0], [1, 1]], np.float32)
    r = cc.fit(jax.random.key(0), X, cc.som((2,), sigma_schedule="linear", algorithm="batch"),
               cc.Hparams(sigma=1.0, sigma_final=0.1), 1, init=W0)
    a = np.exp(-0.5)
    np.testing.assert_allclose(r.state.weights, [[(1 + a) / (3 + a)] * 2, [(1 + a) / (1 + 3 * a)] * 2], rtol=1e-6)
    np.testing.assert_allclose(r.metrics.sigma, [1.0])


def test_unit_that_no_sample_reaches_keeps_its_weights(rng):
    # Bubble kernel below one grid step: each unit averages only its own samples (Lloyd without the
    # relocation); the far unit wins nothing and stays where it is, bit for bit.
    X = rng.normal(size=(30, 2)).astype(np.float32)
    W0 = np.vstack([X[:3], [[40.0, -40.0]]]).astype(np.float32)
    r = cc.fit(jax.random.key(0), X, cc.som((4,), kernel="bubble", sigma_schedule="constant", algorithm="batch"),
               cc.Hparams(sigma=0.5), 3, init=W0)
    np.testing.assert_array_equal(r.state.weights[3], W0[3])
    W, _, _ = rb.batch_som_fit(X, W0, 3, shape=(4,), kernel="bubble", sigma=0.5)
    np.testing.assert_allclose(r.state.weights, W, atol=1e-5)
    assert int(r.metrics.dead_units[-1]) == 1


@pytest.mark.parametrize("kernel,sigma", [("gaussian", 1.0), ("bubble", 1.5)])
def test_batch_step_never_increases_its_neighbourhood_distortion(kernel, sigma):
    # What the batch map guarantees at a fixed radius: given the winners c_i of the epoch's start,
    # the new weights minimise E(W) = sum_i sum_k h(k, c_i) |x_i - w_k|^2 (a weighted mean per unit).
    # (The quantization error itself is NOT monotone under nearest-unit winners: on iris from 20
    # random samples it rises 0.116 -> 0.240 in the first epoch at sigma 1; see the test below.)
    X = datasets.load_iris().data.astype(np.float32)
    X = (X - X.min(0)) / (X.max(0) - X.min(0))
    spec = cc.som((5, 4), kernel=kernel, sigma_schedule="constant", algorithm="batch")
    hp = cc.Hparams(sigma=sigma)
    coords, periods = rb.grid_geometry((5, 4))
    H = rb.neighbourhood_matrix(coords, periods, kernel, sigma)
    def distortion(V, winners):
        return float((H[:, winners] * rb.sq_dists(X, V).T).sum())

    W = np.random.default_rng(0).uniform(-0.01, 0.01, (20, 4)).astype(np.float32)
    for _ in range(6):
        c = np.asarray(cc.bmu(spec, W, X))
        new = np.asarray(cc.fit(jax.random.key(0), X, spec, hp, 1, init=W).state.weights)
        assert distortion(new, c) <= distortion(W, c) * (1 + 1e-6) + 1e-9
        W = new


@pytest.mark.parametrize("tol", [0.0, 0.05])
def test_batch_som_tol_stops_when_the_labels_settle(rng, tol):
    X, W0 = _problem(rng, k=12)
    spec = cc.som((4, 3), sigma_schedule="constant", algorithm="batch")
    r = cc.fit(jax.random.key(0), X, spec, cc.Hparams(sigma=0.8), 40, init=W0, tol=tol)
    W, n_iter = rb.batch_som_until(X, W0, 40, tol, shape=(4, 3), sigma=0.8)
    assert int(r.n_iter) == n_iter < 40
    np.testing.assert_allclose(r.state.weights, W, atol=2e-5)
    qe = np.asarray(r.metrics.quantization_error)
    np.testing.assert_array_equal(qe[n_iter:], np.full(40 - n_iter, qe[n_iter - 1]))


def test_reference_batch_som_quantization_error_can_rise_at_a_fixed_radius():
    # Documents why the property above is the distortion and not the quantization error.
    X = datasets.load_iris().data
    X = (X - X.min(0)) / (X.max(0) - X.min(0))
    W0 = X[np.random.default_rng(0).choice(150, 20, replace=False)]
    _, qe, _ = rb.batch_som_fit(X, W0, 2, shape=(5, 4), sigma=1.0)
    assert qe[0] > rb.quantization_error(X, W0)


# ----------------------------------------------------------------------------- XPySom parity
# Rectangular maps only: XPySom's hexagonal grid shifts every other row by half a unit but keeps a row
# spacing of 1 (MiniSom and compclust use sqrt(3)/2), so its hexagonal distances are another grid's.

def _xpysom_case(kernel, schedule):
    xpysom = pytest.importorskip("xpysom")
    X = datasets.load_iris().data.astype(np.float32)
    X = (X - X.min(0)) / (X.max(0) - X.min(0))
    W0 = np.random.default_rng(0).random((30, 4)).astype(np.float32)
    E, s0, s1 = 5, 3.0, 0.5
    som = xpysom.XPySom(6, 5, 4, sigma=s0, sigmaN=s1, decay_function=schedule, neighborhood_function=kernel,
                        xp=np, n_parallel=64)
    som._weights = W0.reshape(6, 5, 4).copy()
    som.train(X, E)
    # XPySom's gaussian is exp(-d^2 / (2 (std_coeff sigma)^2)) with std_coeff 0.5, and its Mexican hat
    # (1 - 2 d^2 / c) exp(-d^2 / c), c = 2 (std_coeff sigma)^2: ours at radius 0.5 sigma. Its linear
    # decay runs on t / (E - 1) like ours; its exponential on t / E, i.e. ours with a final radius of
    # s0 (s1 / s0)^((E - 1) / E).
    ours0, ours1 = 0.5 * s0, 0.5 * s1
    if schedule == "exponential":
        ours1 = ours0 * (ours1 / ours0) ** ((E - 1) / E)
    return X, W0, E, som.get_weights().reshape(-1, 4), ours0, ours1


@pytest.mark.parametrize("schedule", ["linear", "exponential"])
def test_batch_som_matches_xpysom(schedule):
    X, W0, E, want, s0, s1 = _xpysom_case("gaussian", schedule)
    W, _, _ = rb.batch_som_fit(X, W0, E, shape=(6, 5), sigma=s0, sigma_final=s1, sigma_schedule=schedule)
    np.testing.assert_allclose(W, want, atol=2e-6)  # the transcription first
    spec = cc.som((6, 5), sigma_schedule=schedule, algorithm="batch")
    r = cc.fit(jax.random.key(0), X, spec, cc.Hparams(sigma=s0, sigma_final=s1), E, init=W0)
    np.testing.assert_allclose(r.state.weights, want, atol=1e-5)
    np.testing.assert_allclose(r.metrics.quantization_error[-1], rb.quantization_error(X, want), rtol=1e-5)


@pytest.mark.parametrize("schedule", ["linear", "exponential"])
def test_reference_mexican_hat_is_xpysoms_rule(schedule):
    # XPySom's batch Mexican hat divides by every non-zero denominator, negative ones included; on
    # this map they are negative in every epoch, so compclust (which keeps such units in place) and
    # XPySom part ways here by design; the transcription holds both rules.
    X, W0, E, want, s0, s1 = _xpysom_case("mexican_hat", schedule)
    W, _, dens = rb.batch_som_fit(X, W0, E, shape=(6, 5), kernel="mexican_hat", sigma=s0, sigma_final=s1,
                                  sigma_schedule=schedule)
    assert np.all(dens.min(axis=1) < 0)
    np.testing.assert_allclose(W, want, atol=2e-6)


# ----------------------------------------------------------------------------- every family

def _families():
    """name -> (spec factory taking chunk_size, hparams, init): each algorithm of each family (the online
    K-means and competitive layer share the online SOM's code path and metrics)."""
    hp_som = cc.Hparams(lr=0.4, lr_final=0.05, sigma=1.5, sigma_final=0.3)
    hp_ng = cc.Hparams(lr=0.4, lr_final=0.05, sigma=2.0, sigma_final=0.2)
    return {
        "som-online": (lambda c: cc.som((3, 3), chunk_size=c), hp_som, "random_samples"),
        "som-batch": (lambda c: cc.som((3, 3), algorithm="batch", chunk_size=c), hp_som, "random_samples"),
        "som-minibatch": (lambda c: cc.som((3, 3), algorithm="minibatch", batch_size=6, chunk_size=c), hp_som,
                          "random_samples"),
        "hex-som-batch": (lambda c: cc.som((3, 4), topology="hexagonal", toroidal=True, kernel="cut_gaussian",
                                           algorithm="batch", chunk_size=c), hp_som, "pca"),
        "kmeans-batch": (lambda c: cc.kmeans(5, chunk_size=c), hp_som, "random_samples"),
        "kmeans-minibatch": (lambda c: cc.kmeans(5, algorithm="minibatch", batch_size=8, chunk_size=c), hp_som,
                             "random_samples"),
        "ng-online": (lambda c: cc.neural_gas(5, chunk_size=c), hp_ng, "random_samples"),
        "ng-batch": (lambda c: cc.neural_gas(5, algorithm="batch", chunk_size=c), hp_ng, "random_samples"),
        "ng-minibatch": (lambda c: cc.neural_gas(5, algorithm="minibatch", batch_size=7, chunk_size=c), hp_ng,
                         "random_samples"),
    }


FAMILIES = _families()
BATCH_FAMILIES = [f for f in FAMILIES if "batch" in f]
SWEEP_FAMILIES = [f for f in BATCH_FAMILIES if f not in ("hex-som-batch", "ng-minibatch")]
X30 = np.random.default_rng(4).normal(size=(30, 3)).astype(np.float32)


def assert_same_run(a, b, atol=1e-6, rtol=1e-5):
    np.testing.assert_allclose(a.state.weights, b.state.weights, atol=atol)
    for name in a.metrics._fields:
        x, y = np.asarray(getattr(a.metrics, name)), np.asarray(getattr(b.metrics, name))
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=name)


# The families swept below are checked chunked (sweep) against unchunked (fit), which covers both
# sweep == fit and chunked == unchunked with one compilation fewer each; the others here.
@pytest.mark.parametrize("family", [f for f in FAMILIES if f not in SWEEP_FAMILIES])
def test_chunked_distances_equal_unchunked(family):
    make, hp, init = FAMILIES[family]
    whole = cc.fit(jax.random.key(3), X30, make(None), hp, 3, init=init)
    chunked = cc.fit(jax.random.key(3), X30, make(7), hp, 3, init=init)  # 30 rows: the last chunk is partial
    assert_same_run(chunked, whole)
    W = whole.state.weights
    np.testing.assert_array_equal(cc.bmu(make(7), W, X30), cc.bmu(make(None), W, X30))


@pytest.mark.parametrize("family", BATCH_FAMILIES)
def test_same_key_same_bits(family):
    make, hp, init = FAMILIES[family]
    a = cc.fit(jax.random.key(5), X30, make(None), hp, 3, init=init)
    b = cc.fit(jax.random.key(5), X30, make(None), hp, 3, init=init)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)


@NO_KEY_REUSE_CHECK
@pytest.mark.parametrize("family", SWEEP_FAMILIES)
def test_chunked_sweep_matches_unchunked_fit_per_seed(family):
    make, hp, init = FAMILIES[family]

    def keys():
        return jax.random.split(jax.random.key(6), 3)

    swept = cc.sweep(keys(), X30, make(7), hp, 3, init=init)  # 30 rows in blocks of 7: the last is partial
    assert swept.state.weights.shape[0] == 3 and swept.metrics.quantization_error.shape == (3, 3)
    for i in range(3):
        assert_same_run(pick(swept, i), cc.fit(keys()[i], X30, make(None), hp, 3, init=init), atol=1e-5)
    W = np.asarray(swept.state.weights[0])
    np.testing.assert_array_equal(cc.bmu(make(7), W, X30), cc.bmu(make(None), W, X30))


@NO_KEY_REUSE_CHECK
def test_sweep_over_radii_matches_fit():
    spec = cc.som((3, 3), algorithm="batch")
    sigmas = np.array([0.5, 1.0, 2.0], np.float32)

    def keys():
        return jax.random.split(jax.random.key(7), 2)

    swept = cc.sweep(keys(), X30, spec, cc.Hparams(sigma=sigmas), 3)
    assert swept.state.weights.shape == (3, 2, 9, 3)
    for j, s in enumerate(sigmas):
        for i in range(2):
            one = cc.fit(keys()[i], X30, spec, cc.Hparams(sigma=float(s)), 3)
            np.testing.assert_allclose(swept.state.weights[j, i], one.state.weights, atol=1e-5)


@pytest.mark.parametrize("family", BATCH_FAMILIES)
def test_new_hparams_and_an_equal_spec_do_not_retrace(family):
    make, hp, init = FAMILIES[family]
    cc.fit(jax.random.key(0), X30, make(None), hp, 3, init=init)
    before = loop.TRACE_COUNT["fit"]
    cc.fit(jax.random.key(1), X30 + 1, make(None), hp._replace(lr=0.2, sigma=0.7), 3, init=init)
    cc.fit(jax.random.key(2), X30, make(None), hp._replace(sigma=np.float32(3.0), lr_final=0.01), 3, init=init)
    assert loop.TRACE_COUNT["fit"] == before


def test_eager_matches_jitted_batch_som(rng):
    X, W0 = _problem(rng, n=12, k=4)
    spec, hp = cc.som((2, 2), algorithm="batch"), cc.Hparams(sigma=1.0)
    jitted = cc.fit(jax.random.key(0), X, spec, hp, 1, init=W0)
    with jax.disable_jit():
        eager = cc.fit(jax.random.key(0), X, spec, hp, 1, init=W0)
    np.testing.assert_allclose(eager.state.weights, jitted.state.weights, atol=1e-6)


@NO_KEY_REUSE_CHECK
def test_batch_som_restarts_keep_the_best_quantization_error():
    spec = cc.som((3, 3), algorithm="batch")

    def keys():
        return jax.random.split(jax.random.key(8), 4)

    out = cc.restarts(keys(), X30, spec, cc.Hparams(sigma=1.0), 3, init="random_samples",
                      criterion="quantization_error")
    final = np.asarray(out.runs.metrics.quantization_error)[:, -1]
    np.testing.assert_allclose(out.scores, final, rtol=1e-6)
    assert int(out.best_index) == int(np.argmin(final))
    np.testing.assert_array_equal(out.best.state.weights, out.runs.state.weights[int(out.best_index)])
    one = cc.fit(keys()[2], X30, spec, cc.Hparams(sigma=1.0), 3, init="random_samples")
    np.testing.assert_allclose(out.runs.state.weights[2], one.state.weights, atol=1e-5)


# ----------------------------------------------------------------------------- bad input

def _no_trace(fn, match):
    before = loop.TRACE_COUNT["fit"]
    with pytest.raises(ValueError, match=match):
        fn()
    assert loop.TRACE_COUNT["fit"] == before  # raised before any tracing / compilation


@pytest.mark.parametrize("make", [lambda: cc.som((2, 2), algorithm="minibatch", batch_size=31),
                                  lambda: cc.kmeans(3, algorithm="minibatch", batch_size=31),
                                  lambda: cc.neural_gas(3, algorithm="minibatch", batch_size=100)])
def test_batch_size_larger_than_the_data(make):
    _no_trace(lambda: cc.fit(jax.random.key(0), X30, make(), cc.Hparams(), 1), "batch_size")


@pytest.mark.parametrize("make,match", [
    (lambda: cc.som((2, 2), algorithm="minibatch", batch_size=0), "batch_size"),
    (lambda: cc.kmeans(3, algorithm="minibatch", batch_size=-2), "batch_size"),
    (lambda: cc.kmeans(3, algorithm="minibatch", batch_size=2.5), "batch_size"),
    (lambda: cc.kmeans(3, algorithm="minibatch"), "batch_size"),
    (lambda: cc.som((2, 2), chunk_size=0), "chunk_size"),
    (lambda: cc.kmeans(3, chunk_size=-1), "chunk_size"),
    (lambda: cc.neural_gas(3, algorithm="batch", chunk_size=0), "chunk_size"),
    (lambda: cc.competitive_layer(3, chunk_size=0), "chunk_size"),
    (lambda: cc.kmeans(3, algorithm="lloyd"), "algorithm"),
])
def test_bad_batch_and_chunk_sizes_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("tol", [-1e-4, np.nan, "small"])
def test_bad_tolerance(tol):
    keys = jax.random.split(jax.random.key(0), 2)
    _no_trace(lambda: cc.fit(jax.random.key(0), X30, cc.kmeans(3), cc.Hparams(), 2, tol=tol), "tol")
    _no_trace(lambda: cc.sweep(keys, X30, cc.kmeans(3), cc.Hparams(), 2, tol=tol), "tol")
    _no_trace(lambda: cc.restarts(keys, X30, cc.kmeans(3), cc.Hparams(), 2, tol=tol), "tol")


@pytest.mark.parametrize("family", ["som-batch", "kmeans-batch", "ng-batch"])
def test_order_with_a_batch_algorithm(family):
    make, hp, _ = FAMILIES[family]
    _no_trace(lambda: cc.fit(jax.random.key(0), X30, make(None), hp, 1, order=np.arange(30)), "order")


def test_more_units_than_samples_in_restarts_and_fit():
    keys = jax.random.split(jax.random.key(0), 3)
    _no_trace(lambda: cc.restarts(keys, X30[:4], cc.kmeans(5), cc.Hparams(), 2), "samples")
    _no_trace(lambda: cc.fit(jax.random.key(0), X30[:4], cc.kmeans(5), cc.Hparams(), 2, init="kmeans++"),
              "samples")
    _no_trace(lambda: cc.fit(jax.random.key(0), X30[:4], cc.neural_gas(5, algorithm="batch"), cc.Hparams(), 2),
              "samples")


def test_bad_restart_arguments():
    keys = jax.random.split(jax.random.key(0), 3)
    _no_trace(lambda: cc.restarts(keys, X30, cc.kmeans(3), cc.Hparams(), 2, criterion="silhouette"), "criterion")
    _no_trace(lambda: cc.restarts(jax.random.key(0), X30, cc.kmeans(3), cc.Hparams(), 2), "keys")


def test_kept_sums_follow_relabellings_and_compensate_rounding():
    """Lloyd's kept sums (batch.updated_sums) after 200 rounds of random relabellings equal the sums
    of the final labels (float64 truth) to 1e-6 of their scale; plain float32 adding and taking
    away drifts past that here (the compensation is what holds it), and the member counts are exact."""
    from compclust.algorithms import batch

    rng = np.random.default_rng(0)
    n, d, k = 3000, 20, 8
    X = (rng.normal(size=(n, d)) * 100 + 1000).astype(np.float32)
    labels = rng.integers(0, k, n).astype(np.int32)
    onehot = np.eye(k)[labels]
    kept = batch.KeptSums(jax.numpy.asarray(labels), jax.numpy.asarray((onehot.T @ X).astype(np.float32)),
                          jax.numpy.zeros((k, d)), jax.numpy.asarray(onehot.sum(0), np.float32), None)
    update = jax.jit(batch.updated_sums)
    plain = np.asarray(kept.sums).copy()
    for _ in range(200):
        new = labels.copy()
        moved = rng.choice(n, 300, replace=False)
        new[moved] = rng.integers(0, k, 300)
        kept = update(jax.numpy.asarray(X), jax.numpy.asarray(new), kept)
        for i in moved[new[moved] != labels[moved]]:
            plain[new[i]] += X[i]
            plain[labels[i]] -= X[i]
        labels = new
    truth = np.eye(k)[labels].T @ X.astype(np.float64)
    scale = np.abs(truth).max()
    compensated = np.asarray(kept.sums, np.float64) + np.asarray(kept.sums_error, np.float64)
    assert np.abs(compensated - truth).max() <= 1e-6 * scale
    assert np.abs(plain - truth).max() > 1e-6 * scale  # what an uncompensated update would hold
    np.testing.assert_array_equal(np.asarray(kept.labels), labels)
    np.testing.assert_array_equal(np.asarray(kept.members), np.bincount(labels, minlength=k))


@pytest.mark.parametrize("n_clusters", [5, 12])
def test_lloyd_with_kept_sums_equals_full_passes(n_clusters):
    """One block (the kept sums, updated from the changed rows) against row blocks (every epoch a
    full pass): same final labels, iterations and centres to rounding, with and without a tolerance.
    On the way a near-tie may go the other way for an epoch (here epochs 2-3: the kept sums' centres
    were the nearer to a float64 NumPy Lloyd's), so the per-epoch inertia agrees to 1e-4."""
    X, _ = datasets.make_blobs(4000, n_features=6, centers=n_clusters + 3, cluster_std=3.0, random_state=1)
    X = X.astype(np.float32)
    W0 = X[np.random.default_rng(1).choice(len(X), n_clusters, replace=False)]
    for tol in (None, 0.0):
        kept = cc.fit(jax.random.key(0), X, cc.kmeans(n_clusters), cc.Hparams(), 60, init=W0, tol=tol)
        full = cc.fit(jax.random.key(0), X, cc.kmeans(n_clusters, chunk_size=3999), cc.Hparams(), 60, init=W0,
                      tol=tol)
        assert int(kept.n_iter) == int(full.n_iter)
        np.testing.assert_array_equal(cc.bmu(cc.kmeans(n_clusters), kept.state.weights, X),
                                      cc.bmu(cc.kmeans(n_clusters), full.state.weights, X))
        np.testing.assert_allclose(kept.state.weights, full.state.weights, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(kept.metrics.inertia, full.metrics.inertia, rtol=1e-4)
