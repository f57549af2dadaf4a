"""Scaling benchmarks (issue 11): the batch SOM split over devices, and K-means restarts per second.

    python -m experiments.bench --family scale --json results/bench_scale.json [--quick] [--mnist-dir DIR]
    python -m experiments.bench_scale --json results/bench_scale.json [--quick] [--only WORKLOAD ...]

* ``som-batch-mnist-sharded``: the batch SOM of ``som-batch-mnist`` (MNIST's test split, 20x20 map,
  20 batch epochs, the same codebook and schedule) trained with ``fit(..., mesh=Mesh(2 devices,
  ("data",)))`` against the same ``fit`` on one device. The number of host devices is fixed when
  JAX starts, so both run in one child process started with
  ``XLA_FLAGS=--xla_force_host_platform_device_count=2``; after a warm-up of each, the two are timed
  alternately (so that a change in the machine's load hits both) and the medians compared
  (``speedup`` = one device / two). Quality, as in ``experiments/bench_batch.py`` (SOM_TOL): the two
  differ only in the order of float32 sums, which after 20 epochs on MNIST flips near-tied best units,
  so ONE epoch from the same codebook must agree to 1e-4 and the final quantization error to 2e-3
  relative; the full-run ``max_abs_diff`` is recorded, not checked.
* ``kmeans-restarts-throughput``: Lloyd's K-means restarts as one ``cc.restarts`` call (k-means++ starts,
  a fixed number of epochs, no tolerance) at 64, 256 and 1024 seeds on digits (K = 10): updates per
  second over all seeds = samples x epochs x seeds / median seconds (the k-means++ starts included).
  Seed 0 must equal ``fit`` of its key. At 64 seeds it is set beside scikit-learn's
  ``KMeans(n_init=1, max_iter=epochs, tol=0)`` run once per seed in a Python loop (its updates count
  the iterations it ran: with tol=0 it stops when the labels stop changing), and compclust's best
  inertia must be within 0.5% of scikit-learn's best.

Same conventions as the other benchmarks: compilation timed apart, every timed call blocked on, medians
and minima, ratios measured in one process, a fast wrong answer fails the run (exit status 1).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import jax
import numpy as np

import compclust as cc
# bench_batch, on import, asks XLA for one host device per core (unless XLA_FLAGS says otherwise): the
# restarts shard their seeds over them.
from experiments import bench_batch as bb
from experiments.bench import timed  # (bench imports this module only inside its main)

TARGETS = {"som-batch-mnist-sharded": 1.8}
WORKLOADS = ("som-batch-mnist-sharded", "kmeans-restarts-throughput")
PARITY_TOL = 1e-5
SHARDED_DEVICES = 2


def environment():
    return {**bb.environment(), "xla_flags": os.environ.get("XLA_FLAGS", ""), "loadavg": os.getloadavg()}


# ------------------------------------------------------------------------------ the sharded batch SOM

def sharded_som_child(data, rows, shape, n_epochs, radius0, radius_n, repeats, mnist_dir=None):
    """Runs inside the child with SHARDED_DEVICES host devices: one device against a "data" mesh of
    them, from the same codebook; returns the record's measurements."""
    if jax.device_count() < SHARDED_DEVICES:
        raise RuntimeError(f"the child sees {jax.device_count()} device(s), needs {SHARDED_DEVICES}")
    if data == "mnist":
        X, _ = cc.data.load_mnist(mnist_dir)
    else:
        X, _ = cc.data.load_digits()
        X = X / 16.0
    X = np.ascontiguousarray(X[:rows] if rows else X, np.float32)
    k = shape[0] * shape[1]
    W0 = bb.initial_codebook(X, k)
    spec, hp, _ = bb.compclust_som("somoclu", shape, n_epochs, radius0, radius_n)
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:SHARDED_DEVICES]), ("data",))

    def run(mesh, epochs=n_epochs, init=W0, hparams=hp, the_spec=spec):
        return cc.fit(jax.random.key(0), X, the_spec, hparams, epochs, init=init, mesh=mesh)

    compile_s = {}
    for label, m in (("one", None), ("sharded", mesh)):
        compile_s[label] = bb.compile_seconds(lambda m=m: cc.loop.fit_call(jax.random.key(0), X, spec, hp, n_epochs,
                                                                           init=W0, mesh=m))
        jax.block_until_ready(run(m))  # warm the public entry point's cache
    times = {"one": [], "sharded": []}
    results = {}
    for _ in range(repeats):  # alternately, so that a change in the machine's load hits both
        for label, m in (("one", None), ("sharded", mesh)):
            (seconds,), results[label] = timed(lambda m=m: run(m), 1)
            times[label].append(seconds)
    one, sharded = (np.asarray(results[label].state.weights) for label in ("one", "sharded"))
    qe_one, qe_sharded = bb.quantization_error(X, one), bb.quantization_error(X, sharded)
    # One epoch from the same codebook at the first width: the rule without the compounding near-tie flips.
    one_spec = cc.som(shape, algorithm="batch", kernel="gaussian", sigma_schedule="constant")
    one_epoch = [np.asarray(run(m, 1, W0, cc.Hparams(sigma=hp.sigma), one_spec).state.weights) for m in (None, mesh)]
    return {"times_one": times["one"], "times_sharded": times["sharded"], "compile_s": compile_s,
            "max_abs_diff": float(np.abs(one - sharded).max()),
            "max_abs_diff_one_epoch": float(np.abs(one_epoch[0] - one_epoch[1]).max()),
            "qe_one_device": qe_one, "qe_sharded": qe_sharded, "qe_rel_diff": abs(qe_sharded - qe_one) / qe_one,
            "bmu_disagreements": int((bb.nearest(X, one)[0] != bb.nearest(X, sharded)[0]).sum()),
            "shape": list(X.shape), "devices": [str(d) for d in jax.devices()], "env": environment()}


