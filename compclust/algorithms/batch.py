"""The batch family: all the data at once, every epoch. Kohonen's batch map, Lloyd's K-means and
Cottrell et al.'s batch Neural Gas are one epoch with three neighbourhoods:

1. one pass over the data in blocks of rows (``Spec.chunk_size``): best units by one matrix
   product per block, and the sufficient statistics ``S_k = sum_{bmu_i = k} x_i``, ``n_k``
   (Neural Gas: ``sum_i h_ik x_i`` and ``sum_i h_ik`` with rank weights ``h``);
2. the new weights ``w_k = sum_j H_kj S_j / sum_j H_kj n_j`` with the grid kernel ``H``
   (delta for K-means, so ``w_k = S_k / n_k``); a unit with no weight keeps its place.

The same pass yields the quality of the weights the epoch started from (QE, TE, inertia), so the
driver gets the metrics of epoch e from the pass of epoch e + 1 and one pass after the last.
Lloyd with few centres keeps ``S`` and ``n`` between epochs (``KeptSums``) and moves only the rows
whose centre changed, instead of summing every row again; with the Euclidean activation and no grid
it also keeps Hamerly's bounds (``Bounds``) and computes the distances to all centres only for the
rows whose nearest centre may have changed.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .. import schedules, topology
from ..kernels import SIGMA_FLOOR, neighbourhood
from ..metrics import add_rows, assign_rows, finish, no_totals, not_measured
from ..spec import Hparams, Spec
from ..state import State
from .online import distance_ranks

# Lloyd keeps its per-centre sums from one epoch to the next and moves only the rows whose centre
# changed (after the first few epochs a few percent of them): one pass over the data saved in most
# epochs (MNIST, K = 10: ~2.8 -> ~2.3 ms an iteration of fit, measured). A full pass is made instead where
# more than 1 / FULL_PASS_SHARE of the rows changed, and at the epochs the driver asks for.
FULL_PASS_SHARE = 4
CHANGED_CHUNK = 256  # changed rows moved per iteration of the update loop


# Hamerly's bounds: with fewer than 1 / SEARCH_SHARE of the rows in doubt, only those rows are compared
# with every centre, SEARCH_CHUNK rows at a time; otherwise all rows are (one matrix product).
SEARCH_SHARE = 3
SEARCH_CHUNK = 256


class Bounds(NamedTuple):
    """Hamerly's (2010) bounds on every row's distances: a row keeps its centre, with no distance
    computed, while ``upper`` is below ``max(lower, half the gap from its centre to the nearest other
    one)``. When the centres move, ``upper`` grows by how far the row's own centre moved and ``lower``
    shrinks by the farthest any other centre moved; the rows in doubt get their distances anew."""
    upper: jax.Array    # [N]: at least each row's distance to its own centre
    lower: jax.Array    # [N]: at most each row's distance to any other centre
    centres: jax.Array  # [K, D]: the centres both were measured against


class KeptSums(NamedTuple):
    """A Lloyd pass's statistics, for the next epoch to update (``keeps_sums``)."""
    labels: jax.Array       # [N] int32: every row's centre then (-1 before the first pass)
    sums: jax.Array         # [K, D]: sum of each centre's rows (before any empty-cluster relocation)
    sums_error: jax.Array   # [K, D]: what float32 rounding took from ``sums`` (compensated summation)
    members: jax.Array      # [K]: rows per centre
    bounds: Bounds | None   # where ``keeps_bounds``


def keeps_bounds(spec: Spec, valid, measure: bool) -> bool:
    """Whether Lloyd runs on ``Bounds``: where the epochs need not measure the weights (which takes
    every row's distance), with Euclidean distances (a metric, which the bounds need), no grid, and
    complete data in one unpadded block (no chunk_size, no mesh)."""
    return (not measure and spec.kernel == "delta" and spec.activation == "neg_sq_euclidean"
            and spec.grid is None and not spec.missing and valid is None)


