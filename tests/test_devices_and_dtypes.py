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