def sharded_som_workload(name, mnist_dir, quick, repeats, data="mnist", rows=None, shape=None, n_epochs=None):
    """``sharded_som_child`` in a fresh process with SHARDED_DEVICES host devices, and its record."""
    shape = shape or ((10, 10) if quick else (20, 20))
    n_epochs = n_epochs or (5 if quick else 20)
    rows = rows or (2000 if quick else None)
    radius0, radius_n = (5.0, 1.0) if quick else (10.0, 1.0)  # as som-batch-mnist
    flags = [t for t in os.environ.get("XLA_FLAGS", "").split() if "host_platform_device_count" not in t]
    env = {**os.environ, "XLA_FLAGS": " ".join(flags + [f"--xla_force_host_platform_device_count={SHARDED_DEVICES}"])}
    if mnist_dir:
        env["COMPCLUST_MNIST_DIR"] = str(mnist_dir)
    spec = {"data": data, "rows": rows, "shape": list(shape), "n_epochs": n_epochs, "radius0": radius0,
            "radius_n": radius_n, "repeats": repeats, "mnist_dir": mnist_dir}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "-m", "experiments.bench_scale", "--child", json.dumps(spec)],
                          env=env, cwd=root, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"the {SHARDED_DEVICES}-device child failed: {done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    one, sharded = statistics.median(out["times_one"]), statistics.median(out["times_sharded"])
    ok = out["max_abs_diff_one_epoch"] <= bb.SOM_TOL and out["qe_rel_diff"] <= bb.SOM_QE_RTOL
    entry = {"workload": name, "kind": "sharding", "anchor": "the same fit on 1 device",
             "anchor_median_s": one, "anchor_min_s": min(out["times_one"]), "anchor_runs": len(out["times_one"]),
             "compclust_median_s": sharded, "compclust_min_s": min(out["times_sharded"]),
             "compclust_runs": len(out["times_sharded"]), "speedup": one / sharded,
             "target_speedup": TARGETS.get(name), "compile_s": out["compile_s"]["sharded"],
             "compile_s_one_device": out["compile_s"]["one"], "sharded_devices": SHARDED_DEVICES,
             "mesh": {"data": SHARDED_DEVICES}, "grid": list(shape), "epochs": n_epochs, "radius": [radius0, radius_n],
             "data": data, "tolerance_one_epoch": bb.SOM_TOL, "qe_rtol": bb.SOM_QE_RTOL,
             **{k: out[k] for k in ("max_abs_diff", "max_abs_diff_one_epoch", "qe_one_device", "qe_sharded",
                                   "qe_rel_diff", "bmu_disagreements", "shape", "devices")},
             "parity_note": "full-run max_abs_diff recorded, not checked (float32 near-tie flips; see "
                            "experiments/bench_batch.py); checked: one epoch from the same codebook and the final QE",
             "parity_ok": bool(ok), "env": out["env"]}
    entry["meets_target"] = entry["target_speedup"] is not None and entry["speedup"] >= entry["target_speedup"]
    print(f"{name:27s} 1 device {one:8.4f}s  {SHARDED_DEVICES} devices {sharded:8.4f}s  x{entry['speedup']:5.2f} "
          f"(target {entry['target_speedup']})  max|dW| {out['max_abs_diff']:.1e} (one epoch "
          f"{out['max_abs_diff_one_epoch']:.1e})  QE rel {out['qe_rel_diff']:.1e}  "
          f"{'ok' if ok else 'QUALITY FAILED'}", flush=True)
    return entry


