"""Checks on user input, run on the host before anything is traced or compiled, so that a bad
array gets a ValueError that names the problem instead of a crash inside XLA or a silent NaN."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .initializers import INITIALIZERS
from .spec import Hparams, Spec


def _is_traced(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def _as_dtype(array, dtype):
    """Device arrays stay on their device; host arrays stay NumPy, which jit transfers in one
    fast C++ call (a jnp.asarray per argument costs more than a small training run)."""
    if isinstance(array, jax.Array):
        return array.astype(dtype)
    return np.asarray(array, dtype)


def dtype_of(spec: Spec):
    if spec.dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("spec.dtype='float64' needs jax.config.update('jax_enable_x64', True) first")
    return jnp.dtype(spec.dtype)


def _all_finite(array) -> bool:
    if isinstance(array, jax.Array) and not _in_host_memory(array):
        return bool(jnp.isfinite(array).all())  # reduced on the device; one bool comes back
    return bool(np.isfinite(array).all())  # NumPy, or a CPU array read in place: no program to dispatch


def _in_host_memory(array: jax.Array) -> bool:
    """A whole array held by this process's CPU devices, which NumPy can read without a transfer."""
    return array.is_fully_addressable and all(device.platform == "cpu" for device in array.devices())


def check_data(data, dtype=jnp.float32, what: str = "data", missing: bool = False):
    """A finite, real ``[N, D]`` array with N, D >= 1, converted to ``dtype`` (left as given when
    ``dtype`` is None). Host data stays NumPy, device data stays on its device. With ``missing``,
    NaN entries are allowed (infinities are not)."""
    if isinstance(data, jax.Array):  # validated where it lives, without a copy to the host
        array = data
    else:
        try:
            array = np.asarray(data)
        except Exception as err:  # ragged lists and the like
            raise ValueError(f"{what} could not be read as an array: {err}") from None
    kind = np.dtype(array.dtype).kind
    if kind not in "fiu":
        raise ValueError(f"{what} must hold real numbers (float or int), got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"{what} must be 2-D [n_samples, n_features], got shape {tuple(array.shape)}")
    if array.shape[0] == 0:
        raise ValueError(f"{what} has zero samples")
    if array.shape[1] == 0:
        raise ValueError(f"{what} has zero features")
    if not _is_traced(array) and not _all_finite(array):
        values = np.asarray(array)
        bad_values = np.isinf(values) if missing else ~np.isfinite(values)
        if bad_values.any():
            bad = np.argwhere(bad_values)[0]
            kind = "infinite" if missing else "non-finite"
            hint = "" if missing else " (for missing values use a spec with missing=True)"
            raise ValueError(f"{what} contains {np.sum(bad_values)} {kind} value(s) (NaN or inf), "
                             f"first {values[tuple(bad)]} at row {bad[0]}, column {bad[1]}{hint}")
    return array if dtype is None else _as_dtype(array, dtype)


def check_missing(spec: Spec, data, training: bool = True):
    """Rows with more than ``spec.max_missing`` of their features NaN: an error naming them, or (for
    training data with ``too_missing="skip"``) the data without them."""
    if not spec.missing:
        return data
    fraction = np.mean(np.isnan(np.asarray(data)), axis=1)
    over = np.flatnonzero(fraction > spec.max_missing)
    if over.size == 0:
        return data
    if training and spec.too_missing == "skip":
        if over.size == data.shape[0]:
            raise ValueError(f"every sample has more than max_missing={spec.max_missing} of its features missing")
        keep = np.setdiff1d(np.arange(data.shape[0]), over)
        return data[keep] if isinstance(data, np.ndarray) else data[jnp.asarray(keep)]
    shown = ", ".join(map(str, over[:10])) + (" ..." if over.size > 10 else "")
    raise ValueError(f"{over.size} sample(s) have more than max_missing={spec.max_missing} of their features "
                     f"missing (rows {shown}); raise max_missing, remove them, or use too_missing='skip'")


def check_features(data, n_features: int, what: str = "data"):
    """Data given at predict time must have the features the weights were trained on."""
    if data.shape[1] != n_features:
        raise ValueError(f"{what} has {data.shape[1]} features but the weights have {n_features}")


def check_epochs(n_epochs) -> int:
    if isinstance(n_epochs, (bool, np.bool_)) or not isinstance(n_epochs, (int, np.integer)) or n_epochs < 1:
        raise ValueError(f"n_epochs must be a positive integer, got {n_epochs!r}")
    return int(n_epochs)


def check_init(init, spec: Spec, data, dtype, per_seed: int | None = None):
    """A named initializer, or initial weights ``[K, D]`` (``[S, K, D]`` for per-seed weights)."""
    n_samples, n_features = data.shape
    if init is None:  # the weights come from elsewhere (a resumed state)
        return None
    if isinstance(init, str):
        if init not in INITIALIZERS:
            raise ValueError(f"unknown initializer {init!r}; choose from {INITIALIZERS}")
        if init in ("random_samples", "kmeans++", "kmeans++_plain") and spec.n_units > n_samples:
            raise ValueError(f"init={init!r} picks {spec.n_units} units from the data but there are only "
                             f"{n_samples} samples; use fewer units or init='pca'/'uniform'/an array")
        if init == "pca":
            n_axes = spec.grid.ndim if spec.grid is not None else 1
            if n_features < n_axes or n_samples < 2:
                raise ValueError(f"init='pca' needs at least 2 samples and {n_axes} features for a "
                                 f"{n_axes}-D grid, got data of shape {tuple(data.shape)}")
        return None
    weights = check_data(init, dtype, what="initial weights") if not _is_traced(init) and np.ndim(init) == 2 \
        else init
    expected = (spec.n_units, n_features)
    shape = tuple(np.shape(weights))
    if shape == expected:
        return _as_dtype(weights, dtype)
    if per_seed is not None and shape == (per_seed, *expected):
        if not _is_traced(weights) and not _all_finite(weights):
            raise ValueError("initial weights contain non-finite values (NaN or inf)")
        return _as_dtype(weights, dtype)
    wanted = f"{expected}" + (f" or {(per_seed, *expected)}" if per_seed is not None else "")
    raise ValueError(f"initial weights must have shape {wanted} (n_units, n_features), got {shape}")


def check_order(order, n_samples: int, n_epochs: int, per_seed: int | None = None):
    """Sample indices: ``[n_steps]`` reused every epoch, ``[n_epochs, n_steps]``, or in a sweep one
    order per seed, ``[n_seeds, n_epochs, n_steps]``."""
    if order is None:
        return None
    array = np.asarray(order)
    if array.dtype.kind not in "iu":
        raise ValueError(f"order must hold integer sample indices, got dtype {array.dtype}")
    if array.size and (array.min() < 0 or array.max() >= n_samples):  # checked before a 1-D order is repeated
        raise ValueError(f"order holds indices outside [0, {n_samples}): min {array.min()}, max {array.max()}")
    if array.ndim == 1:
        array = np.broadcast_to(array.astype(np.int32, copy=False), (n_epochs, array.shape[0]))
    seeds_ok = per_seed is not None and array.ndim == 3 and array.shape[0] == per_seed
    if not (array.ndim == 2 or seeds_ok) or array.shape[-2] != n_epochs or array.shape[-1] == 0:
        wanted = f"[n_steps] or [n_epochs={n_epochs}, n_steps]"
        if per_seed is not None:
            wanted += f" or [n_seeds={per_seed}, n_epochs, n_steps]"
        raise ValueError(f"order must have shape {wanted} with n_steps >= 1, got {np.shape(order)}")
    return np.asarray(array, np.int32)


def check_family(spec: Spec, data, order, trace: bool, tol) -> None:
    """What the spec's family can do with this data and these options."""
    n_samples = data.shape[0]
    if spec.algorithm == "batch" and order is not None:
        raise ValueError("a batch algorithm uses all samples every epoch; order is for online and minibatch")
    if spec.algorithm == "batch" and spec.kernel == "delta" and spec.n_units > n_samples:
        raise ValueError(f"batch K-means with {spec.n_units} clusters needs at least as many samples, "
                         f"got {n_samples}")
    if spec.algorithm == "minibatch" and spec.batch_size > n_samples:
        raise ValueError(f"batch_size {spec.batch_size} is larger than the {n_samples} samples")
    if trace and spec.algorithm != "online":
        raise ValueError("trace (per-step winners) is for the online algorithms")
    if trace and tol is not None:
        raise ValueError("trace and tol cannot be combined: a stopped run has no steps to trace")


def check_mesh(mesh, spec: Spec, *axes: str, n_seeds: int | None = None):
    """None, or a ``jax.sharding.Mesh`` with the named axes; the data axis only for batch families.

    With ``n_seeds`` (a sweep's mesh) the mesh's axes must be "seeds" and/or "data" (either may have
    size 1): the seeds split evenly over the "seeds" axis, each run's rows over the "data" axis, which
    an online run (one sequential chain of updates) cannot use beyond size 1."""
    if mesh is None:
        return None
    if not isinstance(mesh, jax.sharding.Mesh):
        raise ValueError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    if n_seeds is not None:
        names = tuple(mesh.axis_names)
        if not names or any(name not in ("seeds", "data") for name in names) or len(set(names)) != len(names):
            raise ValueError(f"a sweep's mesh has axes named 'seeds' and/or 'data' (e.g. Mesh(devices.reshape(2, 4), "
                             f"('seeds', 'data'))), got {names}")
        seeds = mesh.shape.get("seeds", 1)
        if n_seeds % seeds:
            raise ValueError(f"{n_seeds} seeds cannot be split evenly over the mesh's 'seeds' axis of size {seeds}; "
                             f"use a multiple of {seeds} seeds (pad with extra seeds) or a smaller 'seeds' axis")
        if mesh.shape.get("data", 1) > 1 and spec.algorithm == "online":
            raise ValueError(f"the mesh's 'data' axis has size {mesh.shape['data']}, but an online run is one "
                             "sequential chain of updates: its rows cannot be split over devices (give the "
                             "'data' axis size 1, or use the batch or minibatch algorithm)")
        return mesh
    missing_axes = [axis for axis in axes if axis not in mesh.axis_names]
    if missing_axes:
        raise ValueError(f"mesh needs an axis named {missing_axes[0]!r}, it has {mesh.axis_names}")
    if "data" in axes and spec.algorithm == "online":
        raise ValueError("the data axis can be split over devices for the batch and minibatch algorithms; "
                         "an online run is one sequential chain of updates")
    return mesh


def check_tol(tol, dtype):
    """None (train every epoch) or a finite number >= 0."""
    if tol is None:
        return None
    if _is_traced(tol):
        return tol
    array = np.asarray(tol)
    if array.ndim != 0 or array.dtype.kind not in "fiu" or not np.isfinite(array) or array < 0:
        raise ValueError(f"tol must be None or a finite number >= 0, got {tol!r}")
    return _as_dtype(array, dtype)


def check_hparams(hparams, spec: Spec, dtype, sweepable: bool = False):
    """Finite numbers with valid signs; scalars (or, in a sweep, 1-D arrays of one common length)."""
    if not isinstance(hparams, Hparams):
        raise ValueError(f"hparams must be a compclust.Hparams, got {type(hparams).__name__}")
    leaves = {}
    for name, value in hparams._asdict().items():
        if _is_traced(value):
            leaves[name] = value
            continue
        array = np.asarray(value)
        if array.dtype.kind not in "fiu":
            raise ValueError(f"hparams.{name} must be a number, got {value!r}")
        if array.ndim > (1 if sweepable else 0):
            raise ValueError(f"hparams.{name} must be a scalar{' or 1-D for a sweep' if sweepable else ''}, "
                             f"got shape {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"hparams.{name} must be finite, got {value!r}")
        leaves[name] = array
    positive = ["lr", "temperature"] if spec.winner == "softmax" else ["lr"]
    if spec.kernel != "delta":
        positive.append("sigma")
    decays_to_final = ("exponential", "inverse_time")  # divide by the final value
    if spec.lr_schedule in decays_to_final:
        positive.append("lr_final")
    if spec.kernel != "delta" and spec.sigma_schedule in decays_to_final:
        positive.append("sigma_final")
    for name in positive:
        value = leaves[name]
        if not _is_traced(value) and not (np.asarray(value) > 0).all():
            raise ValueError(f"hparams.{name} must be > 0 for this spec, got {value!r}")
    lengths = {np.shape(v)[0] for v in leaves.values() if np.ndim(v) == 1}
    if len(lengths) > 1:
        raise ValueError(f"swept hparams fields must share one length, got lengths {sorted(lengths)}")
    return Hparams(**{k: v if _is_traced(v) else _as_dtype(v, dtype) for k, v in leaves.items()})


def check_keys(keys, batched: bool):
    """A typed key (``jax.random.key(seed)``) or a legacy uint32 key; ``[S]`` keys for a sweep."""
    if isinstance(keys, (int, np.integer)):
        raise ValueError("pass a key made by jax.random.key(seed), not an int seed")
    keys = keys if isinstance(keys, jax.Array) else jnp.asarray(keys)
    if not jnp.issubdtype(keys.dtype, jax.dtypes.prng_key):
        if keys.dtype != jnp.uint32 or keys.shape[-1:] != (2,):
            raise ValueError(f"expected a PRNG key from jax.random.key(seed), got dtype {keys.dtype} "
                             f"shape {keys.shape}")
        keys = jax.random.wrap_key_data(keys)
    want = 1 if batched else 0
    if keys.ndim != want:
        raise ValueError(f"expected {'a 1-D array of keys [n_seeds]' if batched else 'a single key'}, "
                         f"got key array of shape {keys.shape}")
    if batched and keys.shape[0] == 0:
        raise ValueError("sweep needs at least one key")
    return keys


def check_total_epochs(total_epochs, n_epochs: int, resume, n_steps: int):
    """The whole run's length when training in chunks; None means this call is the whole run."""
    if total_epochs is None:
        if resume is not None:
            raise ValueError("resume needs total_epochs: the length of the whole run the schedules span")
        return None
    total_epochs = check_epochs(total_epochs)
    done = 0 if resume is None else int(np.asarray(resume.step))
    if done + n_epochs * n_steps > total_epochs * n_steps:
        raise ValueError(f"this chunk would end at step {done + n_epochs * n_steps}, past the end of a "
                         f"{total_epochs}-epoch run ({total_epochs * n_steps} steps)")
    return total_epochs


def check_swept_resume(state, runs_shape: tuple, spec: Spec, n_features: int, dtype):
    """One State per run of a sweep (an earlier sweep's ``state``): leading axes ``runs_shape``."""
    if state is None:
        return None
    fields = ("weights", "conscience", "counts", "step")
    if not all(hasattr(state, f) for f in fields):
        raise ValueError(f"resume must be the State of an earlier sweep (fields {fields}), got {type(state).__name__}")
    expected = (*runs_shape, spec.n_units, n_features)
    if tuple(np.shape(state.weights)) != expected:
        raise ValueError(f"resumed weights have shape {tuple(np.shape(state.weights))}, expected {expected} "
                         "(one State per run of this sweep)")
    for name, shape in (("conscience", (*runs_shape, spec.n_units)), ("counts", (*runs_shape, spec.n_units)),
                        ("step", runs_shape)):
        if tuple(np.shape(getattr(state, name))) != shape:
            raise ValueError(f"resumed {name} has shape {tuple(np.shape(getattr(state, name)))}, expected {shape}")
    if not _all_finite(state.weights):
        raise ValueError("resumed weights contain non-finite values (NaN or inf)")
    return type(state)(weights=_as_dtype(state.weights, dtype), conscience=_as_dtype(state.conscience, dtype),
                       counts=_as_dtype(state.counts, dtype), step=_as_dtype(state.step, np.int32))


def check_resume(state, spec: Spec, n_features: int, dtype):
    """A State from an earlier ``fit`` of the same spec on data with the same features."""
    fields = ("weights", "conscience", "counts", "step")
    if not all(hasattr(state, f) for f in fields):
        raise ValueError(f"resume must be the State of an earlier fit (fields {fields}), got {type(state).__name__}")
    weights = check_data(state.weights, dtype, what="resumed weights")
    if tuple(weights.shape) != (spec.n_units, n_features):
        raise ValueError(f"resumed weights have shape {tuple(weights.shape)}, expected {(spec.n_units, n_features)}")
    conscience = np.asarray(state.conscience)
    if conscience.shape != (spec.n_units,) or not np.isfinite(conscience).all():
        raise ValueError(f"resumed conscience must be {spec.n_units} finite values, got shape {conscience.shape}")
    counts = np.asarray(state.counts)
    if counts.shape != (spec.n_units,) or not np.isfinite(counts).all() or (counts < 0).any():
        raise ValueError(f"resumed counts must be {spec.n_units} finite values >= 0, got shape {counts.shape}")
    return type(state)(weights=weights, conscience=conscience.astype(dtype), counts=counts.astype(dtype),
                       step=np.asarray(state.step, np.int32))
