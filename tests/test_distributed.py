"""Data-axis sharding: 8 host devices (and 2 real processes joined by jax.distributed) give the
result of one device, for every batch family. Process-wide settings, so each run is a subprocess."""
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

SHARDED_FITS = """
    import json, jax, numpy as np
    from jax.sharding import Mesh
    import compclust as cc
    X = np.random.default_rng(0).random((203, 5)).astype(np.float32)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    specs = {"batch-som": cc.som((3, 3), algorithm="batch", sigma_schedule="linear"),
             "batch-som-hex-blocks": cc.som((3, 3), topology="hexagonal", algorithm="batch", chunk_size=40),
             "kmeans": cc.kmeans(6), "kmeans-blocks": cc.kmeans(6, chunk_size=32),
             "batch-neural-gas": cc.neural_gas(5, algorithm="batch"),
             "minibatch-kmeans": cc.kmeans(4, algorithm="minibatch", batch_size=16),
             "minibatch-som": cc.som((2, 3), algorithm="minibatch", batch_size=32)}
    out = {}
    for name, spec in specs.items():
        r = cc.fit(jax.random.key(0), X, spec, cc.Hparams(lr=0.3, sigma=2.0, sigma_final=0.5), 4, mesh=mesh,
                   tol=0.0 if name.startswith("kmeans") else None)
        out[name] = {"weights": np.asarray(r.state.weights).tolist(), "n_iter": int(r.n_iter),
                     "qe": np.asarray(r.metrics.quantization_error).tolist()}
    print(json.dumps({"devices": len(jax.devices()), "out": out}))
"""


def run(code, n_devices):
    env = {**ENV, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n_devices}"}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_batch_family_on_eight_devices_equals_one_device():
    many, one = run(SHARDED_FITS, 8), run(SHARDED_FITS, 1)
    assert many["devices"] == 8 and one["devices"] == 1
    for name, result in many["out"].items():
        np.testing.assert_allclose(result["weights"], one["out"][name]["weights"], atol=1e-5, err_msg=name)
        np.testing.assert_allclose(result["qe"], one["out"][name]["qe"], rtol=1e-5, err_msg=name)
        assert result["n_iter"] == one["out"][name]["n_iter"], name


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("algorithm", ["batch-som", "kmeans"])
def test_two_processes_train_one_model_equal_to_one_process(algorithm, tmp_path):
    """The recipe in experiments/multihost.py, for real: two local processes, each loading half the rows."""
    command = [sys.executable, "-m", "experiments.multihost", "--algorithm", algorithm, "--num-processes"]
    port = free_port()
    env = {**ENV, "XLA_FLAGS": ""}
    workers = [subprocess.Popen(command + ["2", "--process-id", str(i), "--coordinator", f"127.0.0.1:{port}",
                                           "--out", str(tmp_path / f"p{i}.json")],
                                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err[-3000:]
    single = subprocess.run(command + ["1", "--out", str(tmp_path / "single.json")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=240)
    assert single.returncode == 0, single.stderr[-3000:]
    reference = json.loads((tmp_path / "single.json").read_text())
    for i in range(2):
        result = json.loads((tmp_path / f"p{i}.json").read_text())
        assert result["devices"] == 2 and result["num_processes"] == 2
        np.testing.assert_allclose(result["weights"], reference["weights"], atol=1e-5)
        np.testing.assert_allclose(result["quantization_error"], reference["quantization_error"], rtol=1e-5)
