"""scikit-learn estimators: every check of check_estimator on each family (tiny maps, two epochs),
a grid search over a SOM's sigma, a Pipeline, partial_fit continuing the schedules, random_state
mapped onto the functional API's key, fit_many over seeds, input casting and bad input."""
import os

import jax
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import compclust as cc
from compclust import estimators as E
from compclust.schedules import asymptotic

# Small configurations: check_estimator fits each one on ~16 data shapes, and every new shape
# compiles a new program (~1 s of XLA:CPU each), so one configuration per class runs by default
# (~20 s of CPU each). COMPCLUST_ALL_ESTIMATOR_CHECKS=1 adds the batch (hexagonal) and minibatch
# SOMs (both pass). Few units keep check_clustering's "labels 0..n-1 without gaps": a map with more
# units than blobs leaves some units dead, which is normal for a map.
CHECKED = [
    E.SOM((3,), n_epochs=2),
    E.CompetitiveLayer(3, winner="conscience", lr=0.05, n_epochs=2),
    E.KMeans(3, max_iter=5),
    E.MiniBatchKMeans(3, batch_size=16, max_iter=2),
    E.NeuralGas(3, n_epochs=2),
    E.DNNKMeans(3, n_rounds=3, hidden=(8,), dropout=0.0, learning_rate=3e-2, steps_per_round=3),
]
if os.environ.get("COMPCLUST_ALL_ESTIMATOR_CHECKS"):
    CHECKED += [E.SOM((2, 2), topology="hexagonal", algorithm="batch", n_epochs=2),
                E.SOM((3,), algorithm="minibatch", batch_size=8, n_epochs=2)]


def _expected_failed(estimator):
    return E.EXPECTED_FAILED_CHECKS[type(estimator).__name__]


@parametrize_with_checks(CHECKED, expected_failed_checks=_expected_failed)
def test_check_estimator(estimator, check):
    check(estimator)


X_BLOBS, Y_BLOBS = make_blobs(n_samples=60, centers=3, n_features=4, random_state=0)
NO_KEY_REUSE_CHECK = jax.debug_key_reuse(False)  # sweeps: see NO_KEY_REUSE_CHECK in test_loop.py


def test_grid_search_over_a_som_sigma():
    search = GridSearchCV(E.SOM((3, 3), n_epochs=2, random_state=0), {"sigma": [0.3, 1.0, 2.0]}, cv=2)
    search.fit(X_BLOBS)
    assert search.best_params_["sigma"] in (0.3, 1.0, 2.0)
    scores = search.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores)) and np.all(scores < 0)  # minus a quantization error
    assert search.best_estimator_.score(X_BLOBS) == pytest.approx(-search.best_estimator_.quantization_error_)


def test_pipeline_standard_scaler_som():
    pipe = Pipeline([("scale", StandardScaler()), ("som", E.SOM((3, 3), n_epochs=2, random_state=0))])
    labels = pipe.fit_predict(X_BLOBS)
    scaled = StandardScaler().fit_transform(X_BLOBS)
    som = E.SOM((3, 3), n_epochs=2, random_state=0).fit(scaled)
    np.testing.assert_array_equal(labels, som.labels_)
    np.testing.assert_array_equal(pipe.predict(X_BLOBS), som.predict(scaled))
    assert pipe.transform(X_BLOBS).shape == (60, 9)
    assert pipe.score(X_BLOBS) == pytest.approx(som.score(scaled))


def test_random_state_is_the_functional_key_and_attributes_follow_the_run():
    som = E.SOM((3, 3), topology="hexagonal", n_epochs=3, random_state=7).fit(X_BLOBS)
    result = cc.fit(jax.random.key(7), X_BLOBS, som.spec_, som.hparams_, 3)
    np.testing.assert_array_equal(som.cluster_centers_, np.asarray(result.state.weights))
    assert som.weights_.shape == (3, 3, 4) and som.cluster_centers_.shape == (9, 4)
    np.testing.assert_array_equal(som.weights_.reshape(9, 4), som.cluster_centers_)
    assert som.quantization_error_ == float(result.metrics.quantization_error[-1])
    assert som.topographic_error_ == float(result.metrics.topographic_error[-1])
    assert som.inertia_ == float(result.metrics.inertia[-1])
    assert som.n_iter_ == 3 and som.n_features_in_ == 4
    np.testing.assert_array_equal(som.labels_, som.predict(X_BLOBS))
    assert som.labels_.dtype == np.int32 and som.transform(X_BLOBS).shape == (60, 9)
    assert list(som.get_feature_names_out()) == [f"som{i}" for i in range(9)]
    assert som.score(X_BLOBS) == pytest.approx(-som.quantization_error_, rel=1e-6)
    # None and a RandomState draw a seed; a RandomState is advanced, so two fits differ
    rs = np.random.RandomState(0)
    first = E.SOM((3, 3), n_epochs=1, random_state=rs).fit(X_BLOBS).cluster_centers_
    second = E.SOM((3, 3), n_epochs=1, random_state=rs).fit(X_BLOBS).cluster_centers_
    assert not np.array_equal(first, second)


