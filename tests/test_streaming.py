"""Streaming minibatch training (compclust.streaming): chunks of a file, a memory map or an
iterator give exactly what ``fit`` gives on the whole array with the same batches, at most two
compiled programs per run, and a bad stream is a clear ValueError."""
import jax
import numpy as np
import pytest

import compclust as cc
from compclust import streaming

N, D = 403, 6  # not a multiple of the batch or chunk sizes: partial last batch and chunk


def data(seed=0, n=N, d=D):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, d)) * 3
    return (centres[rng.integers(0, 4, n)] + rng.normal(size=(n, d))).astype(np.float32)


SPECS = {
    "kmeans": (cc.kmeans(5, algorithm="minibatch", batch_size=32), cc.Hparams()),
    "som": (cc.som((3, 3), algorithm="minibatch", batch_size=20), cc.Hparams(lr=0.5, sigma=1.5)),
    "neural_gas": (cc.neural_gas(6, algorithm="minibatch", batch_size=25), cc.Hparams(lr=0.4, sigma=2.0)),
}


def fit_in_file_order(spec, hparams, x, n_epochs, init):
    return cc.fit(jax.random.key(0), x, spec, hparams, n_epochs, init=init, order=np.arange(len(x)))


@pytest.mark.parametrize("name", sorted(SPECS))
def test_stream_equals_fit_with_the_same_batches(name, tmp_path):
    spec, hparams = SPECS[name]
    x = data()
    init = x[:spec.n_units] + 0.1
    ref = fit_in_file_order(spec, hparams, x, 2, init)
    path = tmp_path / "x.npy"
    np.save(path, x)
    chunk_rows = 4 * spec.batch_size
    pieces = [x[i:i + 37] for i in range(0, N, 37)]  # sizes unrelated to the chunks
    sources = {"array": x, "path": path, "memmap": np.load(path, mmap_mode="r"),
               "list": pieces, "function": lambda: (p for p in pieces)}
    before = streaming._train_chunk._cache_size()
    for source_name, source in sources.items():
        n_samples = N if source_name in ("list", "function") else None
        out = cc.fit_stream(jax.random.key(0), source, spec, hparams, n_epochs=2, init=init,
                            chunk_rows=chunk_rows, n_samples=n_samples)
        np.testing.assert_array_equal(np.asarray(out.state.weights), np.asarray(ref.state.weights),
                                      err_msg=source_name)
        np.testing.assert_array_equal(np.asarray(out.state.counts), np.asarray(ref.state.counts))
        assert int(out.state.step) == int(ref.state.step) == 2 * -(-N // spec.batch_size)
        assert out.n_chunks == 2 * -(-N // chunk_rows) and out.n_samples == N
    # one program for the full chunks, one for each epoch's shorter last chunk, whatever the source
    assert streaming._train_chunk._cache_size() - before <= 2


def test_one_pass_of_a_generator_and_the_evaluation_of_a_stream():
    spec, hparams = SPECS["som"]
    x = data(1)
    init = x[:9] * 0.5
    ref = cc.fit_stream(jax.random.key(0), x, spec, hparams, init=init, chunk_rows=80)  # = fit (test above)
    out = cc.fit_stream(jax.random.key(0), (x[i:i + 50] for i in range(0, N, 50)), spec, hparams, n_samples=N,
                        init=init, chunk_rows=80)
    np.testing.assert_array_equal(np.asarray(out.state.weights), np.asarray(ref.state.weights))
    streamed = cc.evaluate_stream(spec, out.state.weights, [x[:100], x[100:]], chunk_rows=64)
    whole = cc.evaluate(spec, out.state.weights, x)
    for a, b in zip(streamed, whole):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5)


def test_resume_continues_the_run_and_constant_schedules_need_no_length():
    spec, hparams = SPECS["som"]
    x = data(2)
    init = x[:9].copy()
    whole = cc.fit_stream(jax.random.key(3), x, spec, hparams, n_epochs=2, init=init, chunk_rows=80)
    first = cc.fit_stream(jax.random.key(3), x, spec, hparams, n_epochs=1, total_epochs=2, init=init, chunk_rows=80)
    rest = cc.fit_stream(jax.random.key(3), x, spec, hparams, n_epochs=1, resume=first.state, total_epochs=2,
                         chunk_rows=80)
    np.testing.assert_allclose(np.asarray(rest.state.weights), np.asarray(whole.state.weights), rtol=1e-6, atol=1e-6)
    # Sculley's K-means rate 1 / count does not depend on the run's length: an iterator of unknown length is fine
    kspec, khp = SPECS["kmeans"]
    out = cc.fit_stream(jax.random.key(0), iter([x[:200], x[200:]]), kspec, khp, init="kmeans++", chunk_rows=64)
    assert out.n_samples == N and out.total_steps == 0 and np.isfinite(np.asarray(out.state.weights)).all()


def test_shuffle_is_deterministic_and_visits_every_row(tmp_path):
    spec, hparams = SPECS["kmeans"]
    x = data(4)
    path = tmp_path / "x.npy"
    np.save(path, x)
    seen = []
    runs = [cc.fit_stream(jax.random.key(5), path, spec, hparams, n_epochs=2, chunk_rows=128, shuffle=True,
                          callback=seen.append) for _ in range(2)]
    assert seen[3] == {"epoch": 0, "chunk": 3, "rows": N, "step": 13} and seen[7]["step"] == 26  # 4 + 4 + 4 + 1
    plain = cc.fit_stream(jax.random.key(5), path, spec, hparams, n_epochs=2, chunk_rows=128)
    np.testing.assert_array_equal(np.asarray(runs[0].state.weights), np.asarray(runs[1].state.weights))
    assert not np.array_equal(np.asarray(runs[0].state.weights), np.asarray(plain.state.weights))
    assert float(np.asarray(runs[0].state.counts).sum()) == 2 * N  # every row, every epoch


def _pieces(*arrays):
    return iter(list(arrays))


@pytest.mark.parametrize("source, n_samples, message", [
    (lambda x: _pieces(x[:50], x[50:100, :4]), None, "4 features but the arrays before it had 6"),
    (lambda x: _pieces(x[:50], x[50:100].astype(np.float64)), None, "dtype float64 but the arrays before it had float32"),
    (lambda x: iter([]), None, "yielded no rows"),
    (lambda x: _pieces(np.zeros((0, 6), np.float32)), None, "yielded no rows"),
    (lambda x: _pieces(x[:50], np.where(np.arange(6) == 2, np.nan, x[50:60])), None, r"non-finite.*row 50, column 2"),
    (lambda x: _pieces(x[:50], x[50:60, 0]), None, "must be 2-D"),
    (lambda x: _pieces(x[:50], np.array([["a"] * 6])), None, "real numbers"),
    (lambda x: _pieces(x[:100]), 80, "more than n_samples=80"),
    (lambda x: _pieces(x[:100]), 120, "yielded 100 rows in epoch 0 but n_samples=120"),
    (lambda x: 42, None, "source must be"),
])
def test_bad_streams_are_clear_errors(source, n_samples, message):
    spec, hparams = SPECS["kmeans"]
    x = data()
    with pytest.raises(ValueError, match=message):
        cc.fit_stream(jax.random.key(0), source(x), spec, hparams, n_samples=n_samples, init=x[:5], chunk_rows=32)


def test_bad_settings_are_clear_errors(tmp_path):
    kspec, khp = SPECS["kmeans"]
    sspec, shp = SPECS["som"]
    x = data()
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="minibatch family"):
        cc.fit_stream(key, x, cc.kmeans(3), khp)
    with pytest.raises(ValueError, match="multiple of spec.batch_size"):
        cc.fit_stream(key, x, kspec, khp, chunk_rows=33)
    with pytest.raises(ValueError, match="pass n_samples"):
        cc.fit_stream(key, iter([x]), sspec, shp)
    with pytest.raises(ValueError, match="can be read once"):
        cc.fit_stream(key, iter([x]), kspec, khp, n_epochs=2)
    with pytest.raises(ValueError, match="shuffle needs random access"):
        cc.fit_stream(key, [x], kspec, khp, shuffle=True)
    with pytest.raises(ValueError, match="larger chunk_rows"):
        cc.fit_stream(key, x, cc.kmeans(40, algorithm="minibatch", batch_size=32), khp, chunk_rows=32)
    with pytest.raises(ValueError, match="n_samples=10 but the data has 403 rows"):
        cc.fit_stream(key, x, kspec, khp, n_samples=10)
    bad = tmp_path / "bad.npy"
    np.save(bad, x)
    bad.write_bytes(bad.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated"):
        cc.fit_stream(key, bad, kspec, khp)
    with pytest.raises(ValueError, match="file not found"):
        cc.fit_stream(key, tmp_path / "missing.npy", kspec, khp)
