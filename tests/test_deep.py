"""Deep clustering (compclust.deep): losses against NumPy transcriptions, the compiled pretraining
against an eager one, reproducibility, a pipeline on data K-means cannot cluster, bad input."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import compclust as cc
from compclust import deep
from compclust.deep import losses

RNG = np.random.default_rng(0)


# ----------------------------------------------------------------------------------------------
# Losses against NumPy


def np_student_t(z, c, alpha):
    d2 = ((z[:, None, :] - c[None]) ** 2).sum(-1)
    k = (1 + d2 / alpha) ** (-(alpha + 1) / 2)
    return k / k.sum(1, keepdims=True)


def test_losses_equal_numpy_transcriptions():
    z, c = RNG.normal(size=(7, 3)), RNG.normal(size=(4, 3))
    for alpha in (1.0, 2.5):
        np.testing.assert_allclose(losses.student_t(jnp.asarray(z), jnp.asarray(c), alpha), np_student_t(z, c, alpha),
                                   rtol=1e-5)
    q = np_student_t(z, c, 1.0)
    w = q ** 2 / q.sum(0)
    p = w / w.sum(1, keepdims=True)
    np.testing.assert_allclose(losses.target_distribution(jnp.asarray(q)), p, rtol=1e-5)
    np.testing.assert_allclose(losses.kl_divergence(jnp.asarray(p), jnp.asarray(q)),
                               np.mean(np.sum(p * np.log(p / q), 1)), rtol=1e-5)
    weights = RNG.uniform(size=(7, 4))
    d2 = ((z[:, None] - c[None]) ** 2).sum(-1)
    np.testing.assert_allclose(losses.som_distortion(jnp.asarray(z), jnp.asarray(c), jnp.asarray(weights)),
                               np.mean(np.sum(weights * d2, 1)), rtol=1e-5)


def test_loss_gradients_are_finite_even_at_a_centre():
    z = jnp.asarray(RNG.normal(size=(5, 3)), jnp.float32)
    c = z[:4]  # four samples sit exactly on a centre
    p = losses.target_distribution(losses.student_t(z, c))

    def total(z, c):
        return losses.kl_divergence(p, losses.student_t(z, c)) + losses.som_distortion(z, c, jnp.ones((5, 4)))

    for g in jax.grad(total, argnums=(0, 1))(z, c):
        assert np.all(np.isfinite(np.asarray(g)))


def test_desom_neighbourhood_is_the_som_kernel_on_grid_distances():
    config = deep.DESOMConfig(grid=cc.Grid((3, 4)), steps=5, radius_start=2.0, radius_end=0.5, normalize=False)
    units = jnp.array([0, 5, 11])
    weights = np.asarray(deep.desom.neighbourhood_weights(config, units, 1.5))
    coords = np.indices((3, 4)).reshape(2, -1).T
    d2 = ((coords[np.asarray(units)][:, None] - coords[None]) ** 2).sum(-1)
    np.testing.assert_allclose(weights, np.exp(-d2 / (2 * 1.5 ** 2)), rtol=1e-5)
    normalised = deep.desom.neighbourhood_weights(dataclasses.replace(config, normalize=True), units, 1.5)
    np.testing.assert_allclose(normalised, weights / weights.sum(1, keepdims=True), rtol=1e-5)
    assert float(deep.desom.radius_at(config, 0)) == pytest.approx(2.0)
    assert float(deep.desom.radius_at(config, 4)) == pytest.approx(0.5)


# ----------------------------------------------------------------------------------------------
# Augmentation and pretraining


def test_random_shifts_move_each_image_by_whole_pixels_within_range():
    images = RNG.uniform(size=(6, 5 * 4)).astype(np.float32)
    shifted = np.asarray(deep.random_shifts(jax.random.key(1), jnp.asarray(images), 1, (5, 4))).reshape(6, 5, 4)
    for image, out in zip(images.reshape(6, 5, 4), shifted):
        padded = np.pad(image, 1)
        matches = [(dy, dx) for dy in range(3) for dx in range(3) if np.array_equal(padded[dy:dy + 5, dx:dx + 4], out)]
        assert matches, "every output is the image moved by at most one pixel"
    assert np.array_equal(deep.random_shifts(jax.random.key(1), jnp.asarray(images), 0, (5, 4)), images)


def eager_pretrain(key, data, model, config):
    """A Python-loop transcription of ``pretrain`` (same keys, same order)."""
    init_key, epoch_key = jax.random.split(key)
    params = model.init(init_key, data[:1])
    optimizer = optax.adam(config.learning_rate)
    opt_state = optimizer.init(params)
    n_batches = data.shape[0] // config.batch_size
    for e in range(config.epochs):
        order_key, batch_keys = jax.random.split(jax.random.fold_in(epoch_key, e))
        order = np.asarray(jax.random.permutation(order_key, data.shape[0]))
        for b in range(n_batches):
            rows = order[b * config.batch_size:(b + 1) * config.batch_size]
            x = deep.random_shifts(jax.random.fold_in(batch_keys, b), data[rows], config.shift, config.image_shape)
            grads = jax.grad(lambda p: jnp.mean((model.apply(p, x)[1] - x) ** 2))(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
    return params


def tiny_model(n_features):
    return deep.dec_autoencoder(n_features, embedding_dim=3, hidden=(16, 8))


def test_compiled_pretraining_equals_an_eager_transcription_for_two_steps():
    data = jnp.asarray(RNG.uniform(size=(20, 16)), jnp.float32)
    config = deep.PretrainConfig(epochs=1, batch_size=10, shift=1, image_shape=(4, 4))  # 2 steps
    compiled = deep.pretrain(jax.random.key(3), data, tiny_model(16), config)
    eager = eager_pretrain(jax.random.key(3), data, tiny_model(16), config)
    for a, b in zip(jax.tree.leaves(compiled.params), jax.tree.leaves(eager)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_pretraining_is_reproducible_and_lowers_the_loss():
    data = jnp.asarray(RNG.uniform(size=(64, 16)), jnp.float32)
    config = deep.PretrainConfig(epochs=20, batch_size=16)
    a = deep.pretrain(jax.random.key(0), data, tiny_model(16), config)
    b = deep.pretrain(jax.random.key(0), data, tiny_model(16), config)
    c = deep.pretrain(jax.random.key(1), data, tiny_model(16), config)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert np.array_equal(x, y)
    assert not np.array_equal(a.losses, c.losses)
    assert float(a.losses[-1]) < float(a.losses[0])


def test_dec_finetuning_stops_on_tol_and_reports_its_assignment():
    data = jnp.asarray(np.concatenate([RNG.normal(0, 0.1, (30, 6)), RNG.normal(2, 0.1, (30, 6))]), jnp.float32)
    model = deep.dec_autoencoder(6, embedding_dim=2, hidden=(8,))
    pre = deep.pretrain(jax.random.key(0), data, model, deep.PretrainConfig(epochs=30, batch_size=20))
    z = np.asarray(deep.embed(model, pre.params, data))
    centers = np.stack([z[:30].mean(0), z[30:].mean(0)])
    for gamma in (0.0, 0.1):
        config = deep.DECConfig(gamma=gamma, update_interval=5, max_updates=8, batch_size=20, tol=0.01)
        result = deep.finetune(jax.random.key(1), model, pre.params, centers, data, config)
        n = int(result.n_updates)
        assert 2 <= n <= 8
        assert float(result.changed[0]) == 1.0  # from "no label yet"
        assert n == 8 or float(result.changed[n - 1]) < 0.01
        assert np.all(np.isnan(np.asarray(result.changed[n:])))
        np.testing.assert_array_equal(result.labels, np.argmax(np.asarray(result.q), 1))
        assert cc.accuracy(np.repeat([0, 1], 30), result.labels) == 1.0


# ----------------------------------------------------------------------------------------------
# Pipelines


def lifted(points, labels, seed=0, dim=50):
    """2-D points through a fixed random map into ``dim`` dimensions (a tanh layer keeps it non-linear)."""
    rng = np.random.default_rng(seed)
    lifted = np.tanh(points @ rng.normal(size=(2, dim)) * 0.7)
    return lifted.astype(np.float32), labels


def rings(n=600, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n // 2)
    radius = np.where(labels == 0, 1.0, 3.0) + rng.normal(0, 0.08, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    return lifted(np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1), labels, seed)


SMALL = dict(hidden=(64, 64), embedding_dim=4, pretrain=deep.PretrainConfig(epochs=40, batch_size=64),
             clusterer_restarts=4)


def test_n2d_pipeline_recovers_rings_that_kmeans_cannot():
    data, labels = rings()
    spec = cc.kmeans(2)
    pixels = cc.restarts(jax.random.split(jax.random.key(0), 4), data, spec, cc.Hparams(), 100).best
    assert cc.accuracy(labels, cc.bmu(spec, pixels.state.weights, data)) < 0.75  # K-means fails here
    config = deep.DeepConfig(n_clusters=2, method="ae+umap+cluster", umap_components=2, umap_neighbors=15, **SMALL)
    result = deep.run(jax.random.key(0), data, config)
    assert cc.accuracy(labels, result.labels) >= 0.95
    again = deep.run(jax.random.key(0), data, config)
    np.testing.assert_array_equal(result.labels, again.labels)  # same key, same result


def test_every_method_runs_and_a_som_clusterer_is_read_as_two_levels():
    data, labels = rings(200, seed=1)
    small = dict(SMALL, pretrain=deep.PretrainConfig(epochs=3, batch_size=64))
    for method in deep.METHODS:
        config = deep.DeepConfig(n_clusters=2, method=method, umap_neighbors=10, **small,
                                 dec=deep.DECConfig(update_interval=3, max_updates=2, batch_size=64),
                                 desom=deep.DESOMConfig(grid=cc.Grid((3, 3)), steps=10, batch_size=64))
        result = deep.run(jax.random.key(0), data, config)
        assert result.labels.shape == (200,) and set(np.unique(result.labels)) <= {0, 1}
        if method == "desom":
            assert result.extra["prototypes"].shape == (9, 4)
    som = deep.DeepConfig(n_clusters=2, method="ae+cluster", clusterer=cc.som((3, 3), algorithm="batch"),
                          clusterer_hparams=cc.Hparams(sigma=1.5, sigma_final=0.5), clusterer_epochs=5, **small)
    result = deep.run(jax.random.key(0), data, som)
    assert result.extra["clusterer_weights"].shape == (9, 4) and set(np.unique(result.labels)) <= {0, 1}


def test_restarts_run_as_one_call_and_any_flax_autoencoder_plugs_in():
    import flax.linen as nn

    class Encoder(nn.Module):  # a user's own halves: one layer each
        @nn.compact
        def __call__(self, x):
            return nn.Dense(3)(jnp.tanh(nn.Dense(12)(x)))

    class Decoder(nn.Module):
        @nn.compact
        def __call__(self, z):
            return nn.Dense(50)(jnp.tanh(nn.Dense(12)(z)))

    data, labels = rings(200, seed=2)
    config = deep.DeepConfig(n_clusters=2, method="ae+cluster", model=deep.Autoencoder(Encoder(), Decoder()),
                             pretrain=deep.PretrainConfig(epochs=5, batch_size=50), clusterer_restarts=2)
    chosen = deep.run_restarts(jax.random.split(jax.random.key(0), 3), data, config)
    assert len(chosen.runs) == 3 and chosen.scores.shape == (3,)
    assert chosen.best_index == int(np.argmax(chosen.scores))
    assert chosen.best.embedding.shape == (200, 3)
    single = deep.run(jax.random.split(jax.random.key(0), 3)[chosen.best_index], data, config)
    np.testing.assert_array_equal(single.labels, chosen.best.labels)


def test_units_are_grouped_by_the_data_they_quantize():
    prototypes = np.array([[0, 0], [0.2, 0], [0, 0.2], [5, 5], [5.2, 5], [3.0, 3.0]], np.float32)
    units = np.array([0] * 50 + [1] * 50 + [2] * 50 + [3] * 40 + [4] * 40 + [5] * 1)  # unit 5: one hit
    config = deep.DeepConfig(n_clusters=2, clusterer_restarts=3)
    groups = deep.pipeline.group_units(jax.random.key(0), prototypes, units, config)
    assert groups[0] == groups[1] == groups[2] != groups[3] == groups[4]
    assert groups[5] == groups[3]  # nearer B's centre; K-means on the bare prototypes can split A instead


def test_agreement_picks_the_run_most_like_the_others():
    truth = np.repeat(np.arange(3), 20)
    merged = np.where(truth == 2, 1, truth)  # two clusters merged
    relabelled = (truth + 1) % 3  # the same partition, other names
    scores = deep.agreement_scores([merged, truth, relabelled], 3)
    assert np.argmax(scores) in (1, 2) and scores[1] == pytest.approx(scores[2])
    runs = [deep.DeepClustering(l, None, np.eye(3)[l] + 0.01 * np.arange(60)[:, None], None, None, None, {}, 0.0)
            for l in (merged, truth, relabelled)]
    assert deep.select(runs, 3).best_index in (1, 2)
    with pytest.raises(ValueError, match="criterion"):
        deep.select(runs, 3, "labels")


# ----------------------------------------------------------------------------------------------
# Bad input: clear errors before anything compiles


def test_bad_input_is_refused_before_compiling():
    model = tiny_model(16)
    good = RNG.uniform(size=(20, 16)).astype(np.float32)
    shifted = deep.PretrainConfig(epochs=1, batch_size=10, shift=1, image_shape=(4, 4))
    with pytest.raises(ValueError, match="image_shape"):
        deep.pretrain(jax.random.key(0), good.reshape(20, 2, 8), model, shifted)
    with pytest.raises(ValueError, match="features"):
        deep.pretrain(jax.random.key(0), good[:, :15], model, shifted)
    bad = good.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        deep.pretrain(jax.random.key(0), bad, model, deep.PretrainConfig(epochs=1))
    with pytest.raises(ValueError, match="zero samples"):
        deep.pretrain(jax.random.key(0), good[:0], model, deep.PretrainConfig(epochs=1))
    with pytest.raises(ValueError, match="larger than the number of samples"):
        deep.run(jax.random.key(0), good, deep.DeepConfig(n_clusters=25, pretrain=deep.PretrainConfig(epochs=1)))
    with pytest.raises(ValueError, match="shift"):
        deep.PretrainConfig(shift=2)
    with pytest.raises(ValueError, match="method"):
        deep.DeepConfig(method="spectral")
    with pytest.raises(ValueError, match="centres"):
        deep.finetune(jax.random.key(0), model, None, np.zeros((25, 3)), good)
    with pytest.raises(ValueError, match="prototypes"):
        deep.train_desom(jax.random.key(0), model, None, np.zeros((5, 3)), good, deep.DESOMConfig(grid=cc.Grid((2, 2))))


# ----------------------------------------------------------------------------------------------
# The experiment


def test_deep_clustering_quick_run_writes_its_table_and_resumes(tmp_path, capsys, monkeypatch):
    from experiments import deep_clustering as experiment

    summary = experiment.main(["--quick", "--out", str(tmp_path)])
    assert set(summary["methods"]) == set(experiment.METHODS)
    for row in summary["methods"].values():
        assert row["seeds"] == 2 and 0.0 <= row["metrics"]["accuracy"]["min"] <= 1.0
    assert summary["methods"]["n2d"]["published"]["accuracy"] == 0.948
    for name in ("table.md", "summary.json", "confusion_best.png", "desom_map.png"):
        assert (tmp_path / name).is_file()
    # Rerun: every (method, seed) is read back, nothing recomputed.
    monkeypatch.setattr(experiment, "run_on_autoencoder", lambda *a, **k: pytest.fail("recomputed a finished run"))
    again = experiment.main(["--quick", "--out", str(tmp_path)])
    assert again["methods"]["best"]["per_seed"] == summary["methods"]["best"]["per_seed"]
    with pytest.raises(ValueError, match="another configuration"):
        experiment.main(["--quick", "--out", str(tmp_path), "--seeds", "3"])
