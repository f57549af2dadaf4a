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
    # unmeasured epochs run on Hamerly's bounds: the same answer
    bounded = cc.fit(jax.random.key(0), X, spec, HP, 100, init=C0, tol=0.0, epoch_metrics=False)
    assert int(bounded.n_iter) == km.n_iter_
    np.testing.assert_array_equal(cc.bmu(spec, bounded.state.weights, X), km.labels_)
    np.testing.assert_allclose(bounded.metrics.inertia[-1], km.inertia_, rtol=1e-5)
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


# ----------------------------------------------------------------------------- Hamerly's bounds

def _bounds_case(name):
    """(X, C0): data sets chosen against the bounds: exact ties, duplicates, a far and a doubled
    centre (empty clusters), more centres than the one-hot sums take, wide rows, a far offset."""
    rng = np.random.default_rng(11)
    if name == "ties":  # small integers: many rows exactly as far from two centres
        X = rng.integers(0, 3, (400, 3)).astype(np.float32)
        return X, X[rng.choice(400, 7, replace=False)]
    if name == "duplicates":  # repeated rows and a doubled centre: an empty cluster at once
        X = np.repeat(rng.normal(size=(60, 5)), 4, axis=0).astype(np.float32)
        return X, np.vstack([X[:5], X[:1]])
    if name == "far_centre":
        return data_set("empty_cluster")
    if name == "many":  # 40 centres: above batch.ONE_HOT_UNITS, the kept sums come from the bounds only
        X, _ = datasets.make_blobs(1500, centers=25, n_features=4, cluster_std=2.0, random_state=3)
        X = X.astype(np.float32)
        return X, X[rng.choice(len(X), 40, replace=False)]
    if name == "wide":  # D > FEW_FEATURES: ranked by |w|^2 - 2 x.w, each row's |x|^2 added after
        X, _ = datasets.make_blobs(800, centers=6, n_features=40, cluster_std=6.0, random_state=4)
        X = X.astype(np.float32)
        return X, X[rng.choice(len(X), 8, replace=False)]
    if name == "offset":  # far from the origin: the rounding of |x|^2 is what the bounds' slack is for
        X, _ = datasets.make_blobs(600, centers=4, n_features=20, random_state=5)
        X = (X + 1000.0).astype(np.float32)
        return X, X[rng.choice(len(X), 5, replace=False)]
    return data_set(name)


@pytest.mark.parametrize("name", ["blobs", "digits", "ties", "duplicates", "far_centre", "many", "wide", "offset"])
def test_lloyd_on_bounds_equals_lloyd_measuring_every_row(name):
    """Unmeasured Lloyd (``epoch_metrics=False``: Hamerly's bounds, only the rows in doubt searched)
    against measured Lloyd (every row's distances every epoch) from the same centres: the same
    labels every epoch, hence the same iterations and, where both keep their sums (K <= 32), the
    same centres bit for bit; with 40 centres the measured run sums in full, so to rounding."""
    X, C0 = _bounds_case(name)
    spec = cc.kmeans(len(C0))
    for tol in (None, 0.0):
        measured = cc.fit(jax.random.key(0), X, spec, HP, 30, init=C0, tol=tol)
        bounded = cc.fit(jax.random.key(0), X, spec, HP, 30, init=C0, tol=tol, epoch_metrics=False)
        assert int(bounded.n_iter) == int(measured.n_iter)
        np.testing.assert_array_equal(cc.bmu(spec, bounded.state.weights, X), cc.bmu(spec, measured.state.weights, X))
        if len(C0) <= 32:
            np.testing.assert_array_equal(bounded.state.weights, measured.state.weights)
            np.testing.assert_array_equal(bounded.metrics.center_shift, measured.metrics.center_shift)
        else:
            np.testing.assert_allclose(bounded.state.weights, measured.state.weights, rtol=1e-5, atol=1e-4)
        last = int(measured.n_iter) - 1
        np.testing.assert_allclose(bounded.metrics.inertia[last:], measured.metrics.inertia[last:], rtol=1e-6)
        assert np.all(np.isnan(bounded.metrics.inertia[:last]))


