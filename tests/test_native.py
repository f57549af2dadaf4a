"""compclust.native: the online epoch as a C++ loop (XLA FFI) against the XLA scan it replaces,
the switch that turns it on, and what happens where it cannot be built. (MiniSom parity under
both is in tests/test_parity.py, through the ``engine`` fixture.)"""
import warnings

import jax
import numpy as np
import pytest

import compclust as cc
from compclust import native

pytestmark = pytest.mark.skipif(not native.available(), reason="compclust.native did not build here")


@pytest.fixture
def digits():
    X, _ = cc.data.load_digits()
    return cc.transform(cc.fit_scaler(X, "minmax"), X).astype(np.float32)


def both(fn):
    """``fn()`` with the XLA scan, then with the native loop."""
    try:
        native.use(False)
        xla = fn()
        native.use(True)
        return xla, fn()
    finally:
        native.use(None)


SPECS = [cc.som((10, 10)), cc.som((6, 7), topology="hexagonal"), cc.som((5, 6), toroidal=True),
         cc.som((12,), kernel="triangle"), cc.som((3, 3, 3)), cc.som((5, 5), kernel="cut_gaussian"),
         cc.som((5, 6), kernel="bubble"), cc.som((4, 5), kernel="mexican_hat", lr_schedule="linear"),
         cc.som((7, 7), sigma_schedule="exponential", lr_schedule="inverse_time"), cc.competitive_layer(7)]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.kernel}-{s.grid and s.grid.topology}-{s.n_units}")
def test_native_epoch_is_the_xla_scan(digits, spec):
    """Same winners at every step, the same distances and weights to float rounding, for every
    grid kernel, topology, dimension and schedule the native loop takes."""
    X = digits[:600]
    W0 = X[np.random.default_rng(3).choice(len(X), spec.n_units, replace=False)]
    hp = cc.Hparams(lr=0.5, lr_final=0.01, sigma=2.5, sigma_final=0.5)
    if spec.kernel == "mexican_hat":  # it repels units beyond sigma: a regime that does not diverge
        hp = cc.Hparams(lr=0.01, lr_final=0.0, sigma=0.8, sigma_final=0.8)
    xla, fast = both(lambda: cc.fit(jax.random.key(1), X, spec, hp, 3, init=W0, trace=True))
    np.testing.assert_array_equal(fast.trace.winner, xla.trace.winner)
    np.testing.assert_allclose(fast.trace.distance, xla.trace.distance, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fast.state.weights, xla.state.weights, atol=1e-5)
    assert int(fast.state.step) == int(xla.state.step) == 3 * len(X)
    np.testing.assert_allclose(fast.metrics.quantization_error, xla.metrics.quantization_error, rtol=1e-5)
    assert np.abs(np.asarray(fast.state.weights)).max() < 10


@pytest.mark.parametrize("n_units,data", [(1, "blobs"), (5, "blobs"), (9, "blobs"), (6, "digits")])
def test_native_conscience_epoch_is_the_xla_scan(n_units, data, digits):
    """neurolab's conscience rule (train_cwta) as the native loop: the same winners, consciences and
    weights as the XLA scan, over epochs (each resets the consciences to 1); 3 features (a
    compile-time count) and 64 (counted at run time)."""
    points = cc.data.make_blobs(1)[0] if data == "blobs" else digits[:400]
    X = cc.transform(cc.fit_scaler(points, "global_norm"), points).astype(np.float32)
    spec, hp = cc.competitive_layer(n_units, winner="conscience"), cc.Hparams(lr=0.05)
    W0 = X[np.random.default_rng(2).choice(len(X), n_units, replace=False)]
    xla, fast = both(lambda: cc.fit(jax.random.key(2), X, spec, hp, 4, init=W0, trace=True))
    np.testing.assert_array_equal(fast.trace.winner, xla.trace.winner)
    np.testing.assert_allclose(fast.trace.distance, xla.trace.distance, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fast.state.weights, xla.state.weights, atol=1e-6)
    np.testing.assert_array_equal(fast.state.conscience, xla.state.conscience)


@pytest.mark.parametrize("n_features", [2, 12])
def test_native_conscience_decides_float32_ties_as_the_xla_scan(n_features):
    """The native search ranks conscience^2 |x - w|^2; where that and the scan's float32
    conscience * |x - w| disagree (a tie in float32 that squaring breaks), the scan's rule decides.
    Step 1 gives unit 0 a conscience of 2 without moving it; at step 2 unit 0 scores
    2 * sqrt(1 + 2^-23) = 2.0 in float32 and unit 1 scores 1 * sqrt(4) = 2.0: the first, unit 0,
    wins, where the squares (4 + 2^-21 against 4) would pick unit 1."""
    W0 = np.zeros((2, n_features), np.float32)
    W0[0, :2], W0[1, 0] = (1.0, 3e-4), 2.0
    X = np.stack([W0[0], np.zeros(n_features, np.float32)])
    spec, hp = cc.competitive_layer(2, winner="conscience"), cc.Hparams(lr=0.5)
    xla, fast = both(lambda: cc.fit(jax.random.key(0), X, spec, hp, 1, init=W0, order=np.arange(2), trace=True))
    assert xla.trace.winner.tolist() == [[0, 0]]
    np.testing.assert_array_equal(fast.trace.winner, xla.trace.winner)
    np.testing.assert_array_equal(fast.state.weights, xla.state.weights)


