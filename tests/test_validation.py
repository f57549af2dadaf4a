"""Bad input gets a ValueError naming the problem, raised before anything is compiled."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import compclust as cc
from compclust import loop

GOOD = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
SOM = cc.som((2, 3))
HP = cc.Hparams(lr=0.5, sigma=1.0)


def fit(data=GOOD, spec=SOM, hp=HP, n_epochs=1, **kw):
    return cc.fit(jax.random.key(0), data, spec, hp, n_epochs, **kw)


def with_value(row, col, value):
    bad = GOOD.copy()
    bad[row, col] = value
    return bad


@pytest.mark.parametrize("data,match", [
    (with_value(3, 1, np.nan), r"non-finite.*row 3, column 1"),
    (with_value(0, 2, np.inf), "non-finite"),
    (with_value(5, 0, -np.inf), "non-finite"),
    (GOOD[0], "must be 2-D"),
    (GOOD[None], "must be 2-D"),
    (np.zeros((0, 3), np.float32), "zero samples"),
    (np.zeros((5, 0), np.float32), "zero features"),
    (GOOD.astype(bool), "real numbers"),
    (GOOD.astype(np.complex64), "real numbers"),
    (np.array([["a", "b"], ["c", "d"]]), "real numbers"),
    ([[1.0, 2.0], [3.0]], "could not be read"),
])
def test_bad_data_is_named(data, match):
    before = loop.TRACE_COUNT["fit"]
    with pytest.raises(ValueError, match=match):
        fit(data)
    assert loop.TRACE_COUNT["fit"] == before  # raised before any tracing/compilation


@pytest.mark.parametrize("sharded", [False, True])
def test_non_finite_jax_arrays_are_named(sharded):
    """Device arrays are checked where they live (on a CPU, read in place), whole or split over devices."""
    bad = jnp.asarray(with_value(4, 2, np.inf))
    if sharded:
        mesh = jax.sharding.Mesh(np.array(jax.devices()[:2]), ("rows",))
        bad = jax.device_put(bad[:len(bad) // 2 * 2], jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("rows")))
    with pytest.raises(ValueError, match=r"non-finite.*row 4, column 2"):
        fit(bad)


def test_integer_data_is_accepted():
    assert fit(np.arange(60).reshape(20, 3)).state.weights.dtype == np.float32


def test_more_units_than_samples():
    with pytest.raises(ValueError, match="only 4 samples"):
        fit(GOOD[:4], spec=cc.som((3, 3)))
    with pytest.raises(ValueError, match="only 4 samples"):
        fit(GOOD[:4], spec=cc.competitive_layer(5), init="kmeans++")
    # possible with initial weights that do not come from the samples
    assert fit(GOOD[:4], spec=cc.som((3, 3)), init="pca").state.weights.shape == (9, 3)


@pytest.mark.parametrize("shape", [(0, 3), (3, -1), (2.5, 2), (1, 2, 3, 4), (), (True, 2)])
def test_non_positive_or_bad_grid_sizes(shape):
    with pytest.raises(ValueError, match="grid"):
        cc.som(shape)


@pytest.mark.parametrize("make,match", [
    (lambda: cc.competitive_layer(0), "n_units"),
    (lambda: cc.som((3, 3), topology="triangular"), "topology"),
    (lambda: cc.som((3, 3, 3), topology="hexagonal"), "hexagonal grid must be 2-D"),
    (lambda: cc.som((4, 3), topology="hexagonal", toroidal=True), "even number of rows"),
    (lambda: cc.som((3, 3), kernel="cosine"), "kernel"),
    (lambda: cc.competitive_layer(3, activation="relu"), "activation"),
    (lambda: cc.competitive_layer(3, winner="best"), "winner"),
    (lambda: cc.som((3, 3), lr_schedule="cosine"), "lr_schedule"),
    (lambda: cc.Spec(n_units=4, kernel="gaussian"), "needs a grid"),
    (lambda: cc.Spec(n_units=5, grid=cc.Grid((2, 2))), "has 4 units"),
    (lambda: cc.competitive_layer(3, winner="conscience", activation="cosine"), "Euclidean"),
    (lambda: cc.competitive_layer(3, dtype="float16"), "dtype"),
])
def test_bad_specs(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("hp,spec,match", [
    (cc.Hparams(lr=np.nan), SOM, "lr must be finite"),
    (cc.Hparams(lr=0.0), SOM, "lr must be > 0"),
    (cc.Hparams(lr=0.5, sigma=-1.0), SOM, "sigma must be > 0"),
    (cc.Hparams(lr=0.5, temperature=0.0), cc.competitive_layer(3, winner="softmax"), "temperature"),
    (cc.Hparams(lr=0.5, lr_final=0.0), cc.competitive_layer(3, lr_schedule="exponential"), "lr_final"),
    (cc.Hparams(lr=np.array([0.1, 0.2])), SOM, "scalar"),
    (cc.Hparams(lr="fast"), SOM, "must be a number"),
    ({"lr": 0.5}, SOM, "compclust.Hparams"),
])
def test_bad_hparams(hp, spec, match):
    with pytest.raises(ValueError, match=match):
        fit(spec=spec, hp=hp)


def test_bad_sweep_hparams_and_keys():
    keys = jax.random.split(jax.random.key(0), 2)
    with pytest.raises(ValueError, match="share one length"):
        cc.sweep(keys, GOOD, SOM, cc.Hparams(lr=np.array([0.1, 0.2]), sigma=np.array([1.0, 2.0, 3.0])), 1)
    with pytest.raises(ValueError, match="1-D array of keys"):
        cc.sweep(jax.random.key(0), GOOD, SOM, HP, 1)
    with pytest.raises(ValueError, match="jax.random.key"):
        cc.fit(0, GOOD, SOM, HP, 1)


@pytest.mark.parametrize("kw,match", [
    ({"n_epochs": 0}, "n_epochs"),
    ({"n_epochs": 2.0}, "n_epochs"),
    ({"init": "zeros"}, "unknown initializer"),
    ({"init": np.zeros((6, 4), np.float32)}, r"initial weights must have shape \(6, 3\)"),
    ({"init": np.full((6, 3), np.nan, np.float32)}, "non-finite"),
    ({"order": np.array([0, 1, 20])}, "outside"),
    ({"order": np.array([0.0, 1.0])}, "integer"),
    ({"order": np.zeros((3, 5), int)}, "n_epochs=1"),
    ({"order": np.zeros((0,), int)}, "n_steps >= 1"),
])
def test_bad_run_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        fit(**kw)


def test_pca_needs_enough_features():
    with pytest.raises(ValueError, match="init='pca'"):
        fit(GOOD[:, :1], init="pca")


def test_float64_without_x64_is_explained():
    with pytest.raises(ValueError, match="jax_enable_x64"):
        fit(spec=cc.som((2, 3), dtype="float64"))


def test_predict_time_mismatches():
    W = np.zeros((6, 3), np.float32)
    with pytest.raises(ValueError, match="has 4 features but the weights have 3"):
        cc.bmu(SOM, W, np.zeros((5, 4), np.float32))
    with pytest.raises(ValueError, match="has 4 features"):
        cc.distances(W, np.zeros((5, 4), np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        cc.quantize(SOM, W, with_value(0, 0, np.nan))
    with pytest.raises(ValueError, match="weights have 6 units but the spec has 9"):
        cc.evaluate(cc.som((3, 3)), W, GOOD)
    with pytest.raises(ValueError, match="no grid"):
        cc.grid_position(cc.competitive_layer(3), [0])
    with pytest.raises(ValueError, match="unit indices"):
        cc.grid_position(SOM, [7])
