"""Smoke test of experiments/bench_batch.py on a small slice of digits: the anchors' settings it derives
reproduce each anchor's own epoch, and its workloads produce passing records. Skips what is not installed;
the anchors live in the ``bench`` extra (somoclu by the steps in the module's docstring)."""
import importlib.util
import os

import numpy as np
import pytest

import compclust as cc
from experiments import bench_batch as bb


def digits(n=300):
    images, _ = cc.data.load_digits()
    return np.ascontiguousarray(images[:n] / 16.0, np.float32)


# fastersom (PyTorch) and somoclu are the benchmark's anchors (the ``bench`` extra), and the benchmark
# checks their rules on every run; loading PyTorch's and somoclu's native libraries into the test
# process beside XLA's compiler is not something the suite should depend on, so they are checked
# here only on request.
IN_PROCESS_ANCHORS = ["xpysom"] + (["fastersom", "somoclu"] if os.environ.get("COMPCLUST_BENCH_ANCHOR_TESTS") else [])


def needs(module):
    return pytest.mark.skipif(importlib.util.find_spec(module) is None, reason=f"{module} is not installed")


@pytest.mark.parametrize("anchor", IN_PROCESS_ANCHORS)
def test_anchor_epoch_is_the_float64_batch_map(anchor):
    """The kernel width convention read from each anchor's source: one anchor epoch equals the NumPy
    transcription with sigma = coefficient x the anchor's width."""
    label, train, one_epoch, module, coeff = bb.SOM_ANCHORS[anchor]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    X = digits()
    W0 = bb.initial_codebook(X, 12)
    for width in (3.0, 1.2):
        got = one_epoch(X, W0, (3, 4), width)
        want = bb.batch_som_reference(X, W0, (3, 4), [coeff * width])
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("anchor", IN_PROCESS_ANCHORS)
def test_anchor_schedule(anchor):
    """Full runs follow the per-epoch widths transcribed from the anchors' sources."""
    label, train, one_epoch, module, coeff = bb.SOM_ANCHORS[anchor]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    X = digits(200)
    W0 = bb.initial_codebook(X, 12)
    widths = bb.anchor_widths(anchor, 4, 3.0, 1.0)
    got = train(X, W0, (3, 4), 4, 3.0, 1.0)
    want = bb.batch_som_reference(X, W0, (3, 4), coeff * widths)
    np.testing.assert_allclose(got, want, atol=1e-4)


@needs("xpysom")
def test_som_batch_workload_record():
    X = digits()
    entry = bb.som_batch_workload("som-batch-mnist-xpysom", "xpysom", X, (3, 4), 4, 3.0, 1.0, 1, 1,
                                  reference=False)
    assert entry["parity_ok"], entry
    assert entry["max_abs_diff_one_epoch"] <= bb.SOM_TOL
    for field in ("anchor_median_s", "compclust_median_s", "speedup", "compile_s", "max_abs_diff", "env"):
        assert field in entry


def test_kmeans_lloyd_workload_record():
    entry = bb.kmeans_lloyd_workload("kmeans-lloyd-mnist", digits(), 5, 1, 1)
    assert entry["parity_ok"], entry
    assert entry["same_labels"] and entry["n_iter_anchor"] == entry["n_iter_compclust"]
