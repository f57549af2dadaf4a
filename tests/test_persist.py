"""save / load: exact round trips of every family (functional models and estimators: weights bit
for bit, predictions equal, training goes on identically), and files that are truncated,
corrupted, tampered with, of a newer format version or holding wrong types rejected with clear
ValueErrors, never unpickled."""
import io
import json
import os

import jax
import numpy as np
import pytest
from sklearn.datasets import make_blobs

import compclust as cc
from compclust import estimators as E
from compclust import persist

X, _ = make_blobs(n_samples=40, centers=3, n_features=3, random_state=0)
X = X.astype(np.float32)

SPECS = {
    "som-online-hexagonal": (cc.som((2, 3), topology="hexagonal"), cc.Hparams(sigma=1.5)),
    "som-batch-toroidal": (cc.som((2, 2), toroidal=True, algorithm="batch", sigma_schedule="linear"),
                           cc.Hparams(sigma=1.0, sigma_final=0.2)),
    "som-minibatch-3d": (cc.som((2, 2, 2), algorithm="minibatch", batch_size=8, kernel="bubble"), cc.Hparams()),
    "conscience": (cc.competitive_layer(3, winner="conscience"), cc.Hparams(lr=0.01)),
    "desieno": (cc.competitive_layer(3, winner="desieno", activation="nearest_centroid"), cc.Hparams(lr=0.1)),
    "kmeans-lloyd": (cc.kmeans(3, chunk_size=16), cc.Hparams()),
    "kmeans-minibatch": (cc.kmeans(3, algorithm="minibatch", batch_size=10), cc.Hparams()),
    "neural-gas-batch": (cc.neural_gas(3, algorithm="batch"), cc.Hparams(sigma=1.5, sigma_final=0.1)),
}


def _fit(spec, hparams, epochs=2):
    return cc.fit(jax.random.key(0), X, spec, hparams, epochs)