def test_kmeans_equals_scikit_learn_lloyd_from_the_same_centres():
    from sklearn.cluster import KMeans as SKKMeans

    init = X_BLOBS[[0, 1, 2]]
    ours = E.KMeans(3, init=init, max_iter=50, tol=0.0).fit(X_BLOBS)
    ref = SKKMeans(3, init=init, n_init=1, max_iter=50, tol=0.0, algorithm="lloyd").fit(X_BLOBS)
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, atol=1e-4)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-4)
    assert 1 <= ours.n_iter_ <= 50


@NO_KEY_REUSE_CHECK
def test_kmeans_n_init_keeps_the_lowest_inertia_of_one_restarts_call():
    est = E.KMeans(3, n_init=4, max_iter=20, random_state=0).fit(X_BLOBS)
    runs = cc.restarts(jax.random.split(jax.random.key(0), 4), X_BLOBS, est.spec_, est.hparams_, 20, tol=1e-4)
    assert est.inertia_ == pytest.approx(float(np.min(runs.scores)))


def _schedule(v0, t, total):
    return float(asymptotic(v0, None, t, total))


def test_partial_fit_continues_the_state_and_the_schedules():
    batch = X_BLOBS[:20]
    som = E.SOM((2, 2), n_epochs=2, lr=0.5, sigma=1.0, random_state=3)
    som.partial_fit(batch)
    first = som.state_
    assert som.n_steps_ == 20 and som.n_iter_ == 1
    som.partial_fit(batch)
    # the second call is cc.fit resumed from the first: weights, step and the schedules over 2 calls
    again = cc.fit(E.random_key(3, salt=20), batch, som.spec_, som.hparams_, 1, resume=first, total_epochs=2)
    np.testing.assert_array_equal(som.cluster_centers_, np.asarray(again.state.weights))
    assert som.n_steps_ == 40 and som.n_iter_ == 2
    np.testing.assert_allclose(som.metrics_.lr, [_schedule(0.5, 19, 40), _schedule(0.5, 39, 40)], rtol=1e-6)
    np.testing.assert_allclose(som.metrics_.sigma, [_schedule(1.0, 19, 40), _schedule(1.0, 39, 40)], rtol=1e-6)
    som.partial_fit(batch)  # the schedules are spent: lr and sigma stay at their final values
    np.testing.assert_allclose(som.metrics_.lr[-1], 0.5 / 3, rtol=1e-6)
    np.testing.assert_allclose(som.metrics_.sigma[-1], 1.0 / 3, rtol=1e-6)
    assert som.n_steps_ == 60 and som.metrics_.lr.shape == (3,)


def test_partial_fit_after_fit_goes_on_and_minibatch_counts_accumulate():
    km = E.MiniBatchKMeans(3, batch_size=10, max_iter=2, random_state=0).fit(X_BLOBS)
    assert km.state_.counts.sum() == pytest.approx(2 * 60)
    km.partial_fit(X_BLOBS[:30])
    assert km.state_.counts.sum() == pytest.approx(2 * 60 + 30)
    assert km.n_steps_ == 2 * 6 + 3 and km.labels_.shape == (30,)
    stream = E.MiniBatchKMeans(3, batch_size=10, random_state=0)
    for start in range(0, 60, 20):
        stream.partial_fit(X_BLOBS[start:start + 20])
    assert stream.state_.counts.sum() == pytest.approx(60) and stream.n_iter_ == 3
    assert not hasattr(E.SOM(algorithm="batch"), "partial_fit")
    assert not hasattr(E.KMeans(), "partial_fit")
    assert hasattr(E.NeuralGas(algorithm="minibatch"), "partial_fit")


