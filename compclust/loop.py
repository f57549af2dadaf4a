"""The one training loop every algorithm shares.

``step`` moves the units for one input: activation -> winner -> neighbourhood -> update. ``fit``
scans it over the samples of an epoch and over epochs, inside a single ``jax.jit``; ``sweep``
vmaps ``fit`` over seeds and, optionally, over hyperparameter values, still one compiled program.
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from . import schedules, topology, validation
from .activations import ACTIVATION_FNS
from .initializers import initialize
from .kernels import neighbourhood
from .metrics import evaluate_impl
from .spec import Hparams, Spec
from .winners import conscience_winner, desieno_frequencies, desieno_winner, hard_winner, softmax_winner


class State(NamedTuple):
    weights: jax.Array     # [K, D] float: one row per unit (the centroids)
    conscience: jax.Array  # [K] float: neurolab's factors (1 + wins this epoch) / DeSieno's win frequencies
    step: jax.Array        # [] int32: samples seen since training began (drives the schedules)


class StepMetrics(NamedTuple):
    winner: jax.Array    # [] int32: the unit that won this input
    distance: jax.Array  # [] float: Euclidean distance from the input to the winner, before it moved


class EpochMetrics(NamedTuple):
    """Each field is ``[n_epochs]`` (``[..., n_epochs]`` in a sweep); measured on all the data after the epoch."""
    quantization_error: jax.Array
    topographic_error: jax.Array
    inertia: jax.Array
    dead_units: jax.Array
    center_shift: jax.Array  # Frobenius norm of the change of the weights over the epoch
    lr: jax.Array            # learning rate at the epoch's last step
    sigma: jax.Array         # neighbourhood radius at the epoch's last step


class FitResult(NamedTuple):
    state: State
    metrics: EpochMetrics
    trace: Optional[StepMetrics]  # [n_epochs, n_steps] per-step winners and distances, only with trace=True


# Counts how often the training loop is traced (compiled); tests use it to prove there is no retrace.
TRACE_COUNT = {"fit": 0}


def initial_state(spec: Spec, weights) -> State:
    n_units = spec.n_units
    start = 1.0 / n_units if spec.winner == "desieno" else 1.0  # DeSieno starts from equal frequencies
    return State(weights=weights, conscience=jnp.full((n_units,), start, weights.dtype),
                 step=jnp.zeros((), jnp.int32))


def init(key, data, spec: Spec, *, method: str = "random_samples") -> State:
    """A fresh State with weights from a named initializer (see ``initializers.INITIALIZERS``)."""
    key = validation.check_keys(key, batched=False)
    data = validation.check_data(data, validation.dtype_of(spec))
    validation.check_init(method, spec, data, data.dtype)
    return initial_state(spec, _init_weights(method, spec, key, data))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init_weights(method, spec, key, data):
    return initialize(method, key, data, spec).astype(data.dtype)


def schedule_values(spec: Spec, hparams: Hparams, t, total_steps):
    """Learning rate and radius at step t (float) of a run of total_steps."""
    lr = schedules.value(spec.lr_schedule, hparams.lr, hparams.lr_final, t, total_steps)
    sigma = schedules.value(spec.sigma_schedule, hparams.sigma, hparams.sigma_final, t, total_steps)
    return lr, sigma


def step(spec: Spec, state: State, x, hparams: Hparams, total_steps: int, key=None):
    """One input ``x [D]``: pick the winner, move it (and its grid neighbours) toward x.

    Every unit k moves by ``lr(t) * h_k * (x - w_k)`` with h the neighbourhood kernel around the
    winner (delta for a competitive layer). The conscience rule is neurolab's ``train_cwta``: the
    winner minimises ``conscience_k * |x - w_k|``, its conscience grows by one, and it moves by
    ``lr * |x - w_win| * (x - w_win)``. ``key`` is needed only by the softmax winner.
    """
    moved, metrics = _step_units_last(spec, state._replace(weights=state.weights.T), x, hparams, total_steps, key)
    return moved._replace(weights=moved.weights.T), metrics


def _step_units_last(spec: Spec, state: State, x, hparams: Hparams, total_steps: int, key=None):
    """``step`` on ``state.weights`` transposed, ``[D, K]``: the layout the training scan carries."""
    weights_t = state.weights
    lr, sigma = schedule_values(spec, hparams, state.step.astype(weights_t.dtype), total_steps)
    conscience = state.conscience
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
    winner_distance = jnp.sqrt(jnp.sum((x - weights_t[:, winner]) ** 2))
    if spec.kernel == "delta":
        # Only the winner moves: update one column instead of all K.
        weights_t = weights_t.at[:, winner].add(gain * (x - weights_t[:, winner]))
    else:
        h = neighbourhood(spec.kernel, topology.sq_distances_from(spec.grid, winner), sigma)
        weights_t = weights_t + (gain * h.astype(weights_t.dtype))[None, :] * (x[:, None] - weights_t)
    state = State(weights=weights_t, conscience=conscience, step=state.step + 1)
    return state, StepMetrics(winner=winner.astype(jnp.int32), distance=winner_distance)


def _fit_impl(key, data, hparams, init_weights, order, resume=None, *, spec: Spec, n_epochs: int,
              init: str | None, trace: bool, total_epochs: int | None = None) -> FitResult:
    """Whole training run for one key: traceable, vmappable, no host syncs. With ``resume`` (a State)
    it continues that run; the schedules then span ``total_epochs``."""
    TRACE_COUNT["fit"] += 1
    n_samples = data.shape[0]
    init_key, run_key = jax.random.split(key)
    n_steps = n_samples if order is None else order.shape[1]
    total_steps = (total_epochs or n_epochs) * n_steps
    if resume is None:
        weights = init_weights if init is None else initialize(init, init_key, data, spec).astype(data.dtype)
        start = initial_state(spec, weights.T)
    else:
        start = resume._replace(weights=resume.weights.T)

    def one_step(state, inputs):  # state.weights is [D, K] inside the scans
        index, step_key = inputs
        # Read here, not gathered as data[order] per epoch: as fast (measured), and a sweep with a
        # permutation per seed would otherwise hold [n_seeds, N, D] copies of the data.
        state, metrics = _step_units_last(spec, state, data[index], hparams, total_steps, step_key)
        return state, (metrics if trace else None)

    def one_epoch(state, inputs):
        epoch_key, epoch_order = inputs
        perm_key, step_key = jax.random.split(epoch_key)
        if epoch_order is None:
            epoch_order = jax.random.permutation(perm_key, n_samples)
        step_keys = jax.random.split(step_key, n_steps) if spec.winner == "softmax" else None
        if spec.winner == "conscience":  # neurolab resets every conscience to 1 after each epoch
            state = state._replace(conscience=jnp.ones_like(state.conscience))
        weights_before = state.weights
        state, step_metrics = lax.scan(one_step, state, (epoch_order, step_keys))
        evaluation = evaluate_impl(spec, state.weights.T, data)
        lr, sigma = schedule_values(spec, hparams, (state.step - 1).astype(data.dtype), total_steps)
        metrics = EpochMetrics(*evaluation, center_shift=jnp.linalg.norm(state.weights - weights_before),
                               lr=jnp.asarray(lr, data.dtype), sigma=jnp.asarray(sigma, data.dtype))
        return state, (metrics, step_metrics)

    epoch_keys = jax.random.split(run_key, n_epochs)
    state, (metrics, steps) = lax.scan(one_epoch, start, (epoch_keys, order))
    return FitResult(state=state._replace(weights=state.weights.T), metrics=metrics, trace=steps)


_STATIC = ("spec", "n_epochs", "init", "trace", "total_epochs")


@functools.cache
def _compiled(impl, static_argnames, backend):
    """``jax.jit(impl)`` with per-backend compiler options, built once per backend.

    On XLA:CPU the YNNPACK reduction fusion makes the per-sample distance reduction of the
    online step ~1.6x slower (its results are bit-identical), so it is switched off for these
    loops only, never process-wide.
    """
    options = {"xla_cpu_experimental_ynn_fusion_type": ""} if backend == "cpu" else {}
    return jax.jit(impl, static_argnames=static_argnames, compiler_options=options)


def _prepare(spec, data, hparams, n_epochs, init, order, sweepable, n_seeds=None):
    dtype = validation.dtype_of(spec)
    data = validation.check_data(data, dtype)
    n_epochs = validation.check_epochs(n_epochs)
    hparams = validation.check_hparams(hparams, spec, dtype, sweepable=sweepable)
    init_weights = validation.check_init(init, spec, data, dtype, per_seed=n_seeds)
    order = validation.check_order(order, data.shape[0], n_epochs, per_seed=n_seeds)
    return data, hparams, n_epochs, (init if init_weights is None else None), init_weights, order


def fit(key, data, spec: Spec, hparams: Hparams, n_epochs: int, *, init="random_samples", order=None,
        trace: bool = False, resume: State | None = None, total_epochs: int | None = None) -> FitResult:
    """Train one network on ``data [N, D]`` for ``n_epochs`` epochs.

    init: a name from ``initializers.INITIALIZERS`` or initial weights ``[K, D]``.
    order: None for a fresh permutation per epoch drawn from the key, or sample indices
      ``[n_steps]`` (every epoch) / ``[n_epochs, n_steps]`` to reproduce another library's order.
    trace: also return the winner and distance of every step (``[n_epochs, n_steps]``).
    resume, total_epochs: train in chunks (to report progress between them, or to stop and go on):
      ``fit(k2, ..., n_epochs=100, resume=first.state, total_epochs=1000)`` continues ``first``
      (weights, consciences, step count; ``init`` is then unused) with the schedules spanning
      ``total_epochs``. Chunks given the same ``order`` reproduce one uninterrupted run exactly.
    """
    jitted, args, static = fit_call(key, data, spec, hparams, n_epochs, init=init, order=order, trace=trace,
                                    resume=resume, total_epochs=total_epochs)
    return jitted(*args, **static)


def fit_call(key, data, spec, hparams, n_epochs, *, init="random_samples", order=None, trace=False,
             resume=None, total_epochs=None):
    """What ``fit`` runs, validated but not run: ``(jitted, args, static_kwargs)``. Benchmarks time
    ``jitted.lower(*args, **static_kwargs).compile()`` apart from the run."""
    key = validation.check_keys(key, batched=False)
    if resume is not None:
        init = None  # the weights come from the resumed state
    data, hparams, n_epochs, init, init_weights, order = _prepare(spec, data, hparams, n_epochs, init, order, False)
    if resume is not None:
        resume = validation.check_resume(resume, spec, data.shape[1], data.dtype)
    n_steps = data.shape[0] if order is None else order.shape[1]
    total_epochs = validation.check_total_epochs(total_epochs, n_epochs, resume, n_steps)
    jitted = _compiled(_fit_impl, _STATIC, jax.default_backend())
    return jitted, (key, data, hparams, init_weights, order, resume), dict(
        spec=spec, n_epochs=n_epochs, init=init, trace=trace, total_epochs=total_epochs)


def _sweep_impl(keys, data, hparams, init_weights, order, *, spec, n_epochs, init, trace, hparam_axes,
                seed_axes):
    def fit_one(key, hp, weights, seed_order):
        return _fit_impl(key, data, hp, weights, seed_order, spec=spec, n_epochs=n_epochs, init=init, trace=trace)

    weights_axis, order_axis = seed_axes
    run = jax.vmap(fit_one, in_axes=(0, None, weights_axis, order_axis))
    if any(axis is not None for axis in hparam_axes):
        run = jax.vmap(run, in_axes=(None, Hparams(*hparam_axes), None, None))
    return run(keys, hparams, init_weights, order)


def sweep(keys, data, spec: Spec, hparams: Hparams, n_epochs: int, *, init="random_samples", order=None,
          trace: bool = False) -> FitResult:
    """``fit`` for many seeds (and hyperparameter values) as one compiled program.

    keys: ``[S]`` keys, e.g. ``jax.random.split(jax.random.key(0), 64)``.
    hparams: any field may be a 1-D array of length H (all swept fields share H, zipped, so build a
      grid with ``jnp.meshgrid`` first); results then have leading axes ``[H, S, ...]``, else ``[S, ...]``.
    init: a name, shared initial weights ``[K, D]``, or one set per seed ``[S, K, D]``.
    order: as in ``fit`` (shared by all seeds), or one per seed ``[S, n_epochs, n_steps]``.
    Where several devices are visible and S divides evenly, the seed axis is sharded over them
    (on a CPU: ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` before importing jax).
    ``sweep(keys)[..., i]`` equals ``fit(keys[i])``.
    """
    jitted, args, static = sweep_call(keys, data, spec, hparams, n_epochs, init=init, order=order, trace=trace)
    return jitted(*args, **static)


def sweep_call(keys, data, spec, hparams, n_epochs, *, init="random_samples", order=None, trace=False):
    """What ``sweep`` runs, validated and placed but not run: ``(jitted, args, static_kwargs)``."""
    keys = validation.check_keys(keys, batched=True)
    n_seeds = keys.shape[0]
    data, hparams, n_epochs, init, init_weights, order = _prepare(
        spec, data, hparams, n_epochs, init, order, True, n_seeds)
    hparam_axes = tuple(0 if jnp.ndim(v) == 1 else None for v in hparams)
    weights_axis = 0 if init_weights is not None and init_weights.ndim == 3 else None
    order_axis = 0 if order is not None and order.ndim == 3 else None
    devices = jax.devices()
    if len(devices) > 1 and n_seeds % len(devices) == 0:
        by_seed = NamedSharding(Mesh(devices, ("seeds",)), PartitionSpec("seeds"))
        keys = jax.device_put(keys, by_seed)
        if weights_axis == 0:
            init_weights = jax.device_put(init_weights, by_seed)
        if order_axis == 0:
            order = jax.device_put(order, by_seed)
    static_names = ("spec", "n_epochs", "init", "trace", "hparam_axes", "seed_axes")
    jitted = _compiled(_sweep_impl, static_names, jax.default_backend())
    return jitted, (keys, data, hparams, init_weights, order), dict(
        spec=spec, n_epochs=n_epochs, init=init, trace=trace, hparam_axes=hparam_axes,
        seed_axes=(weights_axis, order_axis))
