"""scikit-learn estimators over the functional core: one class per family.

=====================  ===========================================================================
``SOM``                Kohonen map; ``algorithm="online"`` (MiniSom's rule), ``"batch"`` (Kohonen's
                       batch map) or ``"minibatch"``
``CompetitiveLayer``   online K-means as a network, with its winners: ``"hard"``, ``"softmax"``,
                       ``"conscience"`` (neurolab's ``train_cwta``), ``"desieno"``
``KMeans``             Lloyd's algorithm (``n_init`` restarts as one compiled call)
``MiniBatchKMeans``    Sculley's minibatch K-means (per-centre rates ``1 / count``)
``NeuralGas``          Martinetz's Neural Gas, online, batch or minibatch
``DNNKMeans``          K-means simulated by a deep network (flax; imported on first use)
=====================  ===========================================================================

Every estimator has ``fit``, ``predict`` (best matching unit), ``transform`` (Euclidean distance to
every unit, ``[N, K]``), ``fit_predict``, ``fit_transform``, ``score`` (the *negative* quantization
error: mean distance to the best unit, higher is better; note that scikit-learn's ``KMeans.score``
is the negative inertia instead), ``get_params`` / ``set_params``, ``get_feature_names_out`` and
``fit_many`` (many seeds as one compiled call, see ``fit_many``). The online and minibatch ones
also have ``partial_fit``.

Fitted attributes: ``cluster_centers_`` ``[K, D]`` (unit k is the C-order grid index of a SOM),
``weights_`` (a SOM's weights shaped like its grid, ``[*shape, D]`` as MiniSom's ``get_weights()``;
the other families: ``cluster_centers_``), ``labels_`` (best unit of each training sample),
``n_iter_`` (epochs run), ``quantization_error_``, ``topographic_error_`` (NaN without a grid),
``inertia_``, ``n_features_in_``, ``feature_names_in_`` (DataFrame input), and the functional
pieces ``spec_``, ``hparams_``, ``state_`` (a ``State`` of NumPy arrays, as ``cc.fit`` returns it)
and ``metrics_`` (per-epoch ``EpochMetrics``), so a fitted estimator can be handed to the
functional API (``cc.evaluate(est.spec_, est.cluster_centers_, X)``).

**Input.** ``X`` goes through scikit-learn's ``validate_data``: lists, ints, float32/float64
and DataFrames are accepted and cast to the estimator's ``dtype`` ("float32" by default;
"float64" needs ``jax.config.update("jax_enable_x64", True)``); sparse, complex, NaN/inf, 1-D
and empty input are rejected with scikit-learn's errors. Results come back as NumPy arrays.

**Seeds.** ``random_state`` is mapped onto a JAX key deterministically: an int ``s`` becomes
``jax.random.key(s)`` (so ``SOM(random_state=s).fit(X)`` equals ``cc.fit(jax.random.key(s), X,
est.spec_, est.hparams_, n_epochs)``); None or a ``np.random.RandomState`` draws one int seed
from NumPy's global or the given generator (advancing it, as scikit-learn does).

**partial_fit** (online and minibatch algorithms): each call is one epoch over the batch it is
given (a fresh permutation; minibatches of ``batch_size``), continuing the State of the previous
call -- weights, consciences, counts and the schedule step -- instead of restarting. The
schedules run on the global step (samples online, minibatches for minibatch) and span
``n_epochs`` calls over batches of the current size, ``T = n_epochs * steps(batch)``: so
``n_epochs`` calls on batches of equal size walk lr and sigma through exactly the schedule that
``fit`` walks them through (with different sample orders). Once ``T`` steps are taken the
schedules are spent and further calls go on at their final values (a callable optax schedule
simply continues on the step; K-means' count rates have no end). ``partial_fit`` after ``fit``
continues the fitted model at the end of its schedules. A call whose batch would straddle the
end (only with batches of unequal sizes) stretches ``T`` to cover it. The first call initialises
the weights from its batch (``init``), so it needs at least as many samples as units for the
sampling initialisers. ``labels_``, ``quantization_error_``, ``topographic_error_`` and
``inertia_`` describe the last batch; ``n_iter_`` counts the calls, ``n_steps_`` the schedule
steps so far, and ``metrics_`` holds one entry per call.

**scikit-learn's check_estimator** (scikit-learn 1.9): all six estimators pass every check with
the test configurations in ``tests/test_estimators.py``, and so do a batch hexagonal and a
minibatch SOM (see ``EXPECTED_FAILED_CHECKS``, empty today; ``check_array_api_input`` is skipped
by scikit-learn itself unless ``SCIPY_ARRAY_API=1``).
``check_clustering`` needs labels ``0..n-1`` without gaps, so maps and layers are checked with
few units (a 3x3 SOM on its 50 blobs leaves some units dead, which is normal for a map but is
not a "clustering" in that check's sense).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, validate_data

from . import schedules
from .loop import fit as _fit
from .loop import restarts as _restarts
from .loop import sweep as _sweep
from .metrics import bmu as _bmu
from .metrics import distances as _distances
from .metrics import evaluate as _evaluate
from .spec import DTYPES, Hparams, Spec, competitive_layer, kmeans, neural_gas, som
from .state import EpochMetrics, State

__all__ = ["SOM", "CompetitiveLayer", "KMeans", "MiniBatchKMeans", "NeuralGas", "DNNKMeans", "fit_many", "ManyFits",
           "ESTIMATORS", "EXPECTED_FAILED_CHECKS", "random_key"]

# Checks of sklearn.utils.estimator_checks.check_estimator an estimator cannot meet, by class name,
# with the reason (also listed in the README). None today: every estimator passes all of them.
EXPECTED_FAILED_CHECKS: dict[str, dict[str, str]] = {
    "SOM": {}, "CompetitiveLayer": {}, "KMeans": {}, "MiniBatchKMeans": {}, "NeuralGas": {}, "DNNKMeans": {},
}

_INIT_ALIASES = {"k-means++": "kmeans++", "random": "random_samples"}
_SAMPLING_INITS = ("random_samples", "kmeans++", "kmeans++_plain")


# ---------------------------------------------------------------------------------------------
# Seeds


def _seed(random_state) -> int:
    """An int seed from ``random_state``: the int itself, or one drawn from the RandomState
    (NumPy's global one for None)."""
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, (bool, np.bool_)):
        if not 0 <= random_state < 2**32:
            raise ValueError(f"random_state must be in [0, 2**32), got {random_state!r}")
        return int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def random_key(random_state, salt: int | None = None):
    """The JAX key an estimator uses for ``random_state`` (``fold_in(key, salt)`` when salt is
    given: partial_fit folds in the schedule step so every call gets its own key)."""
    key = jax.random.key(_seed(random_state))
    return key if salt is None else jax.random.fold_in(key, salt)


