"""Saving and loading fitted models, functional or scikit-learn estimators, without pickle.

``save(path, model)`` writes one file atomically (``compclust.io.atomic_write_bytes``: readers see
the old file or the new one, never a part); ``load(path)`` gives back what was saved: a ``Model``
(spec, hyperparameters, State, per-epoch metrics, n_iter, Scaler) or a fitted estimator of
``compclust.estimators``. The round trip is exact: weights equal bit for bit, predictions equal,
the Spec compares equal.

File format ``compclust.model``, version 1
------------------------------------------

An uncompressed NumPy ``.npz`` archive (a zip of ``.npy`` files) holding only numeric arrays; it
is read with ``np.load(path, allow_pickle=False)``, so loading never unpickles or executes
anything (estimator classes are looked up by name in ``estimators.ESTIMATORS``, a fixed table):

``__header__``
    uint8 ``[n]``: the UTF-8 bytes of a JSON object::

        {"format": "compclust.model", "format_version": 1, "library_version": "0.1.0",
         "kind": "model" | "estimator",
         "spec": {field: value, ...},         Spec (or DNNKMeansSpec) fields; a Grid is
                                              {"grid": {"shape": [...], "topology": ..., "toroidal": ...}},
                                              a tuple {"tuple": [...]}, an array {"array": "<entry>"}
         "hparams": {"lr": 0.5, ...},         Hparams as JSON numbers (exact: floats print round-trip)
         "n_iter": 10, "scaler": {"method": "minmax"} | null,
         "estimator": {"class": "SOM", "params": {...}, "n_features_in": 4,
                       "feature_names_in": [...] | null, "n_iter": 10} | null,
         "arrays": {"<entry>": {"dtype": "<f4", "shape": [9, 4]}, ...}}

``__checksum__``
    uint8 ``[64]``: the hex SHA-256 of the header bytes followed by every listed array in sorted
    name order (its name, dtype, shape and raw C-order bytes). It catches truncation, corruption
    and edits that did not recompute it; it is not a signature (anyone can recompute it).

arrays
    ``state/weights`` ``[K, D]``, ``state/conscience`` ``[K]``, ``state/counts`` ``[K]``,
    ``state/step`` ``[]`` int32, ``metrics/<field>`` ``[n_epochs]`` (EpochMetrics),
    ``scaler/offset`` and ``scaler/scale`` ``[D]`` float64, ``labels`` ``[N]`` int32 (an
    estimator's ``labels_``), ``params/<name>`` (an array-valued estimator parameter such as
    ``init``); DNN K-means estimators: ``centroids``, ``labels``, ``inertia_history``,
    ``quantization_error`` and the network's parameters ``variables/<path>``.

On load: a file that is not a zip of ``.npy`` files, is truncated, lacks the header or checksum,
has a different format name, a newer ``format_version``, a checksum that does not match, entries
other than those the header lists, or values of the wrong types or shapes gives a ``ValueError``
that says which. What cannot be saved gives a ``ValueError`` at save time: a callable (optax)
schedule, a custom flax network or optax optimizer (save the name of a built-in one instead).
An estimator's ``random_state`` given as a ``RandomState`` object is saved as None; an online
run's per-step ``trace`` is not saved.
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import io
import json
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np

from .io import atomic_write_bytes
from .preprocessing import METHODS, Scaler
from .spec import Grid, Hparams, Spec
from .state import EpochMetrics, FitResult, State

__all__ = ["Model", "save", "load", "FORMAT", "FORMAT_VERSION"]

FORMAT = "compclust.model"
FORMAT_VERSION = 1
_HEADER, _CHECKSUM = "__header__", "__checksum__"
_NUMERIC_KINDS = "biuf"


class Model(NamedTuple):
    """A fitted functional model: what ``cc.fit`` needs to go on and ``cc.bmu`` to predict."""
    spec: Spec
    hparams: Hparams
    state: State
    metrics: Optional[EpochMetrics] = None  # [n_epochs] each field
    n_iter: Optional[int] = None
    scaler: Optional[Scaler] = None         # how the data was scaled before fitting


def _library_version() -> str:
    try:
        from importlib.metadata import version

        return version("compclust")
    except Exception:  # not installed (a source checkout on sys.path)
        return "unknown"


# ---------------------------------------------------------------------------------------------
# JSON values <-> Python values (arrays go to the archive, referenced by name)


def _encode(value, where: str, arrays: dict):
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, Grid):
        return {"grid": {"shape": list(value.shape), "topology": value.topology, "toroidal": value.toroidal}}
    if isinstance(value, tuple):
        return {"tuple": [_encode(v, f"{where}/{i}", arrays) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{where}/{i}", arrays) for i, v in enumerate(value)]
    if isinstance(value, np.random.RandomState):
        return None  # a generator's state is not a setting; documented
    if hasattr(value, "__array__") and not callable(value):
        array = np.asarray(value)
        if array.dtype.kind not in _NUMERIC_KINDS:
            raise ValueError(f"{where}: an array of dtype {array.dtype} cannot be saved (numbers only)")
        arrays[where] = array
        return {"array": where}
    if callable(value):
        raise ValueError(f"{where} is a callable ({value!r}), which cannot be saved: loading it would mean "
                         "executing code. Use a named schedule (or built-in network / learning_rate) instead")
    raise ValueError(f"{where}: a value of type {type(value).__name__} cannot be saved")


def _decode(value, arrays: dict):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    if isinstance(value, dict) and len(value) == 1:
        (tag, inner), = value.items()
        if tag == "tuple" and isinstance(inner, list):
            return tuple(_decode(v, arrays) for v in inner)
        if tag == "grid" and isinstance(inner, dict):
            shape = inner.get("shape")
            if not isinstance(shape, list) or set(inner) != {"shape", "topology", "toroidal"}:
                raise ValueError(f"bad grid {inner!r}")
            return Grid(tuple(shape), inner["topology"], inner["toroidal"])
        if tag == "array" and isinstance(inner, str) and inner in arrays:
            return arrays[inner]
    raise ValueError(f"unexpected value {value!r} in the header")


def _encode_dataclass(obj, where: str, arrays: dict) -> dict:
    return {f.name: _encode(getattr(obj, f.name), f"{where}.{f.name}", arrays) for f in dataclasses.fields(obj)}


def _decode_dataclass(cls, fields, arrays):
    if not isinstance(fields, dict):
        raise ValueError(f"the {cls.__name__} must be a JSON object")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(fields) - known
    if unknown:
        raise ValueError(f"{cls.__name__} fields {sorted(unknown)} are unknown to this compclust "
                         f"(the file may come from a newer version)")
    return cls(**{name: _decode(value, arrays) for name, value in fields.items()})


def _encode_hparams(hparams) -> dict:
    if not isinstance(hparams, Hparams):
        raise ValueError(f"hparams must be a compclust.Hparams, got {type(hparams).__name__}")
    out = {}
    for name, value in hparams._asdict().items():
        array = np.asarray(value)
        if array.dtype.kind not in _NUMERIC_KINDS or array.ndim > 1:
            raise ValueError(f"hparams.{name} must be a number (or a 1-D array), got {value!r}")
        out[name] = array.tolist()
    return out


def _decode_hparams(fields) -> Hparams:
    if not isinstance(fields, dict) or set(fields) - set(Hparams._fields):
        raise ValueError(f"hparams must be a JSON object with fields among {Hparams._fields}, got {fields!r}")
    for name, value in fields.items():
        flat = value if isinstance(value, list) else [value]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat):
            raise ValueError(f"hparams.{name} must be a number, got {value!r}")
    return Hparams(**{k: (np.asarray(v) if isinstance(v, list) else v) for k, v in fields.items()})


# ---------------------------------------------------------------------------------------------
# The archive: header + checksum + arrays


def _checksum(header_bytes: bytes, arrays: dict) -> str:
    digest = hashlib.sha256()
    digest.update(header_bytes)
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"\0{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _write(path, header: dict, arrays: dict) -> Path:
    for name, array in arrays.items():
        if name.startswith("__") or array.dtype.kind not in _NUMERIC_KINDS:
            raise ValueError(f"cannot save entry {name!r} of dtype {array.dtype}")
    header = dict(header, arrays={name: {"dtype": a.dtype.str, "shape": list(a.shape)} for name, a in arrays.items()})
    header_bytes = json.dumps(header, sort_keys=True).encode("utf-8")
    entries = dict(arrays)
    entries[_HEADER] = np.frombuffer(header_bytes, np.uint8)
    entries[_CHECKSUM] = np.frombuffer(_checksum(header_bytes, arrays).encode("ascii"), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **entries)
    return atomic_write_bytes(path, buffer.getvalue())


def _read(path) -> tuple[dict, dict]:
    """Header and arrays of a model file, verified (format, version, checksum, listed entries)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("a bare .npy array, not an .npz archive")
        with archive:
            names = set(archive.files)
            if _HEADER not in names or _CHECKSUM not in names:
                raise ValueError(f"no {_HEADER} or {_CHECKSUM} entry: not a compclust model file")
            entries = {name: archive[name] for name in names}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(f"{path}: not a readable compclust model file (corrupt or truncated?): {err}") from None
    raw_header, raw_checksum = entries.pop(_HEADER), entries.pop(_CHECKSUM)
    if raw_header.dtype != np.uint8 or raw_header.ndim != 1 or raw_checksum.dtype != np.uint8:
        raise ValueError(f"{path}: malformed header or checksum entry")
    header_bytes = raw_header.tobytes()
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: the header is not valid JSON ({err}); the file is corrupt") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} file (format {header.get('format') if isinstance(header, dict) else None!r})")
    version = header.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{path}: invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(f"{path} was written in {FORMAT} format version {version} (by compclust "
                         f"{header.get('library_version', '?')}); this compclust reads versions up to "
                         f"{FORMAT_VERSION}: upgrade compclust to load it")
    if not hmac.compare_digest(_checksum(header_bytes, entries).encode("ascii"), raw_checksum.tobytes()):
        raise ValueError(f"{path}: checksum mismatch: the file was modified or corrupted after it was written")
    listed = header.get("arrays")
    if not isinstance(listed, dict) or set(listed) != set(entries):
        raise ValueError(f"{path}: the arrays in the file do not match the header's list")
    for name, meta in listed.items():
        array = entries[name]
        if not isinstance(meta, dict) or meta.get("dtype") != array.dtype.str or meta.get("shape") != list(array.shape):
            raise ValueError(f"{path}: entry {name!r} has dtype {array.dtype.str} shape {list(array.shape)}, "
                             f"the header says {meta!r}")
    return header, entries