def keeps_sums(spec: Spec, valid, measure: bool = True) -> bool:
    """Whether the epoch updates ``KeptSums``: Lloyd (delta kernel) on complete data in one unpadded
    block, with up to ONE_HOT_UNITS centres (whose full pass is a product, slower than a scatter of
    the few changed rows) or on bounds (which find the few changed rows without a full pass)."""
    return (spec.kernel == "delta" and not spec.missing and valid is None
            and (spec.n_units <= ONE_HOT_UNITS or keeps_bounds(spec, valid, measure)))


def no_kept_sums(n_rows: int, weights, bounded: bool) -> KeptSums:
    zeros = jnp.zeros_like(weights)
    no_rows = jnp.zeros((n_rows,), weights.dtype)
    bounds = Bounds(no_rows, no_rows, weights) if bounded else None
    return KeptSums(jnp.full((n_rows,), -1, jnp.int32), zeros, zeros, jnp.zeros(weights.shape[:1], weights.dtype),
                    bounds)


def _two_sum(a, b):
    """``(a + b, its rounding error)`` exactly (Knuth's TwoSum)."""
    total = a + b
    b_part = total - a
    return total, (a - (total - b_part)) + (b - b_part)


def over_selected_rows(selected, chunk: int, body, carry):
    """``carry = body(index [chunk], used [chunk] bool, carry)`` over the rows where ``selected [N]``,
    ``chunk`` of them at a time: a ``while_loop`` as long as the selected rows, not N (the last
    chunk's unused places index row 0 and are marked False in ``used``)."""
    n_selected = jnp.sum(selected)
    padded = -(-selected.shape[0] // chunk) * chunk
    where = jnp.nonzero(selected, size=padded, fill_value=0)[0]

    def step(state):
        start, carry = state
        index = lax.dynamic_slice_in_dim(where, start, chunk)
        return start + chunk, body(index, start + jnp.arange(chunk) < n_selected, carry)

    return lax.while_loop(lambda state: state[0] < n_selected, step, (jnp.zeros((), jnp.int32), carry))[1]


def updated_sums(data, labels, kept: KeptSums) -> KeptSums:
    """``kept`` moved to ``labels``: each changed row taken from its old centre and given to its new
    one, CHANGED_CHUNK rows at a time (a loop over the changed rows only), the sums compensated so
    that rounding does not build up over epochs."""
    def move(index, used, carry):
        sums, error, members = carry
        used = used.astype(data.dtype)
        rows = data[index] * used[:, None]
        new, old = labels[index], kept.labels[index]
        # A scatter, not a one-hot product: it also keeps this loop out of XLA:CPU's small-loop
        # hoisting (compclust.fast_cpu_loops), which would compile a product in it as a naive loop.
        delta = jnp.zeros_like(sums).at[new].add(rows).at[old].add(-rows)
        sums, rounding = _two_sum(sums, delta)
        return sums, error + rounding, members.at[new].add(used).at[old].add(-used)

    sums, error, members = over_selected_rows(labels != kept.labels, CHANGED_CHUNK, move,
                                              (kept.sums, kept.sums_error, kept.members))
    return KeptSums(labels, sums, error, members, kept.bounds)


def nearest_two(spec: Spec, weights, rows, row_sq):
    """``assign_rows`` and each row's distance to its second-nearest centre ``[c]`` (inf for K = 1).
    row_sq: ``metrics.row_sq_norms`` of the rows (None where assign_rows ranks by true distances)."""
    found = assign_rows(spec, weights, rows, row_sq)
    units = jnp.arange(weights.shape[0], dtype=jnp.int32)[None, :]
    second_sq = jnp.min(jnp.where(units == found.best[:, None], jnp.inf, found.sq_dist), axis=1)
    if row_sq is not None:  # sq_dist lacks each row's |x|^2 there
        second_sq = second_sq + row_sq
    return found, jnp.sqrt(jnp.maximum(second_sq, 0.0))


def searched_bounds(spec: Spec, weights, data, row_sq):
    """Every row compared with every centre: its labels and exact ``Bounds`` (the distance to its
    nearest centre and to the second nearest)."""
    found, second = nearest_two(spec, weights, data, row_sq)
    return found.best, Bounds(jnp.sqrt(found.sq_error), second, weights)


def bounded_search(spec: Spec, weights, data, row_sq, kept: KeptSums):
    """Every row's nearest centre by Hamerly's bounds (``Bounds``): the bounds moved with the centres,
    and the distances to all centres only for the rows whose bounds no longer settle it. Returns the
    labels (a full search's) and the new Bounds."""
    n_rows, n_units, dtype = data.shape[0], weights.shape[0], weights.dtype
    bounds, labels = kept.bounds, kept.labels
    moved = jnp.sqrt(jnp.sum((weights - bounds.centres) ** 2, axis=1))
    if n_units > 1:  # for each centre, the farthest any *other* centre moved
        top, top_at = lax.top_k(moved, 2)
        other_moved = jnp.where(jnp.arange(n_units) == top_at[0], top[1], top[0])
    else:
        other_moved = jnp.zeros_like(moved)
    upper = bounds.upper + moved[labels]
    lower = bounds.lower - other_moved[labels]
    gaps_sq = jnp.sum((weights[:, None, :] - weights[None, :, :]) ** 2, axis=-1)
    half_gap = 0.5 * jnp.sqrt(jnp.min(jnp.where(jnp.eye(n_units, dtype=bool), jnp.inf, gaps_sq), axis=1))
    settled_below = jnp.maximum(jnp.maximum(lower, half_gap[labels]), 0.0)
    # Rounding: the distances come from |w|^2 - 2 x.w + |x|^2, whose error in a D-term float sum is
    # at most about D eps (|x|^2 + |w|^2); a row within twice that of its bound is searched (and a
    # tie always is: the search then picks the first nearest centre, as a full pass does).
    x_sq = jnp.sum(data * data, axis=1) if row_sq is None else row_sq
    slack = 2 * (data.shape[1] + 1) * jnp.finfo(dtype).eps * (x_sq + jnp.max(jnp.sum(weights * weights, axis=1)))
    in_doubt = upper * upper + slack >= settled_below * settled_below

    def search(index, used, carry):
        labels, upper, lower = carry
        target = jnp.where(used, index, n_rows)  # n_rows: dropped
        found, second = nearest_two(spec, weights, data[index], None if row_sq is None else row_sq[index])
        # The scatters also keep this loop (with its matrix product) out of XLA:CPU's small-loop
        # hoisting (compclust.fast_cpu_loops).
        return (labels.at[target].set(found.best, mode="drop"),
                upper.at[target].set(jnp.sqrt(found.sq_error), mode="drop"),
                lower.at[target].set(second, mode="drop"))

    def search_doubtful(_):
        labels_now, upper_now, lower_now = over_selected_rows(in_doubt, SEARCH_CHUNK, search, (labels, upper, lower))
        return labels_now, Bounds(upper_now, lower_now, weights)

    return lax.cond(jnp.sum(in_doubt) * SEARCH_SHARE > n_rows,
                    lambda _: searched_bounds(spec, weights, data, row_sq), search_doubtful, None)


# Up to this many units, S = onehot(bmu)^T X is a matrix product (about 3x faster than a scatter
# on XLA:CPU, measured under vmap); beyond it the product's 2NKD flops would rival the distances'.
ONE_HOT_UNITS = 32


def schedule_time(state: State, total_epochs: int):
    """Batch schedules run per epoch: epoch e of E uses t = e of T = E - 1 (the last epoch gets the
    final value)."""
    return state.step, max(total_epochs - 1, 1)


def sigma_at(spec: Spec, hparams: Hparams, t, total, dtype):
    return jnp.asarray(schedules.value(spec.sigma_schedule, hparams.sigma, hparams.sigma_final,
                                       t.astype(dtype), total), dtype)


def smooth(spec: Spec, stats, sigma):
    """``H @ stats`` for the ``[K, K]`` grid kernel ``H_kj = h(|r_k - r_j|, sigma)``; ``stats [K, M]``.

    A gaussian on a rectangular grid is a product over axes, so H is applied one axis at a time
    (fastersom's separable form: ``sum_a n_a`` instead of ``K`` multiplies per entry)."""
    grid, dtype = spec.grid, stats.dtype
    sigma = jnp.maximum(sigma, SIGMA_FLOOR)
    if spec.kernel == "gaussian" and grid.topology == "rectangular":
        out = stats.reshape(grid.shape + stats.shape[1:])
        for axis, n in enumerate(grid.shape):
            offsets = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :]).astype(np.float64)
            if grid.toroidal:
                offsets = np.minimum(offsets, n - offsets)
            h_axis = jnp.exp(-jnp.asarray(offsets ** 2, dtype) / (2.0 * sigma * sigma))
            out = jnp.moveaxis(jnp.tensordot(h_axis, out, axes=([1], [axis])), 0, axis)
        return out.reshape(stats.shape)
    coords = jnp.asarray(topology.coordinates(grid), dtype)
    offsets = topology.axis_offsets(grid, coords[:, None, :], coords[None, :, :])
    h = neighbourhood(spec.kernel, jnp.sum(offsets * offsets, axis=-1), sigma)
    return h @ stats


