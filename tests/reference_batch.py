"""Short NumPy transcriptions (float64) of the batch, minibatch, K-means and Neural Gas rules.

Written from the published formulas (Kohonen's batch map, Lloyd with scikit-learn's empty-cluster
relocation, Sculley's minibatch K-means, MacQueen's online K-means, Martinetz's Neural Gas and
Cottrell et al.'s batch Neural Gas, Arthur & Vassilvitskii's k-means++ and scikit-learn's greedy
variant), not from compclust's code, so that a shared mistake is unlikely. Each is checked on its own
against scikit-learn / XPySom in the tests before compclust is checked against it.
"""
import itertools
import math

import numpy as np

from reference import KERNELS, SCHEDULES, grid_coords, grid_sq_dist

SIGMA_FLOOR = 1e-6  # a radius (or Neural Gas lambda) of 0 would give 0/0


def value(name, v0, v1, t, T):
    return SCHEDULES[name](v0, v1, t, T)


def epoch_value(name, v0, v1, epoch, n_epochs):
    """Batch schedules run per epoch: epoch e of E uses t = e, T = max(E - 1, 1)."""
    return value(name, v0, v1, epoch, max(n_epochs - 1, 1))


def sq_dists(X, W):
    """[N, K] squared Euclidean distances, float64."""
    X = np.asarray(X, np.float64)
    W = np.asarray(W, np.float64)
    return ((X[:, None, :] - W[None, :, :]) ** 2).sum(-1)


def nearest(X, W):
    """Best matching unit of every row (lowest index on ties)."""
    return np.argmin(sq_dists(X, W), axis=1)


def ranks(X, W):
    """[N, K] rank of each unit's distance to each sample: 0 = nearest, ties by unit index."""
    order = np.argsort(sq_dists(X, W), axis=1, kind="stable")
    r = np.empty_like(order)
    np.put_along_axis(r, order, np.arange(order.shape[1])[None, :], axis=1)
    return r


def grid_geometry(shape, topology="rectangular", toroidal=False):
    """(coords, periods) of a grid as compclust.topology lays it out (MiniSom's hexagonal layout)."""
    hexagonal = topology == "hexagonal"
    coords = grid_coords(shape, hexagonal)
    periods = None
    if toroidal:
        periods = np.array(shape, np.float64)
        if hexagonal:
            periods[1] *= np.sqrt(3) / 2
    return coords, periods


def neighbourhood_matrix(coords, periods, kernel, sigma):
    """[K, K] h[k, j]: weight of unit k when unit j wins."""
    s = max(float(sigma), SIGMA_FLOOR)
    return np.stack([KERNELS[kernel](grid_sq_dist(coords, j, periods), s) for j in range(len(coords))], axis=1)


def quantization_error(X, W):
    return float(np.sqrt(sq_dists(X, W).min(1)).mean())


def inertia(X, W):
    return float(sq_dists(X, W).min(1).sum())


# ----------------------------------------------------------------------------- batch SOM (Kohonen)

def batch_som_epoch(X, W, H, positive_only=False):
    """One batch-map epoch: BMUs with the weights at the epoch start, then
    w_k = sum_i h(k, bmu_i) x_i / sum_i h(k, bmu_i); a unit whose denominator is 0 keeps its weights
    (XPySom's rule: a negative Mexican-hat denominator is divided by all the same), or with
    ``positive_only`` every unit whose denominator is <= 0 keeps them (compclust's choice)."""
    X = np.asarray(X, np.float64)
    b = nearest(X, W)
    Hb = H[:, b]                      # [K, N]
    num = Hb @ X
    den = Hb.sum(1)
    moves = den > 0 if positive_only else den != 0
    safe = np.where(moves, den, 1.0)
    return np.where(moves[:, None], num / safe[:, None], W), den


def batch_som_fit(X, W0, n_epochs, *, shape, topology="rectangular", toroidal=False, kernel="gaussian",
                  sigma=1.0, sigma_final=0.1, sigma_schedule="constant", positive_only=False):
    """Returns (weights, per-epoch quantization errors measured after each epoch, denominators)."""
    coords, periods = grid_geometry(shape, topology, toroidal)
    W = np.array(W0, np.float64)
    qe, dens = [], []
    for e in range(n_epochs):
        s = epoch_value(sigma_schedule, sigma, sigma_final, e, n_epochs)
        W, den = batch_som_epoch(X, W, neighbourhood_matrix(coords, periods, kernel, s), positive_only)
        qe.append(quantization_error(X, W))
        dens.append(den)
    return W, np.array(qe), np.array(dens)