def _assert_same_tree(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name", list(SPECS))
def test_functional_round_trip_is_exact(tmp_path, name):
    spec, hparams = SPECS[name]
    result = _fit(spec, hparams)
    scaler = cc.fit_scaler(X, "standard")
    path = persist.save(tmp_path / "model.npz", result, spec=spec, hparams=hparams, scaler=scaler)
    model = cc.load(path)
    assert isinstance(model, persist.Model)
    assert model.spec == spec and hash(model.spec) == hash(spec)
    assert model.hparams == hparams
    _assert_same_tree(model.state, result.state)
    _assert_same_tree(model.metrics, result.metrics)
    assert model.n_iter == int(result.n_iter)
    assert model.scaler.method == "standard"
    np.testing.assert_array_equal(model.scaler.offset, scaler.offset)
    np.testing.assert_array_equal(model.scaler.scale, scaler.scale)
    np.testing.assert_array_equal(cc.bmu(model.spec, model.state.weights, X), cc.bmu(spec, result.state.weights, X))
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # the atomic write cleaned up


def test_a_loaded_state_resumes_training_identically(tmp_path):
    spec, hparams = SPECS["som-online-hexagonal"]
    first = cc.fit(jax.random.key(1), X, spec, hparams, 1, total_epochs=2)
    model = cc.load(cc.save(tmp_path / "m.npz", first, spec=spec, hparams=hparams))
    go_on = cc.fit(jax.random.key(2), X, spec, hparams, 1, resume=first.state, total_epochs=2)
    reloaded = cc.fit(jax.random.key(2), X, model.spec, model.hparams, 1, resume=model.state, total_epochs=2)
    _assert_same_tree(reloaded.state, go_on.state)


ESTIMATORS = [
    E.SOM((2, 2), n_epochs=2, random_state=0),
    E.SOM((2, 2), topology="hexagonal", algorithm="batch", n_epochs=2, init=X[:4], random_state=0),
    E.CompetitiveLayer(3, winner="softmax", temperature=0.5, n_epochs=2, random_state=0),
    E.KMeans(3, max_iter=10, random_state=0),
    E.MiniBatchKMeans(3, batch_size=10, max_iter=2, random_state=0),
    E.NeuralGas(3, algorithm="minibatch", batch_size=10, n_epochs=2, random_state=0),
    E.DNNKMeans(3, n_rounds=2, hidden=(4,), random_state=0),
]


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_estimator_round_trip_is_exact(tmp_path, estimator):
    fitted = estimator.fit(X)
    loaded = cc.load(cc.save(tmp_path / "est.npz", fitted))
    assert type(loaded) is type(fitted)
    params, loaded_params = fitted.get_params(), loaded.get_params()
    init = params.pop("init", None)
    if isinstance(init, np.ndarray):
        np.testing.assert_array_equal(loaded_params.pop("init"), init)
    else:
        assert loaded_params.pop("init", None) == init
    assert loaded_params == params
    for name in ("cluster_centers_", "weights_", "labels_"):
        got, want = getattr(loaded, name), getattr(fitted, name)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    for name in ("n_iter_", "n_features_in_", "quantization_error_", "inertia_"):
        assert getattr(loaded, name) == getattr(fitted, name)
    np.testing.assert_equal(loaded.topographic_error_, fitted.topographic_error_)
    assert loaded.spec_ == fitted.spec_
    np.testing.assert_array_equal(loaded.predict(X), fitted.predict(X))
    np.testing.assert_array_equal(loaded.transform(X), fitted.transform(X))
    assert loaded.score(X) == fitted.score(X)
    if hasattr(fitted, "partial_fit"):  # the State (step, counts, consciences) came back too
        np.testing.assert_array_equal(loaded.partial_fit(X).cluster_centers_, fitted.partial_fit(X).cluster_centers_)
    if isinstance(fitted, E.DNNKMeans):
        _assert_same_tree(loaded.variables_, fitted.variables_)


def test_feature_names_round_trip(tmp_path):
    try:
        import pandas as pd

        frame = pd.DataFrame(X, columns=["x", "y", "z"])
    except ImportError:  # scikit-learn reads a pyarrow Table as a data frame too
        pa = pytest.importorskip("pyarrow")
        frame = pa.table({name: X[:, i] for i, name in enumerate("xyz")})
    som = E.SOM((2, 2), n_epochs=1, random_state=0).fit(frame)
    loaded = cc.load(cc.save(tmp_path / "f.npz", som))
    assert list(loaded.feature_names_in_) == ["x", "y", "z"]


def test_what_cannot_be_saved_is_refused_at_save_time(tmp_path):
    spec = cc.som((2, 2), lr_schedule=lambda t: 0.5 / (1 + t))
    result = _fit(spec, cc.Hparams(), 1)
    with pytest.raises(ValueError, match="callable"):
        cc.save(tmp_path / "c.npz", result, spec=spec, hparams=cc.Hparams())
    assert not (tmp_path / "c.npz").exists()
    with pytest.raises(ValueError, match="spec= and hparams="):
        cc.save(tmp_path / "c.npz", result)
    import optax

    dnn = E.DNNKMeans(3, n_rounds=1, hidden=(4,), optimizer=optax.sgd(0.1), random_state=0).fit(X)
    with pytest.raises(ValueError, match="custom optax optimizer"):
        cc.save(tmp_path / "d.npz", dnn)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        cc.save(tmp_path / "u.npz", E.SOM())
    with jax.debug_key_reuse(False):  # the checker misfires on sweeps: see NO_KEY_REUSE_CHECK in test_loop.py
        runs = cc.sweep(jax.random.split(jax.random.key(0), 2), X, cc.som((2, 2)), cc.Hparams(), 1)
    with pytest.raises(ValueError, match="index it first"):
        cc.save(tmp_path / "s.npz", runs, spec=cc.som((2, 2)), hparams=cc.Hparams())


# ---------------------------------------------------------------------------------------------
# Damaged and hostile files


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    spec, hparams = SPECS["som-online-hexagonal"]
    path = tmp_path_factory.mktemp("saved") / "model.npz"
    cc.save(path, _fit(spec, hparams), spec=spec, hparams=hparams)
    return path


def _entries(path):
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def _rewrite(path, out, header=None, arrays=None, recompute=True):
    """Write ``out`` as ``path`` with the header and arrays edited, with a fresh checksum or the old one."""
    entries = _entries(path)
    head = json.loads(entries["__header__"].tobytes())
    if header:
        header(head)
    for name, value in (arrays or {}).items():
        entries[name] = value
    data = {k: v for k, v in entries.items() if not k.startswith("__")}
    header_bytes = json.dumps(head, sort_keys=True).encode()
    entries["__header__"] = np.frombuffer(header_bytes, np.uint8)
    if recompute:
        entries["__checksum__"] = np.frombuffer(persist._checksum(header_bytes, data).encode(), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **entries)
    out.write_bytes(buffer.getvalue())
    return out


def test_truncated_and_garbage_files_are_rejected(saved, tmp_path):
    data = saved.read_bytes()
    for cut in (len(data) // 2, len(data) - 30, 10):
        (tmp_path / "t.npz").write_bytes(data[:cut])
        with pytest.raises(ValueError, match="corrupt or truncated"):
            cc.load(tmp_path / "t.npz")
    (tmp_path / "g.npz").write_bytes(b"definitely not a zip file")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        cc.load(tmp_path / "g.npz")
    np.save(tmp_path / "bare.npy", np.zeros(3))
    with pytest.raises(ValueError, match="not an .npz archive"):
        cc.load(tmp_path / "bare.npy")
    np.savez(tmp_path / "other.npz", weights=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="not a compclust model file"):
        cc.load(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError):
        cc.load(tmp_path / "missing.npz")


def test_flipped_bytes_are_caught(saved, tmp_path):
    data = bytearray(saved.read_bytes())
    weights = _entries(saved)["state/weights"].tobytes()
    at = bytes(data).find(weights)
    assert at > 0
    data[at + 5] ^= 0x40
    (tmp_path / "flip.npz").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt or truncated"):  # the zip's CRC catches it first
        cc.load(tmp_path / "flip.npz")


def test_tampered_files_fail_the_checksum(saved, tmp_path):
    weights = _entries(saved)["state/weights"].copy()
    weights[0, 0] += 1
    _rewrite(saved, tmp_path / "w.npz", arrays={"state/weights": weights}, recompute=False)
    with pytest.raises(ValueError, match="checksum mismatch"):
        cc.load(tmp_path / "w.npz")

    def faster(head):
        head["hparams"]["lr"] = 5.0

    _rewrite(saved, tmp_path / "h.npz", header=faster, recompute=False)
    with pytest.raises(ValueError, match="checksum mismatch"):
        cc.load(tmp_path / "h.npz")
    _rewrite(saved, tmp_path / "x.npz", arrays={"extra": np.zeros(2)}, recompute=False)
    with pytest.raises(ValueError, match="checksum mismatch"):
        cc.load(tmp_path / "x.npz")


def test_newer_format_versions_and_other_formats_are_refused(saved, tmp_path):
    def newer(head):
        head["format_version"] = persist.FORMAT_VERSION + 1
        head["library_version"] = "9.0"

    _rewrite(saved, tmp_path / "v.npz", header=newer)
    with pytest.raises(ValueError, match=r"format version 2 \(by compclust 9.0\).*upgrade compclust"):
        cc.load(tmp_path / "v.npz")

    def other(head):
        head["format"] = "somebody.else"

    _rewrite(saved, tmp_path / "o.npz", header=other)
    with pytest.raises(ValueError, match="not a compclust.model file"):
        cc.load(tmp_path / "o.npz")


@pytest.mark.parametrize("edit, message", [
    (lambda h: h["spec"].update(n_units="nine"), "n_units must be a positive integer"),
    (lambda h: h["spec"].update(kernel="exec"), "unknown kernel"),
    (lambda h: h["spec"].update(future_field=1), "unknown to this compclust"),
    (lambda h: h["spec"].update(grid={"grid": {"shape": "x"}}), "bad grid"),
    (lambda h: h["spec"].update(lr_schedule={"callable": "os.system"}), "unexpected value"),
    (lambda h: h["hparams"].update(lr="0.5"), "hparams.lr must be a number"),
    (lambda h: h.update(kind="pickle"), "unknown kind"),
    (lambda h: h.update(n_iter="2"), "n_iter must be an integer"),
    (lambda h: h.update(format_version="1"), "invalid format_version"),
])
def test_wrong_types_are_clear_value_errors(saved, tmp_path, edit, message):
    with pytest.raises(ValueError, match=message):
        cc.load(_rewrite(saved, tmp_path / "bad.npz", header=edit))


def test_wrong_shapes_and_dtypes_are_rejected(saved, tmp_path):
    def relist(head, name, array):
        head["arrays"][name] = {"dtype": array.dtype.str, "shape": list(array.shape)}

    wide = np.zeros((5, 3), np.float32)
    _rewrite(saved, tmp_path / "s.npz", header=lambda h: relist(h, "state/weights", wide),
             arrays={"state/weights": wide})
    with pytest.raises(ValueError, match=r"weights must be \[n_units=6, D\]"):
        cc.load(tmp_path / "s.npz")
    unlisted = np.zeros((6, 3), np.float64)  # the header still says float32
    _rewrite(saved, tmp_path / "d.npz", arrays={"state/weights": unlisted})
    with pytest.raises(ValueError, match="the header says"):
        cc.load(tmp_path / "d.npz")


class _Boom:
    ran = False

    def __reduce__(self):
        return (_Boom._explode, ())

    @staticmethod
    def _explode():
        _Boom.ran = True
        return 0


def test_pickled_entries_are_never_unpickled(saved, tmp_path):
    entries = _entries(saved)
    entries["state/weights"] = np.array([_Boom()], dtype=object)
    buffer = io.BytesIO()
    np.savez(buffer, **entries)  # allow_pickle defaults to True when writing
    (tmp_path / "p.npz").write_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match="allow_pickle"):
        cc.load(tmp_path / "p.npz")
    assert not _Boom.ran
