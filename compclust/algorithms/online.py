"""The online family: one input at a time (competitive layers, the online SOM, online Neural Gas,
MacQueen's K-means). ``step`` is the rule for one input; ``epoch`` scans it over the samples.

The scan carries the weights transposed, ``[D, K]`` (one column per unit): a reduction over
features is then a vertical vector add, ~1.5x faster on XLA:CPU than with ``[K, D]`` rows.

For the Euclidean family (``carries_norms``) the epoch scan also carries every unit's squared
norm ``|w_k|^2``: the winner search is then one matrix-vector product ``x . W``
(``|x - w_k|^2 = |w_k|^2 - 2 w_k . x + |x|^2``) instead of a pass over ``x - W``, and after the
move ``w' = (1 - a) w + a x`` the norm follows in closed form,
``|w'|^2 = (1 - a)^2 |w|^2 + 2 a (1 - a) w . x + a^2 |x|^2``, from the ``w . x`` already computed.
The norms are recomputed exactly at the start of every epoch, so rounding cannot accumulate
past one epoch (the drift over a 100-epoch MNIST run is measured by ``experiments/norm_drift.py``).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from .. import native, schedules, topology
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
    state, _, metrics = step_with_norms(spec, state, None, x, hparams, total_steps, key)
    return state, metrics


# Where the epoch scan carries squared norms: the nearest-unit activations with the hard or the
# softmax winner and a kernel that needs only the winner. The others keep the plain path:
# neurolab's conscience needs the Euclidean distances themselves, DeSieno's biased argmax and
# Neural Gas's distance ranks would need every near-tie resolved exactly, not just the winner's.
NORM_ACTIVATIONS = ("neg_sq_euclidean", "nearest_centroid")
NORM_WINNERS = ("hard", "softmax")


def carries_norms(spec: Spec) -> bool:
    """Whether the epoch scan carries ``|w_k|^2`` for this spec (see the module docstring)."""
    return (spec.activation in NORM_ACTIVATIONS and spec.winner in NORM_WINNERS and spec.kernel != "neural_gas"
            and not spec.missing)  # a sample's missing features change |w_k|^2 over its present ones


# Near-tie margin of the norm form, ``2 (D + 64) eps (|x|^2 + |w_best|^2)``: float32 dot products of D
# terms err by at most ~D eps of that scale (measured on MNIST, D = 784: at most 8 eps, a 200th of the
# margin), the carried norms by a few eps more (their drift over one MNIST epoch: 1.8e-6 relative).
NEAR_TIE_SLACK = 64


def best_two(activation):
    """``(largest value, its index, second largest value)`` of ``activation [K]`` in one pass (the
    index as ``argmax``'s: lowest on a tie). ``lax.top_k`` costs far more on XLA:CPU."""
    n_units = activation.shape[0]

    def combine(a, b):
        value_a, index_a, second_a = a
        value_b, index_b, second_b = b
        a_first = (value_a > value_b) | ((value_a == value_b) & (index_a < index_b))
        return (jnp.where(a_first, value_a, value_b), jnp.where(a_first, index_a, index_b),
                jnp.where(a_first, jnp.maximum(second_a, value_b), jnp.maximum(value_a, second_b)))

    lowest = jnp.array(-jnp.inf, activation.dtype)
    return lax.reduce((activation, jnp.arange(n_units, dtype=jnp.int32), jnp.full((n_units,), lowest)),
                      (lowest, jnp.array(n_units, jnp.int32), lowest), combine, (0,))


def nearest_winner(spec: Spec, weights_t, x, activation, sq_norms, x_sq):
    """The hard winner from the norm form's ``activation [K]``, equal to the plain path's: where
    the runner-up is within the rounding margin of the best, the plain activation decides (a
    ``lax.cond``, taken on 2-5% of MNIST's steps and <1% of the digits', measured)."""
    value, best, second = best_two(activation)
    eps = jnp.finfo(weights_t.dtype).eps
    margin = 2 * (x.shape[0] + NEAR_TIE_SLACK) * eps * (x_sq + sq_norms[best])
    return lax.cond(value - second > margin, lambda: best,
                    lambda: hard_winner(ACTIVATION_FNS[spec.activation](weights_t, x)).astype(jnp.int32))


def sq_norms_of(weights_t):
    """Exact ``|w_k|^2`` of ``weights_t [D, K]``: ``[K]``."""
    return jnp.sum(weights_t * weights_t, axis=0)


def step_with_norms(spec: Spec, state: State, sq_norms, x, hparams: Hparams, total_steps: int, key=None):
    """``step_units_last`` that also carries ``sq_norms [K]`` (``|w_k|^2`` of the columns of
    ``state.weights [D, K]``; None for the plain path). Returns ``(state, sq_norms, metrics)``.

    With norms (only where ``carries_norms(spec)``), the activation comes from ``c = x . W`` (one
    matrix-vector product), ``|x - w_k|^2 = |w_k|^2 - 2 c_k + |x|^2``, and the norms after the move
    from the closed form in the module docstring (the winner's own column, recomputed, for the
    delta kernel). Equal to the plain path to rounding."""
    weights_t = state.weights
    lr, sigma = schedule_values(spec, hparams, state.step.astype(weights_t.dtype), total_steps)
    conscience, counts = state.conscience, state.counts
    # Missing data (R kohonen): distances over x's present features times D / present, and units
    # move along those features only. ``present`` is None without the option.
    present = None
    if spec.missing:
        is_present = ~jnp.isnan(x)
        x, present = jnp.where(is_present, x, 0.0), is_present.astype(weights_t.dtype)
        scale = x.shape[0] / jnp.maximum(jnp.sum(present), 1.0)

    def sq_distances_to(columns):  # |x - w|^2 for the columns of [D, K'] (missing-aware)
        diff = columns - x[:, None]
        if present is None:
            return jnp.sum(diff * diff, axis=0)
        return jnp.sum(present[:, None] * diff * diff, axis=0) * scale

    if sq_norms is not None:
        # [K] w_k . x; full float32 precision (a GPU's default would round the inputs to TF32)
        cross = jnp.dot(x, weights_t, precision=lax.Precision.HIGHEST)
        x_sq = jnp.dot(x, x, precision=lax.Precision.HIGHEST)
        if spec.activation == "nearest_centroid":
            activation = cross - 0.5 * sq_norms
        else:
            activation = 2.0 * cross - sq_norms - x_sq  # -|x - w_k|^2
    if spec.winner == "conscience":
        distance = jnp.sqrt(sq_distances_to(weights_t))
        winner = conscience_winner(distance, conscience)
        conscience = conscience + _one_hot(winner, conscience)
        gain = lr * distance[winner]
    else:
        if present is not None:  # the spec allows missing data with the squared Euclidean activation only
            activation = -sq_distances_to(weights_t)
        elif sq_norms is None:
            activation = ACTIVATION_FNS[spec.activation](weights_t, x)
        if spec.winner == "hard" and sq_norms is not None:
            winner = nearest_winner(spec, weights_t, x, activation, sq_norms, x_sq)
        elif spec.winner == "hard":
            winner = hard_winner(activation)
        elif spec.winner == "softmax":
            winner = softmax_winner(key, activation, hparams.temperature)
        else:  # desieno
            winner = desieno_winner(activation, conscience, hparams.bias_scale)
            conscience = desieno_frequencies(conscience, activation, hparams.frequency_rate)
        gain = lr
    if spec.lr_schedule == "count":  # MacQueen: the winner's rate is 1 / (inputs it has won)
        counts = counts + _one_hot(winner, counts)
        gain = 1.0 / counts[winner]
    winner_column = lax.dynamic_index_in_dim(weights_t, winner, axis=1, keepdims=True)
    winner_distance = jnp.sqrt(sq_distances_to(winner_column)[0])
    if spec.kernel == "delta":
        # Only the winner moves: update one column instead of all K (a dynamic slice, not a scatter).
        column = winner_column[:, 0]
        move = x - column
        column = column + gain * (move if present is None else present * move)
        weights_t = lax.dynamic_update_index_in_dim(weights_t, column, winner, axis=1)
        if sq_norms is not None:  # the winner's norm, recomputed from its column (as cheap as the closed form)
            sq_norms = lax.dynamic_update_index_in_dim(sq_norms, jnp.dot(column, column), winner, axis=0)
    else:
        if spec.kernel == "neural_gas":
            where = distance_ranks(sq_distances_to(weights_t))
        else:
            where = topology.sq_distances_from(spec.grid, winner, weights_t.dtype)
        h = neighbourhood(spec.kernel, where, sigma)
        step_size = gain * h.astype(weights_t.dtype)  # [K] a_k: w_k <- (1 - a_k) w_k + a_k x
        move = x[:, None] - weights_t
        weights_t = weights_t + step_size[None, :] * (move if present is None else present[:, None] * move)
        if sq_norms is not None:
            keep = 1.0 - step_size
            sq_norms = keep * keep * sq_norms + 2.0 * step_size * keep * cross + step_size * step_size * x_sq
    state = State(weights=weights_t, conscience=conscience, counts=counts, step=state.step + 1)
    return state, sq_norms, StepMetrics(winner=winner.astype(jnp.int32), distance=winner_distance)


def _one_hot(winner, like):
    """1 at ``winner``, 0 elsewhere, as ``like [K]``: ``x + _one_hot(k, x)`` is ``x.at[k].add(1)``
    to the bit, without a scatter. The step has no scatter (nor sort) so that XLA:CPU's
    small-while-loop hoisting (``compclust.fast_cpu_loops``) can compile the whole scan as one
    kernel; Neural Gas's ranks (a sort) still keep its scan out."""
    return (jnp.arange(like.shape[0]) == winner).astype(like.dtype)


def steps_per_epoch(spec: Spec, n_samples: int, order) -> int:
    return n_samples if order is None else order.shape[-1]


def epoch(spec: Spec, state: State, data, hparams: Hparams, key, epoch_order, total_steps: int, trace: bool,
          native_threads: int = 0):
    """One pass of ``step`` over the samples in ``epoch_order`` (a fresh permutation from the key
    when None). Returns the new state and the per-step metrics when ``trace``. ``native_threads``: if
    not 0, the pass is compclust.native's C++ loop on that many threads (only where
    ``native.applies``), the same rule."""
    n_samples = data.shape[0]
    perm_key, step_key = jax.random.split(key)
    if epoch_order is None:
        epoch_order = jax.random.permutation(perm_key, n_samples)
    n_steps = epoch_order.shape[0]
    step_keys = jax.random.split(step_key, n_steps) if spec.winner == "softmax" else None
    if spec.winner == "conscience":  # neurolab resets every conscience to 1 after each epoch
        state = state._replace(conscience=jnp.ones_like(state.conscience))
    if native_threads:
        t = (state.step + jnp.arange(n_steps)).astype(data.dtype)
        lr, sigma = jax.vmap(lambda t: schedule_values(spec, hparams, t, total_steps))(t)
        if spec.winner == "conscience":
            weights, conscience, winners, distances = native.conscience_epoch(
                state.weights, data, epoch_order, lr.astype(data.dtype), state.conscience)
            state = state._replace(conscience=conscience)
        else:
            weights, winners, distances = native.epoch(spec, state.weights, data, epoch_order,
                                                       lr.astype(data.dtype), sigma.astype(data.dtype),
                                                       threads=native_threads)
        state = state._replace(weights=weights, step=state.step + n_steps)
        return state, (StepMetrics(winner=winners, distance=distances) if trace else None)

    def one_step(carry, inputs):  # state.weights is [D, K] inside the scan
        state, sq_norms = carry
        index, step_key = inputs
        # Read here, not gathered as data[order] per epoch: as fast (measured), and a sweep with a
        # permutation per seed would otherwise hold [n_seeds, N, D] copies of the data.
        state, sq_norms, metrics = step_with_norms(spec, state, sq_norms, data[index], hparams, total_steps, step_key)
        return (state, sq_norms), (metrics if trace else None)

    weights_t = state.weights.T
    sq_norms = sq_norms_of(weights_t) if carries_norms(spec) else None  # exact at every epoch start
    (state, _), step_metrics = lax.scan(one_step, (state._replace(weights=weights_t), sq_norms),
                                        (epoch_order, step_keys))
    return state._replace(weights=state.weights.T), step_metrics
