"""K-means: Lloyd against scikit-learn and a NumPy transcription, empty clusters, k-means++ seeding
(the law of the first picks), tolerance, minibatch (Sculley) and online (MacQueen), restarts."""
import jax
import numpy as np
import pytest
from scipy.stats import chisquare
from sklearn import datasets
from sklearn.cluster import KMeans

import compclust as cc
from compclust import initializers

import reference_batch as rb

# jax's key-reuse checker raises a false positive for any vmap of a scan over split keys (see
# tests/test_loop.py); sweeps and restarts are vmapped fits, checked un-vmapped through fit.
NO_KEY_REUSE_CHECK = jax.debug_key_reuse(False)
HP = cc.Hparams()


def pick(tree, i):
    return jax.tree.map(lambda a: a[i], tree)


def data_set(name):
    """(X float32, initial centres C0 float32): the centres are rows of X except where noted."""
    rng = np.random.default_rng(0)
    if name == "blobs":
        X, _ = datasets.make_blobs(300, centers=5, n_features=3, random_state=0)
        k = 5
    elif name == "digits":
        # digits are multiples of 1/16, so distances to centres drawn from the data tie exactly and
        # the winner would depend on each library's rounding; a small jitter removes the ties.
        X = datasets.load_digits().data / 16 + np.random.default_rng(5).uniform(-0.01, 0.01, (1797, 64))
        k = 10
    elif name == "iris":
        X, k = datasets.load_iris().data, 3
    elif name == "anisotropic":
        X, _ = datasets.make_blobs(200, centers=3, random_state=170)
        X, k = X @ np.array([[0.6, -0.6], [-0.4, 0.8]]), 3
    elif name == "empty_cluster":  # a centre far from all data: empty at the first iteration
        X, _ = datasets.make_blobs(100, centers=3, n_features=2, random_state=1)
        C0 = np.vstack([X[:3], [[100.0, 100.0]]])
        return X.astype(np.float32), C0.astype(np.float32)
    X = X.astype(np.float32)
    return X, X[rng.choice(len(X), k, replace=False)]


def sklearn_lloyd(X, C0, max_iter=100, tol=0.0):
    """scikit-learn's Lloyd from C0 on the same float32 numbers, computed in float64."""
    return KMeans(len(C0), init=C0.astype(np.float64), n_init=1, algorithm="lloyd", tol=tol,
                  max_iter=max_iter).fit(X.astype(np.float64))


DATA_SETS = ["blobs", "digits", "iris", "anisotropic", "empty_cluster"]


@pytest.mark.parametrize("name", DATA_SETS)
def test_reference_lloyd_is_sklearns_lloyd(name):
    # The transcription itself, before compclust is held to it.
    X, C0 = data_set(name)
    km = sklearn_lloyd(X, C0)
    C, n_iter, history = rb.lloyd_fit(X, C0, 100, tol=0.0)
    assert n_iter == km.n_iter_
    np.testing.assert_array_equal(rb.nearest(X, C), km.labels_)
    np.testing.assert_allclose(C, km.cluster_centers_, atol=1e-12)
    np.testing.assert_allclose(history[-1], km.inertia_, rtol=1e-12)


@pytest.mark.parametrize("name", DATA_SETS)
def test_lloyd_matches_sklearn_and_the_reference_from_the_same_centres(name):
    X, C0 = data_set(name)
    km = sklearn_lloyd(X, C0)
    spec = cc.kmeans(len(C0))
    r = cc.fit(jax.random.key(0), X, spec, HP, 100, init=C0, tol=0.0)
    n = int(r.n_iter)
    assert n == km.n_iter_ < 100
    np.testing.assert_array_equal(cc.bmu(spec, r.state.weights, X), km.labels_)
    np.testing.assert_allclose(r.metrics.inertia[-1], km.inertia_, rtol=1e-5)
    np.testing.assert_allclose(r.state.weights, km.cluster_centers_, atol=1e-5)
    # epoch by epoch against the transcription, and the inertia never increases (Lloyd's theorem)
    _, _, history = rb.lloyd_fit(X, C0, n)
    inertia = np.asarray(r.metrics.inertia)
    np.testing.assert_allclose(inertia[:n], history, rtol=1e-5)
    assert np.all(np.diff(inertia) <= 1e-6 * inertia[:-1])


