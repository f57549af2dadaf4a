"""Progress bars over epochs: the run goes as equal compiled chunks, compiled once, equal to one call
bit for bit; sweeps resume from an earlier sweep's states; a diverged run warns."""
import jax
import numpy as np
import pytest

import compclust as cc
from compclust import loop

X = np.random.default_rng(0).random((90, 4)).astype(np.float32)

SPECS = [(cc.som((3, 3)), cc.Hparams(lr=0.5, sigma=1.5)),
         (cc.som((3, 3), algorithm="batch"), cc.Hparams(sigma=1.5, sigma_final=0.5)),
         (cc.kmeans(4, algorithm="minibatch", batch_size=16), cc.Hparams())]


@pytest.mark.parametrize("spec,hparams", SPECS, ids=["online", "batch", "minibatch"])
def test_fit_with_progress_equals_one_call_and_compiles_once(spec, hparams, capsys):
    one = cc.fit(jax.random.key(1), X, spec, hparams, 8, init="kmeans++")
    before = loop.TRACE_COUNT["fit"]
    chunked = cc.fit(jax.random.key(1), X, spec, hparams, 8, init="kmeans++", progress=True)
    assert loop.TRACE_COUNT["fit"] - before == 1  # one program for every chunk
    np.testing.assert_array_equal(chunked.state.weights, one.state.weights)
    np.testing.assert_array_equal(chunked.metrics.quantization_error, one.metrics.quantization_error)
    assert int(chunked.n_iter) == 8
    assert "8/8" in capsys.readouterr().err  # tqdm drew the bar to the end


@jax.debug_key_reuse(False)  # sweeps: see NO_KEY_REUSE_CHECK in test_loop.py
def test_sweep_with_progress_and_resume_equal_one_sweep():
    keys = jax.random.split(jax.random.key(2), 3)
    spec, hparams = cc.som((3, 3)), cc.Hparams(lr=np.array([0.3, 0.6], np.float32), sigma=1.5)
    one = cc.sweep(keys, X, spec, hparams, 6)
    before = loop.TRACE_COUNT["fit"]
    chunked = cc.sweep(keys, X, spec, hparams, 6, progress=True)
    assert loop.TRACE_COUNT["fit"] - before == 1
    np.testing.assert_array_equal(chunked.state.weights, one.state.weights)
    np.testing.assert_array_equal(chunked.metrics.topographic_error, one.metrics.topographic_error)
    first = cc.sweep(keys, X, spec, hparams, 2, total_epochs=6)
    rest = cc.sweep(keys, X, spec, hparams, 4, resume=first.state, total_epochs=6)
    np.testing.assert_array_equal(rest.state.weights, one.state.weights)
    with pytest.raises(ValueError, match="one State per run"):
        cc.sweep(keys[:2], X, spec, hparams, 4, resume=first.state, total_epochs=6)


@jax.debug_key_reuse(False)  # sweeps: see NO_KEY_REUSE_CHECK in test_loop.py
@pytest.mark.parametrize("epoch_metrics", [True, False])
def test_lloyd_with_progress_equals_one_call(epoch_metrics):
    """Lloyd keeps its sums (and unmeasured, its bounds) between epochs and starts them afresh every
    chunk_length(n_epochs) epochs, so the progress chunks (each starting with a full pass) still
    equal one call, fit and sweep."""
    rng = np.random.default_rng(3)
    data = (rng.normal(size=(600, 2)) + rng.integers(0, 4, (600, 1)) * 1.5).astype(np.float32)
    spec, hparams = cc.kmeans(6), cc.Hparams()
    one = cc.fit(jax.random.key(1), data, spec, hparams, 40, epoch_metrics=epoch_metrics)
    chunked = cc.fit(jax.random.key(1), data, spec, hparams, 40, progress=True, epoch_metrics=epoch_metrics)
    np.testing.assert_array_equal(chunked.state.weights, one.state.weights)
    np.testing.assert_array_equal(chunked.metrics.inertia[-1], one.metrics.inertia[-1])
    if epoch_metrics:
        np.testing.assert_array_equal(chunked.metrics.inertia, one.metrics.inertia)
    keys = jax.random.split(jax.random.key(2), 2)
    one = cc.sweep(keys, data, spec, hparams, 40, epoch_metrics=epoch_metrics)
    chunked = cc.sweep(keys, data, spec, hparams, 40, progress=True, epoch_metrics=epoch_metrics)
    np.testing.assert_array_equal(chunked.state.weights, one.state.weights)


def test_a_diverged_run_warns():
    blobs = cc.data.make_blobs(0, n_per_blob=20)[0] * 50  # unscaled: neurolab's rule overshoots
    with pytest.warns(RuntimeWarning, match="diverged.*global_norm"):
        cc.fit(jax.random.key(0), blobs, cc.competitive_layer(5, winner="conscience"), cc.Hparams(lr=0.5), 3)
