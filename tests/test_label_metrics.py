"""Clustering metrics against labels: sklearn.metrics and scipy's assignment as references,
hand-computed tables, relabelling invariance, batched == single, bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment as scipy_lsa
from sklearn import metrics as skm

import compclust as cc
from compclust import label_metrics as lm


def reference(t, p):
    table = skm.cluster.contingency_matrix(t, p)
    rows, cols = scipy_lsa(table, maximize=True)
    return {"accuracy": table[rows, cols].sum() / len(t), "nmi": skm.normalized_mutual_info_score(t, p),
            "ari": skm.adjusted_rand_score(t, p), "rand_index": skm.rand_score(t, p),
            "purity": table.max(axis=0).sum() / len(t)}


@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (6, 1), (4, 7), (7, 4), (9, 9)])
def test_assignment_matches_scipy_on_random_costs(rng, shape):
    costs = rng.standard_normal((4, *shape)).astype(np.float32)
    rows, cols = jax.vmap(lm.linear_sum_assignment)(costs)
    for cost, r, c in zip(costs, np.asarray(rows), np.asarray(cols)):
        want_rows, want_cols = scipy_lsa(cost)
        np.testing.assert_array_equal(r, want_rows)
        np.testing.assert_array_equal(c, want_cols)  # random floats: the optimum is unique


def test_assignment_maximize_matches_scipy(rng):
    cost = rng.standard_normal((5, 8))
    for matrix in (cost, cost.T):
        rows, cols = lm.linear_sum_assignment(matrix, maximize=True)
        want_rows, want_cols = scipy_lsa(matrix, maximize=True)
        np.testing.assert_array_equal(rows, want_rows)
        np.testing.assert_array_equal(cols, want_cols)


def test_assignment_integer_costs_with_ties_reach_the_optimum(rng):
    solve = jax.jit(jax.vmap(lambda c: lm.linear_sum_assignment(c, maximize=True)))
    costs = rng.integers(0, 4, (20, 8, 8)).astype(np.int32)  # many ties
    rows, cols = solve(costs)
    for cost, r, c in zip(costs, np.asarray(rows), np.asarray(cols)):
        want = scipy_lsa(cost, maximize=True)
        assert len(set(c.tolist())) == 8
        assert cost[r, c].sum() == cost[want].sum()


@pytest.mark.parametrize("n_classes,n_clusters,n", [(10, 10, 2000), (3, 7, 60), (7, 3, 60), (10, 100, 3000),
                                                    (2, 2, 2), (1, 4, 9), (4, 1, 9), (5, 5, 1)])
def test_agrees_with_sklearn_on_random_labellings(rng, n_classes, n_clusters, n):
    t = rng.integers(0, n_classes, n)
    preds = rng.integers(0, n_clusters, (3, n))
    got = cc.evaluate_labels(t, preds, n_classes, n_clusters)  # three labellings in one call
    for i, p in enumerate(preds):
        for name, want in reference(t, p).items():
            assert float(getattr(got, name)[i]) == pytest.approx(want, abs=2e-6), name


def test_agrees_with_sklearn_on_related_labellings(rng):
    t = rng.integers(0, 10, 3000)
    p = np.where(rng.random(3000) < 0.7, (t * 3) % 10, rng.integers(0, 12, 3000))  # a noisy relabelling
    got = cc.evaluate_labels(t, p)  # numbers of classes and clusters read off the labels
    for name, want in reference(t, p).items():
        assert float(getattr(got, name)) == pytest.approx(want, abs=2e-6), name


def test_hand_computed_case():
    # classes 0 0 0 1 1 1, clusters 0 0 1 1 2 2: table [[2, 1, 0], [0, 1, 2]]
    t, p = np.array([0, 0, 0, 1, 1, 1]), np.array([0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(lm.contingency(t, p), [[2, 1, 0], [0, 1, 2]])
    got = lm.label_metrics(t, p)
    assert float(got.accuracy) == pytest.approx(4 / 6)  # clusters 0 -> 0 and 2 -> 1
    assert float(got.purity) == pytest.approx(5 / 6)    # 2 + 1 + 2
    # pairs (15): same class & same cluster 2 (01, 45); different class & different cluster 8;
    # agreements 10 -> Rand 10/15
    assert float(got.rand_index) == pytest.approx(10 / 15)
    # ARI: sum C(n_ij,2) = 2, classes 3 + 3 = 6, clusters 1 + 1 + 1 = 3, expected 6 * 3 / 15 = 1.2
    assert float(got.ari) == pytest.approx((2 - 1.2) / (4.5 - 1.2), abs=1e-6)
    h_t = np.log(2)
    h_p = np.log(3)
    mi = (2 * (2 / 6) * np.log((2 / 6) / (0.5 / 3)) + 2 * (1 / 6) * np.log((1 / 6) / (0.5 / 3)))
    assert float(got.nmi) == pytest.approx(mi / ((h_t + h_p) / 2), abs=1e-6)


def test_special_cases_follow_sklearn():
    one = np.zeros(5, int)
    m = lm.label_metrics(one, one)
    assert [float(v) for v in m] == [1.0] * 5  # no split on either side: a perfect match
    m = lm.label_metrics(np.arange(5), np.arange(5))  # every sample its own cluster
    assert float(m.nmi) == 1.0 and float(m.ari) == 1.0 and float(m.rand_index) == 1.0
    m = lm.label_metrics(one, np.arange(5))
    assert float(m.nmi) == pytest.approx(skm.normalized_mutual_info_score(one, np.arange(5)))
    assert float(m.ari) == pytest.approx(skm.adjusted_rand_score(one, np.arange(5)))


def test_accuracy_is_one_for_any_relabelling(rng):
    t = rng.integers(0, 10, 500)
    for _ in range(5):
        perm = rng.permutation(10)
        m = lm.label_metrics(t, perm[t], 10, 10)
        assert float(m.accuracy) == 1.0 and float(m.purity) == 1.0
        assert float(m.nmi) == pytest.approx(1.0, abs=1e-6) and float(m.ari) == 1.0
    # more clusters than classes: each class split in two is pure but cannot be matched one-to-one
    split = t + 10 * (rng.random(500) < 0.5)
    assert float(lm.purity(t, split)) == 1.0 and float(lm.majority_accuracy(t, split)) == 1.0
    assert float(lm.accuracy(t, split)) < 1.0


def test_majority_labels_and_majority_accuracy_for_many_clusters(rng):
    t = rng.integers(0, 10, 2000)
    units = rng.integers(0, 100, 2000)  # a 10x10 SOM's units
    majority = np.asarray(lm.majority_labels(t, units, 10, 100))
    table = skm.cluster.contingency_matrix(t, units)
    np.testing.assert_array_equal(majority, np.argmax(table, axis=0))
    predicted = majority[units]
    assert float(lm.majority_accuracy(t, units, 10, 100)) == pytest.approx(skm.accuracy_score(t, predicted))
    assert float(lm.nmi(t, units)) == pytest.approx(skm.normalized_mutual_info_score(t, units), abs=2e-6)


def test_batched_equals_single(rng):
    t = rng.integers(0, 10, 700)
    preds = rng.integers(0, 12, (2, 3, 700))
    batched = lm.label_metrics(t, preds, 10, 12)
    assert batched.accuracy.shape == (2, 3)
    assert lm.contingency(t, preds, 10, 12).shape == (2, 3, 10, 12)
    for i in range(2):
        for j in range(3):
            single = lm.label_metrics(t, preds[i, j], 10, 12)
            for name in lm.LabelMetrics._fields:
                assert float(getattr(batched, name)[i, j]) == float(getattr(single, name)), name
    # labels_true may carry the same leading axes
    per_row = lm.label_metrics(np.stack([t, t]), preds[:, 0], 10, 12)
    np.testing.assert_array_equal(per_row.ari, batched.ari[:, 0])


def test_usable_inside_jit_and_vmap(rng):
    t = rng.integers(0, 5, 300)
    preds = rng.integers(0, 5, (4, 300))
    f = jax.jit(jax.vmap(lambda p: lm.metrics_from_table(lm.contingency_impl(jnp.asarray(t), p, 5, 5))))
    out = f(jnp.asarray(preds))
    np.testing.assert_allclose(out.nmi, lm.label_metrics(t, preds, 5, 5).nmi, rtol=1e-6)
    inside = jax.jit(lambda p: lm.ari(jnp.asarray(t), p, 5, 5))(jnp.asarray(preds[0]))
    assert float(inside) == pytest.approx(skm.adjusted_rand_score(t, preds[0]), abs=2e-6)


@pytest.mark.parametrize("t,p,match", [
    (np.zeros(5, int), np.zeros(4, int), "5 samples but labels_pred has 4"),
    (np.array([0, -1, 2]), np.zeros(3, int), "non-negative"),
    (np.zeros(3, int), np.array([0, 1, -2]), "non-negative"),
    (np.zeros(3), np.zeros(3, int), "integer labels"),
    (np.zeros(3, int), np.array([0.0, 1.5, 1.0]), "integer labels"),
    (np.zeros(3, bool), np.zeros(3, int), "integer labels"),
    (np.zeros(0, int), np.zeros(0, int), "empty"),
])
def test_bad_labels_raise(t, p, match):
    with pytest.raises(ValueError, match=match):
        lm.label_metrics(t, p)


def test_label_beyond_the_given_count_raises():
    with pytest.raises(ValueError, match="n_clusters=3"):
        lm.label_metrics(np.zeros(4, int), np.array([0, 1, 2, 3]), 1, 3)
    with pytest.raises(ValueError, match="n_classes must be a positive int"):
        lm.label_metrics(np.zeros(4, int), np.zeros(4, int), 0, 3)