def batch_som_until(X, W0, n_epochs, tol, *, shape, topology="rectangular", toroidal=False, kernel="gaussian",
                    sigma=1.0, sigma_final=0.1, sigma_schedule="constant"):
    """The batch map with the tolerance rule: stop after epoch e when the BMUs of all data equal those of
    epoch e-1, or when sum ||W_new - W_old||^2 <= tol * mean(var(X, axis=0)). Returns (weights, n_iter)."""
    coords, periods = grid_geometry(shape, topology, toroidal)
    X = np.asarray(X, np.float64)
    W = np.array(W0, np.float64)
    threshold = tol * np.var(X, axis=0).mean()
    old = None
    for e in range(n_epochs):
        labels = nearest(X, W)
        s = epoch_value(sigma_schedule, sigma, sigma_final, e, n_epochs)
        new, _ = batch_som_epoch(X, W, neighbourhood_matrix(coords, periods, kernel, s))
        shift = ((new - W) ** 2).sum()
        W = new
        if (old is not None and np.array_equal(labels, old)) or shift <= threshold:
            return W, e + 1
        old = labels
    return W, n_epochs


# ----------------------------------------------------------------------------- Lloyd's K-means

def lloyd_epoch(X, C):
    """One Lloyd iteration with scikit-learn's ``_relocate_empty_clusters_dense``.

    Labels by nearest centre; per-cluster sums and counts; if some clusters are empty and not every
    sample sits on its centre, the n_empty samples farthest from their (old) centres, in decreasing
    distance (ties: lowest index first), each become the sole member of one empty cluster (in
    increasing cluster index) and are taken out of their old cluster's sums. Centre = sum / count;
    a cluster still empty keeps its centre (scikit-learn would copy the largest cluster's centre
    there; the tests avoid that corner). Returns (new centres, labels)."""
    X = np.asarray(X, np.float64)
    C = np.asarray(C, np.float64)
    K = len(C)
    labels = nearest(X, C)
    sums = np.zeros_like(C)
    np.add.at(sums, labels, X)
    counts = np.bincount(labels, minlength=K).astype(np.float64)
    empty = np.flatnonzero(counts == 0)
    if len(empty):
        dist = ((X - C[labels]) ** 2).sum(1)
        if dist.max() > 0:
            far = np.lexsort((np.arange(len(X)), -dist))[:len(empty)]
            for new, i in zip(empty, far):
                old = labels[i]
                sums[old] -= X[i]
                counts[old] -= 1
                sums[new] = X[i]
                counts[new] = 1
    safe = np.where(counts > 0, counts, 1.0)
    return np.where((counts > 0)[:, None], sums / safe[:, None], C), labels


def lloyd_fit(X, C0, n_epochs, tol=None):
    """Lloyd for up to n_epochs; with tol (scikit-learn's rule) stop after epoch e when the labels equal
    those of epoch e-1, or when sum ||C_new - C_old||^2 <= tol * mean(var(X, axis=0)).
    Returns (centres, n_iter, per-epoch inertia after each epoch)."""
    X = np.asarray(X, np.float64)
    C = np.array(C0, np.float64)
    threshold = None if tol is None else tol * np.var(X, axis=0).mean()
    old_labels, history = None, []
    for e in range(n_epochs):
        new, labels = lloyd_epoch(X, C)
        shift = ((new - C) ** 2).sum()
        C = new
        history.append(inertia(X, C))
        if threshold is not None and ((old_labels is not None and np.array_equal(labels, old_labels))
                                      or shift <= threshold):
            return C, e + 1, np.array(history)
        old_labels = labels
    return C, n_epochs, np.array(history)


# ----------------------------------------------------------------------------- minibatch / online

