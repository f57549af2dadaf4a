"""The online family: one input at a time (competitive layers, the online SOM, online Neural Gas,
MacQueen's K-means). ``step`` is the rule for one input; ``epoch`` scans it over the samples.

The scan carries the weights transposed, ``[D, K]`` (one column per unit): a reduction over
features is then a vertical vector add, ~1.5x faster on XLA:CPU than with ``[K, D]`` rows.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from .. import schedules, topology
from ..activations import ACTIVATION_FNS
from ..kernels import neighbourhood
from ..spec import Hparams, Spec
from ..state import State, StepMetrics
from ..winners import conscience_winner, desieno_frequencies, desieno_winner, hard_winner, softmax_winner


def schedule_values(spec: Spec, hparams: Hparams, t, total_steps):
    """Learning rate and radius at step t (float) of a run of total_steps ("count" rates are per
    unit and set by the step; the lr reported for them is hparams.lr)."""
    lr_schedule = "constant" if spec.lr_schedule == "count" else spec.lr_schedule
    lr = schedules.value(lr_schedule, hparams.lr, hparams.lr_final, t, total_steps)
    sigma = schedules.value(spec.sigma_schedule, hparams.sigma, hparams.sigma_final, t, total_steps)
    return lr, sigma


def distance_ranks(sq_dist):
    """Rank of every unit by distance, 0 for the nearest (ties by index). ``[..., K] -> [..., K]``."""
    return jnp.argsort(jnp.argsort(sq_dist, axis=-1, stable=True), axis=-1).astype(sq_dist.dtype)


def step(spec: Spec, state: State, x, hparams: Hparams, total_steps: int, key=None):
    """One input ``x [D]``: pick the winner, move it (and its neighbours) toward x.

    Every unit k moves by ``lr(t) * h_k * (x - w_k)`` with h the neighbourhood kernel around the
    winner (delta for a competitive layer, grid distance for a SOM, distance rank for Neural Gas).
    The conscience rule is neurolab's ``train_cwta``: the winner minimises
    ``conscience_k * |x - w_k|``, its conscience grows by one, and it moves by
    ``lr * |x - w_win| * (x - w_win)``. ``key`` is needed only by the softmax winner.
    """
    moved, metrics = step_units_last(spec, state._replace(weights=state.weights.T), x, hparams, total_steps, key)
    return moved._replace(weights=moved.weights.T), metrics


def step_units_last(spec: Spec, state: State, x, hparams: Hparams, total_steps: int, key=None):
    """``step`` on ``state.weights`` transposed, ``[D, K]``: the layout the training scan carries."""
    weights_t = state.weights
    lr, sigma = schedule_values(spec, hparams, state.step.astype(weights_t.dtype), total_steps)
    conscience, counts = state.conscience, state.counts
    if spec.winner == "conscience":
        distance = jnp.sqrt(jnp.sum((weights_t - x[:, None]) ** 2, axis=0))
        winner = conscience_winner(distance, conscience)
        conscience = conscience.at[winner].add(1.0)
        gain = lr * distance[winner]
    else:
        activation = ACTIVATION_FNS[spec.activation](weights_t, x)
        if spec.winner == "hard":
            winner = hard_winner(activation)
        elif spec.winner == "softmax":
            winner = softmax_winner(key, activation, hparams.temperature)
        else:  # desieno
            winner = desieno_winner(activation, conscience, hparams.bias_scale)
            conscience = desieno_frequencies(conscience, activation, hparams.frequency_rate)
        gain = lr
    if spec.lr_schedule == "count":  # MacQueen: the winner's rate is 1 / (inputs it has won)
        counts = counts.at[winner].add(1.0)
        gain = 1.0 / counts[winner]
    winner_distance = jnp.sqrt(jnp.sum((x - weights_t[:, winner]) ** 2))
    if spec.kernel == "delta":
        # Only the winner moves: update one column instead of all K.
        weights_t = weights_t.at[:, winner].add(gain * (x - weights_t[:, winner]))
    else:
        if spec.kernel == "neural_gas":
            diff = weights_t - x[:, None]
            where = distance_ranks(jnp.sum(diff * diff, axis=0))
        else:
            where = topology.sq_distances_from(spec.grid, winner)
        h = neighbourhood(spec.kernel, where, sigma)
        weights_t = weights_t + (gain * h.astype(weights_t.dtype))[None, :] * (x[:, None] - weights_t)
    state = State(weights=weights_t, conscience=conscience, counts=counts, step=state.step + 1)
    return state, StepMetrics(winner=winner.astype(jnp.int32), distance=winner_distance)


def steps_per_epoch(spec: Spec, n_samples: int, order) -> int:
    return n_samples if order is None else order.shape[-1]


def epoch(spec: Spec, state: State, data, hparams: Hparams, key, epoch_order, total_steps: int, trace: bool):
    """One pass of ``step`` over the samples in ``epoch_order`` (a fresh permutation from the key
    when None). Returns the new state and the per-step metrics when ``trace``."""
    n_samples = data.shape[0]
    perm_key, step_key = jax.random.split(key)
    if epoch_order is None:
        epoch_order = jax.random.permutation(perm_key, n_samples)
    n_steps = epoch_order.shape[0]
    step_keys = jax.random.split(step_key, n_steps) if spec.winner == "softmax" else None
    if spec.winner == "conscience":  # neurolab resets every conscience to 1 after each epoch
        state = state._replace(conscience=jnp.ones_like(state.conscience))

    def one_step(state, inputs):  # state.weights is [D, K] inside the scan
        index, step_key = inputs
        # Read here, not gathered as data[order] per epoch: as fast (measured), and a sweep with a
        # permutation per seed would otherwise hold [n_seeds, N, D] copies of the data.
        state, metrics = step_units_last(spec, state, data[index], hparams, total_steps, step_key)
        return state, (metrics if trace else None)

    state, step_metrics = lax.scan(one_step, state._replace(weights=state.weights.T), (epoch_order, step_keys))
    return state._replace(weights=state.weights.T), step_metrics
