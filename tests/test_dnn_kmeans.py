"""DNN K-means: recovers well-separated clusters, one compiled round equals an eager transcription
of steps 2-4, seeds reproduce bit for bit, sweep == fit, empty clusters stay finite, bad input."""
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import compclust as cc
from compclust.algorithms import dnn_kmeans as dk


def blobs(seed=0, n_per=20, k=3, d=8, spread=0.05):
    rng = np.random.default_rng(seed)
    centres = np.eye(k, d) * 3.0
    x = np.concatenate([c + spread * rng.standard_normal((n_per, d)) for c in centres]).astype(np.float32)
    return x, np.repeat(np.arange(k), n_per)


def tiny_images(seed=0, n_per=8):
    """Three 12x12 patterns (a bar, a column, a block) plus noise: images the CNN can take."""
    rng = np.random.default_rng(seed)
    patterns = np.zeros((3, 12, 12), np.float32)
    patterns[0, 5:7, :] = 1
    patterns[1, :, 5:7] = 1
    patterns[2, 2:6, 2:6] = 1
    x = np.concatenate([p + 0.1 * rng.random((n_per, 12, 12)) for p in patterns]).astype(np.float32)
    return x.reshape(len(x), -1), np.repeat(np.arange(3), n_per)


MLP_SPEC = dk.dnn_kmeans(3, network="mlp", image_shape=(8,), hidden=(16,), n_rounds=6, steps_per_round=10,
                         train_on="centroids+members", members_per_cluster=4, optimizer=optax.adam(3e-2),
                         dropout=0.0, chunk_size=16, seed_strategy="map")  # "map" is "auto" on a CPU


def test_faithful_cnn_has_the_authors_parameter_count():
    spec = dk.dnn_kmeans(10)
    variables = jax.eval_shape(lambda: spec.module.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)), train=False))
    assert dk.n_parameters(variables) == 34_826


def test_recovers_well_separated_clusters():
    x, y = blobs()
    result = dk.fit(jax.random.key(3), x, MLP_SPEC, labels=y)
    assert float(cc.evaluate_labels(y, result.labels, 3, 3).ari) == 1.0
    np.testing.assert_allclose(np.sort(result.centroids[:, :3].max(axis=1)), [3, 3, 3], atol=0.05)
    assert result.metrics.labels.ari.shape == (6,) and float(result.metrics.labels.ari[-1]) == 1.0
    assert int(result.metrics.n_changed[-1]) == 0 and float(result.metrics.center_shift[-1]) == 0.0
    assert result.metrics.centroids.shape == (6, 3, 8)
    np.testing.assert_array_equal(result.metrics.centroids[-1], result.centroids)
    np.testing.assert_array_equal(dk.predict(MLP_SPEC, result.variables, x), result.labels)


def eager_round(spec, state, data, key):
    """Steps 2-4 written out plainly: Python loop over gradient steps, the whole data in one pass,
    NumPy means per cluster (the previous centroid kept for an empty one). The gradient and the
    forward pass are jitted on their own only because op-by-op convolutions take seconds here."""
    module, tx = spec.module, spec.tx
    variables, opt_state = state.variables, state.opt_state
    centroids, labels = np.asarray(state.centroids), np.asarray(state.labels)
    k = spec.n_clusters

    @jax.jit
    @jax.grad
    def grad(v, x, y, w, dropout_key):
        logits = module.apply(v, x.reshape((-1,) + spec.image_shape), train=True, rngs={"dropout": dropout_key})
        return jnp.sum(w * optax.softmax_cross_entropy_with_integer_labels(logits, y))

    for step_key in jax.random.split(key, spec.steps_per_round):
        x, y, w = centroids, np.arange(k), np.ones(k, np.float32)
        dropout_key = step_key
        if spec.train_on == "centroids+members":
            dropout_key, members_key = jax.random.split(step_key)
            u = np.asarray(jax.random.uniform(members_key, (k, spec.members_per_cluster)))
            picks, real = [], []
            for c in range(k):
                members = np.flatnonzero(labels == c)
                picks += [members[int(v * len(members))] if len(members) else 0 for v in u[c]]
                real += [float(len(members) > 0)] * spec.members_per_cluster
            x = np.concatenate([x, data[picks]])
            y = np.concatenate([y, np.repeat(np.arange(k), spec.members_per_cluster)])
            w = np.concatenate([w, real])

        updates, opt_state = tx.update(grad(variables, x, y, w, dropout_key), opt_state, variables)
        variables = optax.apply_updates(variables, updates)
    forward = jax.jit(lambda v, x: module.apply(v, x.reshape((-1,) + spec.image_shape), train=False))
    logits = forward(variables, data)
    new_labels = np.asarray(jnp.argmax(logits, axis=1))
    new_centroids = np.stack([data[new_labels == c].mean(axis=0) if np.any(new_labels == c) else centroids[c]
                              for c in range(k)])
    return variables, new_labels, new_centroids