def _seed_list(seeds, random_state) -> list[int]:
    """``fit_many``'s seeds: an int S (S seeds drawn from ``random_state``) or a sequence of ints."""
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, (bool, np.bool_)):
        if seeds < 1:
            raise ValueError(f"seeds must be a positive number of seeds or a sequence of int seeds, got {seeds}")
        rng = np.random.RandomState(_seed(random_state))
        return [int(s) for s in rng.randint(np.iinfo(np.int32).max, size=int(seeds))]
    array = np.asarray(seeds)
    if array.ndim != 1 or array.size == 0 or array.dtype.kind not in "iu":
        raise ValueError(f"seeds must be a positive int or a non-empty 1-D sequence of int seeds, got {seeds!r}")
    if array.min() < 0 or array.max() >= 2**32:
        raise ValueError("seeds must lie in [0, 2**32)")
    return [int(s) for s in array]


def _capped(batch_size, n_samples):
    """A minibatch is at most all the samples (as scikit-learn's MiniBatchKMeans); anything that is
    not an integer is left for the Spec to reject."""
    if isinstance(batch_size, (int, np.integer)) and not isinstance(batch_size, (bool, np.bool_)):
        return min(int(batch_size), n_samples)
    return batch_size


def _numpy_tree(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


# ---------------------------------------------------------------------------------------------
# The shared base


class _Estimator(ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin, BaseEstimator):
    """What every compclust estimator shares: input validation, predict / transform / score, fitted
    attributes and ``fit_many``. Subclasses say how to build the Spec and Hparams from their params."""

    _criterion = "quantization_error"  # fit_many keeps the run with the lowest final value of this
    _sampling_units_name = "n_units"   # the parameter named in "n_samples=... should be >= ..."

    # -- what subclasses provide --------------------------------------------------------------
    def _make_spec(self, n_samples: int) -> Spec:
        raise NotImplementedError

    def _make_hparams(self, spec: Spec) -> Hparams:
        raise NotImplementedError

    def _n_epochs(self) -> int:
        return self.n_epochs

    def _tol(self):
        return getattr(self, "tol", None)

    def _init(self):
        init = self.init
        if isinstance(init, str):
            return _INIT_ALIASES.get(init, init)
        return np.asarray(init)

    # -- validation --------------------------------------------------------------------------
    def _dtype(self):
        dtype = getattr(self, "dtype", "float32")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        return np.dtype(dtype)

    def _validate(self, X, reset: bool):
        return validate_data(self, X, reset=reset, dtype=self._dtype(), accept_sparse=False)

    def _check_samples(self, X, spec) -> None:
        init = self._init()
        n_samples, n_units = X.shape[0], spec.n_units
        needs = (isinstance(init, str) and init in _SAMPLING_INITS) or \
            (spec.algorithm == "batch" and spec.kernel == "delta")
        if needs and n_samples < n_units:
            why = (f"init={init!r} picks the units from the samples" if isinstance(init, str) and
                   init in _SAMPLING_INITS else "Lloyd's algorithm needs a sample for every cluster")
            raise ValueError(f"n_samples={n_samples} should be >= {self._sampling_units_name}={n_units}: {why}")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        tags.non_deterministic = False
        dtype = getattr(self, "dtype", "float32")
        tags.transformer_tags.preserves_dtype = [dtype] if dtype in DTYPES else []
        return tags

    @property
    def _n_features_out(self):
        return self.cluster_centers_.shape[0]

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, X, y=None):
        """Train on ``X [N, D]`` (y is ignored) for ``n_epochs`` epochs; returns self."""
        X = self._validate(X, reset=True)
        spec = self._make_spec(X.shape[0])
        hparams = self._make_hparams(spec)
        self._check_samples(X, spec)
        key = random_key(self.random_state)
        n_init = self._n_init()
        if n_init == 1:
            result = _fit(key, X, spec, hparams, self._n_epochs(), init=self._init(), tol=self._tol())
        else:
            result = _restarts(jax.random.split(key, n_init), X, spec, hparams, self._n_epochs(), init=self._init(),
                               tol=self._tol(), criterion=self._criterion).best
        self._set_fitted(X, spec, hparams, result.state, result.metrics, int(result.n_iter))
        return self

    def _n_init(self) -> int:
        return 1

    def _set_fitted(self, X, spec, hparams, state, metrics, n_iter, *, n_calls=None):
        """Fitted attributes from a run: everything derived is read off the state and metrics, so
        ``persist.load`` rebuilds an estimator exactly from these pieces."""
        self.spec_ = spec
        self.hparams_ = Hparams(*(np.asarray(v).item() if np.ndim(v) == 0 else np.asarray(v) for v in hparams))
        self.state_ = State(*_numpy_tree(tuple(state)))
        self.metrics_ = EpochMetrics(*_numpy_tree(tuple(metrics)))
        self.n_iter_ = int(n_iter if n_calls is None else n_calls)
        self.n_steps_ = int(self.state_.step)
        self._set_derived(labels=None if X is None else np.asarray(_bmu(spec, self.state_.weights, X)))
        return self

    def _set_derived(self, labels):
        self.cluster_centers_ = self.state_.weights
        grid = self.spec_.grid
        self.weights_ = self.cluster_centers_ if grid is None else self.cluster_centers_.reshape(
            *grid.shape, self.cluster_centers_.shape[1])
        if labels is not None:
            self.labels_ = labels
        last = EpochMetrics(*(np.asarray(m)[-1] for m in self.metrics_))
        self.quantization_error_ = float(last.quantization_error)
        self.topographic_error_ = float(last.topographic_error)
        self.inertia_ = float(last.inertia)

    # -- reading a fitted model --------------------------------------------------------------
    def predict(self, X):
        """Best matching unit (flat index) of each sample: ``[N]`` int32."""
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        return np.asarray(_bmu(self.spec_, self.cluster_centers_, X))

    def transform(self, X):
        """Euclidean distance from every sample to every unit: ``[N, K]`` in the spec's dtype."""
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        return np.asarray(_distances(self.cluster_centers_, X))

    def score(self, X, y=None):
        """Negative quantization error on X: minus the mean distance to the best unit."""
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        return -float(_evaluate(self.spec_, self.cluster_centers_, X).quantization_error)

    def fit_many(self, X, seeds=8, y=None):
        """``fit_many(self, X, seeds)``: see the module function."""
        return fit_many(self, X, seeds)