def _base_header(kind: str) -> dict:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "library_version": _library_version(),
            "kind": kind}


def _numeric(array, what: str, shape=None, kinds="f"):
    array = np.asarray(array)
    if array.dtype.kind not in kinds:
        raise ValueError(f"{what} must have dtype kind {kinds!r}, got {array.dtype}")
    if shape is not None and array.shape != tuple(shape):
        raise ValueError(f"{what} must have shape {tuple(shape)}, got {array.shape}")
    return array


# ---------------------------------------------------------------------------------------------
# Functional models


def _as_model(model, spec, hparams, scaler) -> Model:
    if isinstance(model, Model):
        if spec is not None or hparams is not None:
            raise ValueError("a Model carries its own spec and hparams; do not pass them again")
        return model if scaler is None else model._replace(scaler=scaler)
    if not isinstance(model, (FitResult, State)):
        raise ValueError(f"cannot save a {type(model).__name__}: pass a compclust.persist.Model, a FitResult or "
                         "State (with spec= and hparams=), or a fitted compclust estimator (DNN K-means: "
                         "save a fitted estimators.DNNKMeans)")
    if spec is None or hparams is None:
        raise ValueError(f"saving a {type(model).__name__} needs spec= and hparams= (the ones it was fitted with)")
    if isinstance(model, FitResult):
        return Model(spec, hparams, model.state, model.metrics, model.n_iter, scaler)
    return Model(spec, hparams, model, None, None, scaler)