def test_native_runs_only_where_it_applies():
    assert native.applies(cc.som((3, 3)), np.float32)
    assert not native.applies(cc.som((3, 3), algorithm="batch"), np.float32)
    assert not native.applies(cc.som((3, 3), dtype="float64"), np.float64)
    assert native.applies(cc.competitive_layer(3, winner="conscience"), np.float32)  # neurolab's rule
    assert not native.applies(cc.som((3, 3), winner="conscience"), np.float32)
    assert not native.applies(cc.competitive_layer(3, winner="desieno"), np.float32)
    assert not native.applies(cc.competitive_layer(3, winner="softmax"), np.float32)
    assert not native.applies(cc.neural_gas(4), np.float32)
    assert not native.applies(cc.kmeans(3, algorithm="online"), np.float32)  # MacQueen's per-unit counts
    assert not native.applies(cc.som((3, 3), activation="cosine"), np.float32)


@jax.debug_key_reuse(False)
def test_native_sweeps_equal_native_fits_and_repeat_bit_for_bit(digits):
    """Seeds one after another (lax.map) and in lockstep (vmap, the FFI call made per seed): each
    equals its own fit; the same key gives the same bits."""
    X, spec, hp = digits[:400], cc.som((4, 4)), cc.Hparams(lr=0.4, sigma=2.0)

    def keys():
        return jax.random.split(jax.random.key(5), 3)

    native.use(True)
    try:
        fits = [cc.fit(keys()[i], X, spec, hp, 2) for i in range(3)]
        for group_size in (1, 3):
            swept = cc.sweep(keys(), X, spec, hp, 2, group_size=group_size)
            for i, one in enumerate(fits):
                np.testing.assert_allclose(swept.state.weights[i], one.state.weights, atol=1e-6)
        again = cc.fit(keys()[0], X, spec, hp, 2)
        np.testing.assert_array_equal(again.state.weights, fits[0].state.weights)
        chunked = cc.fit(keys()[0], X, spec, hp, 2, progress=True)
        np.testing.assert_array_equal(chunked.state.weights, fits[0].state.weights)
    finally:
        native.use(None)


def test_native_follows_fast_cpu_loops(monkeypatch):
    """Unless set with use(), the native loop is on exactly where fast_cpu_loops' flag is."""
    native.use(None)
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=1000")
    assert native.active()
    monkeypatch.setenv("XLA_FLAGS", "")
    assert not native.active()
    native.use(True)
    try:
        assert native.active()
    finally:
        native.use(None)


def test_a_kernel_that_does_not_build_warns_and_leaves_the_xla_scan(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", "/bin/false")
    monkeypatch.setenv("COMPCLUST_CACHE_DIR", str(tmp_path))
    native.available.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="did not build"):
            assert not native.available()
        native.use(True)
        assert not native.active()
        assert not list(tmp_path.glob("*.so"))  # nothing half-written left in the cache
    finally:
        native.use(None)
        monkeypatch.undo()
        native.available.cache_clear()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert native.available()


@pytest.mark.parametrize("spec", [cc.som((10, 10)), cc.som((5, 6), toroidal=True, kernel="bubble")],
                         ids=["gaussian", "bubble-torus"])
def test_native_threads_split_the_units_with_the_same_bits(digits, spec, monkeypatch):
    """The units split over two threads (as fit does for maps larger than a core's cache) give the
    bits of one thread, near ties included (the toroidal bubble map is full of them)."""
    X = digits[:700]
    W0 = X[np.random.default_rng(4).choice(len(X), spec.n_units, replace=False)]
    hp = cc.Hparams(lr=0.5, sigma=2.0)
    runs = []
    native.use(True)
    try:
        for threads in (1, 2, 3):
            monkeypatch.setattr(native, "threads_for", lambda spec, n_features, threads=threads: threads)
            runs.append(cc.fit(jax.random.key(3), X, spec, hp, 2, init=W0, trace=True))
    finally:
        native.use(None)
    for other in runs[1:]:
        np.testing.assert_array_equal(other.state.weights, runs[0].state.weights)
        np.testing.assert_array_equal(other.trace.winner, runs[0].trace.winner)