@NO_KEY_REUSE_CHECK
def test_fit_many_returns_the_best_run_and_every_score():
    som = E.SOM((3, 3), n_epochs=2)
    many = som.fit_many(X_BLOBS, seeds=[3, 1, 4, 5])
    assert many.scores.shape == (4,) and many.best_index == int(np.argmax(many.scores))
    assert not hasattr(som, "cluster_centers_")  # the estimator passed in stays unfitted
    best = many.best
    assert best.random_state == [3, 1, 4, 5][many.best_index]
    assert best.score(X_BLOBS) == pytest.approx(many.scores[many.best_index], rel=1e-5)
    refit = clone(best).fit(X_BLOBS)  # run i is fit with random_state=seeds[i] (vmapped: to rounding)
    np.testing.assert_allclose(refit.cluster_centers_, best.cluster_centers_, atol=1e-5)
    km = E.fit_many(E.KMeans(3, max_iter=10, random_state=0), X_BLOBS, seeds=3)
    assert km.scores.shape == (3,) and km.best.inertia_ == pytest.approx(-km.scores.max())


@NO_KEY_REUSE_CHECK
def test_dnn_kmeans_estimator_and_fit_many():
    X = X_BLOBS.astype(np.float32)
    dnn = E.DNNKMeans(3, n_rounds=4, hidden=(8,), steps_per_round=5, learning_rate=3e-2, dropout=0.0, random_state=0)
    dnn.fit(X)
    np.testing.assert_array_equal(dnn.labels_, dnn.predict(X))
    assert dnn.cluster_centers_.shape == (3, 4) and dnn.n_iter_ == 4
    many = dnn.fit_many(X, seeds=[0, 1])
    np.testing.assert_array_equal(many.best.predict(X), many.best.labels_)
    assert many.best.score(X) == pytest.approx(many.scores[many.best_index], rel=1e-5)


def test_input_types_are_cast_to_the_spec_dtype():
    som = E.SOM((2, 2), n_epochs=1, random_state=0)
    as64 = clone(som).fit(X_BLOBS.astype(np.float64))
    as32 = clone(som).fit(X_BLOBS.astype(np.float32))
    np.testing.assert_array_equal(as64.cluster_centers_, as32.cluster_centers_)
    assert as64.cluster_centers_.dtype == np.float32 and as64.transform(X_BLOBS).dtype == np.float32
    ints = clone(som).fit(np.rint(X_BLOBS).astype(np.int64))
    assert ints.cluster_centers_.dtype == np.float32
    lists = clone(som).fit(X_BLOBS.tolist())
    np.testing.assert_array_equal(lists.cluster_centers_, as64.cluster_centers_)


def test_bad_input_gets_clear_errors():
    som = E.SOM((3, 3), n_epochs=1, random_state=0)
    with pytest.raises(NotFittedError):
        som.predict(X_BLOBS)
    bad = X_BLOBS.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clone(som).fit(bad)
    with pytest.raises(ValueError, match="n_samples=5 should be >= n_units=9"):
        clone(som).fit(X_BLOBS[:5])
    fitted = clone(som).fit(X_BLOBS)
    with pytest.raises(ValueError, match="3 features, but SOM is expecting 4"):
        fitted.predict(X_BLOBS[:, :3])
    with pytest.raises(ValueError, match="unknown kernel"):
        E.SOM((3, 3), kernel="nope").fit(X_BLOBS)
    with pytest.raises(ValueError, match="dtype must be one of"):
        E.SOM((3, 3), dtype="float16").fit(X_BLOBS)
    with pytest.raises(ValueError, match="jax_enable_x64"):
        E.SOM((3, 3), dtype="float64").fit(X_BLOBS)
    with pytest.raises(ValueError, match="random_state"):
        E.SOM((3, 3), random_state=-1).fit(X_BLOBS)
    with pytest.raises(ValueError, match="hparams.sigma must be > 0"):
        E.SOM((3, 3), sigma=0.0).fit(X_BLOBS)
    with pytest.raises(ValueError, match="n_init"):
        E.KMeans(3, n_init=0).fit(X_BLOBS)
    with pytest.raises(ValueError, match="seeds"):
        E.fit_many(som, X_BLOBS, seeds=0)


def data_frame(X, columns):
    """A pandas DataFrame, or where pandas is missing a pyarrow Table (scikit-learn reads both)."""
    try:
        import pandas as pd

        return pd.DataFrame(X, columns=columns)
    except ImportError:
        pa = pytest.importorskip("pyarrow")
        return pa.table({name: X[:, i] for i, name in enumerate(columns)})


def test_feature_names_from_a_dataframe():
    frame = data_frame(X_BLOBS, ["a", "b", "c", "d"])
    som = E.SOM((2, 2), n_epochs=1, random_state=0).fit(frame)
    assert list(som.feature_names_in_) == ["a", "b", "c", "d"]
    with pytest.warns(UserWarning, match="feature names"):
        som.predict(X_BLOBS)
