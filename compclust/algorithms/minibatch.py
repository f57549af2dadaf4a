"""The minibatch family: a scan over minibatches of ``Spec.batch_size`` samples, each moving the
units once with the weights it started from.

- SOM and Neural Gas: the mean of the batch's online updates,
  ``w_k += lr(t) sum_{i in b} h_ik (x_i - w_k) / |b|`` (``batch_size=1`` is the online rule);
- K-means with ``lr_schedule="count"`` (Sculley 2010): per-centre counts ``c_k += n_k(b)`` and
  ``w_k += (sum_{i in b, bmu_i = k} x_i - n_k(b) w_k) / c_k``, the running mean of all the
  inputs the centre has won.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from .. import topology
from ..activations import sq_distances
from ..kernels import neighbourhood
from ..spec import Hparams, Spec
from ..state import State
from .online import distance_ranks, schedule_values


def steps_per_epoch(spec: Spec, n_samples: int, order) -> int:
    n_steps = n_samples if order is None else order.shape[-1]
    return -(-n_steps // spec.batch_size)


def unit_weights(spec: Spec, sq_dist, best, sigma):
    """``h [B, K]``: how much each unit moves for each sample of the batch."""
    if spec.kernel == "delta":
        return jax.nn.one_hot(best, spec.n_units, dtype=sq_dist.dtype)
    if spec.kernel == "neural_gas":
        return neighbourhood("neural_gas", distance_ranks(sq_dist), sigma)
    grid_sq = jax.vmap(lambda unit: topology.sq_distances_from(spec.grid, unit, sq_dist.dtype))(best)
    return neighbourhood(spec.kernel, grid_sq, sigma).astype(sq_dist.dtype)


def epoch(spec: Spec, state: State, data, hparams: Hparams, key, epoch_order, total_steps: int, trace: bool):
    """One pass over the samples in ``epoch_order`` (a fresh permutation when None), cut into
    consecutive batches; the last one may be partial (its padding is masked out)."""
    del trace  # per-step traces are an online feature
    n_samples = data.shape[0]
    if epoch_order is None:
        epoch_order = jax.random.permutation(key, n_samples)
    batch_size = spec.batch_size
    n_batches = -(-epoch_order.shape[0] // batch_size)
    pad = n_batches * batch_size - epoch_order.shape[0]
    valid = jnp.arange(n_batches * batch_size) < epoch_order.shape[0]
    order = jnp.concatenate([epoch_order, jnp.zeros((pad,), epoch_order.dtype)]) if pad else epoch_order
    dtype = state.weights.dtype

    def one_batch(state, inputs):
        index, batch_valid = inputs
        x = data[index]
        weights = state.weights
        lr, sigma = schedule_values(spec, hparams, state.step.astype(dtype), total_steps)
        sq_dist = sq_distances(x, weights, spec.missing)
        best = jnp.argmin(sq_dist, axis=1)
        h = unit_weights(spec, sq_dist, best, sigma) * batch_valid[:, None].astype(dtype)
        if spec.missing:  # NaN entries pull nothing and weigh nothing, feature by feature
            present = ~jnp.isnan(x)
            pulled, weight = h.T @ jnp.where(present, x, 0.0), h.T @ present.astype(dtype)  # [K, D] each
        else:
            pulled, weight = h.T @ x, jnp.sum(h, 0)[:, None]  # sum_i h_ik x_i [K, D], sum_i h_ik [K, 1]
        counts = state.counts
        if spec.lr_schedule == "count":
            counts = counts + weight[:, 0]
            rate = jnp.where(counts > 0, 1.0 / jnp.where(counts > 0, counts, 1.0), 0.0)[:, None]
        else:
            rate = lr / jnp.sum(batch_valid.astype(dtype))
        weights = weights + rate * (pulled - weight * weights)
        return state._replace(weights=weights, counts=counts, step=state.step + 1), None

    inputs = (order.reshape(n_batches, batch_size), valid.reshape(n_batches, batch_size))
    state, _ = lax.scan(one_batch, state, inputs)
    return state, None
