"""The traced objects every family shares: the training State, per-step and per-epoch metrics,
and what ``fit`` returns. Shapes use K units, D features, N samples."""
from __future__ import annotations

from typing import NamedTuple, Optional

import jax


class State(NamedTuple):
    weights: jax.Array     # [K, D] float: one row per unit (the centroids)
    conscience: jax.Array  # [K] float: neurolab's factors (1 + wins this epoch) / DeSieno's win frequencies
    counts: jax.Array      # [K] float: inputs each unit has won so far (K-means' 1/count rates)
    step: jax.Array        # [] int32: schedule steps taken since training began (samples online,
    #                         minibatches for minibatch, epochs for batch)


class StepMetrics(NamedTuple):
    winner: jax.Array    # [] int32: the unit that won this input
    distance: jax.Array  # [] float: Euclidean distance from the input to the winner, before it moved


class EpochMetrics(NamedTuple):
    """Each field is ``[n_epochs]`` (``[..., n_epochs]`` in a sweep); measured on all the data
    with the weights after the epoch."""
    quantization_error: jax.Array
    topographic_error: jax.Array
    inertia: jax.Array
    dead_units: jax.Array
    center_shift: jax.Array  # Frobenius norm of the change of the weights over the epoch
    lr: jax.Array            # learning rate at the epoch's last step
    sigma: jax.Array         # neighbourhood radius (Neural Gas: lambda) at the epoch's last step


class FitResult(NamedTuple):
    state: State
    metrics: EpochMetrics
    trace: Optional[StepMetrics]  # [n_epochs, n_steps] per-step winners and distances (online, trace=True)
    n_iter: jax.Array             # [] int32: epochs run (fewer than n_epochs when a tolerance stopped it)
