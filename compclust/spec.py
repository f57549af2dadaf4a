"""The three kinds of objects: a static ``Spec`` (shapes and code paths), traced ``Hparams``
(anything a user may sweep), and the ``Grid`` a SOM's units live on.

A Spec is a frozen, hashable dataclass passed to ``jax.jit`` as a static argument: equal specs
share compiled code. Hparams is a NamedTuple of numbers, so any field can be vmapped.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple, Union

import numpy as np

ACTIVATIONS = ("neg_sq_euclidean", "linear", "nearest_centroid", "cosine", "neg_manhattan")
WINNERS = ("hard", "softmax", "conscience", "desieno")
KERNELS = ("delta", "gaussian", "bubble", "triangle", "mexican_hat", "cut_gaussian", "neural_gas")
GRID_KERNELS = ("gaussian", "bubble", "triangle", "mexican_hat", "cut_gaussian")
SCHEDULES = ("constant", "linear", "exponential", "inverse_time", "asymptotic")
# "count": each unit's own rate 1 / (inputs it has won so far): MacQueen's online K-means and
# Sculley's minibatch K-means. Only for the delta kernel.
LR_SCHEDULES = SCHEDULES + ("count",)
# The family decides the epoch (see compclust.algorithms): one input at a time, all the data at
# once (Kohonen's batch map, Lloyd, batch Neural Gas), or minibatches of ``batch_size``.
ALGORITHMS = ("online", "batch", "minibatch")
NEAREST_ACTIVATIONS = ("neg_sq_euclidean", "nearest_centroid")  # both pick the nearest unit
TOPOLOGIES = ("rectangular", "hexagonal")
DTYPES = ("float32", "float64")

# A schedule is a name above, or any optax-style callable ``step -> value`` (static, not sweepable).
Schedule = Union[str, Callable]


def _positive_int(value, what: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    if value <= 0:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


@dataclasses.dataclass(frozen=True)
class Grid:
    """Where the units of a SOM sit.

    shape: ``(n,)`` a line, ``(rows, cols)`` a plane, ``(a, b, c)`` a 3-D grid. Unit ``k`` is the
      row-major (C-order) flattening of its grid index, as MiniSom's ``weights.reshape(-1, D)``.
    topology: "rectangular" or "hexagonal" (2-D only; MiniSom's layout: along the first axis
      within a row, rows along the second axis, every other row shifted by half a unit).
    toroidal: wrap every axis around, so opposite edges are neighbours.
    """

    shape: tuple
    topology: str = "rectangular"
    toroidal: bool = False

    def __post_init__(self):
        shape = self.shape if isinstance(self.shape, (tuple, list)) else (self.shape,)
        if not 1 <= len(shape) <= 3:
            raise ValueError(f"grid shape must have 1, 2 or 3 axes, got {self.shape!r}")
        shape = tuple(_positive_int(n, f"grid size along axis {i}") for i, n in enumerate(shape))
        object.__setattr__(self, "shape", shape)
        if self.topology not in TOPOLOGIES:
            raise ValueError(f"unknown topology {self.topology!r}; choose from {TOPOLOGIES}")
        if self.topology == "hexagonal" and len(shape) != 2:
            raise ValueError(f"a hexagonal grid must be 2-D, got shape {shape}")
        if self.topology == "hexagonal" and self.toroidal and shape[1] % 2:
            raise ValueError(
                "a toroidal hexagonal grid needs an even number of rows (shape[1]) to tile the torus, "
                f"got shape {shape}")

    @property
    def n_units(self) -> int:
        return int(np.prod(self.shape))

    @property
    def ndim(self) -> int:
        return len(self.shape)


@dataclasses.dataclass(frozen=True)
class Spec:
    """Static description of a competitive network: decides shapes and code paths.

    n_units: K, the number of units (rows of the ``[K, D]`` weight matrix).
    grid: where the units sit (a SOM), or None for a competitive layer without topology.
    activation: how strongly each unit responds to an input; the largest wins.
    winner: "hard" (argmax), "softmax" (sampled from softmax(activation / temperature)),
      "conscience" (neurolab's ``train_cwta`` rule exactly) or "desieno" (frequency-sensitive bias).
    kernel: neighbourhood weight of each unit around the winner ("delta": only the winner moves;
      "neural_gas": ``exp(-rank / lambda)`` by each unit's distance rank, lambda = Hparams.sigma).
    lr_schedule, sigma_schedule: a name from SCHEDULES (lr also "count") or an optax schedule
      ``step -> value``. Online and minibatch schedules run on the update step, batch ones per epoch.
    algorithm: "online", "batch" or "minibatch" (see ALGORITHMS).
    batch_size: samples per minibatch (minibatch only).
    chunk_size: rows of data per block in the ``[N, K]`` distance work (batch epochs and the
      per-epoch metrics), so memory is bounded by ``chunk_size x K``; None is all rows at once.
    missing: accept NaN entries (R kohonen's rule): distances over each sample's present features,
      rescaled by ``D / present``; units move only along present features. Squared Euclidean
      activation only. Without it NaN is an error.
    max_missing: with ``missing``, the largest fraction of a sample's features that may be NaN.
    too_missing: what to do with samples over ``max_missing``: "error" (names the rows) or "skip".
    dtype: "float32" or "float64" (the latter needs ``jax.config.update('jax_enable_x64', True)``).
    """

    n_units: int
    grid: Grid | None = None
    activation: str = "neg_sq_euclidean"
    winner: str = "hard"
    kernel: str = "delta"
    lr_schedule: Schedule = "constant"
    sigma_schedule: Schedule = "constant"
    dtype: str = "float32"
    algorithm: str = "online"
    batch_size: int | None = None
    chunk_size: int | None = None
    missing: bool = False
    max_missing: float = 0.5
    too_missing: str = "error"

    def __post_init__(self):
        _positive_int(self.n_units, "n_units")
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {self.algorithm!r}; choose from {ALGORITHMS}")
        if self.chunk_size is not None:
            object.__setattr__(self, "chunk_size", _positive_int(self.chunk_size, "chunk_size"))
        if self.algorithm == "minibatch":
            if self.batch_size is None:
                raise ValueError("a minibatch algorithm needs batch_size (a positive integer)")
            object.__setattr__(self, "batch_size", _positive_int(self.batch_size, "batch_size"))
        elif self.batch_size is not None:
            raise ValueError(f"batch_size is for algorithm='minibatch', not {self.algorithm!r}")
        if self.algorithm != "online":
            if self.winner != "hard":
                raise ValueError(f"winner {self.winner!r} is an online rule; the {self.algorithm} "
                                 "algorithms use the hard (nearest-unit) winner")
            if self.activation not in NEAREST_ACTIVATIONS:
                raise ValueError(f"the {self.algorithm} algorithms average the inputs each unit wins, which "
                                 f"is defined for the nearest unit: use activation in {NEAREST_ACTIVATIONS}")
        if self.grid is not None and self.grid.n_units != self.n_units:
            raise ValueError(f"grid {self.grid.shape} has {self.grid.n_units} units but n_units={self.n_units}")
        for value, allowed, what in ((self.activation, ACTIVATIONS, "activation"), (self.winner, WINNERS, "winner"),
                                     (self.kernel, KERNELS, "kernel"), (self.dtype, DTYPES, "dtype")):
            if value not in allowed:
                raise ValueError(f"unknown {what} {value!r}; choose from {allowed}")
        for value, allowed, what in ((self.lr_schedule, LR_SCHEDULES, "lr_schedule"),
                                     (self.sigma_schedule, SCHEDULES, "sigma_schedule")):
            if not callable(value) and value not in allowed:
                raise ValueError(f"unknown {what} {value!r}; choose from {allowed} or pass a callable")
        if self.lr_schedule == "count" and self.kernel != "delta":
            raise ValueError("lr_schedule='count' (1 / inputs won) is a K-means rate; it needs kernel='delta'")
        if self.kernel in GRID_KERNELS and self.grid is None:
            raise ValueError(f"kernel {self.kernel!r} needs a grid; a competitive layer uses kernel='delta'")
        if self.kernel == "neural_gas" and self.grid is not None:
            raise ValueError("Neural Gas ranks units by distance, not by grid position: use grid=None")
        if not isinstance(self.missing, (bool, np.bool_)):
            raise ValueError(f"missing must be True or False, got {self.missing!r}")
        if isinstance(self.max_missing, (bool, np.bool_)) or not isinstance(self.max_missing, (int, float)) \
                or not 0.0 <= self.max_missing < 1.0:
            raise ValueError(f"max_missing must be a fraction in [0, 1), got {self.max_missing!r}")
        if self.too_missing not in ("error", "skip"):
            raise ValueError(f"too_missing must be 'error' or 'skip', got {self.too_missing!r}")
        if self.missing and self.activation != "neg_sq_euclidean":
            raise ValueError("missing data (NaN) is handled for the squared Euclidean activation only")
        if self.missing and self.lr_schedule == "count":
            raise ValueError("missing data with lr_schedule='count' is not supported: a per-unit count "
                             "rate has no per-feature form here; use a scheduled lr or the batch algorithm")
        if self.winner == "conscience" and self.activation != "neg_sq_euclidean":
            raise ValueError("the conscience (neurolab) winner is defined on Euclidean distance; "
                             "use activation='neg_sq_euclidean'")


class Hparams(NamedTuple):
    """Traced hyperparameters; give any field a leading axis to sweep it (see ``sweep``)."""

    lr: float = 0.5             # learning rate at step 0
    lr_final: float = 0.01      # learning rate reached at the last step (linear/exponential/inverse_time)
    sigma: float = 1.0          # neighbourhood radius at step 0, in grid units
    sigma_final: float = 0.1    # radius reached at the last step (linear/exponential/inverse_time)
    temperature: float = 1.0    # softmax winner: activation / temperature
    bias_scale: float = 10.0    # DeSieno's C: bias_k = C * (1/K - p_k)
    frequency_rate: float = 1e-4  # DeSieno's B: p_k += B * (won_k - p_k)


def competitive_layer(n_units: int, *, activation: str = "neg_sq_euclidean", winner: str = "hard",
                      lr_schedule: Schedule = "constant", chunk_size: int | None = None, missing: bool = False,
                      max_missing: float = 0.5, too_missing: str = "error", dtype: str = "float32") -> Spec:
    """Online K-means as a neural network: K units, only the winner moves (delta kernel)."""
    return Spec(n_units=_positive_int(n_units, "n_units"), grid=None, activation=activation, winner=winner,
                kernel="delta", lr_schedule=lr_schedule, sigma_schedule="constant", chunk_size=chunk_size,
                missing=missing, max_missing=max_missing, too_missing=too_missing, dtype=dtype)


def som(shape, *, topology: str = "rectangular", toroidal: bool = False, kernel: str = "gaussian",
        activation: str = "neg_sq_euclidean", winner: str = "hard", lr_schedule: Schedule = "asymptotic",
        sigma_schedule: Schedule | None = None, algorithm: str = "online", batch_size: int | None = None,
        chunk_size: int | None = None, missing: bool = False, max_missing: float = 0.5,
        too_missing: str = "error", dtype: str = "float32") -> Spec:
    """Kohonen self-organizing map on a 1-D, 2-D (rectangular or hexagonal) or 3-D grid.

    Defaults follow MiniSom: gaussian kernel and asymptotic decay ``v0 / (1 + 2 t / T)`` (which
    ends at v0 / 3 and ignores the final values). ``algorithm="batch"`` is Kohonen's batch map
    (every unit becomes the neighbourhood-weighted mean of the data, the radius on a per-epoch
    schedule, by default somoclu's linear ``sigma -> sigma_final``; lr unused); "minibatch"
    averages the online updates of ``batch_size`` samples (``batch_size=1`` is the online rule).
    """
    if sigma_schedule is None:
        sigma_schedule = "linear" if algorithm == "batch" else "asymptotic"
    grid = Grid(tuple(shape) if isinstance(shape, (tuple, list)) else (shape,), topology, toroidal)
    return Spec(n_units=grid.n_units, grid=grid, activation=activation, winner=winner, kernel=kernel,
                lr_schedule=lr_schedule, sigma_schedule=sigma_schedule, algorithm=algorithm,
                batch_size=batch_size, chunk_size=chunk_size, missing=missing, max_missing=max_missing,
                too_missing=too_missing, dtype=dtype)


def kmeans(n_clusters: int, *, algorithm: str = "batch", batch_size: int | None = None,
           chunk_size: int | None = None, dtype: str = "float32") -> Spec:
    """K-means: "batch" is Lloyd's algorithm, "minibatch" Sculley's (2010) per-centre rate
    ``1 / count_k``, "online" MacQueen's (1967) sequential form with the same rate."""
    lr_schedule = "constant" if algorithm == "batch" else "count"
    return Spec(n_units=_positive_int(n_clusters, "n_clusters"), grid=None, kernel="delta",
                lr_schedule=lr_schedule, algorithm=algorithm, batch_size=batch_size, chunk_size=chunk_size,
                dtype=dtype)


def neural_gas(n_units: int, *, algorithm: str = "online", batch_size: int | None = None,
               lr_schedule: Schedule = "exponential", sigma_schedule: Schedule = "exponential",
               chunk_size: int | None = None, dtype: str = "float32") -> Spec:
    """Martinetz's Neural Gas: every unit moves by ``lr(t) exp(-rank_k / lambda(t)) (x - w_k)``, rank
    of its distance to the input (0 = nearest). lambda is ``Hparams.sigma`` -> ``sigma_final``.
    Martinetz et al. (1993) used lambda 10 -> 0.01 and lr 0.5 -> 0.005, both exponential;
    "batch" is Cottrell et al.'s (2006) batch Neural Gas."""
    return Spec(n_units=_positive_int(n_units, "n_units"), grid=None, kernel="neural_gas",
                lr_schedule=lr_schedule, sigma_schedule=sigma_schedule, algorithm=algorithm,
                batch_size=batch_size, chunk_size=chunk_size, dtype=dtype)