def _check_state(state, spec: Spec, what="state") -> State:
    if not isinstance(state, tuple) or not all(hasattr(state, f) for f in State._fields):
        raise ValueError(f"{what} must be a compclust State")
    weights = _numeric(state.weights, f"{what}.weights")
    if weights.ndim != 2 or weights.shape[0] != spec.n_units:
        raise ValueError(f"{what}.weights must be [n_units={spec.n_units}, D], got shape {weights.shape} "
                         "(save one run of a sweep: index it first)")
    k = spec.n_units
    return State(weights=weights, conscience=_numeric(state.conscience, f"{what}.conscience", (k,)),
                 counts=_numeric(state.counts, f"{what}.counts", (k,)),
                 step=_numeric(state.step, f"{what}.step", (), kinds="iu"))


def _model_arrays(model: Model, arrays: dict) -> dict:
    """The header fields of a functional model; its arrays go into ``arrays``."""
    if not isinstance(model.spec, Spec):
        raise ValueError(f"spec must be a compclust Spec, got {type(model.spec).__name__}")
    state = _check_state(model.state, model.spec)
    for name, value in state._asdict().items():
        arrays[f"state/{name}"] = value
    if model.metrics is not None:
        for name, value in model.metrics._asdict().items():
            arrays[f"metrics/{name}"] = _numeric(value, f"metrics.{name}", kinds="fiu")
    scaler = None
    if model.scaler is not None:
        s = model.scaler
        if not isinstance(s, Scaler):
            raise ValueError(f"scaler must be a compclust Scaler, got {type(s).__name__}")
        arrays["scaler/offset"] = _numeric(s.offset, "scaler.offset")
        arrays["scaler/scale"] = _numeric(s.scale, "scaler.scale", s.offset.shape)
        scaler = {"method": s.method}
    n_iter = None if model.n_iter is None else int(np.asarray(model.n_iter))
    return {"spec": _encode_dataclass(model.spec, "spec", arrays), "hparams": _encode_hparams(model.hparams),
            "n_iter": n_iter, "scaler": scaler}