@pytest.mark.parametrize("wide", [False, True])
def test_bounded_search_finds_every_rows_nearest_centre_as_centres_jump(wide):
    """batch.bounded_search against a full search while the centres move at random, from tiny steps
    to jumps past one another (not Lloyd's steps, so every test of the bounds gets used): the same
    labels every time, and the bounds stay bounds (upper >= distance to the own centre, lower <=
    distance to every other one, to float rounding)."""
    from compclust.algorithms import batch
    from compclust.metrics import row_sq_norms

    rng = np.random.default_rng(7)
    d = 30 if wide else 3
    X = jax.numpy.asarray(rng.normal(size=(700, d)).astype(np.float32))
    spec = cc.kmeans(9)
    row_sq = row_sq_norms(spec, X[None])
    row_sq = None if row_sq is None else row_sq[0]
    full = jax.jit(lambda W: batch.nearest_two(spec, W, X, row_sq))
    search = jax.jit(lambda W, kept: batch.bounded_search(spec, W, X, row_sq, kept))
    W = X[:9]
    found, second = full(W)
    kept = batch.KeptSums(found.best, None, None, None, batch.Bounds(jax.numpy.sqrt(found.sq_error), second, W))
    for step in range(40):
        scale = [1e-4, 1e-2, 0.1, 1.0][step % 4]
        W = W + jax.numpy.asarray(rng.normal(size=W.shape).astype(np.float32) * scale)
        labels, bounds = search(W, kept)
        truth, _ = full(W)
        np.testing.assert_array_equal(labels, truth.best)
        dist = np.sqrt(((np.asarray(X, np.float64)[:, None] - np.asarray(W, np.float64)[None]) ** 2).sum(-1))
        own = dist[np.arange(len(X)), np.asarray(labels)]
        others = np.where(np.arange(9)[None] == np.asarray(labels)[:, None], np.inf, dist).min(1)
        assert np.all(np.asarray(bounds.upper) >= own - 1e-4 * (1 + own))
        assert np.all(np.asarray(bounds.lower) <= others + 1e-4 * (1 + others))
        kept = kept._replace(labels=labels, bounds=bounds)


@NO_KEY_REUSE_CHECK
def test_lloyd_on_bounds_in_lockstep_sweeps_equals_fit():
    """Seeds vmapped in lockstep (group_size > 1, as on a GPU), where each seed's bounds leave a
    different number of rows in doubt: every seed still gets its own fit's answer."""
    X, _ = _bounds_case("wide")

    def keys():
        return jax.random.split(jax.random.key(4), 4)

    spec = cc.kmeans(8)
    swept = cc.sweep(keys(), X, spec, HP, 20, init="kmeans++", tol=0.0, group_size=4, epoch_metrics=False)
    for i in range(4):
        one = cc.fit(keys()[i], X, spec, HP, 20, init="kmeans++", tol=0.0)
        assert int(swept.n_iter[i]) == int(one.n_iter)
        np.testing.assert_array_equal(cc.bmu(spec, swept.state.weights[i], X), cc.bmu(spec, one.state.weights, X))
        np.testing.assert_allclose(swept.state.weights[i], one.state.weights, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(swept.metrics.inertia[i, -1], one.metrics.inertia[-1], rtol=1e-6)


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
    # the choice needs only the last epoch's metrics: unmeasured epochs (on bounds) choose the same run
    fast = cc.restarts(keys(), X, cc.kmeans(5), HP, 6, init="kmeans++", epoch_metrics=False)
    assert int(fast.best_index) == int(out.best_index)
    np.testing.assert_array_equal(fast.best.state.weights, out.best.state.weights)
    np.testing.assert_allclose(fast.scores, out.scores, rtol=1e-6)
    # runs[i] == fit(keys[i]) is checked on the batch SOM's restarts (tests/test_batch.py)
