"""The driver every family shares: ``fit`` (one run), ``sweep`` (many seeds and settings as one
compiled program) and ``restarts`` (keep the best of many runs).

The driver knows epochs, not families: it takes the epoch from ``compclust.algorithms`` by
``spec.algorithm`` (online: a scan of ``step`` over the samples; batch: one pass over all the data;
minibatch: a scan over minibatches), scans it over epochs inside a single ``jax.jit``, measures
every epoch, and can stop early (a frozen state, so the iteration count stays fixed under vmap).
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from . import native, validation
from .algorithms import batch, minibatch, online
from .algorithms.online import schedule_values, step
from .initializers import initialize
from .metrics import as_blocks, evaluate_blocks, not_measured, row_sq_norms
from .spec import Hparams, Spec
from .state import EpochMetrics, FitResult, State, StepMetrics

__all__ = ["State", "StepMetrics", "EpochMetrics", "FitResult", "Restarts", "init", "step", "fit", "sweep",
           "restarts", "schedule_values"]

# Counts how often the training loop is traced (compiled); tests use it to prove there is no retrace.
TRACE_COUNT = {"fit": 0}


def initial_state(spec: Spec, weights) -> State:
    n_units = spec.n_units
    start = 1.0 / n_units if spec.winner == "desieno" else 1.0  # DeSieno starts from equal frequencies
    return State(weights=weights, conscience=jnp.full((n_units,), start, weights.dtype),
                 counts=jnp.zeros((n_units,), weights.dtype), step=jnp.zeros((), jnp.int32))


def init(key, data, spec: Spec, *, method: str = "random_samples") -> State:
    """A fresh State with weights from a named initializer (see ``initializers.INITIALIZERS``)."""
    key = validation.check_keys(key, batched=False)
    data = validation.check_data(data, validation.dtype_of(spec))
    validation.check_init(method, spec, data, data.dtype)
    return initial_state(spec, _init_weights(method, spec, key, data))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init_weights(method, spec, key, data):
    return initialize(method, key, data, spec).astype(data.dtype)


def steps_per_epoch(spec: Spec, n_samples: int, order) -> int:
    """Schedule steps in one epoch: samples (online), minibatches, or 1 (batch)."""
    if spec.algorithm == "batch":
        return 1
    if spec.algorithm == "minibatch":
        return minibatch.steps_per_epoch(spec, n_samples, order)
    return online.steps_per_epoch(spec, n_samples, order)


def _train_epoch(spec, state, data, blocks, valid, hparams, key, epoch_order, total_epochs, trace,
                 measure=True, row_sq=None, kept=None, full_pass=None, native_threads=0):
    """One epoch of the spec's family: ``(state, Evaluation, labels [rows], lr, sigma, trace, kept)``
    (``kept``: Lloyd's sums carried between epochs, ``batch.KeptSums``, or None).

    The Evaluation is of the weights after the epoch, except for the batch family, whose pass
    measures the weights it started from (the driver shifts those by one epoch). Without
    ``measure`` the online and minibatch families skip it (``metrics.not_measured``, labels None)."""
    n_samples, dtype = data.shape[0], data.dtype
    if spec.algorithm == "batch":
        state, evaluation, labels, sigma, kept = batch.epoch(spec, state, blocks, valid, n_samples, hparams,
                                                             total_epochs, row_sq, kept, full_pass)
        return state, evaluation, labels, jnp.ones((), dtype), sigma, None, kept
    total_steps = total_epochs * steps_per_epoch(spec, n_samples, epoch_order)
    if spec.algorithm == "online":
        state, step_metrics = online.epoch(spec, state, data, hparams, key, epoch_order, total_steps, trace,
                                           native_threads=native_threads)
    else:
        state, step_metrics = minibatch.epoch(spec, state, data, hparams, key, epoch_order, total_steps, trace)
    if measure:
        evaluation, labels = evaluate_blocks(spec, state.weights, blocks, valid, n_samples)
    else:
        evaluation, labels = not_measured(dtype), None
    lr, sigma = schedule_values(spec, hparams, (state.step - 1).astype(dtype), total_steps)
    return state, evaluation, labels, jnp.asarray(lr, dtype), jnp.asarray(sigma, dtype), step_metrics, kept


def _packed(metrics: EpochMetrics):
    """An epoch's metrics as one vector: the epoch scan then writes one row an epoch instead of seven
    scalars, each its own small kernel on XLA:CPU (~0.1 us apiece; a small online epoch is ~10 us)."""
    dtype = metrics.quantization_error.dtype
    return jnp.stack([jnp.asarray(value, dtype) for value in metrics])  # dead_units: a count, exact


def _unpacked(rows) -> EpochMetrics:
    """``_packed``'s rows ``[..., 7]`` back as EpochMetrics of ``[...]`` arrays."""
    metrics = EpochMetrics(*(rows[..., i] for i in range(len(EpochMetrics._fields))))
    return metrics._replace(dead_units=metrics.dead_units.astype(jnp.int32))


def _data_blocks(spec: Spec, data, mesh):
    """The data as row blocks (``as_blocks``); with a mesh, every block's rows split over its "data"
    axis. XLA's SPMD partitioner then runs each device's matrix products on its own rows and sums
    the sufficient statistics (``sum h x``, ``sum h``, errors) over the devices with an all-reduce."""
    if mesh is None:
        return as_blocks(data, spec.chunk_size)
    blocks, valid = as_blocks(data, spec.chunk_size, mesh.shape["data"])
    # Inside a sweep's shard_map (manual over "seeds") the constraint must name the context's
    # abstract mesh, whose "seeds" axis is manual there; elsewhere the mesh itself.
    context = jax.sharding.get_abstract_mesh()
    by_rows = NamedSharding(mesh if context.empty else context, PartitionSpec(None, "data"))
    return lax.with_sharding_constraint(blocks, by_rows), lax.with_sharding_constraint(valid, by_rows)


def _filled(spec: Spec, data):
    """The data initializers see: with missing data, each NaN replaced by its feature's mean."""
    if not spec.missing:
        return data
    return jnp.where(jnp.isnan(data), jnp.nanmean(data, axis=0), data)


def _fit_impl(key, data, hparams, init_weights, order, resume=None, tol=None, *, spec: Spec, n_epochs: int,
              init: str | None, trace: bool, total_epochs: int | None = None, mesh: Mesh | None = None,
              epoch_metrics: bool = True, full_pass_every: int | None = None,
              native_threads: int = 0) -> FitResult:
    """Whole training run for one key: traceable, vmappable, no host syncs. With ``resume`` (a State)
    it continues that run; the schedules then span ``total_epochs``. With ``tol`` the state freezes
    once converged (see ``fit``). With a ``mesh``, the rows are split over its "data" axis.

    full_pass_every: Lloyd's kept sums (``batch.keeps_sums``) and bounds are computed in full at every
    such epoch of the call (default ``chunk_length(n_epochs)``, the progress bar's chunk): the progress
    chunks, each a call that starts with a full pass, then equal one call bit for bit. With ``tol``
    (never run in chunks) the default is the first epoch only."""
    TRACE_COUNT["fit"] += 1
    n_samples, dtype = data.shape[0], data.dtype
    init_key, run_key = jax.random.split(key)
    total_epochs = total_epochs or n_epochs
    if resume is None:
        weights = init_weights if init is None else initialize(init, init_key, _filled(spec, data), spec).astype(dtype)
        start = initial_state(spec, weights)
    else:
        start = resume
    blocks, valid = _data_blocks(spec, data, mesh)
    evaluated_before = spec.algorithm == "batch"
    # Each row's |x|^2 once per run, not once per epoch (a pass over the data every epoch).
    row_sq = row_sq_norms(spec, blocks) if evaluated_before else None
    n_rows = blocks.shape[0] * blocks.shape[1]
    kept = None
    if evaluated_before and batch.keeps_sums(spec, valid, epoch_metrics):
        kept = batch.no_kept_sums(n_rows, start.weights, batch.keeps_bounds(spec, valid, epoch_metrics))
    # With tol the run is never cut into progress chunks, so only its first epoch need be a full pass.
    full_pass_every = full_pass_every or (n_epochs if tol is not None else chunk_length(n_epochs))
    # scikit-learn's tolerance: relative to the mean feature variance.
    scaled_tol = None if tol is None else tol * jnp.mean(jnp.nanvar(data, axis=0) if spec.missing else jnp.var(data, axis=0))

    def run_epoch(state, kept, epoch_key, epoch_order, index):
        new_state, evaluation, labels, lr, sigma, step_metrics, kept = _train_epoch(
            spec, state, data, blocks, valid, hparams, epoch_key, epoch_order, total_epochs, trace,
            measure=epoch_metrics, row_sq=row_sq, kept=kept, full_pass=index % full_pass_every == 0,
            native_threads=native_threads)
        shift_sq = jnp.sum((new_state.weights - state.weights) ** 2)
        metrics = EpochMetrics(*evaluation, center_shift=jnp.sqrt(shift_sq), lr=lr, sigma=sigma)
        return new_state, kept, metrics, labels, shift_sq, step_metrics

    def one_epoch(carry, inputs):
        state, kept, labels_before, done, n_iter, last = carry
        epoch_key, epoch_order, index = inputs
        if tol is None:
            state, kept, metrics, labels, _, step_metrics = run_epoch(state, kept, epoch_key, epoch_order, index)
            return (state, kept, labels_before, done, n_iter + 1, metrics), (_packed(metrics), step_metrics)

        def frozen(state_and_kept):
            return *state_and_kept, last, labels_before, jnp.zeros((), dtype), None

        def train(state_and_kept):
            return run_epoch(*state_and_kept, epoch_key, epoch_order, index)[:5] + (None,)

        new_state, kept, metrics, labels, shift_sq, _ = lax.cond(done, frozen, train, (state, kept))
        # scikit-learn's rule: labels unchanged since the last epoch, or a small squared centre shift.
        converged = jnp.all(labels == labels_before) | (shift_sq <= scaled_tol)
        carry = (new_state, kept, labels, done | converged, n_iter + (~done).astype(jnp.int32), metrics)
        return carry, (_packed(metrics), None)

    no_metrics = EpochMetrics(*(jnp.zeros((), dtype) for _ in range(4)), jnp.zeros((), dtype),
                              jnp.zeros((), dtype), jnp.zeros((), dtype))
    no_metrics = no_metrics._replace(dead_units=jnp.zeros((), jnp.int32))
    carry = (start, kept, jnp.full((n_rows,), -2, jnp.int32), jnp.zeros((), bool), jnp.zeros((), jnp.int32),
             no_metrics)
    # Epoch e of the whole run draws from fold_in(run_key, e): a run trained in chunks (resume, or
    # progress) with the same key sees the same permutations and samples as one uninterrupted run.
    first_epoch = start.step // steps_per_epoch(spec, n_samples, order)
    epoch_keys = jax.vmap(lambda e: jax.random.fold_in(run_key, e))(first_epoch + jnp.arange(n_epochs))
    (state, _, _, _, n_iter, _), (packed, steps) = lax.scan(one_epoch, carry,
                                                            (epoch_keys, order, jnp.arange(n_epochs)))
    metrics = _unpacked(packed)
    if not epoch_metrics and not evaluated_before:  # only the last epoch is measured, after the scan
        final, _ = evaluate_blocks(spec, state.weights, blocks, valid, n_samples)
        metrics = EpochMetrics(*(per_epoch.at[-1].set(last) for per_epoch, last in zip(metrics[:4], final)),
                               *metrics[4:])
    if evaluated_before:  # epoch e's pass measured the weights after epoch e - 1: shift by one
        final, _ = evaluate_blocks(spec, state.weights, blocks, valid, n_samples)
        later = jnp.arange(n_epochs) + 1 < n_iter

        def shifted(per_epoch, last):
            following = jnp.concatenate([per_epoch[1:], last[None]])
            return jnp.where(later, following, last)

        measured = EpochMetrics(*map(shifted, metrics[:4], final), *metrics[4:])
        metrics = measured
    return FitResult(state=state, metrics=metrics, trace=steps, n_iter=n_iter)


_STATIC = ("spec", "n_epochs", "init", "trace", "total_epochs", "mesh", "epoch_metrics", "full_pass_every",
           "native_threads")


@functools.cache
def _compiled(impl, static_argnames, backend, xla_online_steps=False):
    """``jax.jit(impl)`` with per-backend compiler options, built once per backend and kind of loop.

    On XLA:CPU the YNNPACK reduction fusion makes the per-sample distance reduction of the
    online step ~1.6x slower (its results are bit-identical), so it is switched off for programs
    whose online steps XLA runs (``xla_online_steps``), never process-wide. The batch and
    minibatch epochs are matrix products, which YNNPACK runs ~1.3x faster (measured on MNIST's
    [10000, 784] x [784, 400]): they keep it, as do online runs whose steps are the native
    kernel, where the products left are the epochs' measurements (digits 10x10: 0.48 -> 0.34 ms
    an epoch's measurement).
    """
    options = {"xla_cpu_experimental_ynn_fusion_type": ""} if backend == "cpu" and xla_online_steps else {}
    return jax.jit(impl, static_argnames=static_argnames, compiler_options=options)


def _native_threads(spec: Spec, data, sweep: bool) -> int:
    """Threads of this run's native online epochs (``compclust.native``), 0 for the XLA scan: a
    static argument, so the setting at each call decides (and both settings stay compiled). A
    sweep's runs take one thread each (its devices already fill the cores)."""
    if not (native.applies(spec, data.dtype) and native.active()):
        return 0
    return 1 if sweep else native.threads_for(spec, data.shape[1])


def _check_tol_needs_labels(spec: Spec, tol, epoch_metrics):
    """The stopping test needs every epoch's labels, which only the batch family's pass finds unmeasured."""
    if not epoch_metrics and tol is not None and spec.algorithm != "batch":
        raise ValueError("epoch_metrics=False cannot be used with tol outside the batch family: the stopping "
                         "test needs every epoch's labels")


def _prepare(spec, data, hparams, n_epochs, init, order, sweepable, n_seeds=None, trace=False, tol=None):
    dtype = validation.dtype_of(spec)
    data = validation.check_data(data, dtype, missing=spec.missing)
    data = validation.check_missing(spec, data)
    validation.check_family(spec, data, order, trace, tol)
    n_epochs = validation.check_epochs(n_epochs)
    hparams = validation.check_hparams(hparams, spec, dtype, sweepable=sweepable)
    init_weights = validation.check_init(init, spec, data, dtype, per_seed=n_seeds)
    order = validation.check_order(order, data.shape[0], n_epochs, per_seed=n_seeds)
    tol = validation.check_tol(tol, dtype)
    return data, hparams, n_epochs, (init if init_weights is None else None), init_weights, order, tol


def fit(key, data, spec: Spec, hparams: Hparams, n_epochs: int, *, init="random_samples", order=None,
        trace: bool = False, resume: State | None = None, total_epochs: int | None = None,
        tol: float | None = None, mesh: Mesh | None = None, progress: bool = False,
        epoch_metrics: bool = True) -> FitResult:
    """Train one network on ``data [N, D]`` for ``n_epochs`` epochs.

    init: a name from ``initializers.INITIALIZERS`` or initial weights ``[K, D]``.
    order: None for a fresh permutation per epoch drawn from the key, or sample indices
      ``[n_steps]`` (every epoch) / ``[n_epochs, n_steps]`` to reproduce another library's order.
    trace: also return the winner and distance of every step (``[n_epochs, n_steps]``).
    resume, total_epochs: train in chunks (to report progress between them, or to stop and go on):
      ``fit(k2, ..., n_epochs=100, resume=first.state, total_epochs=1000)`` continues ``first``
      (weights, consciences, step count; ``init`` is then unused) with the schedules spanning
      ``total_epochs``. Epoch e draws its randomness from ``fold_in(key, e)``, so chunks trained
      with the same key (or the same ``order``) reproduce one uninterrupted run exactly (Lloyd's
      K-means, whose kept sums start afresh in every call, to rounding).
    tol: stop early, as scikit-learn's KMeans does: after the first epoch whose labels (best units
      of all the data) equal the previous epoch's, or whose squared centre shift
      ``sum |W_new - W_old|^2`` is at most ``tol * mean(var(data, axis=0))``. The iteration count
      stays fixed (later epochs leave the state as it is and repeat the last metrics), so a sweep
      with a tolerance equals its fits; ``n_iter`` reports the epochs run. None trains every epoch.

    mesh: a ``jax.sharding.Mesh`` with a "data" axis, for the batch and minibatch families: the rows
      are split over its devices (each computes its rows' statistics, a collective sum combines
      them, all inside the one compiled program); the result equals one device's to float
      rounding. Works the same over several hosts (``jax.distributed``; pass a global array).

    progress: show a progress bar over epochs (tqdm). The run then goes as equal compiled chunks
      of epochs (compiled once; the result equals one call bit for bit; the host waits only
      between chunks). With ``tol`` the run stays one call, and the bar moves when it ends.

    epoch_metrics: measure every epoch (the default). False measures only the last epoch of the
      call (the others' quantization_error, topographic_error and inertia are NaN, dead_units -1;
      center_shift, lr and sigma stay per epoch): for small online maps the measurement costs
      about a third of the run (digits 10x10: ~1 ms of ~3 ms per epoch). The batch family measures
      every epoch as part of its pass anyway, except Lloyd's K-means (Euclidean, no grid, complete
      data in one block): unmeasured, its epochs run on Hamerly's bounds and compute the distances
      of only the rows whose nearest centre may have changed (same labels and centres; MNIST,
      K = 10: 1.2 instead of 1.8 ms an iteration). Online and minibatch: not with ``tol``, whose
      test needs every epoch's labels.

    The result's ``metrics`` are per epoch, measured on all the data after it; ``n_iter`` the
    epochs run. The batch family's schedules run per epoch (epoch e of E at t = e, T = E - 1).
    """
    _check_tol_needs_labels(spec, tol, epoch_metrics)
    if progress and tol is None:
        return _fit_with_progress(key, data, spec, hparams, n_epochs, init=init, order=order, trace=trace,
                                  resume=resume, total_epochs=total_epochs, mesh=mesh, epoch_metrics=epoch_metrics)
    call = fit_call(key, data, spec, hparams, n_epochs, init=init, order=order, trace=trace, resume=resume,
                    total_epochs=total_epochs, tol=tol, mesh=mesh, epoch_metrics=epoch_metrics)
    return _run(spec, call, n_epochs if progress else None)


def _run(spec: Spec, call, bar_epochs=None):
    """Runs a validated ``(jitted, args, static)`` call as one compiled program: with ``bar_epochs``
    a bar that moves once, at the end; a run whose weights diverged to NaN/inf warns."""
    jitted, args, static = call
    bar = None if bar_epochs is None else _progress_bar(bar_epochs)
    result = jitted(*args, **static)
    if bar is not None:
        jax.block_until_ready(result)
        bar.update(validation.check_epochs(bar_epochs))
        bar.close()
    return _warn_if_diverged(spec, result)


def _warn_if_diverged(spec: Spec, result):
    """A run whose weights left the finite numbers says so, rather than handing back NaN quietly."""
    if not validation._all_finite(result.state.weights):
        import warnings
        hint = (" neurolab's conscience rule moves the winner by lr*|x - w|*(x - w) and diverges once "
                "lr*|x - w| > 2: scale the data (fit_scaler(..., 'global_norm')) or lower lr." if spec.winner ==
                "conscience" else " Lower the learning rate, scale the data, or check the kernel (a mexican hat "
                "repels units).")
        warnings.warn("training diverged: some weights are NaN or infinite." + hint, RuntimeWarning, stacklevel=3)
    return result


def _progress_bar(n_epochs):
    from tqdm.auto import tqdm  # imported only when asked for
    return tqdm(total=n_epochs, unit="epoch", desc="compclust")


def chunk_length(n_epochs: int) -> int:
    """Epochs per progress chunk: the divisor of n_epochs nearest n_epochs / 20 from below, so all
    chunks have one shape (one compilation) and the bar moves about 20 times."""
    target = max(1, n_epochs // 20)
    return max(d for d in range(1, target + 1) if n_epochs % d == 0)


def _fit_with_progress(key, data, spec, hparams, n_epochs, *, init, order, trace, resume, total_epochs, mesh,
                       epoch_metrics=True):
    """``fit`` as equal chunks of epochs that resume one another, with a bar moving between them.
    The first chunk starts from the state one call would start from, so every chunk runs the same
    compiled program and the result equals one call's."""
    n_epochs = validation.check_epochs(n_epochs)
    key = validation.check_keys(key, batched=False)
    dtype = validation.dtype_of(spec)
    data = validation.check_missing(spec, validation.check_data(data, dtype, missing=spec.missing))
    if resume is None:
        # The state one call would start from; the flag to check_total_epochs below is then set by hand.
        validation.check_init(init, spec, data, dtype)
        if isinstance(init, str):
            weights = _start_weights(init, spec, jax.random.split(jax.random.clone(key))[0], data)
        else:
            weights = validation.check_init(init, spec, data, dtype)
        resume, total_epochs = initial_state(spec, jnp.asarray(weights, dtype)), total_epochs or n_epochs
    order = validation.check_order(order, data.shape[0], n_epochs)

    def run_chunk(first, chunk, start):
        # The same key every chunk, by design (epoch e draws from fold_in(key, e)): cloned so that
        # JAX's key-reuse checker sees no reuse.
        # Lloyd's kept sums are then summed in full at the same epochs as in one call.
        return _run(spec, fit_call(jax.random.clone(key), data, spec, hparams, chunk,
                                   order=None if order is None else order[first:first + chunk], trace=trace,
                                   resume=start, total_epochs=total_epochs, mesh=mesh, epoch_metrics=epoch_metrics,
                                   full_pass_every=chunk))

    return _in_chunks(run_chunk, n_epochs, resume)


def _in_chunks(run_chunk, n_epochs: int, resume) -> FitResult:
    """``run_chunk(first_epoch, n, start_state)`` over equal chunks of epochs, each resuming the last,
    with a progress bar moving between them; the chunks' results joined along the epoch axis
    (the last of the metrics, the second-to-last of the per-step trace; in fits and sweeps alike)."""
    chunk = chunk_length(n_epochs)
    bar = _progress_bar(n_epochs)
    results = []
    try:
        for first in range(0, n_epochs, chunk):
            result = jax.block_until_ready(run_chunk(first, chunk, resume))
            results.append(result)
            resume = result.state
            bar.update(chunk)
    finally:
        bar.close()
    metrics = jax.tree_util.tree_map(lambda *parts: jnp.concatenate(parts, axis=-1), *[r.metrics for r in results])
    steps = None if results[0].trace is None else jax.tree_util.tree_map(
        lambda *parts: jnp.concatenate(parts, axis=-2), *[r.trace for r in results])
    return FitResult(state=results[-1].state, metrics=metrics, trace=steps, n_iter=sum(r.n_iter for r in results))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _start_weights(method, spec, init_key, data):
    return initialize(method, init_key, _filled(spec, data), spec).astype(data.dtype)


def fit_call(key, data, spec, hparams, n_epochs, *, init="random_samples", order=None, trace=False,
             resume=None, total_epochs=None, tol=None, mesh=None, epoch_metrics=True, full_pass_every=None):
    """What ``fit`` runs, validated but not run: ``(jitted, args, static_kwargs)``. Benchmarks time
    ``jitted.lower(*args, **static_kwargs).compile()`` apart from the run. ``full_pass_every``: see
    ``_fit_impl`` (the progress chunks pass the whole run's)."""
    key = validation.check_keys(key, batched=False)
    if resume is not None:
        init = None  # the weights come from the resumed state
    data, hparams, n_epochs, init, init_weights, order, tol = _prepare(
        spec, data, hparams, n_epochs, init, order, False, trace=trace, tol=tol)
    if resume is not None:
        resume = validation.check_resume(resume, spec, data.shape[1], data.dtype)
    n_steps = steps_per_epoch(spec, data.shape[0], order)
    total_epochs = validation.check_total_epochs(total_epochs, n_epochs, resume, n_steps)
    validation.check_mesh(mesh, spec, "data")
    native_threads = _native_threads(spec, data, sweep=False)
    jitted = _compiled(_fit_impl, _STATIC, jax.default_backend(), spec.algorithm == "online" and not native_threads)
    _check_tol_needs_labels(spec, tol, epoch_metrics)
    return jitted, (key, data, hparams, init_weights, order, resume, tol), dict(
        spec=spec, n_epochs=n_epochs, init=init, trace=trace, total_epochs=total_epochs, mesh=mesh,
        epoch_metrics=bool(epoch_metrics), full_pass_every=full_pass_every, native_threads=native_threads)


def default_group_size(backend: str) -> int | None:
    """Runs vmapped together per device in a ``sweep`` unless told: 1 on a CPU, all elsewhere.

    On a CPU, vmapped online runs advance in lockstep, so every step streams every run's weights
    through the caches (64 digits maps: 2.4x slower than one run after another, each run's weights
    staying in L1/L2); on a GPU lockstep vmap is what fills the device."""
    return 1 if backend == "cpu" else None


def _sweep_impl(keys, data, hparams, init_weights, order, tol=None, resume=None, *, spec, n_epochs, init, trace,
                hparam_axes, seed_axes, group_size=None, mesh=None, epoch_metrics=True, total_epochs=None,
                full_pass_every=None, native_threads=0):
    """Every (hparams, seed) run of a sweep. Each group of devices along ``mesh``'s "seeds" axis (when
    it has one) takes its share of the seeds (``shard_map``, manual over "seeds" only) and runs its
    H x S_local runs as ``lax.map`` over groups of ``group_size`` vmapped runs (None: all vmapped at
    once). Over a "data" axis of size > 1 every run's rows are split as in ``fit`` (``_data_blocks``):
    that axis stays with XLA's partitioner, which sums each run's statistics over it. ``resume``
    holds one State per run (leading ``[S]`` or ``[H, S]``)."""
    weights_axis, order_axis = seed_axes
    swept = [axis is not None for axis in hparam_axes]
    axes = () if mesh is None else mesh.axis_names
    data_mesh = mesh if "data" in axes and mesh.shape["data"] > 1 else None

    def on_device(keys, data, hparams, init_weights, order, resume):
        n_local = keys.shape[0]
        n_settings = next((np.shape(v)[0] for v, s in zip(hparams, swept) if s), 1)
        n_runs = n_settings * n_local

        def fit_run(run_and_key):  # run = setting * n_local + seed
            run, key = run_and_key
            setting, seed = run // n_local, run % n_local
            hp = Hparams(*(v[setting] if s else v for v, s in zip(hparams, swept)))
            weights = init_weights if weights_axis is None else init_weights[seed]
            seed_order = order if order_axis is None else order[seed]
            start = None if resume is None else jax.tree_util.tree_map(
                lambda leaf: leaf[setting, seed] if any(swept) else leaf[seed], resume)
            return _fit_impl(key, data, hp, weights, seed_order, start, tol=tol, spec=spec, n_epochs=n_epochs,
                             init=init, trace=trace, epoch_metrics=epoch_metrics, total_epochs=total_epochs,
                             mesh=data_mesh, full_pass_every=full_pass_every, native_threads=native_threads)

        runs = jnp.arange(n_runs, dtype=jnp.int32)
        # Each run is handed its key rather than indexing a closed-over array of keys inside the loop,
        # which JAX's key-reuse checker reads as one key consumed on every iteration.
        run_keys = keys[runs % n_local]
        if n_runs == 1:  # one run per device: nothing to batch (and JAX's key-reuse checker misreads vmapped scans)
            result = jax.tree_util.tree_map(lambda leaf: leaf[None], fit_run((runs[0], run_keys[0])))
        elif group_size is None or group_size >= n_runs:
            result = jax.vmap(fit_run)((runs, run_keys))
        else:
            result = lax.map(fit_run, (runs, run_keys), batch_size=None if group_size == 1 else group_size)
        if any(swept):
            result = jax.tree_util.tree_map(lambda leaf: leaf.reshape(n_settings, n_local, *leaf.shape[1:]), result)
        return result

    if "seeds" not in axes:  # one device, or a mesh with only a "data" axis: jit partitions the rows
        return on_device(keys, data, hparams, init_weights, order, resume)
    by_seed, shared = PartitionSpec("seeds"), PartitionSpec()
    by_run = PartitionSpec(None, "seeds") if any(swept) else by_seed
    # The data goes in as an argument (replicated over "seeds"), not as a closure: a closed-over array
    # that carries a sharding of this mesh (a previous sweep's output) clashes with the manual axis.
    in_specs = (by_seed, shared, shared, by_seed if weights_axis == 0 else shared,
                by_seed if order_axis == 0 else shared, None if resume is None else by_run)
    return jax.shard_map(on_device, mesh=mesh, in_specs=in_specs, out_specs=by_run, axis_names={"seeds"},
                         check_vma=False)(keys, data, hparams, init_weights, order, resume)


def sweep(keys, data, spec: Spec, hparams: Hparams, n_epochs: int, *, init="random_samples", order=None,
          trace: bool = False, tol: float | None = None, group_size: int | None = None,
          epoch_metrics: bool = True, resume: State | None = None, total_epochs: int | None = None,
          progress: bool = False, mesh: Mesh | None = None) -> FitResult:
    """``fit`` for many seeds (and hyperparameter values) as one compiled program.

    keys: ``[S]`` keys, e.g. ``jax.random.split(jax.random.key(0), 64)``.
    hparams: any field may be a 1-D array of length H (all swept fields share H, zipped, so build a
      grid with ``jnp.meshgrid`` first); results then have leading axes ``[H, S, ...]``, else ``[S, ...]``.
    init: a name, shared initial weights ``[K, D]``, or one set per seed ``[S, K, D]``.
    order: as in ``fit`` (shared by all seeds), or one per seed ``[S, n_epochs, n_steps]``.
    Where several devices are visible and S divides evenly, the seed axis is sharded over them
    (on a CPU: ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` before importing jax).
    mesh: where to run instead: a ``jax.sharding.Mesh`` with axes "seeds" and/or "data", e.g.
      ``Mesh(np.array(jax.devices()).reshape(2, 4), ("seeds", "data"))``: the seeds split over "seeds"
      (S must divide evenly), each run's rows over "data" as in ``fit`` (batch and minibatch families;
      an online sweep's "data" axis must have size 1), all in one compiled program. Equal to the
      unsharded sweep to float rounding of the sums.
    tol: as in ``fit``; each run freezes when it converges, so ``sweep(keys)[..., i]`` still equals
    ``fit(keys[i])``.
    group_size: how the H x S runs share a device: groups of ``group_size`` runs vmapped in lockstep,
      the groups one after another (``lax.map``); each device runs its own seeds (sharded as above).
      None is the backend's default (``default_group_size``): 1 on a CPU, where a run's weights then
      stay in cache (64 digits maps: 2.4x faster than vmap), all runs at once on a GPU. Results
      are the same for every group size.
    epoch_metrics: as in ``fit``.
    resume, total_epochs: as in ``fit``, with one State per run (an earlier sweep's ``state``, leading
      ``[S]`` or ``[H, S]``) and the same keys: chunks reproduce one uninterrupted sweep.
    progress: a progress bar over epochs; the sweep then runs as equal compiled chunks of epochs
      (compiled once; equal to one call bit for bit). With ``tol`` it stays one call.
    """
    if progress and tol is None:
        return _sweep_with_progress(keys, data, spec, hparams, n_epochs, init=init, order=order, trace=trace,
                                    group_size=group_size, epoch_metrics=epoch_metrics, resume=resume,
                                    total_epochs=total_epochs, mesh=mesh)
    call = sweep_call(keys, data, spec, hparams, n_epochs, init=init, order=order, trace=trace, tol=tol,
                      group_size=group_size, epoch_metrics=epoch_metrics, resume=resume, total_epochs=total_epochs,
                      mesh=mesh)
    return _run(spec, call, n_epochs if progress else None)


def _sweep_with_progress(keys, data, spec, hparams, n_epochs, *, init, order, trace, group_size, epoch_metrics,
                         resume, total_epochs, mesh=None):
    """``sweep`` as equal chunks of epochs that resume one another (see ``_fit_with_progress``)."""
    n_epochs = validation.check_epochs(n_epochs)
    keys = validation.check_keys(keys, batched=True)
    dtype = validation.dtype_of(spec)
    data = validation.check_missing(spec, validation.check_data(data, dtype, missing=spec.missing))
    hparams = validation.check_hparams(hparams, spec, dtype, sweepable=True)
    n_seeds = keys.shape[0]
    order = validation.check_order(order, data.shape[0], n_epochs, per_seed=n_seeds)
    if resume is None:
        given = validation.check_init(init, spec, data, dtype, per_seed=n_seeds)
        if isinstance(init, str):
            weights = jax.vmap(lambda key: _start_weights(init, spec, jax.random.split(key)[0], data))(
                jax.random.clone(keys))
        else:
            weights = jnp.broadcast_to(jnp.asarray(given, dtype), (n_seeds, spec.n_units, data.shape[1]))
        n_settings = next((np.shape(v)[0] for v in hparams if np.ndim(v) == 1), None)
        if n_settings is not None:
            weights = jnp.broadcast_to(weights, (n_settings, *weights.shape))
        flat = weights.reshape(-1, *weights.shape[-2:])
        resume = jax.tree_util.tree_map(lambda leaf: leaf.reshape(*weights.shape[:-2], *leaf.shape[1:]),
                                        jax.vmap(lambda w: initial_state(spec, w))(flat))
        total_epochs = total_epochs or n_epochs

    def run_chunk(first, chunk, start):
        return _run(spec, sweep_call(jax.random.clone(keys), data, spec, hparams, chunk,
                                     order=None if order is None else order[..., first:first + chunk, :],
                                     trace=trace, group_size=group_size, epoch_metrics=epoch_metrics, resume=start,
                                     total_epochs=total_epochs, mesh=mesh, full_pass_every=chunk))

    return _in_chunks(run_chunk, n_epochs, resume)


def sweep_call(keys, data, spec, hparams, n_epochs, *, init="random_samples", order=None, trace=False, tol=None,
               group_size=None, epoch_metrics=True, resume=None, total_epochs=None, mesh=None,
               full_pass_every=None):
    """What ``sweep`` runs, validated and placed but not run: ``(jitted, args, static_kwargs)``."""
    keys = validation.check_keys(keys, batched=True)
    n_seeds = keys.shape[0]
    if resume is not None:
        init = None  # the weights come from the resumed states
    data, hparams, n_epochs, init, init_weights, order, tol = _prepare(
        spec, data, hparams, n_epochs, init, order, True, n_seeds, trace=trace, tol=tol)
    hparam_axes = tuple(0 if jnp.ndim(v) == 1 else None for v in hparams)
    runs_shape = (n_seeds,) if all(axis is None for axis in hparam_axes) else \
        (next(np.shape(v)[0] for v in hparams if np.ndim(v) == 1), n_seeds)
    resume = validation.check_swept_resume(resume, runs_shape, spec, data.shape[1], data.dtype)
    total_epochs = validation.check_total_epochs(
        total_epochs, n_epochs, None if resume is None else resume._replace(step=np.max(np.asarray(resume.step))),
        steps_per_epoch(spec, data.shape[0], order))
    weights_axis = 0 if init_weights is not None and init_weights.ndim == 3 else None
    order_axis = 0 if order is not None and order.ndim == 3 else None
    if group_size is not None and (isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer))
                                   or group_size < 1):
        raise ValueError(f"group_size must be a positive integer or None, got {group_size!r}")
    backend = jax.default_backend()
    group_size = default_group_size(backend) if group_size is None else int(group_size)
    mesh = validation.check_mesh(mesh, spec, n_seeds=n_seeds)
    devices = jax.devices()
    if mesh is None and len(devices) > 1 and n_seeds % len(devices) == 0:
        mesh = _seed_mesh(tuple(devices))
    if mesh is not None:
        # Per-seed inputs go to their devices along "seeds" (replicated over "data"); with only a
        # "data" axis every device holds them all. The data itself is left to jit, which places it.
        seeds = "seeds" if "seeds" in mesh.axis_names else None
        by_seed = NamedSharding(mesh, PartitionSpec(seeds))
        keys = jax.device_put(keys, by_seed)
        if weights_axis == 0:
            init_weights = jax.device_put(init_weights, by_seed)
        if order_axis == 0:
            order = jax.device_put(order, by_seed)
        if resume is not None:
            by_run = NamedSharding(mesh, PartitionSpec(None, seeds) if len(runs_shape) == 2 else by_seed.spec)
            resume = jax.device_put(resume, by_run)
    _check_tol_needs_labels(spec, tol, epoch_metrics)
    static_names = ("spec", "n_epochs", "init", "trace", "hparam_axes", "seed_axes", "group_size", "mesh",
                    "epoch_metrics", "total_epochs", "full_pass_every", "native_threads")
    native_threads = _native_threads(spec, data, sweep=True)
    jitted = _compiled(_sweep_impl, static_names, backend, spec.algorithm == "online" and not native_threads)
    return jitted, (keys, data, hparams, init_weights, order, tol, resume), dict(
        spec=spec, n_epochs=n_epochs, init=init, trace=trace, hparam_axes=hparam_axes,
        seed_axes=(weights_axis, order_axis), group_size=group_size, mesh=mesh,
        epoch_metrics=bool(epoch_metrics), total_epochs=total_epochs, full_pass_every=full_pass_every,
        native_threads=native_threads)