# ---------------------------------------------------------------------------- K-means restarts throughput

def kmeans_restarts_throughput(X, seeds_list, n_epochs, n_clusters=10, repeats=3, anchor_seeds=64,
                               name="kmeans-restarts-throughput"):
    """One record per number of seeds (see the module docstring)."""
    from sklearn.cluster import KMeans

    X = np.ascontiguousarray(X, np.float32)
    spec, hp = cc.kmeans(n_clusters), cc.Hparams()
    entries = []
    for n_seeds in seeds_list:
        def keys():  # a fresh array per call: a consumed key is never reused
            return jax.random.split(jax.random.key(0), n_seeds)

        def ours():
            return cc.restarts(keys(), X, spec, hp, n_epochs, init="kmeans++")

        compile_s = bb.compile_seconds(lambda: cc.loop.sweep_call(keys(), X, spec, hp, n_epochs, init="kmeans++"))
        jax.block_until_ready(ours().runs)
        times, best = timed(lambda: ours().runs, repeats)
        result = cc.restarts(keys(), X, spec, hp, n_epochs, init="kmeans++")
        one = cc.fit(keys()[0], X, spec, hp, n_epochs, init="kmeans++")
        diff = float(np.abs(np.asarray(result.runs.state.weights[0]) - np.asarray(one.state.weights)).max())
        updates = len(X) * n_epochs * n_seeds
        median = statistics.median(times)
        inertia_best = bb.inertia(X, np.asarray(result.best.state.weights))
        entry = {"workload": f"{name}-{n_seeds}", "kind": "throughput", "seeds": n_seeds, "clusters": n_clusters,
                 "epochs": n_epochs, "tol": None, "init": "kmeans++", "shape": list(X.shape),
                 "devices": len(jax.devices()), "group_size": cc.loop.default_group_size(jax.default_backend()),
                 "updates": updates, "updates_definition": "samples x epochs x seeds",
                 "compclust_median_s": median, "compclust_min_s": min(times), "compclust_runs": len(times),
                 "updates_per_s": updates / median, "compile_s": compile_s, "inertia_best": inertia_best,
                 "max_abs_diff": diff, "parity_note": "seed 0 of the sweep against fit of its key"}
        ok = diff <= PARITY_TOL
        line = (f"kmeans restarts {n_seeds:5d} seeds x {n_epochs} epochs  {median:8.3f}s  {updates / median:12,.0f} "
                f"updates/s  compile {compile_s:5.2f}s  seed 0 vs fit {diff:.1e}")
        if n_seeds == anchor_seeds:
            def anchor():
                return [KMeans(n_clusters, init="k-means++", n_init=1, max_iter=n_epochs, tol=0.0, algorithm="lloyd",
                               random_state=seed).fit(X) for seed in range(n_seeds)]

            anchor_times, fits = timed(anchor, 1)  # tens of seconds on the loaded 2-core machine: one run
            anchor_updates = len(X) * sum(int(km.n_iter_) for km in fits)
            anchor_rate = anchor_updates / statistics.median(anchor_times)
            inertia_anchor = min(bb.inertia(X, km.cluster_centers_) for km in fits)
            ok = ok and inertia_best <= inertia_anchor * (1 + bb.RESTARTS_INERTIA_SLACK)
            entry.update(anchor="scikit-learn KMeans(n_init=1, tol=0) in a loop over seeds",
                         anchor_median_s=statistics.median(anchor_times), anchor_runs=len(anchor_times),
                         anchor_updates=anchor_updates, anchor_updates_per_s=anchor_rate,
                         anchor_n_iter_mean=anchor_updates / len(X) / n_seeds,
                         vs_sklearn_loop=updates / median / anchor_rate, inertia_anchor_best=inertia_anchor,
                         inertia_slack=bb.RESTARTS_INERTIA_SLACK)
            line += f"  x{entry['vs_sklearn_loop']:.1f} scikit-learn loop ({anchor_rate:,.0f} updates/s)"
        entry["parity_ok"] = bool(ok)
        entry["env"] = environment()
        print(line + ("" if ok else "  QUALITY FAILED"), flush=True)
        entries.append(entry)
    return entries