def relocate_empty(data, labels, sq_error, sums, members, present):
    """scikit-learn's ``_relocate_empty_clusters_dense``: each empty cluster takes, as its sole
    member, one of the samples farthest from their centres (in decreasing distance, ties by
    index), removed from its old cluster. ``labels``/``sq_error`` ``[N]``, ``sums [K, D]``,
    ``members [K]``, ``present [K, D]`` (per-feature member counts, or None without missing data)."""
    n_units = members.shape[0]
    empty = members == 0
    n_empty = jnp.sum(empty)
    empty_ids = jnp.nonzero(empty, size=n_units, fill_value=0)[0]  # the j-th empty unit
    _, far = lax.top_k(sq_error, n_units)                           # farthest first, ties by index
    use = (jnp.arange(n_units) < n_empty).astype(sums.dtype)        # only the first n_empty pairs
    rows = data[far]
    if present is not None:
        row_present = (~jnp.isnan(rows)).astype(sums.dtype) * use[:, None]
        rows = jnp.where(jnp.isnan(rows), 0.0, rows)
        present = present.at[labels[far]].add(-row_present).at[empty_ids].add(row_present)
    moved = rows * use[:, None]
    sums = sums.at[labels[far]].add(-moved).at[empty_ids].add(moved)
    members = members.at[labels[far]].add(-use).at[empty_ids].add(use)
    return sums, members, present