def test_empty_clusters_take_the_farthest_samples_by_hand():
    # Two centres far from everything: both empty. Distances of the samples to their (old) centre
    # (0, 0): 0, 1, 4, 9 (squared). The first empty cluster (index 1) takes x=3 (the farthest), the
    # second (index 2) takes x=2; cluster 0 keeps the mean of 0 and 1.
    X = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0]], np.float32)
    C0 = np.array([[0.0, 0.0], [50.0, 50.0], [-60.0, 40.0]], np.float32)
    r = cc.fit(jax.random.key(0), X, cc.kmeans(3), HP, 1, init=C0)
    np.testing.assert_array_equal(r.state.weights, [[0.5, 0.0], [3.0, 0.0], [2.0, 0.0]])
    np.testing.assert_allclose(rb.lloyd_epoch(X, C0)[0], r.state.weights)
    km = sklearn_lloyd(X, C0, max_iter=1)
    np.testing.assert_allclose(km.cluster_centers_, r.state.weights)
    # Equally far samples: the lowest index goes first. (-1,0) and (1,0) are both at squared distance 1
    # from their centre (0,0), so the empty cluster takes (-1,0). (scikit-learn 1.9's argpartition happens
    # to take (1,0) here: exact ties are left to its selection algorithm, so this rule is compclust's own.)
    X = np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, 0.5]], np.float32)
    C0 = np.array([[0.0, 0.0], [30.0, 30.0]], np.float32)
    r = cc.fit(jax.random.key(0), X, cc.kmeans(2), HP, 1, init=C0)
    np.testing.assert_array_equal(r.state.weights, [[0.5, 0.25], [-1.0, 0.0]])
    np.testing.assert_allclose(rb.lloyd_epoch(X, C0)[0], r.state.weights)


def test_chunked_lloyd_relocates_empty_clusters_like_unchunked():
    # Row blocks with padding (4 rows in blocks of 3; 100 rows in blocks of 7): a padding row must never
    # be taken as the farthest sample.
    X = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0]], np.float32)
    C0 = np.array([[0.0, 0.0], [50.0, 50.0], [-60.0, 40.0]], np.float32)
    r = cc.fit(jax.random.key(0), X, cc.kmeans(3, chunk_size=3), HP, 1, init=C0)
    np.testing.assert_array_equal(r.state.weights, [[0.5, 0.0], [3.0, 0.0], [2.0, 0.0]])
    X, C0 = data_set("empty_cluster")
    km = sklearn_lloyd(X, C0)
    r = cc.fit(jax.random.key(0), X, cc.kmeans(4, chunk_size=7), HP, 100, init=C0, tol=0.0)
    assert int(r.n_iter) == km.n_iter_
    np.testing.assert_allclose(r.state.weights, km.cluster_centers_, atol=1e-5)


# ----------------------------------------------------------------------------- k-means++

SEED_POINTS = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [7.0, 0.5]], np.float32)


def first_two_picks(method, n_keys=20000):
    spec = cc.kmeans(2)
    points = jax.numpy.asarray(SEED_POINTS)
    keys = jax.random.split(jax.random.key(11), n_keys)
    centres = jax.jit(jax.vmap(lambda k: initializers.initialize(method, k, points, spec)))(keys)
    centres = np.asarray(centres)                                       # [n, 2, D]
    index = np.argmin(((centres[:, :, None, :] - SEED_POINTS[None, None]) ** 2).sum(-1), axis=-1)
    assert np.all(np.min(((centres[:, :, None, :] - SEED_POINTS[None, None]) ** 2).sum(-1), -1) == 0)
    counts = np.zeros((4, 4))
    np.add.at(counts, (index[:, 0], index[:, 1]), 1)
    return counts


def chi_square_p(counts, law):
    """Pearson's test over the cells of the law, cells expecting < 5 merged into one."""
    n = counts.sum()
    expected = law.ravel() * n
    observed = counts.ravel()
    assert observed[expected == 0].sum() == 0  # impossible picks never happen
    big, small = expected >= 5, (expected > 0) & (expected < 5)
    obs, exp = observed[big], expected[big]
    if small.any():
        obs, exp = np.r_[obs, observed[small].sum()], np.r_[exp, expected[small].sum()]
    return chisquare(obs, exp).pvalue


@NO_KEY_REUSE_CHECK  # a vmap of a scan over split keys (the same false positive)
@pytest.mark.parametrize("method,greedy", [("kmeans++", True), ("kmeans++_plain", False)])
def test_kmeans_plusplus_first_picks_follow_the_published_law(method, greedy):
    law = rb.second_pick_distribution(SEED_POINTS, greedy)
    other = rb.second_pick_distribution(SEED_POINTS, not greedy)
    counts = first_two_picks(method)
    np.testing.assert_allclose(counts.sum(1) / counts.sum(), 0.25, atol=0.015)  # first centre uniform
    assert chi_square_p(counts, law) > 1e-3
    assert chi_square_p(counts, other) < 1e-6  # the test tells the two variants apart


def test_greedy_candidate_count_is_sklearns():
    assert [rb.n_local_trials(k) for k in (1, 2, 3, 7, 8, 10, 100)] == [2, 2, 3, 3, 4, 4, 6]


# ----------------------------------------------------------------------------- tolerance