def _streams(estimator) -> bool:
    """partial_fit exists for the online and minibatch algorithms only (``hasattr`` says so)."""
    return getattr(estimator, "algorithm", "minibatch") != "batch"


class _Streaming:
    """``partial_fit`` for the online and minibatch algorithms (see the module docstring)."""

    def _steps_per_call(self, spec: Spec, n_samples: int) -> int:
        return n_samples if spec.algorithm == "online" else -(-n_samples // spec.batch_size)

    @available_if(_streams)
    def partial_fit(self, X, y=None):
        """One epoch over X continuing the previous State and schedules; returns self."""
        first = not hasattr(self, "state_")
        X = self._validate(X, reset=first)
        spec = self._make_spec(X.shape[0])
        if spec.algorithm == "batch":
            raise ValueError("partial_fit is for the online and minibatch algorithms; a batch algorithm "
                             "uses all the data every epoch (use fit, or algorithm='minibatch')")
        hparams = self._make_hparams(spec)
        n_epochs = self._n_epochs()
        n_steps = self._steps_per_call(spec, X.shape[0])
        if first:
            self._check_samples(X, spec)
            done, resume, init = 0, None, self._init()
        else:
            if spec.n_units != self.spec_.n_units:
                raise ValueError(f"the estimator was fitted with {self.spec_.n_units} units but its parameters "
                                 f"now ask for {spec.n_units}; call fit to start again")
            done, resume, init = int(self.state_.step), self.state_, "random_samples"
        run_spec, run_hparams = spec, hparams
        total = n_epochs
        if done + n_steps > n_epochs * n_steps:
            total = -(-(done + n_steps) // n_steps)  # the smallest run covering this call
            if done >= n_epochs * n_steps:           # the schedules are spent: go on at their final values
                run_spec, run_hparams = _at_schedule_end(spec, hparams)
        key = random_key(self.random_state, salt=done)
        result = _fit(key, X, run_spec, run_hparams, 1, init=init, resume=resume, total_epochs=total)
        history = None if first else self.metrics_
        n_calls = 1 if first else self.n_iter_ + 1
        self._set_fitted(X, spec, hparams, result.state, result.metrics, 1, n_calls=n_calls)
        if history is not None:
            self.metrics_ = EpochMetrics(*(np.concatenate([h, m]) for h, m in zip(history, self.metrics_)))
        return self


def _at_schedule_end(spec: Spec, hparams: Hparams):
    """A spec and hparams that hold lr and sigma at the end values of the named schedules."""
    changes, values = {}, {}
    if isinstance(spec.lr_schedule, str) and spec.lr_schedule not in ("constant", "count"):
        changes["lr_schedule"] = "constant"
        values["lr"] = float(schedules.value(spec.lr_schedule, hparams.lr, hparams.lr_final, 1.0, 1.0))
    if isinstance(spec.sigma_schedule, str) and spec.sigma_schedule != "constant":
        changes["sigma_schedule"] = "constant"
        values["sigma"] = float(schedules.value(spec.sigma_schedule, hparams.sigma, hparams.sigma_final, 1.0, 1.0))
    return dataclasses.replace(spec, **changes), hparams._replace(**values)


# ---------------------------------------------------------------------------------------------
# The families


class SOM(_Streaming, _Estimator):
    """Kohonen self-organizing map (see ``compclust.som``).

    shape: the grid, ``(n,)``, ``(rows, cols)`` or 3-D; topology "rectangular"/"hexagonal";
    toroidal: wrap the edges. kernel: "gaussian", "bubble", "triangle", "mexican_hat",
    "cut_gaussian". algorithm: "online" (one sample at a time, MiniSom's rule), "batch" (Kohonen's
    batch map: lr unused, sigma on a per-epoch schedule) or "minibatch" (mean of ``batch_size``
    online updates; ``batch_size`` is used by it only, capped at the number of samples).
    lr, lr_final, sigma, sigma_final: start and end values of the schedules (``lr_schedule``,
    ``sigma_schedule``: "asymptotic" (MiniSom's default, ends at v0/3), "linear", "exponential",
    "inverse_time", "constant", or an optax-style callable ``step -> value``, which cannot be saved).
    n_epochs: passes over the data. init: "random_samples", "pca", "uniform", "kmeans++" or weights
    ``[K, D]``. tol: stop early as scikit-learn's KMeans does (None: every epoch).
    """

    def __init__(self, shape=(10, 10), *, topology="rectangular", toroidal=False, kernel="gaussian",
                 algorithm="online", activation="neg_sq_euclidean", lr=0.5, lr_final=0.01, sigma=1.0,
                 sigma_final=0.1, lr_schedule="asymptotic", sigma_schedule="asymptotic", batch_size=32,
                 n_epochs=10, init="random_samples", tol=None, chunk_size=None, dtype="float32",
                 random_state=None):
        self.shape = shape
        self.topology = topology
        self.toroidal = toroidal
        self.kernel = kernel
        self.algorithm = algorithm
        self.activation = activation
        self.lr = lr
        self.lr_final = lr_final
        self.sigma = sigma
        self.sigma_final = sigma_final
        self.lr_schedule = lr_schedule
        self.sigma_schedule = sigma_schedule
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.init = init
        self.tol = tol
        self.chunk_size = chunk_size
        self.dtype = dtype
        self.random_state = random_state

    def _make_spec(self, n_samples):
        batch_size = None
        if self.algorithm == "minibatch":
            batch_size = _capped(self.batch_size, n_samples)
        return som(self.shape, topology=self.topology, toroidal=self.toroidal, kernel=self.kernel,
                   activation=self.activation, lr_schedule=self.lr_schedule, sigma_schedule=self.sigma_schedule,
                   algorithm=self.algorithm, batch_size=batch_size, chunk_size=self.chunk_size, dtype=self.dtype)

    def _make_hparams(self, spec):
        return Hparams(lr=self.lr, lr_final=self.lr_final, sigma=self.sigma, sigma_final=self.sigma_final)

    @available_if(_streams)
    def partial_fit(self, X, y=None):
        """One epoch over X continuing the previous State and schedules (online and minibatch)."""
        return _Streaming.partial_fit(self, X, y)


class CompetitiveLayer(_Streaming, _Estimator):
    """A competitive layer: online K-means as a neural network (``compclust.competitive_layer``).

    n_units: K. activation: "neg_sq_euclidean", "linear", "nearest_centroid", "cosine",
    "neg_manhattan" (predict uses it too: the unit that would win). winner: "hard", "softmax"
    (``temperature``), "conscience" (neurolab's ``train_cwta``; scale the data first) or "desieno"
    (``bias_scale``, ``frequency_rate``). lr, lr_final, lr_schedule: the learning rate.
    """

    def __init__(self, n_units=8, *, activation="neg_sq_euclidean", winner="hard", lr=0.1, lr_final=0.01,
                 lr_schedule="constant", temperature=1.0, bias_scale=10.0, frequency_rate=1e-4, n_epochs=10,
                 init="random_samples", tol=None, chunk_size=None, dtype="float32", random_state=None):
        self.n_units = n_units
        self.activation = activation
        self.winner = winner
        self.lr = lr
        self.lr_final = lr_final
        self.lr_schedule = lr_schedule
        self.temperature = temperature
        self.bias_scale = bias_scale
        self.frequency_rate = frequency_rate
        self.n_epochs = n_epochs
        self.init = init
        self.tol = tol
        self.chunk_size = chunk_size
        self.dtype = dtype
        self.random_state = random_state

    def _make_spec(self, n_samples):
        return competitive_layer(self.n_units, activation=self.activation, winner=self.winner,
                                 lr_schedule=self.lr_schedule, chunk_size=self.chunk_size, dtype=self.dtype)

    def _make_hparams(self, spec):
        return Hparams(lr=self.lr, lr_final=self.lr_final, temperature=self.temperature,
                       bias_scale=self.bias_scale, frequency_rate=self.frequency_rate)

    def partial_fit(self, X, y=None):
        """One epoch over X continuing the previous State and schedules."""
        return _Streaming.partial_fit(self, X, y)


class KMeans(_Estimator):
    """Lloyd's K-means (``compclust.kmeans(algorithm="batch")``) with scikit-learn's parameters.

    init: "k-means++"/"kmeans++" (greedy, as scikit-learn), "random" (K distinct samples), or
    centres ``[K, D]``. n_init: restarts, trained as one compiled ``cc.restarts`` call; the run with
    the lowest inertia is kept ("auto": 1). max_iter: epochs; tol: scikit-learn's rule (labels
    unchanged, or squared centre shift <= tol * mean feature variance). ``score`` is the negative
    quantization error (scikit-learn's KMeans gives the negative inertia).
    """

    _criterion = "inertia"
    _sampling_units_name = "n_clusters"

    def __init__(self, n_clusters=8, *, init="k-means++", n_init=1, max_iter=300, tol=1e-4, chunk_size=None,
                 dtype="float32", random_state=None):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.chunk_size = chunk_size
        self.dtype = dtype
        self.random_state = random_state

    def _n_epochs(self):
        return self.max_iter

    def _n_init(self):
        n_init = 1 if self.n_init == "auto" else self.n_init
        if isinstance(n_init, (bool, np.bool_)) or not isinstance(n_init, (int, np.integer)) or n_init < 1:
            raise ValueError(f"n_init must be a positive integer or 'auto', got {self.n_init!r}")
        return int(n_init)

    def _make_spec(self, n_samples):
        return kmeans(self.n_clusters, algorithm="batch", chunk_size=self.chunk_size, dtype=self.dtype)

    def _make_hparams(self, spec):
        return Hparams()


class MiniBatchKMeans(_Streaming, KMeans):
    """Sculley's (2010) minibatch K-means (``compclust.kmeans(algorithm="minibatch")``): each centre
    moves with rate ``1 / (inputs it has won)``, so ``partial_fit`` can run forever.

    batch_size: samples per minibatch (capped at the number of samples). max_iter: epochs (passes
    over the data); tol: as KMeans (None: every epoch). n_init: restarts, lowest inertia kept.
    """

    def __init__(self, n_clusters=8, *, init="k-means++", n_init=1, max_iter=100, batch_size=1024, tol=None,
                 chunk_size=None, dtype="float32", random_state=None):
        super().__init__(n_clusters=n_clusters, init=init, n_init=n_init, max_iter=max_iter, tol=tol,
                         chunk_size=chunk_size, dtype=dtype, random_state=random_state)
        self.batch_size = batch_size

    def _make_spec(self, n_samples):
        batch_size = _capped(self.batch_size, n_samples)
        return kmeans(self.n_clusters, algorithm="minibatch", batch_size=batch_size, chunk_size=self.chunk_size,
                      dtype=self.dtype)

    def partial_fit(self, X, y=None):
        """One epoch over X (minibatches of ``batch_size``) continuing the centres and their counts."""
        return _Streaming.partial_fit(self, X, y)


class NeuralGas(_Streaming, _Estimator):
    """Martinetz's Neural Gas (``compclust.neural_gas``): every unit moves by
    ``lr(t) exp(-rank / lambda(t)) (x - w)``. sigma, sigma_final: lambda's start and end (sigma
    None: ``n_units / 2``); Martinetz et al. used lambda 10 -> 0.01 and lr 0.5 -> 0.005, both
    exponential (the defaults). algorithm: "online", "batch" (Cottrell et al.) or "minibatch".
    """

    def __init__(self, n_units=8, *, algorithm="online", lr=0.5, lr_final=0.005, sigma=None, sigma_final=0.01,
                 lr_schedule="exponential", sigma_schedule="exponential", batch_size=32, n_epochs=10,
                 init="random_samples", tol=None, chunk_size=None, dtype="float32", random_state=None):
        self.n_units = n_units
        self.algorithm = algorithm
        self.lr = lr
        self.lr_final = lr_final
        self.sigma = sigma
        self.sigma_final = sigma_final
        self.lr_schedule = lr_schedule
        self.sigma_schedule = sigma_schedule
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.init = init
        self.tol = tol
        self.chunk_size = chunk_size
        self.dtype = dtype
        self.random_state = random_state

    def _make_spec(self, n_samples):
        batch_size = None
        if self.algorithm == "minibatch":
            batch_size = _capped(self.batch_size, n_samples)
        return neural_gas(self.n_units, algorithm=self.algorithm, batch_size=batch_size,
                          lr_schedule=self.lr_schedule, sigma_schedule=self.sigma_schedule,
                          chunk_size=self.chunk_size, dtype=self.dtype)

    def _make_hparams(self, spec):
        sigma = spec.n_units / 2 if self.sigma is None else self.sigma
        return Hparams(lr=self.lr, lr_final=self.lr_final, sigma=sigma, sigma_final=self.sigma_final)

    @available_if(_streams)
    def partial_fit(self, X, y=None):
        """One epoch over X continuing the previous State and schedules (online and minibatch)."""
        return _Streaming.partial_fit(self, X, y)


# ---------------------------------------------------------------------------------------------
# DNN K-means (flax: imported on first use)


@functools.cache
def _adam(learning_rate: float):
    import optax  # one optimizer object per rate, so equal specs share compiled code

    return optax.adam(learning_rate)


class DNNKMeans(_Estimator):
    """K-means simulated by a deep network (``compclust.dnn_kmeans``): a classifier trained on the
    centroids assigns the samples, the centroids become the means of their members, repeat.

    network: "mlp" (default here: any number of features) or "cnn" (the authors' network; needs
    ``image_shape=(28, 28, 1)``). image_shape: the shape of one sample as the network sees it;
    None means ``(n_features,)``. learning_rate: Adam's rate (the authors: 1e-3); optimizer: any
    optax transformation instead (training only; it cannot be saved). n_rounds, steps_per_round,
    train_on, members_per_cluster, dropout, hidden, chunk_size: see ``DNNKMeansSpec``.
    ``predict`` is the network's class; ``transform`` the distance to the centroids; ``score``
    minus the mean distance from each sample to the centroid of its predicted cluster.
    float32 only. Fitted extras: ``variables_`` (the network's parameters).
    """

    _criterion = "quantization_error"
    _sampling_units_name = "n_clusters"

    def __init__(self, n_clusters=8, *, network="mlp", image_shape=None, n_rounds=20, steps_per_round=1,
                 train_on="centroids", members_per_cluster=0, learning_rate=1e-3, optimizer=None, dropout=0.5,
                 hidden=(128,), chunk_size=1000, random_state=None):
        self.n_clusters = n_clusters
        self.network = network
        self.image_shape = image_shape
        self.n_rounds = n_rounds
        self.steps_per_round = steps_per_round
        self.train_on = train_on
        self.members_per_cluster = members_per_cluster
        self.learning_rate = learning_rate
        self.optimizer = optimizer
        self.dropout = dropout
        self.hidden = hidden
        self.chunk_size = chunk_size
        self.random_state = random_state

    def _dtype(self):
        return np.dtype(np.float32)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    def _make_spec(self, n_features: int):
        from .algorithms import dnn_kmeans as dk

        optimizer = self.optimizer
        if optimizer is None and self.learning_rate != 1e-3:
            if isinstance(self.learning_rate, (bool, np.bool_)) or not isinstance(
                    self.learning_rate, (int, float, np.number)) or not np.isfinite(self.learning_rate) \
                    or self.learning_rate <= 0:
                raise ValueError(f"learning_rate must be a positive number, got {self.learning_rate!r}")
            optimizer = _adam(float(self.learning_rate))
        image_shape = (n_features,) if self.image_shape is None else self.image_shape
        return dk.dnn_kmeans(self.n_clusters, network=self.network, image_shape=image_shape, n_rounds=self.n_rounds,
                             steps_per_round=self.steps_per_round, train_on=self.train_on,
                             members_per_cluster=self.members_per_cluster, optimizer=optimizer,
                             dropout=self.dropout, hidden=self.hidden, chunk_size=self.chunk_size)

    def _check_dnn_samples(self, X, spec):
        if X.shape[0] < spec.n_clusters:
            raise ValueError(f"n_samples={X.shape[0]} should be >= n_clusters={spec.n_clusters}: the first "
                             "centroids are picked from the samples")

    def fit(self, X, y=None):
        """Run ``n_rounds`` rounds on ``X [N, D]`` (y is ignored; it is not used to train)."""
        from .algorithms import dnn_kmeans as dk

        X = self._validate(X, reset=True)
        spec = self._make_spec(X.shape[1])
        self._check_dnn_samples(X, spec)
        result = dk.fit(random_key(self.random_state), X, spec)
        self._set_dnn_fitted(X, spec, result.variables, result.centroids, result.labels, result.metrics.inertia)
        return self

    def _set_dnn_fitted(self, X, spec, variables, centroids, labels, inertia):
        self.spec_ = dataclasses.replace(spec, optimizer=None)  # the optimizer is for training only
        self.variables_ = _numpy_tree(variables)
        self.cluster_centers_ = np.asarray(centroids)
        self.weights_ = self.cluster_centers_
        self.labels_ = np.asarray(labels)
        self.inertia_history_ = np.asarray(inertia)
        self.n_iter_ = int(spec.n_rounds)
        self._set_dnn_derived(X)
        return self

    def _set_dnn_derived(self, X):
        self.inertia_ = float(self.inertia_history_[-1])
        self.quantization_error_ = -self._score(X, self.labels_)
        self.topographic_error_ = float("nan")

    def _score(self, X, labels):
        diff = X - self.cluster_centers_[labels]
        return -float(np.mean(np.sqrt(np.sum(diff.astype(np.float64) ** 2, axis=1))))

    def predict(self, X):
        """The cluster the trained network gives each sample: ``[N]`` int32."""
        from .algorithms import dnn_kmeans as dk

        check_is_fitted(self)
        X = self._validate(X, reset=False)
        return np.asarray(dk.predict(self.spec_, self.variables_, X))

    def score(self, X, y=None):
        """Minus the mean distance from each sample to the centroid of its predicted cluster."""
        labels = self.predict(X)
        return self._score(self._validate(X, reset=False), labels)


# ---------------------------------------------------------------------------------------------
# Many seeds in one call


class ManyFits(NamedTuple):
    best: _Estimator      # a fitted estimator: the run with the highest score (its random_state is its seed)
    best_index: int       # its position in seeds
    scores: np.ndarray    # [S] score of every run: minus the final criterion (higher is better)
    seeds: np.ndarray     # [S] int seeds; refitting with random_state=seeds[i] reproduces run i


def fit_many(estimator, X, seeds=8) -> ManyFits:
    """Train ``estimator``'s configuration once per seed as one compiled call (``cc.sweep``; DNN
    K-means: its ``sweep``) and return the best run as a fitted estimator and every run's score.

    seeds: a number of seeds S (drawn from the estimator's ``random_state``) or a sequence of int
      seeds. Run i uses ``jax.random.key(seeds[i])``, the key ``fit`` uses for
      ``random_state=seeds[i]``, so ``best`` equals (to rounding: the runs are vmapped) a refit
      with its ``random_state``, which is set to the winning seed.
    Scores are minus the final quantization error (KMeans and MiniBatchKMeans: minus the final
    inertia, as scikit-learn's ``n_init``); the best is the highest. ``n_init`` is not applied here:
    every seed is one run. The estimator passed in is left unfitted and unchanged.
    """
    if not isinstance(estimator, _Estimator):
        raise ValueError(f"fit_many takes a compclust estimator, got {type(estimator).__name__}")
    best = clone(estimator)
    seed_list = _seed_list(seeds, best.random_state)
    keys = jnp.stack([jax.random.key(s) for s in seed_list])
    X = best._validate(X, reset=True)
    if isinstance(best, DNNKMeans):
        from .algorithms import dnn_kmeans as dk

        spec = best._make_spec(X.shape[1])
        best._check_dnn_samples(X, spec)
        runs = dk.sweep(keys, X, spec)
        centroids, labels = np.asarray(runs.centroids), np.asarray(runs.labels)
        diff = X[None] - np.take_along_axis(centroids, labels[..., None], axis=1)
        scores = -np.mean(np.sqrt(np.sum(diff.astype(np.float64) ** 2, axis=2)), axis=1)
        index = int(np.argmax(scores))
        best.set_params(random_state=seed_list[index])
        best._set_dnn_fitted(X, spec, jax.tree_util.tree_map(lambda leaf: leaf[index], runs.variables),
                             centroids[index], labels[index], np.asarray(runs.metrics.inertia)[index])
        return ManyFits(best, index, scores, np.asarray(seed_list))
    spec = best._make_spec(X.shape[0])
    hparams = best._make_hparams(spec)
    best._check_samples(X, spec)
    runs = _sweep(keys, X, spec, hparams, best._n_epochs(), init=best._init(), tol=best._tol())
    scores = -np.asarray(getattr(runs.metrics, best._criterion))[:, -1]
    index = int(np.argmax(scores))
    best.set_params(random_state=seed_list[index])
    pick = jax.tree_util.tree_map(lambda leaf: leaf[index], (runs.state, runs.metrics, runs.n_iter))
    best._set_fitted(X, spec, hparams, *pick[:2], int(pick[2]))
    return ManyFits(best, index, scores, np.asarray(seed_list))


ESTIMATORS = {cls.__name__: cls for cls in (SOM, CompetitiveLayer, KMeans, MiniBatchKMeans, NeuralGas, DNNKMeans)}
