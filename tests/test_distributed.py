"""Data-axis sharding: 8 host devices (and 2 real processes joined by jax.distributed) give the
result of one device, for every batch family; so does a sweep over a 2-D (seeds x data) mesh.
Process-wide settings, so each run is a subprocess."""
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


SHARDED_SWEEPS = """
    import json, jax, numpy as np
    from jax.sharding import Mesh
    import compclust as cc
    X = np.random.default_rng(0).random((101, 5)).astype(np.float32)
    devices = np.array(jax.devices())
    specs = {"batch-som": cc.som((3, 3), algorithm="batch", sigma_schedule="linear"),
             "kmeans": cc.kmeans(4), "batch-neural-gas": cc.neural_gas(5, algorithm="batch"),
             "minibatch-kmeans": cc.kmeans(4, algorithm="minibatch", batch_size=16),
             "minibatch-som": cc.som((2, 3), algorithm="minibatch", batch_size=32)}
    hp = cc.Hparams(lr=0.3, sigma=2.0, sigma_final=0.5)
    def keys():
        return jax.random.split(jax.random.key(0), 4)
    def mesh(shape, names=("seeds", "data"), first=0):
        n = int(np.prod(shape))
        return Mesh(devices[first:first + n].reshape(shape), names)
    def sweep(spec, mesh, **kw):
        r = cc.sweep(keys(), X, spec, hp, 3, mesh=mesh, tol=0.0 if spec.algorithm == "batch" else None, **kw)
        return {"weights": np.asarray(r.state.weights).tolist(), "n_iter": np.asarray(r.n_iter).tolist(),
                "qe": np.asarray(r.metrics.quantization_error).tolist(), "sharding": str(r.state.weights.sharding)}
    out = {}
    for name, spec in specs.items():
        out[name] = {"one": sweep(spec, mesh((1, 1))), "2x4": sweep(spec, mesh((2, 4))), "4x2": sweep(spec, mesh((4, 2)))}
    # a mesh with only one of the axes; a fit of one key; restarts pass the mesh through
    som = specs["batch-som"]
    out["batch-som"]["data-only"] = sweep(som, mesh((8,), ("data",)))
    out["batch-som"]["seeds-only"] = sweep(som, mesh((4,), ("seeds",), first=4))
    fit = cc.fit(keys()[2], X, som, hp, 3, tol=0.0)
    best = cc.restarts(keys(), X, specs["kmeans"], cc.Hparams(), 3, mesh=mesh((2, 4)))
    jitted, args, static = cc.loop.sweep_call(keys(), X, som, hp, 3, mesh=mesh((2, 4)))
    program = jitted.lower(*args, **static).compile().as_text()  # 101 rows padded to 104: 26 per device
    errors = {}
    bad = {"axis-names": (som, mesh((2, 4), ("seeds", "rows"))), "not-a-mesh": (som, "2x4"),
           "seeds-not-divisible": (som, mesh((8, 1))), "online-data-axis": (cc.som((3, 3)), mesh((2, 4))),
           "three-axes": (som, mesh((2, 2, 2), ("seeds", "data", "model")))}
    for case, (spec, m) in bad.items():
        try:
            cc.sweep(keys(), X, spec, hp, 2, mesh=m)
            errors[case] = None
        except ValueError as error:
            errors[case] = str(error)
    print(json.dumps({"devices": len(jax.devices()), "out": out, "fit2": np.asarray(fit.state.weights).tolist(),
                      "restarts_best": int(best.best_index), "restarts_scores": np.asarray(best.scores).tolist(),
                      "errors": errors, "rows_per_device": "f32[1,26,5]" in program,
                      "all_reduce": "all-reduce(" in program}))
"""


def test_sweep_on_a_seeds_by_data_mesh_equals_one_device():
    """Every batch and minibatch family: a sweep over 2x4 and 4x2 (seeds x data) meshes (and meshes with
    only one of the axes) equals the one-device sweep to float32 rounding of the sums; seed i still equals
    fit(key i); a bad mesh is a ValueError naming the problem, raised before compilation."""
    result = run(SHARDED_SWEEPS, 8)
    assert result["devices"] == 8
    for name, cases in result["out"].items():
        one = cases.pop("one")
        for case, got in cases.items():
            np.testing.assert_allclose(got["weights"], one["weights"], rtol=1e-5, atol=1e-6, err_msg=f"{name} {case}")
            np.testing.assert_allclose(got["qe"], one["qe"], rtol=1e-5, err_msg=f"{name} {case}")
            assert got["n_iter"] == one["n_iter"], (name, case)
        assert "'seeds': 2, 'data': 4" in cases["2x4"]["sharding"] and "P('seeds',)" in cases["2x4"]["sharding"], name
    assert result["rows_per_device"] and result["all_reduce"]  # the rows really are split over "data"
    np.testing.assert_allclose(result["fit2"], result["out"]["batch-som"]["2x4"]["weights"][2], rtol=1e-5, atol=1e-6)
    assert np.argmin(result["restarts_scores"]) == result["restarts_best"]
    errors = result["errors"]
    assert "'seeds' and/or 'data'" in errors["axis-names"] and "rows" in errors["axis-names"]
    assert "'seeds' and/or 'data'" in errors["three-axes"]
    assert "jax.sharding.Mesh" in errors["not-a-mesh"]
    assert "4 seeds cannot be split evenly" in errors["seeds-not-divisible"] and "size 8" in errors["seeds-not-divisible"]
    assert "online" in errors["online-data-axis"] and "size 4" in errors["online-data-axis"]


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