def n_batches(n, batch_size):
    return -(-n // batch_size)


def batches(order_row, batch_size):
    """Consecutive batches of B over one epoch's order (last one partial)."""
    return [order_row[s:s + batch_size] for s in range(0, len(order_row), batch_size)]


def minibatch_kmeans_fit(X, C0, orders, batch_size):
    """Sculley (2010), per-centre rate 1/count_k with counts from 0 persisting across epochs:
    counts_k += n_k(b); w_k += (sum_{i in b, bmu=k} x_i - n_k(b) w_k) / counts_k (BMUs at batch start)."""
    X = np.asarray(X, np.float64)
    C = np.array(C0, np.float64)
    counts = np.zeros(len(C))
    for row in np.asarray(orders):
        for b in batches(row, batch_size):
            xb = X[b]
            lab = nearest(xb, C)
            for k in np.unique(lab):
                members = xb[lab == k]
                counts[k] += len(members)
                C[k] += (members.sum(0) - len(members) * C[k]) / counts[k]
    return C


def online_kmeans_fit(X, C0, orders):
    """MacQueen (1967): one sample at a time, the winner moves by (x - w_k) / count_k, counts from 0."""
    X = np.asarray(X, np.float64)
    C = np.array(C0, np.float64)
    counts = np.zeros(len(C))
    for i in np.asarray(orders).ravel():
        k = np.argmin(((C - X[i]) ** 2).sum(1))
        counts[k] += 1
        C[k] += (X[i] - C[k]) / counts[k]
    return C


def minibatch_fit(X, W0, orders, batch_size, weights_fn, *, lr=0.5, lr_final=0.01, sigma=1.0,
                  sigma_final=0.1, lr_schedule="constant", sigma_schedule="constant"):
    """w_k += lr(t) * sum_{i in b} h_ik (x_i - w_k) / |b|, t the global batch index, T = E * ceil(N/B).
    ``weights_fn(xb, W, sigma) -> [|b|, K]`` gives h (grid kernel around the BMU, or Neural Gas ranks)."""
    X = np.asarray(X, np.float64)
    W = np.array(W0, np.float64)
    orders = np.asarray(orders)
    T = orders.shape[0] * n_batches(orders.shape[1], batch_size)
    t = 0
    for row in orders:
        for b in batches(row, batch_size):
            xb = X[b]
            a = value(lr_schedule, lr, lr_final, t, T)
            s = value(sigma_schedule, sigma, sigma_final, t, T)
            h = weights_fn(xb, W, s)                          # [b, K]
            W = W + a * (h.T @ xb - h.sum(0)[:, None] * W) / len(b)
            t += 1
    return W


def som_weights_fn(shape, topology="rectangular", toroidal=False, kernel="gaussian"):
    coords, periods = grid_geometry(shape, topology, toroidal)

    def fn(xb, W, s):
        H = neighbourhood_matrix(coords, periods, kernel, s)  # [K, K], column = winner
        return H[:, nearest(xb, W)].T
    return fn


def neural_gas_weights(xb, W, lam):
    return np.exp(-ranks(xb, W) / max(float(lam), SIGMA_FLOOR))


# ----------------------------------------------------------------------------- Neural Gas

def neural_gas_online_fit(X, W0, orders, *, lr=0.5, lr_final=0.01, sigma=1.0, sigma_final=0.1,
                          lr_schedule="exponential", sigma_schedule="exponential"):
    """Martinetz et al. (1993): every unit w_k += lr(t) exp(-rank_k / lambda(t)) (x - w_k),
    t the global sample step, T = n_epochs * N."""
    X = np.asarray(X, np.float64)
    W = np.array(W0, np.float64)
    order = np.asarray(orders).ravel()
    T = order.size
    for t, i in enumerate(order):
        a = value(lr_schedule, lr, lr_final, t, T)
        lam = value(sigma_schedule, sigma, sigma_final, t, T)
        h = neural_gas_weights(X[i:i + 1], W, lam)[0]
        W = W + a * h[:, None] * (X[i] - W)
    return W


def neural_gas_batch_fit(X, W0, n_epochs, *, sigma=1.0, sigma_final=0.1, sigma_schedule="exponential"):
    """Cottrell et al. (2006): w_k = sum_i exp(-rank_k(x_i)/lambda) x_i / sum_i exp(-rank_k(x_i)/lambda),
    ranks with the weights at the epoch start, lambda on the per-epoch schedule."""
    X = np.asarray(X, np.float64)
    W = np.array(W0, np.float64)
    for e in range(n_epochs):
        lam = epoch_value(sigma_schedule, sigma, sigma_final, e, n_epochs)
        h = neural_gas_weights(X, W, lam)                     # [N, K]
        W = (h.T @ X) / h.sum(0)[:, None]
    return W


# ----------------------------------------------------------------------------- k-means++

def n_local_trials(n_clusters):
    """scikit-learn's greedy k-means++: 2 + floor(ln K) candidates per new centre."""
    return 2 + int(math.log(n_clusters))


def second_pick_distribution(X, greedy):
    """Exact joint law of (first, second) centre indices of k-means++ with K = 2, as an [N, N] table.

    First centre uniform. Plain: second ~ D(x)^2. Greedy: L = n_local_trials(2) candidates drawn
    i.i.d. ~ D(x)^2, the one whose potential sum_i min(D_i^2, |x_i - c|^2) is least is kept (the first
    drawn among equal potentials)."""
    X = np.asarray(X, np.float64)
    N = len(X)
    d2 = sq_dists(X, X)
    P = np.zeros((N, N))
    for f in range(N):
        p = d2[f] / d2[f].sum()
        if not greedy:
            P[f] = p / N
            continue
        pot = np.minimum(d2[f][None, :], d2).sum(1)           # potential if candidate c is added
        L = n_local_trials(2)
        for cand in itertools.product(range(N), repeat=L):
            prob = np.prod(p[list(cand)])
            if prob == 0:
                continue
            best = cand[int(np.argmin(pot[list(cand)]))]
            P[f, best] += prob / N
    return P