def epoch(spec: Spec, state: State, blocks, valid, n_samples: int, hparams: Hparams, total_epochs: int,
          row_sq=None, kept: KeptSums | None = None, full_pass=None):
    """One batch epoch over ``blocks [n_blocks, c, D]`` (``valid [n_blocks, c]`` masks padding, or
    None for one unpadded block; ``row_sq [n_blocks, c]``: ``metrics.row_sq_norms``, or None).
    Returns the new state, the Evaluation of the weights the epoch started from, their best unit
    for every row ``[n_blocks * c]`` (-1 for padding), the radius, and the new ``KeptSums`` where
    ``kept`` (the last epoch's, see ``keeps_sums``) was given; ``full_pass`` ([] bool) then asks for
    the sums in full.

    With missing data (``spec.missing``) the sums skip NaN entries and the denominators count, per
    unit and feature, the members that have the feature, so ``w_kd`` is the weighted mean of the
    present values."""
    weights = state.weights
    n_units, dtype = spec.n_units, weights.dtype
    t, total = schedule_time(state, total_epochs)
    sigma = sigma_at(spec, hparams, t, total, dtype)
    rank_weighted = spec.kernel == "neural_gas"

    def sum_rows(h, rows_data, best):  # sum_i h_ik v_i for rows v: a product or a scatter
        if rank_weighted or n_units <= ONE_HOT_UNITS:
            return h.T @ rows_data
        return jax.ops.segment_sum(rows_data, best, num_segments=n_units)

    def block(carry, inputs):
        totals, sums, members, present = carry
        rows_data, rows_valid, rows_sq = inputs
        rows = assign_rows(spec, weights, rows_data, rows_sq)
        if rank_weighted:  # every unit weighted by its distance rank for every sample
            h = neighbourhood("neural_gas", distance_ranks(rows.sq_dist), sigma)
        else:
            h = jax.nn.one_hot(rows.best, n_units, dtype=dtype)
        best = rows.best
        if rows_valid is not None:
            h = h * rows_valid[:, None].astype(dtype)
            best = jnp.where(rows_valid, rows.best, n_units)  # padding goes to a dropped segment
        values = rows_data
        if spec.missing:
            is_present = ~jnp.isnan(rows_data)
            values = jnp.where(is_present, rows_data, 0.0)
            present = present + sum_rows(h, is_present.astype(dtype), best)
        carry = (add_rows(totals, rows, rows_valid), sums + sum_rows(h, values, best),
                 members + jnp.sum(h, axis=0), present)
        return carry, (jnp.where(best < n_units, best, -1), rows.sq_error)

    present = jnp.zeros_like(weights) if spec.missing else None
    start = (no_totals(n_units, dtype), jnp.zeros_like(weights), jnp.zeros((n_units,), dtype), present)
    if kept is not None:
        data = blocks[0]
        data_sq = None if row_sq is None else row_sq[0]
        if kept.bounds is None:
            rows = assign_rows(spec, weights, data, data_sq)
            evaluation = finish(add_rows(start[0], rows), n_samples)
            labels, sq_error, bounds = rows.best, rows.sq_error, None
        else:  # the epochs are not measured (keeps_bounds): a settled row's distances are never computed
            labels, bounds = lax.cond(full_pass | (kept.labels[0] < 0),
                                      lambda _: searched_bounds(spec, weights, data, data_sq),
                                      lambda _: bounded_search(spec, weights, data, data_sq, kept), None)
            evaluation, sq_error = not_measured(dtype), None

        def in_full(kept):  # as the block below computes them
            h = jax.nn.one_hot(labels, n_units, dtype=dtype)
            return KeptSums(labels, sum_rows(h, data, labels), jnp.zeros_like(weights), jnp.sum(h, axis=0),
                            kept.bounds)

        many_changed = jnp.sum(labels != kept.labels) * FULL_PASS_SHARE > labels.shape[0]
        kept = lax.cond(full_pass | many_changed, in_full, lambda kept: updated_sums(data, labels, kept), kept)
        kept = kept._replace(bounds=bounds)
        sums, members = kept.sums + kept.sums_error, kept.members
    elif valid is None:
        first_sq = None if row_sq is None else row_sq[0]
        (totals, sums, members, present), (labels, sq_error) = block(start, (blocks[0], None, first_sq))
        evaluation = finish(totals, n_samples)
    else:
        (totals, sums, members, present), (labels, sq_error) = lax.scan(block, start, (blocks, valid, row_sq))
        labels, sq_error = labels.reshape(-1), sq_error.reshape(-1)
        evaluation = finish(totals, n_samples)

    if spec.kernel == "delta":  # Lloyd: empty clusters as scikit-learn relocates them
        def relocate(stats):
            data = blocks.reshape(-1, blocks.shape[-1])
            if sq_error is None:  # on bounds: the rows' distances are needed after all
                far_error = assign_rows(spec, weights, data, None if row_sq is None else row_sq[0]).sq_error
            else:
                far_error = sq_error if valid is None else jnp.where(labels >= 0, sq_error, -jnp.inf)
            return relocate_empty(data, labels, far_error, *stats)
        sums, members, present = lax.cond(jnp.any(members == 0), relocate, lambda stats: stats,
                                          (sums, members, present))
    denominator = present if spec.missing else members[:, None]  # [K, D] or [K, 1]
    if spec.kernel in ("delta", "neural_gas"):
        numerator = sums
    else:
        smoothed = smooth(spec, jnp.concatenate([sums, denominator], axis=1), sigma)
        numerator, denominator = smoothed[:, :weights.shape[1]], smoothed[:, weights.shape[1]:]
    reached = denominator > 0  # a unit no sample reaches (or a negative mexican-hat sum) stays put
    safe = jnp.where(reached, denominator, 1.0)
    new_weights = jnp.where(reached, numerator / safe, weights)
    new_state = state._replace(weights=new_weights, step=state.step + 1)
    return new_state, evaluation, labels, sigma, kept
