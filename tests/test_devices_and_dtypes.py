"""Settings that are process-wide in JAX (x64, the number of host devices) run in a subprocess."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, env_extra: dict) -> dict:
    env = {**os.environ, **env_extra, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_float64_training_matches_the_numpy_reference_to_rounding():
    result = run_python("""
        import json, jax, numpy as np
        jax.config.update("jax_enable_x64", True)
        import compclust as cc, reference as ref
        rng = np.random.default_rng(0)
        X, W0 = rng.normal(size=(60, 3)), rng.normal(size=(5, 3))
        r = cc.fit(jax.random.key(0), X, cc.competitive_layer(5, winner="conscience", dtype="float64"),
                   cc.Hparams(lr=0.05), 4, init=W0, order=np.arange(60))
        diff = np.abs(np.asarray(r.state.weights) - ref.conscience_fit(X, W0, 4, lr=0.05)).max()
        print(json.dumps({"dtype": str(r.state.weights.dtype), "diff": float(diff)}))
    """, {})
    assert result["dtype"] == "float64" and result["diff"] < 1e-12


def test_sweep_sharded_over_eight_host_devices_matches_one_device():
    code = """
        import json, jax, numpy as np
        jax.config.update("jax_debug_key_reuse", False)
        import compclust as cc
        X = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
        r = cc.sweep(jax.random.split(jax.random.key(0), 8), X, cc.som((3, 3)),
                     cc.Hparams(lr=np.array([0.2, 0.5], np.float32), sigma=1.5), 2)
        print(json.dumps({"devices": len(jax.devices()), "weights": np.asarray(r.state.weights).tolist(),
                          "sharding": str(r.state.weights.sharding)}))
    """
    many = run_python(code, {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
    one = run_python(code, {"XLA_FLAGS": ""})
    assert many["devices"] == 8 and one["devices"] == 1
    assert "NamedSharding" in many["sharding"]
    np = __import__("numpy")
    np.testing.assert_allclose(many["weights"], one["weights"], atol=1e-6)


def test_float64_online_som_matches_minisom_to_rounding_on_every_grid():
    """In float64 the grid coordinates are float64 too, so hexagonal maps agree with MiniSom to 1e-12."""
    result = run_python("""
        import json, jax, numpy as np
        jax.config.update("jax_enable_x64", True)
        import minisom, compclust as cc
        rng = np.random.default_rng(0)
        X = rng.random((80, 4))
        diffs = {}
        for topology, shape in (("rectangular", (5, 4)), ("hexagonal", (5, 4)), ("hexagonal", (6, 3))):
            W0 = rng.random((shape[0] * shape[1], 4))
            som = minisom.MiniSom(*shape, 4, sigma=1.5, learning_rate=0.5, topology=topology)
            som._weights = W0.reshape(*shape, 4).copy()
            order = np.tile(np.arange(80), 2)
            for t, i in enumerate(order):
                som.update(X[i], som.winner(X[i]), t, order.size)
            r = cc.fit(jax.random.key(0), X, cc.som(shape, topology=topology, dtype="float64"),
                       cc.Hparams(lr=0.5, sigma=1.5), 2, init=W0, order=np.arange(80))
            diffs[f"{topology}{shape}"] = float(np.abs(np.asarray(r.state.weights)
                                                   - som.get_weights().reshape(-1, 4)).max())
        print(json.dumps(diffs))
    """, {})
    assert all(diff < 1e-12 for diff in result.values()), result


def test_float64_batch_families_run_end_to_end():
    result = run_python("""
        import json, jax, numpy as np
        jax.config.update("jax_enable_x64", True)
        import compclust as cc
        X = np.random.default_rng(0).random((60, 3))
        specs = [cc.som((3, 3), topology="hexagonal", algorithm="batch", dtype="float64"),
                 cc.kmeans(4, dtype="float64"), cc.kmeans(4, algorithm="minibatch", batch_size=8, dtype="float64"),
                 cc.neural_gas(4, algorithm="batch", dtype="float64"),
                 cc.som((3, 3), algorithm="minibatch", batch_size=8, dtype="float64")]
        out = []
        for spec in specs:
            r = cc.fit(jax.random.key(0), X, spec, cc.Hparams(sigma=1.0, sigma_final=0.5), 3)
            out.append([str(r.state.weights.dtype), str(r.metrics.quantization_error.dtype),
                        bool(np.isfinite(np.asarray(r.state.weights)).all())])
        print(json.dumps(out))
    """, {})
    assert all(row == ["float64", "float64", True] for row in result), result


def test_float64_lloyd_on_bounds_equals_measured_lloyd():
    """Hamerly's bounds in float64 (their rounding slack scales with the dtype's eps): the same centres
    as measuring every epoch."""
    result = run_python("""
        import json, jax, numpy as np
        jax.config.update("jax_enable_x64", True)
        import compclust as cc
        from sklearn import datasets
        X, _ = datasets.make_blobs(500, centers=6, n_features=20, cluster_std=4.0, random_state=2)
        spec = cc.kmeans(7, dtype="float64")
        runs = [cc.fit(jax.random.key(0), X, spec, cc.Hparams(), 25, epoch_metrics=m) for m in (True, False)]
        print(json.dumps([str(runs[1].state.weights.dtype),
                          bool(np.array_equal(runs[0].state.weights, runs[1].state.weights))]))
    """, {})
    assert result == ["float64", True], result