@pytest.mark.parametrize("tol", [0.0, 1e-2])
def test_tol_stops_where_sklearn_stops_and_freezes_the_metrics(tol):
    X, C0 = data_set("blobs")
    km = sklearn_lloyd(X, C0, tol=tol)
    C, n_iter, _ = rb.lloyd_fit(X, C0, 100, tol=tol)
    assert n_iter == km.n_iter_
    r = cc.fit(jax.random.key(0), X, cc.kmeans(5), HP, 100, init=C0, tol=tol)
    assert int(r.n_iter) == km.n_iter_ < 100
    np.testing.assert_allclose(r.state.weights, C, atol=1e-5)
    n = int(r.n_iter)
    for name in ("quantization_error", "inertia", "dead_units"):
        m = np.asarray(getattr(r.metrics, name))
        np.testing.assert_array_equal(m[n:], np.full(100 - n, m[n - 1]))
    without = cc.fit(jax.random.key(0), X, cc.kmeans(5), HP, 100, init=C0)
    assert int(without.n_iter) == 100
    if tol == 0:  # stopped at a fixed point: running on changes nothing
        np.testing.assert_allclose(without.state.weights, r.state.weights, atol=1e-5)


@NO_KEY_REUSE_CHECK
def test_sweep_with_tol_equals_fit_with_tol():
    X, _ = data_set("blobs")

    def keys():
        return jax.random.split(jax.random.key(2), 3)

    swept = cc.sweep(keys(), X, cc.kmeans(5), HP, 25, init="random_samples", tol=1e-3)
    assert swept.n_iter.shape == (3,)
    for i in range(3):
        one = cc.fit(keys()[i], X, cc.kmeans(5), HP, 25, init="random_samples", tol=1e-3)
        assert int(swept.n_iter[i]) == int(one.n_iter) < 25
        np.testing.assert_allclose(swept.state.weights[i], one.state.weights, atol=1e-5)
        np.testing.assert_allclose(swept.metrics.inertia[i], one.metrics.inertia, rtol=1e-5)


# ----------------------------------------------------------------------------- minibatch and online

def _orders(rng, n, n_epochs):
    return np.stack([rng.permutation(n) for _ in range(n_epochs)])


@pytest.mark.parametrize("batch_size", [7, 30])
def test_minibatch_kmeans_matches_sculleys_rule(rng, batch_size):
    X = rng.normal(size=(30, 3)).astype(np.float32)
    C0 = X[:4].copy()
    order = _orders(rng, 30, 3)
    r = cc.fit(jax.random.key(0), X, cc.kmeans(4, algorithm="minibatch", batch_size=batch_size), HP, 3,
               init=C0, order=order)
    np.testing.assert_allclose(r.state.weights, rb.minibatch_kmeans_fit(X, C0, order, batch_size), atol=1e-5)


def test_online_kmeans_is_macqueen_and_minibatch_of_one(rng):
    X = rng.normal(size=(30, 3)).astype(np.float32)
    C0 = X[:4].copy()
    order = _orders(rng, 30, 2)
    online = cc.fit(jax.random.key(0), X, cc.kmeans(4, algorithm="online"), HP, 2, init=C0, order=order)
    np.testing.assert_allclose(online.state.weights, rb.online_kmeans_fit(X, C0, order), atol=1e-5)
    one = cc.fit(jax.random.key(0), X, cc.kmeans(4, algorithm="minibatch", batch_size=1), HP, 2, init=C0,
                 order=order)
    np.testing.assert_allclose(one.state.weights, online.state.weights, atol=1e-6)


def test_reference_minibatch_of_n_in_one_epoch_is_lloyd_without_relocation(rng):
    # Sculley's rule with B = N and counts from 0: every non-empty centre becomes its members' mean.
    X = rng.normal(size=(30, 3))
    C0 = X[:4]
    C = rb.minibatch_kmeans_fit(X, C0, np.arange(30)[None], 30)
    np.testing.assert_allclose(C, rb.lloyd_epoch(X, C0)[0], atol=1e-12)


# ----------------------------------------------------------------------------- restarts

@NO_KEY_REUSE_CHECK
def test_restarts_keep_the_lowest_inertia_and_every_run():
    X, _ = data_set("blobs")

    def keys():
        return jax.random.split(jax.random.key(9), 6)

    out = cc.restarts(keys(), X, cc.kmeans(5), HP, 6, init="kmeans++")
    final = np.asarray(out.runs.metrics.inertia)[:, -1]
    assert out.runs.metrics.inertia.shape == (6, 6)
    np.testing.assert_allclose(out.scores, final, rtol=1e-6)
    assert int(out.best_index) == int(np.argmin(final))
    for a, b in zip(jax.tree.leaves(out.best), jax.tree.leaves(pick(out.runs, int(out.best_index)))):
        np.testing.assert_array_equal(a, b)
    # runs[i] == fit(keys[i]) is checked on the batch SOM's restarts (tests/test_batch.py)