def _load_model_parts(header: dict, arrays: dict) -> Model:
    spec = _decode_dataclass(Spec, header.get("spec"), arrays)
    hparams = _decode_hparams(header.get("hparams"))
    fields = {name: arrays.get(f"state/{name}") for name in State._fields}
    if any(v is None for v in fields.values()):
        raise ValueError("the file has no complete state")
    state = _check_state(State(**fields), spec)
    if state.step.dtype != np.int32:
        raise ValueError(f"state.step must be int32, got {state.step.dtype}")
    metrics = None
    if any(f"metrics/{name}" in arrays for name in EpochMetrics._fields):
        metrics = EpochMetrics(**{name: arrays[f"metrics/{name}"] for name in EpochMetrics._fields})
    scaler = None
    if header.get("scaler") is not None:
        method = header["scaler"].get("method") if isinstance(header["scaler"], dict) else None
        if method not in METHODS or "scaler/offset" not in arrays or "scaler/scale" not in arrays:
            raise ValueError(f"bad scaler {header['scaler']!r}")
        scaler = Scaler(method, arrays["scaler/offset"], arrays["scaler/scale"])
    n_iter = header.get("n_iter")
    if n_iter is not None and (isinstance(n_iter, bool) or not isinstance(n_iter, int)):
        raise ValueError(f"n_iter must be an integer, got {n_iter!r}")
    return Model(spec, hparams, state, metrics, n_iter, scaler)


# ---------------------------------------------------------------------------------------------
# Estimators


def _estimator_header(est, arrays: dict) -> dict:
    from sklearn.utils.validation import check_is_fitted

    from .estimators import DNNKMeans

    check_is_fitted(est)
    params = est.get_params(deep=False)
    if isinstance(est, DNNKMeans):
        if params["optimizer"] is not None:
            raise ValueError("a DNNKMeans with a custom optax optimizer cannot be saved (it is code); "
                             "use learning_rate, or save the fitted network's parameters yourself")
        if not isinstance(params["network"], str):
            raise ValueError("a DNNKMeans with a custom flax network cannot be saved (it is code); "
                             "use network='mlp' or 'cnn'")
    names = getattr(est, "feature_names_in_", None)
    info = {"class": type(est).__name__, "params": {k: _encode(v, f"params/{k}", arrays) for k, v in params.items()},
            "n_features_in": int(est.n_features_in_), "n_iter": int(est.n_iter_),
            "feature_names_in": None if names is None else [str(n) for n in names]}
    arrays["labels"] = np.asarray(est.labels_)
    if isinstance(est, DNNKMeans):
        arrays["centroids"] = est.cluster_centers_
        arrays["inertia_history"] = est.inertia_history_
        arrays["quantization_error"] = np.asarray(est.quantization_error_, np.float64)
        for name, leaf in _named_leaves(est.variables_):
            arrays[f"variables/{name}"] = np.asarray(leaf)
        return {"estimator": info, "spec": _encode_dataclass(est.spec_, "spec", arrays)}
    model = Model(est.spec_, est.hparams_, est.state_, est.metrics_, est.n_iter_)
    return dict(_model_arrays(model, arrays), estimator=info)


def _named_leaves(tree):
    import jax

    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [("/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path), leaf)
            for path, leaf in leaves]


def _load_estimator(header: dict, arrays: dict):
    from .estimators import ESTIMATORS, DNNKMeans

    info = header.get("estimator")
    if not isinstance(info, dict) or info.get("class") not in ESTIMATORS:
        raise ValueError(f"unknown estimator {info.get('class') if isinstance(info, dict) else info!r}; "
                         f"this compclust has {sorted(ESTIMATORS)}")
    cls = ESTIMATORS[info["class"]]
    params = info.get("params")
    if not isinstance(params, dict):
        raise ValueError("estimator params must be a JSON object")
    try:
        est = cls(**{k: _decode(v, arrays) for k, v in params.items()})
    except TypeError as err:
        raise ValueError(f"estimator params do not fit {cls.__name__}: {err}") from None
    n_features, n_iter, names = info.get("n_features_in"), info.get("n_iter"), info.get("feature_names_in")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (n_features, n_iter)):
        raise ValueError("n_features_in and n_iter must be integers")
    labels = _numeric(arrays.get("labels"), "labels", kinds="iu")
    if isinstance(est, DNNKMeans):
        _restore_dnn(est, header, arrays, labels)
    else:
        model = _load_model_parts(header, arrays)
        if model.metrics is None:
            raise ValueError("an estimator file needs its metrics")
        if model.state.weights.shape[1] != n_features:
            raise ValueError(f"weights have {model.state.weights.shape[1]} features but n_features_in is {n_features}")
        est._set_fitted(None, model.spec, model.hparams, model.state, model.metrics, n_iter)
        est._set_derived(labels=labels)
    est.n_features_in_ = n_features
    if names is not None:
        if not isinstance(names, list) or len(names) != n_features or not all(isinstance(n, str) for n in names):
            raise ValueError("feature_names_in must be a list of n_features_in strings")
        est.feature_names_in_ = np.asarray(names, dtype=object)
    return est