@pytest.mark.parametrize("which", ["faithful_cnn", "mlp_members"])
def test_compiled_round_equals_eager_transcription(which):
    if which == "faithful_cnn":
        data, _ = tiny_images()
        spec = dk.dnn_kmeans(3, image_shape=(12, 12, 1), chunk_size=10)  # 24 samples: chunks of 10 padded
    else:
        data, _ = blobs(n_per=6)
        spec = dk.dnn_kmeans(3, network="mlp", image_shape=(8,), hidden=(16,), steps_per_round=3,
                             train_on="centroids+members", members_per_cluster=5, chunk_size=7)
    init_key, key1, key2 = jax.random.split(jax.random.key(1), 3)
    state = dk.init(init_key, data, spec)
    if which == "mlp_members":  # members need a previous assignment: compare the second round
        state, _ = dk.round_step(key1, state, data, spec)
    new_state, metrics = dk.round_step(jax.random.clone(key2), state, data, spec)
    variables, labels, centroids = eager_round(spec, state, data, jax.random.clone(key2))  # same key, fresh copy
    np.testing.assert_array_equal(new_state.labels, labels)
    np.testing.assert_allclose(new_state.centroids, centroids, rtol=1e-6, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), new_state.variables, variables)
    np.testing.assert_array_equal(metrics.cluster_sizes, np.bincount(labels, minlength=3))
    inertia = sum(((data[labels == c] - centroids[c]) ** 2).sum() for c in range(3))
    assert float(metrics.inertia) == pytest.approx(inertia, rel=1e-5)


def test_seeds_reproduce_bit_for_bit_and_differ_between_seeds():
    x, y = blobs()
    a = dk.fit(jax.random.key(7), x, MLP_SPEC, labels=y)
    b = dk.fit(jax.random.key(7), x, MLP_SPEC, labels=y)
    jax.tree.map(np.testing.assert_array_equal, a, b)
    c = dk.fit(jax.random.key(8), x, MLP_SPEC, labels=y)
    assert not np.array_equal(a.initial_centroids, c.initial_centroids)


def test_sweep_equals_fit():
    import dataclasses

    x, y = blobs()
    keys = jax.random.split(jax.random.key(0), 3)
    spec = MLP_SPEC  # the spec of the fits above: their compiled program is reused
    swept = dk.sweep(jax.random.clone(keys), x, spec, labels=y)
    assert swept.labels.shape == (3, len(x)) and swept.metrics.loss.shape == (3, MLP_SPEC.n_rounds)
    for i in range(3):  # lax.map runs the very program fit runs: bit-identical
        one = dk.fit(keys[i], x, spec, labels=y)
        jax.tree.map(lambda s, f: np.testing.assert_array_equal(s[i], f), swept, one)
    with jax.debug_key_reuse(False):  # jax's checker misfires on vmap of a scan over split keys (test_loop.py)
        vmapped = dk.sweep(jax.random.clone(keys), x, dataclasses.replace(spec, seed_strategy="vmap"))
    np.testing.assert_array_equal(vmapped.labels, swept.labels)  # batched matmuls may round differently
    np.testing.assert_allclose(vmapped.centroids, swept.centroids, rtol=1e-5, atol=1e-6)


