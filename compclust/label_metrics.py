"""Judging a clustering against true labels: contingency table, clustering accuracy (optimal
one-to-one matching), NMI, ARI, Rand index, purity and majority-label accuracy.

Everything is computed in JAX from the contingency table, so a whole sweep's labels ``[S, N]`` are
judged on the device in one call (``label_metrics`` vmaps over any leading axes). The numbers of
classes and clusters are static ints: give them, or let the public functions read them off the
labels on the host (``max + 1``) before anything is traced. Every value agrees with
``sklearn.metrics`` (``accuracy`` with ``scipy.optimize.linear_sum_assignment``); in float32 to
about 1e-6, in float64 (``jax_enable_x64``) to rounding.

The optimal matching is the Hungarian / Jonker-Volgenant shortest augmenting path algorithm
(O(n^3), written with ``lax`` loops), ``linear_sum_assignment``, so it jits and vmaps.

Two tables of functions: ``*_from_table(table)`` take a contingency table ``[n_classes,
n_clusters]`` and are pure and traceable; the label-level functions validate on the host, then run
jitted and vmapped.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


class LabelMetrics(NamedTuple):
    """Agreement of a clustering with true labels; each field ``[...]`` float (the batch shape)."""
    accuracy: jax.Array    # best one-to-one matching of clusters to classes (Hungarian), share of samples
    nmi: jax.Array         # normalized mutual information, arithmetic mean of the entropies (sklearn's default)
    ari: jax.Array         # adjusted Rand index
    rand_index: jax.Array  # unadjusted Rand index (sklearn.metrics.rand_score)
    purity: jax.Array      # each cluster labelled by its majority class = majority-label accuracy


def _float_dtype():
    return jnp.result_type(float)  # float64 under jax_enable_x64, else float32


# ----------------------------------------------------------------------------------------------
# The assignment problem


def _lsa_wide(cost):
    """Min-cost assignment of every row of ``cost [n, m]`` (n <= m) to a distinct column:
    ``[n]`` int32 column of each row. Shortest augmenting paths with potentials (the e-maxx
    formulation of Jonker-Volgenant's Hungarian method); index 0 is a dummy row/column."""
    n, m = cost.shape
    dtype = cost.dtype
    inf = jnp.array(jnp.inf if jnp.issubdtype(dtype, jnp.floating) else jnp.iinfo(dtype).max // 2, dtype)
    a = jnp.zeros((n + 1, m + 1), dtype).at[1:, 1:].set(cost)
    cols = jnp.arange(m + 1)

    def add_row(i, carry):
        u, v, p, way = carry  # potentials [n+1], [m+1]; p[j] row matched to column j (0: none)
        p = p.at[0].set(i)

        def grow(state):  # one Dijkstra step: settle the unused column nearest to the tree
            u, v, p, way, minv, used, j0 = state
            used = used.at[j0].set(True)
            i0 = p[j0]
            cur = a[i0] - u[i0] - v
            better = ~used & (cur < minv)
            minv = jnp.where(better, cur, minv)
            way = jnp.where(better, j0, way)
            masked = jnp.where(used, inf, minv)
            j1 = jnp.argmin(masked)
            delta = masked[j1]
            u = u.at[p].add(jnp.where(used, delta, 0))  # rows of the tree (distinct, p[0] = i)
            v = jnp.where(used, v - delta, v)
            minv = jnp.where(used, minv, minv - delta)
            return u, v, p, way, minv, used, j1

        state = (u, v, p, way, jnp.full(m + 1, inf), jnp.zeros(m + 1, bool), jnp.array(0, jnp.int32))
        state = lax.while_loop(lambda s: s[2][s[6]] != 0, grow, state)  # until a free column is reached
        u, v, p, way, _, _, j0 = state

        def augment(state):  # flip the matching along the path back to the dummy column
            p, j0 = state
            j1 = way[j0]
            return p.at[j0].set(p[j1]), j1

        p, _ = lax.while_loop(lambda s: s[1] != 0, augment, (p, j0))
        return u, v, p, way

    init = (jnp.zeros(n + 1, dtype), jnp.zeros(m + 1, dtype), jnp.zeros(m + 1, jnp.int32),
            jnp.zeros(m + 1, jnp.int32))
    _, _, p, _ = lax.fori_loop(1, n + 1, add_row, init)
    # Column j holds row p[j]; invert to the column of each row (rows are 1..n, dummy 0 dropped).
    col_of_row = jnp.zeros(n + 1, jnp.int32).at[p].set(cols.astype(jnp.int32))
    return col_of_row[1:] - 1


@functools.partial(jax.jit, static_argnames="maximize")
def _lsa(cost, maximize: bool):
    cost = -cost if maximize else cost
    n, m = cost.shape
    if n <= m:
        return jnp.arange(n, dtype=jnp.int32), _lsa_wide(cost)
    row_of_col = _lsa_wide(cost.T)  # more rows than columns: assign the columns, then sort by row
    order = jnp.argsort(row_of_col)
    return row_of_col[order].astype(jnp.int32), order.astype(jnp.int32)


def linear_sum_assignment(cost, maximize: bool = False):
    """``scipy.optimize.linear_sum_assignment`` in JAX (jittable, vmappable): ``(rows, cols)``,
    each ``[min(n, m)]`` int32, rows ascending, minimising (or maximising) ``cost[rows, cols].sum()``
    for ``cost [n, m]``. Ties may be broken differently from SciPy; the optimal total is the same."""
    cost = jnp.asarray(cost)
    if cost.ndim != 2:
        raise ValueError(f"cost must be a 2-D matrix, got shape {cost.shape}")
    if not (jnp.issubdtype(cost.dtype, jnp.floating) or jnp.issubdtype(cost.dtype, jnp.integer)):
        cost = cost.astype(_float_dtype())
    return _lsa(cost, bool(maximize))


# ----------------------------------------------------------------------------------------------
# Metrics of a contingency table (pure, traceable)


def contingency_impl(labels_true, labels_pred, n_classes: int, n_clusters: int):
    """``[n_classes, n_clusters]`` int32: ``table[i, j]`` counts samples of class i in cluster j."""
    flat = labels_true.astype(jnp.int32) * n_clusters + labels_pred.astype(jnp.int32)
    counts = jnp.zeros(n_classes * n_clusters, jnp.int32).at[flat].add(1, mode="drop")
    return counts.reshape(n_classes, n_clusters)


def accuracy_from_table(table):
    """Share of samples on the diagonal after the best one-to-one matching of clusters to classes
    (unmatched clusters, when there are more clusters than classes, count as wrong)."""
    rows, cols = linear_sum_assignment(table, maximize=True)
    total = table.sum()
    return (table[rows, cols].sum() / jnp.maximum(total, 1)).astype(_float_dtype())


def purity_from_table(table):
    """Share of samples in their cluster's majority class (= the accuracy of labelling each cluster
    by its majority class, the usual score when clusters outnumber classes, e.g. SOM units)."""
    return (table.max(axis=0).sum() / jnp.maximum(table.sum(), 1)).astype(_float_dtype())


def _entropy(counts, total):
    p = counts / total
    return -jnp.sum(jax.scipy.special.xlogy(p, p))


def nmi_from_table(table):
    """``MI / mean(H(true), H(pred))`` in nats, as ``sklearn.metrics.normalized_mutual_info_score``:
    1 when both labellings have a single label, 0 when the mutual information is 0."""
    dtype = _float_dtype()
    t = table.astype(dtype)
    total = jnp.maximum(t.sum(), 1)
    a, b = t.sum(axis=1), t.sum(axis=0)
    # MI = sum p_ij log(p_ij / (p_i p_j)), written with counts: log(n_ij N / (a_i b_j)).
    outer = jnp.maximum(a[:, None] * b[None, :], 1)
    mi = jnp.sum(jnp.where(t > 0, t / total * (jnp.log(jnp.maximum(t, 1)) + jnp.log(total) - jnp.log(outer)), 0))
    mi = jnp.maximum(mi, 0)  # sklearn clips rounding below 0
    h_true, h_pred = _entropy(a, total), _entropy(b, total)
    single = (jnp.sum(a > 0) <= 1) & (jnp.sum(b > 0) <= 1)  # no split on either side: a perfect match
    normalizer = (h_true + h_pred) / 2
    value = jnp.where(mi > 0, mi / jnp.where(normalizer > 0, normalizer, 1), 0)
    return jnp.where(single, jnp.ones((), dtype), value).astype(dtype)


def _pair_counts(table):
    """sklearn's pair confusion matrix (ordered pairs): ``tn, fp, fn, tp`` as floats, and whether
    fp == 0 (every cluster within one class) and fn == 0 (every class within one cluster), decided
    exactly from the table's structure rather than from rounded float sums."""
    dtype = _float_dtype()
    t = table.astype(dtype)
    n = t.sum()
    a, b = t.sum(axis=1), t.sum(axis=0)
    sum_squares = jnp.sum(t * t)
    tp = sum_squares - n
    fp = jnp.sum(b * b) - sum_squares
    fn = jnp.sum(a * a) - sum_squares
    tn = n * n - fp - fn - sum_squares
    no_fp = jnp.all(jnp.sum(table > 0, axis=0) <= 1)
    no_fn = jnp.all(jnp.sum(table > 0, axis=1) <= 1)
    return tn, fp, fn, tp, no_fp, no_fn


def ari_from_table(table):
    """``sklearn.metrics.adjusted_rand_score``: 1 when fp = fn = 0, else
    ``2 (tp tn - fn fp) / ((tp + fn)(fn + tn) + (tp + fp)(fp + tn))``."""
    tn, fp, fn, tp, no_fp, no_fn = _pair_counts(table)
    n = table.sum().astype(tn.dtype)
    # Scaled by 1/N^2 so that float32 products stay well inside range and keep their precision.
    s = 1 / jnp.maximum(n * n, 1)
    tn, fp, fn, tp = tn * s, fp * s, fn * s, tp * s
    denominator = (tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)
    value = 2 * (tp * tn - fn * fp) / jnp.where(denominator != 0, denominator, 1)
    return jnp.where(no_fp & no_fn, jnp.ones((), tn.dtype), value)


def rand_index_from_table(table):
    """``sklearn.metrics.rand_score``: share of sample pairs on which the labellings agree (1 for
    fewer than two samples)."""
    tn, fp, fn, tp, no_fp, no_fn = _pair_counts(table)
    n = table.sum().astype(tn.dtype)
    pairs = n * (n - 1)
    value = 1 - (fp + fn) / jnp.where(pairs > 0, pairs, 1)  # = (tp + tn) / pairs, with less rounding
    return jnp.where((pairs > 0) & ~(no_fp & no_fn), value, jnp.ones((), tn.dtype))


def metrics_from_table(table) -> LabelMetrics:
    """All of ``LabelMetrics`` from one contingency table ``[n_classes, n_clusters]``."""
    return LabelMetrics(accuracy=accuracy_from_table(table), nmi=nmi_from_table(table),
                        ari=ari_from_table(table), rand_index=rand_index_from_table(table),
                        purity=purity_from_table(table))


def majority_labels_from_table(table):
    """``[n_clusters]`` int32: the majority class of each cluster (lowest class on ties; class 0
    for an empty cluster). ``majority_labels[labels_pred]`` turns a clustering into predictions."""
    return jnp.argmax(table, axis=0).astype(jnp.int32)


# ----------------------------------------------------------------------------------------------
# Label-level API: validated on the host, then jitted and vmapped over leading axes


def _is_traced(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def _check_labels(labels, what: str, n_max: int | None, name_of_n: str):
    """Integer labels ``[..., N]``, non-negative and below ``n_max``; returns ``(labels, n)`` with
    ``n`` the static number of labels (``n_max`` or ``max + 1`` read on the host)."""
    if _is_traced(labels):
        if n_max is None:
            raise ValueError(f"{name_of_n} must be given as an int when {what} are traced (inside jit/vmap)")
        if not jnp.issubdtype(labels.dtype, jnp.integer):
            raise ValueError(f"{what} must be integers, got dtype {labels.dtype}")
        return labels, int(n_max)
    try:
        array = labels if isinstance(labels, jax.Array) else np.asarray(labels)
    except Exception as err:
        raise ValueError(f"{what} could not be read as an array: {err}") from None
    if array.dtype == bool or not np.issubdtype(np.dtype(array.dtype), np.integer):
        raise ValueError(f"{what} must be integer labels 0..n-1, got dtype {array.dtype}")
    if array.ndim == 0:
        raise ValueError(f"{what} must have a sample axis [..., N], got a scalar")
    if array.shape[-1] == 0:
        raise ValueError(f"{what} is empty (zero samples)")
    low, high = (int(v) for v in (array.min(), array.max()))  # one reduction each, on the device if there
    if low < 0:
        raise ValueError(f"{what} must be non-negative labels 0..n-1, got {low}")
    if n_max is not None:
        if isinstance(n_max, (bool, np.bool_)) or not isinstance(n_max, (int, np.integer)) or n_max < 1:
            raise ValueError(f"{name_of_n} must be a positive int, got {n_max!r}")
        if high >= n_max:
            raise ValueError(f"{what} holds label {high} but {name_of_n}={n_max} (labels must be < {n_max})")
        return array, int(n_max)
    return array, high + 1


def _check_pair(labels_true, labels_pred, n_classes, n_clusters):
    labels_true, n_classes = _check_labels(labels_true, "labels_true", n_classes, "n_classes")
    labels_pred, n_clusters = _check_labels(labels_pred, "labels_pred", n_clusters, "n_clusters")
    t_shape, p_shape = tuple(labels_true.shape), tuple(labels_pred.shape)
    if t_shape[-1] != p_shape[-1]:
        raise ValueError(f"labels_true has {t_shape[-1]} samples but labels_pred has {p_shape[-1]}")
    if len(t_shape) > 1 and t_shape[:-1] != p_shape[:len(t_shape) - 1] and t_shape != p_shape:
        raise ValueError(f"labels_true {t_shape} must be [N] or share labels_pred's leading axes {p_shape}")
    if len(t_shape) > len(p_shape):
        raise ValueError(f"labels_true {t_shape} has more axes than labels_pred {p_shape}")
    return labels_true, labels_pred, n_classes, n_clusters


@functools.partial(jax.jit, static_argnames=("n_classes", "n_clusters", "what"))
def _batched(labels_true, labels_pred, *, n_classes, n_clusters, what):
    """``what(table)`` for every labelling in ``labels_pred [..., N]`` (labels_true ``[N]`` or
    ``[..., N]``), vmapped over the flattened leading axes."""
    batch = labels_pred.shape[:-1]
    n = labels_pred.shape[-1]
    true = jnp.broadcast_to(labels_true, labels_pred.shape).reshape(-1, n)
    pred = labels_pred.reshape(-1, n)

    def one(t, p):
        return _FROM_TABLE[what](contingency_impl(t, p, n_classes, n_clusters))

    out = jax.vmap(one)(true, pred)
    return jax.tree.map(lambda x: x.reshape(batch + x.shape[1:]), out)


_FROM_TABLE = {
    "contingency": lambda table: table,
    "majority_labels": majority_labels_from_table,
    "all": metrics_from_table,
}


def _run(what, labels_true, labels_pred, n_classes, n_clusters):
    # The single metrics read their field off "all": one compiled program per shape serves them all
    # (compiling the assignment loops costs ~1 s; running them on a K x K table, microseconds).
    labels_true, labels_pred, n_classes, n_clusters = _check_pair(labels_true, labels_pred, n_classes, n_clusters)
    return _batched(labels_true, labels_pred, n_classes=n_classes, n_clusters=n_clusters, what=what)


def contingency(labels_true, labels_pred, n_classes: int | None = None, n_clusters: int | None = None):
    """Contingency table ``[..., n_classes, n_clusters]`` int32 of integer labels ``[..., N]``
    (classes 0..n_classes-1, clusters 0..n_clusters-1; read off the labels when not given)."""
    return _run("contingency", labels_true, labels_pred, n_classes, n_clusters)


def accuracy(labels_true, labels_pred, n_classes: int | None = None, n_clusters: int | None = None):
    """Clustering accuracy: the share of samples on the diagonal after the optimal one-to-one
    matching of clusters to classes (``scipy.optimize.linear_sum_assignment`` on the contingency
    table, here in JAX). 1.0 for any relabelling of the true labels."""
    return _run("all", labels_true, labels_pred, n_classes, n_clusters).accuracy


def nmi(labels_true, labels_pred, n_classes: int | None = None, n_clusters: int | None = None):
    """Normalized mutual information, arithmetic normalisation
    (``sklearn.metrics.normalized_mutual_info_score``'s default)."""
    return _run("all", labels_true, labels_pred, n_classes, n_clusters).nmi


def ari(labels_true, labels_pred, n_classes: int | None = None, n_clusters: int | None = None):
    """Adjusted Rand index (``sklearn.metrics.adjusted_rand_score``)."""
    return _run("all", labels_true, labels_pred, n_classes, n_clusters).ari


def rand_index(labels_true, labels_pred, n_classes: int | None = None, n_clusters: int | None = None):
    """Unadjusted Rand index (``sklearn.metrics.rand_score``)."""
    return _run("all", labels_true, labels_pred, n_classes, n_clusters).rand_index


def purity(labels_true, labels_pred, n_classes: int | None = None, n_clusters: int | None = None):
    """Purity: ``sum_j max_i table[i, j] / N``, each cluster labelled by its majority class."""
    return _run("all", labels_true, labels_pred, n_classes, n_clusters).purity


def majority_accuracy(labels_true, labels_pred, n_classes: int | None = None, n_clusters: int | None = None):
    """Accuracy of predicting each sample's class as its cluster's majority class, the usual score
    when clusters outnumber classes (a 10x10 SOM's 100 units against 10 digits). It is purity by
    another name; the one-to-one ``accuracy`` would leave 90 of the 100 units unmatched."""
    return _run("all", labels_true, labels_pred, n_classes, n_clusters).purity


def majority_labels(labels_true, labels_pred, n_classes: int | None = None, n_clusters: int | None = None):
    """``[..., n_clusters]`` int32: the majority class of each cluster (lowest on ties, 0 if empty)."""
    return _run("majority_labels", labels_true, labels_pred, n_classes, n_clusters)


def label_metrics(labels_true, labels_pred, n_classes: int | None = None,
                  n_clusters: int | None = None) -> LabelMetrics:
    """Accuracy, NMI, ARI, Rand index and purity of ``labels_pred`` against ``labels_true``.

    labels_true: ``[N]`` integer classes (or ``[..., N]`` with labels_pred's leading axes).
    labels_pred: ``[N]`` integer clusters, or a batch ``[..., N]`` (a sweep's ``[S, N]``): every
      labelling is judged on the device in one compiled, vmapped call; fields then have shape ``[...]``.
    n_classes, n_clusters: static ints; read off the labels (``max + 1``) when not given. Give
      ``n_clusters`` (e.g. K) when some clusters may be empty, so tables have the same shape across calls.
    Raises ValueError for labels of different lengths, negative or non-integer labels.
    """
    return _run("all", labels_true, labels_pred, n_classes, n_clusters)
