"""Reading a trained map: best matching units, distances, quantization, and quality metrics.

The ``*_impl`` functions are pure and traceable (the training loop calls them once per epoch);
the public functions validate their input first and then run a jitted version.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import topology
from .activations import FEW_FEATURES, batch_activation, sq_distances
from .spec import Spec
from .validation import check_data, check_features, check_missing, dtype_of


class Evaluation(NamedTuple):
    quantization_error: jax.Array  # [] float: mean Euclidean distance to the best matching unit
    topographic_error: jax.Array   # [] float: share of samples whose two best units are not grid neighbours (NaN without a grid)
    inertia: jax.Array             # [] float: sum of squared distances to the best matching unit
    dead_units: jax.Array          # [] int32: units that are the best match of no sample


def bmu_impl(spec: Spec, weights, data):
    """Best matching unit of each sample by the spec's activation: ``[N]`` int32, in blocks of
    ``spec.chunk_size`` rows."""
    def best(rows):
        return jnp.argmax(batch_activation(spec.activation, weights, rows, spec.missing), axis=1).astype(jnp.int32)

    blocks, valid = as_blocks(data, spec.chunk_size)
    if valid is None:
        return best(data)
    return jax.lax.map(best, blocks).reshape(-1)[:data.shape[0]]


class Rows(NamedTuple):
    """What one pass over a block of rows ``[c, D]`` finds (padding rows are masked by the caller)."""
    best: jax.Array          # [c] int32: best matching unit by the spec's activation
    sq_error: jax.Array      # [c] float: squared Euclidean distance to it
    not_adjacent: jax.Array  # [c] float: 1 where the runner-up is not the best unit's grid neighbour
    sq_dist: jax.Array       # [c, K] float: squared distances, for wide data less each row's |x|^2
                             # (the negated activation for non-Euclidean ones): only their order is
                             # used; None from measure_rows


def _first_lowest(values, units, fill, axis=1):
    """Lowest value of every row of ``values [c, K]`` (``axis=1``; of every column of ``[K, c]``
    with ``axis=0``) and its first unit (``argmin``'s answer for finite rows): two plain reductions,
    which XLA:CPU vectorises, where ``argmin``'s value-index pair is reduced one element at a time
    (3x slower on the digits' [1797, 100]). ``units`` is the unit index broadcast along ``axis``."""
    lowest = jnp.min(values, axis=axis)
    return lowest, jnp.min(jnp.where(values == jnp.expand_dims(lowest, axis), units, fill), axis=axis)


def _not_adjacent(spec: Spec, cost, best, units, axis=1):
    """Per row, 1 where the runner-up (the best once the best is masked out; ``lax.top_k`` cost 20x
    more on XLA:CPU) is not the best unit's grid neighbour; NaN without a grid. ``cost`` has the
    units along ``axis``, as in ``_first_lowest``."""
    n_units = cost.shape[axis]
    if spec.grid is None or n_units < 2:
        return jnp.full(best.shape, jnp.nan, cost.dtype)
    masked = jnp.where(units == jnp.expand_dims(best, axis), jnp.inf, cost)
    runner_up = _first_lowest(masked, units, n_units - 1, axis)[1]
    return (~topology.are_neighbours(spec.grid, best, runner_up, cost.dtype)).astype(cost.dtype)


def assign_rows(spec: Spec, weights, rows, row_sq=None) -> Rows:
    """Best unit, error and runner-up adjacency of every row: the ``[c, K]`` work of one block.

    row_sq: ``|x|^2`` of every row ``[c]``, where the caller has it (the batch loop computes it once
    per run instead of once per epoch: a pass over the data saved every epoch)."""
    n_units = weights.shape[0]
    units = jnp.arange(n_units, dtype=jnp.int32)[None, :]
    if _ranks_by_cross_product(spec, rows.shape[1]):
        # scikit-learn's form: the nearest unit minimises |w|^2 - 2 x.w, and |x|^2 is added to the
        # lowest value only (a row's constant changes no ranking): one pass less over the [c, K]
        # distances (Lloyd on MNIST, K = 10: 4.1 -> 3.3 ms an iteration, measured).
        cost = jnp.sum(weights * weights, axis=1)[None, :] - 2.0 * (rows @ weights.T)
        lowest, best = _first_lowest(cost, units, n_units - 1)
        row_sq = jnp.sum(rows * rows, axis=1) if row_sq is None else row_sq
        sq_err = jnp.maximum(lowest + row_sq, 0.0)
        sq_dist = cost
    elif spec.activation == "neg_sq_euclidean":  # the error is read off the distances already computed
        sq_dist = sq_distances(rows, weights, spec.missing)
        cost = sq_dist
        sq_err, best = _first_lowest(cost, units, n_units - 1)
    else:
        activation = batch_activation(spec.activation, weights, rows)
        cost = -activation
        best = _first_lowest(cost, units, n_units - 1)[1]
        diff = rows - weights[best]
        sq_err = jnp.sum(diff * diff, axis=1)
        sq_dist = -activation
    return Rows(best.astype(jnp.int32), sq_err, _not_adjacent(spec, cost, best, units), sq_dist)


UNITS_MAJOR_MAX_UNITS = 128  # measure_rows' [K, c] layout up to here (measured: faster for K <= 100, slower at 400)


def measure_rows(spec: Spec, weights, rows) -> Rows:
    """``assign_rows`` for a measurement (``sq_dist`` None): the same best units and runner-ups
    (the errors to float rounding: the product runs in the other orientation). Where it ranks by
    ``|w|^2 - 2 x.w`` with at most UNITS_MAJOR_MAX_UNITS units, the ``[K, c]`` costs are laid out
    units-major, so each row's minimum is an element-wise minimum over K vectors of c samples,
    which XLA:CPU vectorises, instead of a reduction along every short row (digits 10x10: 0.31 ->
    0.24 ms a measurement; [1797, 784] with 25 units 0.78 -> 0.40 ms). With more units the
    ``[K, c]`` product itself is the slower one (MNIST 20x20: 36 -> 47 ms), so assign_rows' layout
    serves there."""
    n_units = weights.shape[0]
    if not (_ranks_by_cross_product(spec, rows.shape[1]) and n_units <= UNITS_MAJOR_MAX_UNITS):
        return assign_rows(spec, weights, rows)._replace(sq_dist=None)
    units = jnp.arange(n_units, dtype=jnp.int32)[:, None]
    cost = jnp.sum(weights * weights, axis=1)[:, None] - 2.0 * (weights @ rows.T)
    lowest, best = _first_lowest(cost, units, n_units - 1, axis=0)
    sq_err = jnp.maximum(lowest + jnp.sum(rows * rows, axis=1), 0.0)
    return Rows(best.astype(jnp.int32), sq_err, _not_adjacent(spec, cost, best, units, axis=0), None)


def _ranks_by_cross_product(spec: Spec, n_features: int) -> bool:
    """Whether ``assign_rows`` ranks by ``|w|^2 - 2 x.w`` and adds each row's ``|x|^2`` afterwards."""
    return spec.activation == "neg_sq_euclidean" and not spec.missing and n_features > FEW_FEATURES


def row_sq_norms(spec: Spec, blocks):
    """``|x|^2`` of every row of ``blocks [n_blocks, c, D]`` where ``assign_rows`` can use it, else None."""
    return jnp.sum(blocks * blocks, axis=-1) if _ranks_by_cross_product(spec, blocks.shape[-1]) else None


def uses_matmul(spec: Spec, n_features: int) -> bool:
    """Whether ``assign_rows`` computes its ``[c, K]`` work as a matrix product."""
    if spec.activation == "neg_sq_euclidean":
        return n_features > FEW_FEATURES
    return spec.activation != "neg_manhattan"


class Totals(NamedTuple):
    """Running sums of a pass over the data in blocks; ``finish`` turns them into an Evaluation."""
    error: jax.Array         # [] float: sum of Euclidean errors
    sq_error: jax.Array      # [] float: sum of squared errors (inertia)
    not_adjacent: jax.Array  # [] float: samples whose two best units are not neighbours
    won: jax.Array           # [K] bool: units that are the best match of some sample


def no_totals(n_units: int, dtype) -> Totals:
    zero = jnp.zeros((), dtype)
    return Totals(zero, zero, zero, jnp.zeros((n_units,), bool))


def add_rows(totals: Totals, rows: Rows, valid=None, *, scatter: bool = True) -> Totals:
    """Adds a block's rows; ``valid [c]`` bool masks padding rows out.

    scatter: mark the units won with a scatter (7x cheaper than a ``[c, K]`` comparison on the
    digits). It also keeps any loop around this out of XLA:CPU's small-while-loop hoisting
    (``compclust.fast_cpu_loops``), which would compile a matrix product in that loop as a naive
    loop (17x slower, measured); pass False where the block has no matrix product, so that a
    small problem's whole epoch loop can be one kernel."""
    sq_err, not_adjacent, best = rows.sq_error, rows.not_adjacent, rows.best
    n_units = totals.won.shape[0]
    if valid is not None:
        sq_err = jnp.where(valid, sq_err, 0.0)
        not_adjacent = jnp.where(valid, not_adjacent, 0.0)
        best = jnp.where(valid, best, -1 if not scatter else n_units)  # out of range: dropped or unmatched
    if scatter:
        won = jnp.zeros((n_units,), bool).at[best].set(True, mode="drop")
    else:
        won = jnp.any(best[:, None] == jnp.arange(n_units), axis=0)
    return Totals(totals.error + jnp.sum(jnp.sqrt(sq_err)), totals.sq_error + jnp.sum(sq_err),
                  totals.not_adjacent + jnp.sum(not_adjacent), totals.won | won)


def not_measured(dtype) -> Evaluation:
    """The Evaluation of an epoch that was not measured (``epoch_metrics=False``): NaN, dead units -1."""
    nan = jnp.full((), jnp.nan, dtype)
    return Evaluation(nan, nan, nan, jnp.full((), -1, jnp.int32))


def finish(totals: Totals, n_samples: int) -> Evaluation:
    return Evaluation(quantization_error=totals.error / n_samples,
                      topographic_error=totals.not_adjacent / n_samples,  # exactly 0 when every pair is adjacent
                      inertia=totals.sq_error, dead_units=jnp.sum(~totals.won).astype(jnp.int32))


def as_blocks(data, chunk_size, n_shards: int = 1):
    """``data [N, D]`` as ``[n_blocks, c, D]`` (zero-padded) and a ``[n_blocks, c]`` validity mask;
    one block when chunk_size is None or covers N.

    With ``n_shards > 1`` (the data axis split over devices) ``c`` is a multiple of n_shards and
    block b holds rows ``b, b + n_blocks, ...``: then the row axis of every block lies along the
    devices' contiguous row ranges, so each device works on its own rows in every block."""
    n_samples = data.shape[0]
    if n_shards == 1 and (chunk_size is None or chunk_size >= n_samples):
        return data[None], None
    chunk = n_samples if chunk_size is None else min(chunk_size, n_samples)
    chunk = -(-chunk // n_shards) * n_shards
    n_blocks = -(-n_samples // chunk)
    pad = n_blocks * chunk - n_samples
    valid = jnp.arange(n_blocks * chunk) < n_samples
    if pad:
        data = jnp.concatenate([data, jnp.zeros((pad, data.shape[1]), data.dtype)])
    if n_shards == 1:
        return data.reshape(n_blocks, chunk, -1), valid.reshape(n_blocks, chunk)
    return (data.reshape(chunk, n_blocks, -1).transpose(1, 0, 2),
            valid.reshape(chunk, n_blocks).T)


def evaluate_blocks(spec: Spec, weights, blocks, valid, n_samples: int):
    """Evaluation and the best unit of every row ``[n_blocks * c]`` (-1 for padding)."""
    scatter = uses_matmul(spec, blocks.shape[-1])
    if valid is None:
        rows = measure_rows(spec, weights, blocks[0])
        return finish(add_rows(no_totals(spec.n_units, weights.dtype), rows, scatter=scatter), n_samples), rows.best

    def block(totals, inputs):
        rows_data, rows_valid = inputs
        rows = measure_rows(spec, weights, rows_data)
        return add_rows(totals, rows, rows_valid, scatter=scatter), jnp.where(rows_valid, rows.best, -1)

    totals, best = jax.lax.scan(block, no_totals(spec.n_units, weights.dtype), (blocks, valid))
    return finish(totals, n_samples), best.reshape(-1)


def evaluate_impl(spec: Spec, weights, data) -> Evaluation:
    """Quality of ``weights`` on ``data``, the ``[N, K]`` work in blocks of ``spec.chunk_size`` rows."""
    return evaluate_blocks(spec, weights, *as_blocks(data, spec.chunk_size), data.shape[0])[0]


def _prepare(weights, data, spec: Spec | None = None, missing: bool = False):
    # The spec's dtype, or the weights' own float dtype: float64 weights stay float64 under x64.
    if spec is not None:
        dtype = dtype_of(spec)
    else:
        given = np.dtype(getattr(weights, "dtype", np.float64))
        dtype = jax.dtypes.canonicalize_dtype(given) if given.kind == "f" else jnp.float32
    weights = check_data(weights, dtype, what="weights")
    missing = missing or (spec is not None and spec.missing)
    data = check_data(np.atleast_2d(data) if not isinstance(data, jax.Array) or data.ndim == 1 else data,
                      weights.dtype, missing=missing)
    check_features(data, weights.shape[1])
    if spec is not None:
        _check_units(spec, weights)
        check_missing(spec, data, training=False)
    return weights, data


@functools.partial(jax.jit, static_argnums=0)
def _bmu(spec, weights, data):
    return bmu_impl(spec, weights, data)


@functools.partial(jax.jit, static_argnums=0)
def _evaluate(spec, weights, data):
    return evaluate_impl(spec, weights, data)


def _check_units(spec: Spec, weights):
    if weights.shape[0] != spec.n_units:
        raise ValueError(f"weights have {weights.shape[0]} units but the spec has {spec.n_units}")


def bmu(spec: Spec, weights, data) -> jax.Array:
    """Best matching unit (flat index) of each row of ``data``: ``[N]`` int32."""
    weights, data = _prepare(weights, data, spec)
    return _bmu(spec, weights, data)


def grid_position(spec: Spec, units) -> np.ndarray:
    """Grid index ``[N, ndim]`` of flat unit indices (e.g. the output of ``bmu``)."""
    if spec.grid is None:
        raise ValueError("a competitive layer has no grid; its units are just 0..K-1")
    units = np.asarray(units)
    if units.size and (units.min() < 0 or units.max() >= spec.n_units):
        raise ValueError(f"unit indices must lie in [0, {spec.n_units})")
    return np.stack(np.unravel_index(units, spec.grid.shape), axis=-1)


def distances(weights, data, *, missing: bool = False) -> jax.Array:
    """Euclidean distance from every sample to every unit: ``[N, K]`` (``missing``: NaN entries
    are left out and the distance rescaled by ``D / present``, as in training)."""
    weights, data = _prepare(weights, data, missing=missing)
    return jnp.sqrt(jax.jit(sq_distances, static_argnums=2)(data, weights, missing))


def quantize(spec: Spec, weights, data) -> jax.Array:
    """Each sample replaced by the weights of its best matching unit: ``[N, D]``."""
    weights, data = _prepare(weights, data, spec)
    return weights[_bmu(spec, weights, data)]


def impute(spec: Spec, weights, data) -> jax.Array:
    """``data`` with every NaN entry filled from its sample's best matching unit (found on the
    present features, as in training); the present entries are returned unchanged."""
    weights, data = _prepare(weights, data, spec, missing=True)
    spec = spec if spec.missing else dataclasses.replace(spec, missing=True)
    filled = weights[_bmu(spec, weights, data)]
    return jnp.where(jnp.isnan(data), filled, data)


def evaluate(spec: Spec, weights, data) -> Evaluation:
    """Quantization error, topographic error, inertia and dead units of ``weights`` on ``data``."""
    weights, data = _prepare(weights, data, spec)
    return _evaluate(spec, weights, data)