@functools.cache
def _seed_mesh(devices):
    """One mesh per set of devices: an equal mesh keeps the compiled sweep in jit's cache."""
    return Mesh(np.array(devices), ("seeds",))


class Restarts(NamedTuple):
    best: FitResult         # the run with the lowest final score
    best_index: int         # its position among the runs
    runs: FitResult         # every run, leading axis [R]
    scores: jax.Array       # [R] final score of every run


def restarts(keys, data, spec: Spec, hparams: Hparams, n_epochs: int, *, init="kmeans++", tol=None,
             criterion: str = "inertia", mesh: Mesh | None = None, epoch_metrics: bool = True) -> Restarts:
    """R initialisations (one per key) trained as one ``sweep``; keeps the run whose final
    ``criterion`` ("inertia" or "quantization_error") is lowest, as scikit-learn's ``n_init``.
    hparams must not be swept here. mesh, epoch_metrics: as in ``sweep`` (the choice needs only the
    last epoch's metrics, so ``epoch_metrics=False`` lets Lloyd's K-means run on bounds)."""
    if criterion not in ("inertia", "quantization_error"):
        raise ValueError(f"criterion must be 'inertia' or 'quantization_error', got {criterion!r}")
    validation.check_hparams(hparams, spec, validation.dtype_of(spec), sweepable=False)
    runs = sweep(keys, data, spec, hparams, n_epochs, init=init, tol=tol, mesh=mesh, epoch_metrics=epoch_metrics)
    scores = getattr(runs.metrics, criterion)[:, -1]
    best_index = int(jnp.argmin(scores))
    best = jax.tree_util.tree_map(lambda leaf: leaf[best_index], runs)
    return Restarts(best=best, best_index=best_index, runs=runs, scores=scores)
