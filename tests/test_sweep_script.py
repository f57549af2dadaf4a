"""The resumable sweep: an interrupted run continues where it stopped and ends where an
uninterrupted one does."""
import jax
import numpy as np
import pytest

from compclust.io import ResultStore
from experiments import sweep

SMALL = dict(n_seeds=5, chunk=2, lrs=(0.2, 0.6), sigma=1.5, grid=(3, 3), n_epochs=1)


@jax.debug_key_reuse(False)  # sweeps: see NO_KEY_REUSE_CHECK in test_loop.py
def test_interrupted_sweep_resumes_and_matches_an_uninterrupted_one(tmp_path):
    whole = sweep.run(tmp_path / "whole", **SMALL)
    assert whole["complete"] and whole["chunks_total"] == 3

    parts = tmp_path / "parts"
    first = sweep.run(parts, max_chunks=1, **SMALL)  # "interrupted" after one chunk
    assert first["chunks_done"] == 1 and not first["complete"]
    kept = (parts / "seeds-00000.npz").stat().st_mtime_ns
    resumed = sweep.run(parts, **SMALL)
    assert resumed["complete"]
    assert (parts / "seeds-00000.npz").stat().st_mtime_ns == kept  # finished work is not redone
    a, b = ResultStore(tmp_path / "whole"), ResultStore(parts)
    assert a.names() == b.names() == ["seeds-00000", "seeds-00002", "seeds-00004"]
    for name in a.names():
        np.testing.assert_array_equal(a.load(name)["weights"], b.load(name)["weights"])
    assert a.load("seeds-00004")["weights"].shape == (2, 1, 9, 64)  # [lrs, seeds in chunk, K, D]
    assert resumed["per_lr"] == whole["per_lr"]


def test_another_configuration_in_the_same_folder_is_refused(tmp_path):
    with jax.debug_key_reuse(False):
        sweep.run(tmp_path, max_chunks=0, **SMALL)
        with pytest.raises(ValueError, match="another configuration"):
            sweep.run(tmp_path, **{**SMALL, "sigma": 2.0})
