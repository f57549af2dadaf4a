"""Smoke test of experiments/bench_scale.py on small slices of digits: its workloads produce passing
records (the sharded SOM in its own 2-device child process). Timings are recorded, never asserted."""
import jax
import numpy as np

import compclust as cc
from experiments import bench_scale as bs


def test_kmeans_restarts_throughput_records():
    images, _ = cc.data.load_digits()
    X = np.asarray(images[:200] / 16.0, np.float32)
    with jax.debug_key_reuse(False):  # sweeps: see NO_KEY_REUSE_CHECK in test_loop.py
        entries = bs.kmeans_restarts_throughput(X, (4, 8), 10, n_clusters=3, repeats=1, anchor_seeds=4)
    assert [e["workload"] for e in entries] == ["kmeans-restarts-throughput-4", "kmeans-restarts-throughput-8"]
    for entry in entries:
        assert entry["parity_ok"], entry
        assert entry["updates"] == 200 * 10 * entry["seeds"] and entry["updates_per_s"] > 0
    assert entries[0]["vs_sklearn_loop"] > 0 and "vs_sklearn_loop" not in entries[1]


def test_sharded_som_workload_record():
    entry = bs.sharded_som_workload("som-batch-mnist-sharded", None, True, 1, data="digits", rows=200,
                                    shape=(3, 4), n_epochs=2)
    assert entry["parity_ok"], entry
    assert entry["sharded_devices"] == 2 and len(entry["devices"]) == 2 and entry["shape"] == [200, 64]
    for field in ("anchor_median_s", "compclust_median_s", "speedup", "max_abs_diff", "max_abs_diff_one_epoch"):
        assert entry[field] is not None and np.isfinite(entry[field]), field
