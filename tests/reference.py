"""Short, independent NumPy transcriptions of the rules compclust implements (float64).

Written from the formulas, not from compclust's code, so that a shared mistake is unlikely."""
import numpy as np


def grid_coords(shape, hexagonal=False):
    """Unit positions, C-order; hexagonal as MiniSom: x - 0.5 on rows (rows-1-j) even, y * sqrt(3)/2."""
    idx = np.array(list(np.ndindex(*shape)), dtype=np.float64).reshape(-1, len(shape))
    if hexagonal:
        rows = shape[1]
        idx[:, 0] -= 0.5 * ((rows - 1 - idx[:, 1]) % 2 == 0)
        idx[:, 1] *= np.sqrt(3) / 2
    return idx


def grid_sq_dist(coords, k, periods=None):
    d = np.abs(coords - coords[k])
    if periods is not None:
        d = np.minimum(d, periods - d)
    return (d ** 2).sum(1)


KERNELS = {
    "gaussian": lambda d2, s: np.exp(-d2 / (2 * s * s)),
    "bubble": lambda d2, s: ((np.sqrt(d2) < s) | (d2 == 0)).astype(float),
    "triangle": lambda d2, s: np.maximum(0.0, 1 - np.sqrt(d2) / s),
    "mexican_hat": lambda d2, s: (1 - d2 / s ** 2) * np.exp(-d2 / (2 * s * s)),
    "cut_gaussian": lambda d2, s: np.exp(-d2 / (2 * s * s)) * ((np.sqrt(d2) < s) | (d2 == 0)),
    "delta": lambda d2, s: (d2 == 0).astype(float),
}

SCHEDULES = {
    "constant": lambda v0, v1, t, T: v0,
    "linear": lambda v0, v1, t, T: v0 + (v1 - v0) * t / T,
    "exponential": lambda v0, v1, t, T: v0 * (v1 / v0) ** (t / T),
    "inverse_time": lambda v0, v1, t, T: v0 / (1 + (v0 / v1 - 1) * t / T),
    "asymptotic": lambda v0, v1, t, T: v0 / (1 + 2 * t / T),
}

ACTIVATIONS = {
    "neg_sq_euclidean": lambda W, x: -((W - x) ** 2).sum(1),
    "linear": lambda W, x: W @ x,
    "nearest_centroid": lambda W, x: W @ x - 0.5 * (W ** 2).sum(1),
    "cosine": lambda W, x: (W @ x) / (np.linalg.norm(W, axis=1) * np.linalg.norm(x) + 1e-8),
    "neg_manhattan": lambda W, x: -np.abs(W - x).sum(1),
}


def online_fit(data, w0, order, *, coords=None, periods=None, kernel="delta", activation="neg_sq_euclidean",
               lr=0.5, lr_final=0.01, sigma=1.0, sigma_final=0.1, lr_schedule="constant",
               sigma_schedule="constant"):
    """Hard-winner online SOM / competitive layer: w_k += lr(t) h_k(sigma(t)) (x - w_k)."""
    W = np.array(w0, np.float64)
    order = np.asarray(order)
    T = order.size
    for t, i in enumerate(order.ravel()):
        x = np.asarray(data[i], np.float64)
        k = np.argmax(ACTIVATIONS[activation](W, x))
        a = SCHEDULES[lr_schedule](lr, lr_final, t, T)
        s = SCHEDULES[sigma_schedule](sigma, sigma_final, t, T)
        d2 = grid_sq_dist(coords, k, periods) if coords is not None else (np.arange(len(W)) != k) * 1.0
        W += (a * KERNELS[kernel](d2, s))[:, None] * (x - W)
    return W


def conscience_fit(data, w0, n_epochs, lr=0.01):
    """neurolab train_cwta: argmin c*d, c_win += 1, w_win += lr d_win (x - w_win), c reset per epoch."""
    W = np.array(w0, np.float64)
    for _ in range(n_epochs):
        c = np.ones(len(W))
        for x in np.asarray(data, np.float64):
            d = np.sqrt(((W - x) ** 2).sum(1))
            k = np.argmin(c * d)
            c[k] += 1
            W[k] += lr * d[k] * (x - W[k])
    return W


def desieno_fit(data, w0, order, lr, bias_scale, rate):
    """DeSieno: winner argmin |x-w|^2 - C(1/K - p); p += B(y - p) with y the unbiased winner."""
    W = np.array(w0, np.float64)
    K = len(W)
    p = np.full(K, 1.0 / K)
    for i in np.asarray(order).ravel():
        x = np.asarray(data[i], np.float64)
        d2 = ((W - x) ** 2).sum(1)
        k = np.argmax(-d2 + bias_scale * (1.0 / K - p))
        p += rate * ((np.arange(K) == np.argmin(d2)) - p)
        W[k] += lr * (x - W[k])
    return W
