"""Initial weights ``[K, D]``. Each initializer is a pure, jittable function of a key and the data."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .spec import Spec

INITIALIZERS = ("uniform", "random_samples", "pca", "kmeans++", "kmeans++_plain")
UNIFORM_SCALE = 0.01  # "small random weights": uniform in [-0.01, 0.01]


def uniform(key, data, n_units):
    """Small random weights, uniform in ``[-0.01, 0.01]`` (the lecture's starting point)."""
    return jax.random.uniform(key, (n_units, data.shape[1]), data.dtype, -UNIFORM_SCALE, UNIFORM_SCALE)


def random_samples(key, data, n_units):
    """K distinct samples drawn without replacement (needs K <= N)."""
    index = jax.random.choice(key, data.shape[0], (n_units,), replace=False)
    return data[index]


def pca(data, grid_shape):
    """MiniSom's PCA plane: ``mean + sum_a c_a pc_a`` with ``c_a`` on ``linspace(-1, 1, n_a)`` along
    grid axis a and pc_a the a-th principal direction (unit norm, sign fixed so that its largest
    component is positive, so the result does not depend on the eigensolver's sign choice)."""
    n_axes = len(grid_shape)
    mean = jnp.mean(data, axis=0)
    centered = data - mean
    cov = centered.T @ centered / (data.shape[0] - 1)
    eigvals, eigvecs = jnp.linalg.eigh(cov)
    components = eigvecs[:, jnp.argsort(eigvals)[::-1][:n_axes]].T  # [n_axes, D]
    signs = jnp.sign(components[jnp.arange(n_axes), jnp.argmax(jnp.abs(components), axis=1)])
    components = components * jnp.where(signs == 0, 1.0, signs)[:, None]
    axes = jnp.meshgrid(*[jnp.linspace(-1.0, 1.0, n, dtype=data.dtype) for n in grid_shape], indexing="ij")
    coefs = jnp.stack([a.ravel() for a in axes], axis=1)  # [K, n_axes], C-order over the grid
    return mean + coefs @ components


def greedy_trials(n_units: int) -> int:
    """scikit-learn's number of candidates per new centre in greedy k-means++."""
    return 2 + int(np.log(n_units))


def kmeans_plusplus(key, data, n_units, n_trials: int = 1):
    """k-means++ (Arthur & Vassilvitskii 2007): the first centre uniform, each next one drawn with
    probability ~ D(x)^2 (the squared distance to the nearest centre so far). With ``n_trials > 1``
    it is the greedy variant scikit-learn uses: ``n_trials`` candidates are drawn that way and the
    one leaving the smallest potential ``sum_x D(x)^2`` is kept."""
    first_key, rest_key = jax.random.split(key)
    first = data[jax.random.randint(first_key, (), 0, data.shape[0])]
    centres = jnp.zeros((n_units, data.shape[1]), data.dtype).at[0].set(first)
    closest = jnp.sum((data - first) ** 2, axis=1)

    def add_centre(carry, inputs):
        centres, closest = carry
        k, centre_key = inputs
        # All-zero distances (duplicates only) fall back to a uniform draw.
        logits = jnp.where(jnp.sum(closest) > 0, jnp.log(closest), jnp.zeros_like(closest))
        candidates = jax.random.categorical(centre_key, logits, shape=(n_trials,))
        after = jnp.minimum(closest, jnp.sum((data[None] - data[candidates][:, None]) ** 2, axis=2))
        best = jnp.argmin(jnp.sum(after, axis=1))  # n_trials = 1: the one candidate
        return (centres.at[k].set(data[candidates[best]]), after[best]), None

    # Keys are scan inputs (one per new centre) so no key is consumed twice.
    steps = (jnp.arange(1, n_units), jax.random.split(rest_key, n_units - 1))
    (centres, _), _ = lax.scan(add_centre, (centres, closest), steps)
    return centres


def initialize(method: str, key, data, spec: Spec):
    """Initial weights by name; ``data`` is ``[N, D]`` already in the spec's dtype."""
    if method == "uniform":
        return uniform(key, data, spec.n_units)
    if method == "random_samples":
        return random_samples(key, data, spec.n_units)
    if method == "pca":
        return pca(data, spec.grid.shape if spec.grid is not None else (spec.n_units,))
    if method == "kmeans++":
        return kmeans_plusplus(key, data, spec.n_units, greedy_trials(spec.n_units))
    if method == "kmeans++_plain":
        return kmeans_plusplus(key, data, spec.n_units)
    raise ValueError(f"unknown initializer {method!r}; choose from {INITIALIZERS}")
