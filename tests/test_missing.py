"""Missing data (NaN entries), R kohonen's rule, against a NumPy transcription written from it:
distances over the present features rescaled by D / present, units moved only along present
features, a cap on the missing fraction per sample, imputation from the best unit."""
import jax
import numpy as np
import pytest

import compclust as cc
import reference as ref


def masked_sq_dist(X, W):
    """[N, K]: sum over present d of (x_d - w_d)^2, times D / present."""
    out = np.empty((len(X), len(W)))
    for i, x in enumerate(np.asarray(X, np.float64)):
        present = ~np.isnan(x)
        out[i] = ((W[:, present] - x[present]) ** 2).sum(1) * x.size / present.sum()
    return out


def batch_som_missing_fit(X, W0, n_epochs, coords, sigma, sigma_final):
    """Batch map with NaN: w_kd = sum_i h(k, bmu_i) x_id [x_id present] / sum_i h(k, bmu_i) [x_id present]."""
    W = np.array(W0, np.float64)
    present = ~np.isnan(X)
    X0 = np.where(present, X, 0.0)
    for e in range(n_epochs):
        s = sigma + (sigma_final - sigma) * e / max(n_epochs - 1, 1)
        bmu = masked_sq_dist(X, W).argmin(1)
        H = np.stack([ref.KERNELS["gaussian"](ref.grid_sq_dist(coords, k), s) for k in range(len(W))])  # [K, K]
        h = H[:, bmu]  # [K, N]
        num, den = h @ X0, h @ present.astype(float)
        W = np.where(den > 0, num / np.where(den > 0, den, 1), W)
    return W


def online_missing_fit(X, W0, order, coords, lr, sigma):
    """Online SOM with NaN (constant lr and sigma): the winner by masked distance, moves only along present features."""
    W = np.array(W0, np.float64)
    for i in order:
        x = X[i]
        present = ~np.isnan(x)
        k = masked_sq_dist(x[None], W)[0].argmin()
        h = ref.KERNELS["gaussian"](ref.grid_sq_dist(coords, k), sigma)
        W[:, present] += lr * h[:, None] * (x[present] - W[:, present])
    return W


@pytest.fixture
def gappy(rng):
    X = rng.random((120, 6))
    X_missing = X.copy()
    gaps = rng.random(X.shape) < 0.2
    gaps[gaps.sum(1) > 3] = False  # at most half of each row missing (the default cap)
    X_missing[gaps] = np.nan
    return X, X_missing


def test_masked_distances_match_the_transcription(gappy, rng):
    _, X = gappy
    for n_features in (6, 40):  # the elementwise path and the matmul path
        data = rng.random((50, n_features))
        data[rng.random(data.shape) < 0.3] = np.nan
        W = rng.random((7, n_features))
        got = np.asarray(cc.distances(W, data, missing=True)) ** 2
        np.testing.assert_allclose(got, masked_sq_dist(data, W), rtol=1e-4, atol=1e-5)


def test_batch_som_with_missing_values_matches_the_transcription(gappy, rng):
    _, X = gappy
    W0 = rng.random((12, 6))
    spec = cc.som((4, 3), algorithm="batch", sigma_schedule="linear", missing=True)
    r = cc.fit(jax.random.key(0), X, spec, cc.Hparams(sigma=2.0, sigma_final=0.5), 4, init=W0)
    want = batch_som_missing_fit(X, W0, 4, ref.grid_coords((4, 3)), 2.0, 0.5)
    np.testing.assert_allclose(r.state.weights, want, atol=2e-5)
    chunked = cc.fit(jax.random.key(0), X, spec.__class__(**{**spec.__dict__, "chunk_size": 25}),
                     cc.Hparams(sigma=2.0, sigma_final=0.5), 4, init=W0)
    np.testing.assert_allclose(chunked.state.weights, r.state.weights, atol=1e-6)


def test_online_som_with_missing_values_matches_the_transcription(gappy, rng):
    _, X = gappy
    W0 = rng.random((9, 6))
    spec = cc.som((3, 3), missing=True, lr_schedule="constant", sigma_schedule="constant")
    r = cc.fit(jax.random.key(0), X, spec, cc.Hparams(lr=0.3, sigma=1.2), 1, init=W0, order=np.arange(len(X)))
    want = online_missing_fit(X, W0, np.arange(len(X)), ref.grid_coords((3, 3)), 0.3, 1.2)
    np.testing.assert_allclose(r.state.weights, want, atol=2e-5)
    assert np.isfinite(np.asarray(r.metrics.quantization_error)).all()