# ---------------------------------------------------------------------------------------------- plan

def plan(mnist_dir, quick):
    repeats = 3 if quick else 5
    digits, _ = cc.data.load_digits()
    digits = np.asarray(digits / 16.0, np.float32)
    thunks = {
        "som-batch-mnist-sharded": lambda: sharded_som_workload("som-batch-mnist-sharded", mnist_dir, quick, repeats),
        "kmeans-restarts-throughput": lambda: kmeans_restarts_throughput(
            digits, (8, 32) if quick else (64, 256, 1024), 20, anchor_seeds=8 if quick else 64,
            repeats=3),
    }
    if not mnist_dir:
        thunks["som-batch-mnist-sharded"] = lambda: bb.skipped("som-batch-mnist-sharded",
                                                               "no --mnist-dir and COMPCLUST_MNIST_DIR is unset")
    return thunks


def run(mnist_dir, quick, only=None, results=None, json_path=None):
    """Runs the scaling workloads (``only`` filters by name), appending to ``results`` and writing
    ``json_path`` after each one. Returns ``results``."""
    return bb.run_workloads(plan(mnist_dir, quick), only, results, json_path, env=environment)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="where to write the JSON list of results")
    parser.add_argument("--quick", action="store_true", help="smaller workloads, fewer repeats")
    parser.add_argument("--mnist-dir", default=os.environ.get("COMPCLUST_MNIST_DIR"),
                        help="folder with the MNIST IDX files (default: $COMPCLUST_MNIST_DIR)")
    parser.add_argument("--only", nargs="*", choices=WORKLOADS, help="run only these workloads")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # the sharded SOM's child process (JSON settings)
    args = parser.parse_args(argv)
    if args.child:
        settings = json.loads(args.child)
        settings["shape"] = tuple(settings["shape"])
        print(json.dumps(sharded_som_child(**settings)))
        return 0
    if not args.json:
        parser.error("--json is required")
    results = run(args.mnist_dir, args.quick, args.only, json_path=args.json)
    failed = [r["workload"] for r in results if not r["parity_ok"]]
    if failed:
        print(f"QUALITY FAILED: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