def _restore_dnn(est, header, arrays, labels):
    import jax
    import jax.numpy as jnp

    from .algorithms.dnn_kmeans import DNNKMeansSpec

    spec = _decode_dataclass(DNNKMeansSpec, header.get("spec"), arrays)
    if not isinstance(spec.network, str) or spec.optimizer is not None:
        raise ValueError("a saved DNN K-means spec names a built-in network and no optimizer")
    structure = jax.eval_shape(lambda: spec.module.init(jax.random.key(0), jnp.zeros((1,) + spec.image_shape),
                                                         train=False))
    leaves = []
    for name, leaf in _named_leaves(structure):
        array = arrays.get(f"variables/{name}")
        if array is None or array.shape != leaf.shape or array.dtype != leaf.dtype:
            raise ValueError(f"network parameter {name!r} is missing or has the wrong shape or dtype")
        leaves.append(array)
    expected = {f"variables/{name}" for name, _ in _named_leaves(structure)}
    if {n for n in arrays if n.startswith("variables/")} != expected:
        raise ValueError("the file's network parameters do not match the network its spec describes")
    variables = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(structure), leaves)
    centroids = _numeric(arrays.get("centroids"), "centroids", (spec.n_clusters, spec.n_features))
    est.spec_ = spec
    est.variables_ = variables
    est.cluster_centers_ = centroids
    est.weights_ = centroids
    est.labels_ = labels
    est.inertia_history_ = _numeric(arrays.get("inertia_history"), "inertia_history", (spec.n_rounds,))
    est.n_iter_ = spec.n_rounds
    est.inertia_ = float(est.inertia_history_[-1])
    est.quantization_error_ = float(_numeric(arrays.get("quantization_error"), "quantization_error", ()))
    est.topographic_error_ = float("nan")


# ---------------------------------------------------------------------------------------------
# Public entry points


def save(path: str | os.PathLike, model, *, spec: Spec | None = None, hparams: Hparams | None = None,
         scaler: Scaler | None = None) -> Path:
    """Write a fitted model to ``path`` (one ``.npz`` file, atomically; see the module docstring).

    model: a fitted compclust estimator; a ``Model``; or a ``FitResult`` / ``State`` from ``cc.fit``
      together with the ``spec=`` and ``hparams=`` it was fitted with (and optionally the
      ``scaler=`` the data went through). Returns the path written.
    """
    from .estimators import _Estimator

    arrays: dict[str, np.ndarray] = {}
    if isinstance(model, _Estimator):
        if spec is not None or hparams is not None or scaler is not None:
            raise ValueError("an estimator carries its own spec and hparams; save(path, estimator) takes no more")
        header = dict(_base_header("estimator"), **_estimator_header(model, arrays))
    else:
        header = dict(_base_header("model"), **_model_arrays(_as_model(model, spec, hparams, scaler), arrays))
    return _write(path, header, arrays)


def load(path: str | os.PathLike):
    """Read a file written by ``save``: a ``Model`` or a fitted estimator, as it was saved.

    Raises ValueError for a file that is truncated, corrupt, modified after writing (checksum), of
    a newer format version, or holding values of the wrong types; never unpickles anything."""
    header, arrays = _read(path)
    kind = header.get("kind")
    try:
        if kind == "model":
            return _load_model_parts(header, arrays)
        if kind == "estimator":
            return _load_estimator(header, arrays)
    except (TypeError, KeyError, AttributeError) as err:
        raise ValueError(f"{path}: invalid model file: {type(err).__name__}: {err}") from None
    except ValueError as err:
        raise ValueError(f"{path}: invalid model file: {err}") from None
    raise ValueError(f"{path}: unknown kind {kind!r} (expected 'model' or 'estimator')")