@pytest.mark.parametrize("spec", [
    cc.som((3, 3), missing=True), cc.som((3, 3), algorithm="batch", missing=True),
    cc.som((3, 3), algorithm="minibatch", batch_size=16, missing=True),
    cc.competitive_layer(4, missing=True), cc.competitive_layer(4, winner="conscience", missing=True),
    cc.Spec(4, kernel="delta", algorithm="batch", missing=True),
], ids=["online", "batch", "minibatch", "layer", "conscience", "lloyd"])
def test_without_nan_the_missing_path_equals_the_normal_one(spec, gappy, rng):
    X, _ = gappy
    W0 = rng.random((spec.n_units, 6))
    order = None if spec.algorithm == "batch" else np.arange(len(X))
    hp = cc.Hparams(lr=0.3, sigma=1.2)
    with_path = cc.fit(jax.random.key(0), X, spec, hp, 2, init=W0, order=order)
    plain = cc.fit(jax.random.key(0), X, spec.__class__(**{**spec.__dict__, "missing": False}), hp, 2, init=W0,
                   order=order)
    np.testing.assert_allclose(with_path.state.weights, plain.state.weights, atol=1e-5)
    np.testing.assert_allclose(with_path.metrics.quantization_error, plain.metrics.quantization_error, rtol=1e-5)


def test_impute_fills_from_the_best_unit_and_keeps_present_values(gappy, rng):
    X, X_missing = gappy
    W = rng.random((5, 6))
    spec = cc.competitive_layer(5, missing=True)
    filled = np.asarray(cc.impute(spec, W, X_missing))
    best = masked_sq_dist(X_missing, W).argmin(1)
    want = np.where(np.isnan(X_missing), W[best], X_missing)
    np.testing.assert_allclose(filled, want, rtol=1e-6)
    assert not np.isnan(filled).any()


def test_imputation_beats_the_feature_mean_on_digits():
    images, _ = cc.data.load_digits()
    X = images / 16.0
    rng = np.random.default_rng(0)
    X_missing = X.copy()
    gaps = rng.random(X.shape) < 0.2
    X_missing[gaps] = np.nan
    spec = cc.som((8, 8), algorithm="batch", sigma_schedule="linear", missing=True)
    r = cc.fit(jax.random.key(0), X_missing, spec, cc.Hparams(sigma=4.0, sigma_final=0.5), 10)
    som_error = np.sqrt(np.mean((np.asarray(cc.impute(spec, r.state.weights, X_missing))[gaps] - X[gaps]) ** 2))
    mean_error = np.sqrt(np.mean((np.nanmean(X_missing, axis=0)[None].repeat(len(X), 0)[gaps] - X[gaps]) ** 2))
    assert som_error < 0.8 * mean_error


def test_too_many_missing_features_error_names_rows_or_skips(gappy):
    _, X = gappy
    X = X.copy()
    X[[3, 7], :5] = np.nan
    hp = cc.Hparams(sigma=1.0)
    with pytest.raises(ValueError, match=r"rows 3, 7"):
        cc.fit(jax.random.key(0), X, cc.som((2, 2), algorithm="batch", missing=True), hp, 1)
    kept = cc.fit(jax.random.key(0), X, cc.som((2, 2), algorithm="batch", missing=True, too_missing="skip"), hp, 1)
    assert np.isfinite(np.asarray(kept.state.weights)).all()
    with pytest.raises(ValueError, match="max_missing"):
        cc.bmu(cc.som((2, 2), missing=True), np.asarray(kept.state.weights), X)


def test_nan_without_the_option_and_inf_with_it_are_errors(gappy):
    _, X = gappy
    with pytest.raises(ValueError, match="missing=True"):
        cc.fit(jax.random.key(0), X, cc.som((2, 2)), cc.Hparams(), 1)
    X = np.nan_to_num(X.copy(), nan=0.5)
    X[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        cc.fit(jax.random.key(0), X, cc.som((2, 2), missing=True), cc.Hparams(), 1)
    with pytest.raises(ValueError, match="max_missing"):
        cc.som((2, 2), missing=True, max_missing=1.0)
    with pytest.raises(ValueError, match="squared Euclidean"):
        cc.competitive_layer(3, activation="cosine", missing=True)