class AlwaysZero(nn.Module):
    """Predicts cluster 0 for every sample, so clusters 1.. are empty after every round."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        logits = nn.Dense(3)(x.reshape((x.shape[0], -1)))
        return 0.0 * logits + jnp.array([100.0, 0.0, 0.0])


def test_empty_clusters_keep_their_centroid_and_stay_finite():
    x, _ = blobs(n_per=5)
    spec = dk.dnn_kmeans(3, network=AlwaysZero(), image_shape=(8,), n_rounds=3,
                         train_on="centroids+members", members_per_cluster=2)
    result = dk.fit(jax.random.key(0), x, spec)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(result))
    np.testing.assert_array_equal(result.metrics.n_empty, [2, 2, 2])
    np.testing.assert_array_equal(result.centroids[1:], result.initial_centroids[1:])
    np.testing.assert_allclose(result.centroids[0], x.mean(axis=0), rtol=1e-6)


def test_images_may_be_given_unflattened():
    data, _ = tiny_images(n_per=4)
    spec = dk.dnn_kmeans(3, image_shape=(12, 12, 1))
    for shaped in (data.reshape(-1, 12, 12), data.reshape(-1, 12, 12, 1), jnp.asarray(data).reshape(-1, 12, 12)):
        np.testing.assert_array_equal(dk._check_data(shaped, spec), data)


def _no_compile(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("compiled before validating")

    monkeypatch.setattr(dk, "_fit_jit", refuse)
    monkeypatch.setattr(dk, "_sweep_jit", refuse)


@pytest.mark.parametrize("case,match", [
    ("mnist_spec_small_images", "784 values"),
    ("too_small_for_cnn", "cannot take images of shape"),
    ("wrong_image_shape", "do not fit the network's image_shape"),
    ("k_larger_than_n", "larger than the number of samples"),
    ("nan", "non-finite"),
    ("labels_length", "one entry per sample"),
    ("labels_float", "integer class labels"),
    ("int_key", "jax.random.key"),
])
def test_bad_input_raises_before_compiling(monkeypatch, case, match):
    _no_compile(monkeypatch)
    x, y = tiny_images(n_per=2)
    spec, labels, key = dk.dnn_kmeans(3), None, jax.random.key(0)
    if case == "too_small_for_cnn":
        spec, x = dk.dnn_kmeans(3, image_shape=(8, 8, 1)), x[:, :64]
    elif case == "wrong_image_shape":
        spec, x = dk.dnn_kmeans(3, image_shape=(12, 12, 1)), x.reshape(-1, 6, 24)
    elif case == "k_larger_than_n":
        spec = dk.dnn_kmeans(10, image_shape=(12, 12, 1))
    elif case == "nan":
        spec, x = dk.dnn_kmeans(3, image_shape=(12, 12, 1)), x.copy()
        x[1, 5] = np.nan
    elif case.startswith("labels"):
        spec = dk.dnn_kmeans(3, image_shape=(12, 12, 1))
        labels = y[:-1] if case == "labels_length" else y.astype(float)
    elif case == "int_key":
        spec, key = dk.dnn_kmeans(3, image_shape=(12, 12, 1)), 0
    with pytest.raises(ValueError, match=match):
        dk.fit(key, x, spec, labels=labels)
    if case != "int_key":
        with pytest.raises(ValueError, match=match):
            dk.sweep(jax.random.split(jax.random.key(0), 2), x, spec, labels=labels)


class NoTrainArgument(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(x)


class WrongOutput(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(4)(x)


@pytest.mark.parametrize("kwargs,match", [
    (dict(network="resnet"), "unknown network"),
    (dict(network=NoTrainArgument()), "train: bool"),
    (dict(train_on="members"), "unknown train_on"),
    (dict(train_on="centroids+members"), "members_per_cluster"),
    (dict(members_per_cluster=3), "only used with"),
    (dict(optimizer="adam"), "optax GradientTransformation"),
    (dict(dropout=1.0), "dropout"),
    (dict(n_rounds=0), "n_rounds"),
    (dict(seed_strategy="pmap"), "seed_strategy"),
])
def test_bad_spec_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dk.dnn_kmeans(3, **kwargs)


def test_network_with_wrong_output_raises():
    spec = dk.dnn_kmeans(3, network=WrongOutput(), image_shape=(8,))
    with pytest.raises(ValueError, match=r"logits \[B, 3\]"):
        dk.fit(jax.random.key(0), blobs()[0], spec)


def test_seed_strategy_auto_is_map_on_cpu_and_vmap_elsewhere():
    spec = dk.dnn_kmeans(3)
    assert dk.resolve_seed_strategy(spec, "cpu") == "map"
    assert dk.resolve_seed_strategy(spec, "gpu") == "vmap"


def test_import_compclust_does_not_import_flax():
    code = "import sys, compclust; assert 'flax' not in sys.modules; compclust.dnn_kmeans; assert 'flax' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
