"""The resumable sweep (experiments/sweep.py): a sweep interrupted (by ``--max-chunks`` or by
SIGKILL) and run again ends with the same tables as an uninterrupted one and computes no finished
chunk twice; a corrupt or half-written chunk is recomputed, never read; another configuration in
the same folder, an empty grid axis and a chunk that does not fit are refused with clear errors."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pyarrow.parquet as pq
import pytest

from experiments import sweep

ROOT = Path(__file__).resolve().parents[1]
# 2 settings (lr) x 2 (sigma) = 4 settings; 5 seeds in chunks of 2 -> 3 chunks, the last one padded.
SMALL = dict(algorithm="som", data="blobs", map_shape="3x3", grid=["lr=0.2,0.6", "sigma=0.5,1.5"], n_seeds=5,
             chunk=2, n_epochs=2, progress=False, log=lambda *args: None)
ARGV = ["--algorithm", "som", "--data", "blobs", "--map", "3x3", "--grid", "lr=0.2,0.6", "sigma=0.5,1.5",
        "--seeds", "5", "--chunk", "2", "--epochs", "2", "--no-progress"]
CHUNKS = ["s000000", "s000002", "s000004"]

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def runs_table(folder):
    table = pq.read_table(Path(folder) / "runs").sort_by([("setting", "ascending"), ("seed", "ascending")])
    return {c: table.column(c).to_numpy() for c in table.column_names}


def computed_by_sessions(folder):
    manifest = json.loads((Path(folder) / "manifest.json").read_text())
    return [name for session in manifest["sessions"] for name in session["computed"]]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    folder = tmp_path_factory.mktemp("whole")
    with jax.debug_key_reuse(False):  # sweeps: see NO_KEY_REUSE_CHECK in test_loop.py
        summary = sweep.run(folder, **SMALL)
    return folder, summary


def test_the_uninterrupted_sweep_keeps_everything(whole):
    folder, summary = whole
    assert summary["complete"] and summary["chunks_total"] == 3 and summary["computed_now"] == CHUNKS
    runs = runs_table(folder)
    assert len(runs["seed"]) == 4 * 5  # every setting x every seed, padding dropped
    assert sorted(set(zip(runs["lr"], runs["sigma"]))) == [(0.2, 0.5), (0.2, 1.5), (0.6, 0.5), (0.6, 1.5)]
    for column in ("quantization_error", "topographic_error", "inertia", "accuracy", "nmi", "ari", "purity"):
        assert np.isfinite(runs[column]).all(), column
    curves = pq.read_table(folder / "curves")
    assert curves.num_rows == 4 * 5 * 2 and set(curves.column("epoch").to_pylist()) == {1, 2}
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["config"]["grid"] == {"lr": [0.2, 0.6], "sigma": [0.5, 1.5]}
    assert manifest["config"]["online_engine"] == "xla"  # a resume must use the engine that began the sweep
    assert {"jax", "numpy", "pyarrow"} <= set(manifest["sessions"][0]["versions"])
    assert manifest["sessions"][0]["devices"]["count"] >= 1
    assert len(summary["rows"]) == 4 and summary["best"]["setting"] in range(4)
    header = (folder / "summary.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["setting", "lr", "sigma", "seeds"] and "accuracy_ci95" in header
    assert "Best setting by nmi" in (folder / "summary.md").read_text()  # 9 units, 5 classes: NMI


def test_stopped_after_one_chunk_and_a_half_written_file_it_resumes_to_the_same_table(whole, tmp_path):
    with jax.debug_key_reuse(False):
        first = sweep.run(tmp_path, max_chunks=1, **SMALL)  # "interrupted" after one chunk
        assert first["chunks_done"] == 1 and not first["complete"] and not (tmp_path / "summary.csv").exists()
        kept = (tmp_path / "runs" / "s000000.parquet").stat().st_mtime_ns
        # a kill during the second chunk's write: a complete-looking file the manifest never recorded
        (tmp_path / "runs" / "s000002.parquet").write_bytes(b"PAR1 half a table")
        resumed = sweep.run(tmp_path, **SMALL)
    assert resumed["complete"] and resumed["computed_now"] == CHUNKS[1:]
    assert (tmp_path / "runs" / "s000000.parquet").stat().st_mtime_ns == kept  # finished work is not redone
    assert sorted(computed_by_sessions(tmp_path)) == CHUNKS  # each chunk computed exactly once
    assert (tmp_path / "summary.csv").read_text() == (whole[0] / "summary.csv").read_text()
    a, b = runs_table(tmp_path), runs_table(whole[0])
    for column in a:
        np.testing.assert_array_equal(a[column], b[column])


def test_a_corrupt_chunk_file_is_recomputed_not_read(whole, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(whole[0], folder)
    path = folder / "runs" / "s000002.parquet"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # one flipped byte: still a file of the right size
    path.write_bytes(bytes(blob))
    (folder / "curves" / "s000004.parquet").unlink()
    messages = []
    with jax.debug_key_reuse(False):
        again = sweep.run(folder, **{**SMALL, "log": messages.append})
    assert again["computed_now"] == ["s000002", "s000004"]
    assert sum("does not match its checksum" in m for m in messages) == 2
    assert (folder / "summary.csv").read_text() == (whole[0] / "summary.csv").read_text()


def test_killed_by_sigkill_and_run_again_it_finishes_without_redoing_a_chunk(whole, tmp_path):
    command = [sys.executable, "-m", "experiments.sweep", *ARGV, "--out-dir", str(tmp_path),
               "--pause-after-chunk", "60"]
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env={**os.environ, "JAX_PLATFORMS": "cpu", "COMPCLUST_NATIVE": "0"})  # as here
    manifest = tmp_path / "manifest.json"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if manifest.exists() and json.loads(manifest.read_text())["chunks"]:
                break
            assert child.poll() is None, child.stderr.read().decode()
            time.sleep(0.1)
        else:
            pytest.fail("the sweep did not finish its first chunk in time")
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert list(json.loads(manifest.read_text())["chunks"]) == ["s000000"]
    with jax.debug_key_reuse(False):
        resumed = sweep.main(ARGV + ["--out-dir", str(tmp_path)])
    assert resumed["complete"] and resumed["computed_now"] == CHUNKS[1:]
    assert sorted(computed_by_sessions(tmp_path)) == CHUNKS
    assert (tmp_path / "summary.csv").read_text() == (whole[0] / "summary.csv").read_text()


def test_another_configuration_in_the_same_folder_is_refused(whole):
    with pytest.raises(ValueError, match=r"another configuration \(differs in \['grid'\]\)"):
        sweep.run(whole[0], **{**SMALL, "grid": ["lr=0.2,0.6", "sigma=0.5,2.5"]})
    with pytest.raises(ValueError, match="another configuration"):
        sweep.run(whole[0], **{**SMALL, "n_epochs": 3})


@pytest.mark.parametrize("grid, message", [
    (["lr="], "grid axis 'lr' has no values"),
    ({"lr": [0.1], "sigma": []}, "grid axis 'sigma' has no values"),
    (["lr=0.1:0.5:0"], "grid axis 'lr' has no values"),
    (["radius=1,2"], "not a hyperparameter"),
    (["lr=0.1,x"], "not a number"),
    (["lr=0.1", "lr=0.2"], "given twice"),
    (["lr0.1"], "NAME=v1,v2"),
])
def test_bad_grids_are_clear_errors(grid, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        sweep.run(tmp_path, **{**SMALL, "grid": grid})
    assert not (tmp_path / "manifest.json").exists()


def test_grid_is_a_cartesian_product_and_the_cli_reports_errors(tmp_path, capsys):
    names, columns = sweep.settings_of(sweep.parse_grid(["lr=0.1,0.5", "sigma=1:3:3"]))
    assert names == ["lr", "sigma"]
    assert list(zip(columns["lr"], columns["sigma"])) == [(0.1, 1), (0.1, 2), (0.1, 3), (0.5, 1), (0.5, 2), (0.5, 3)]
    with pytest.raises(SystemExit) as exit_info:
        sweep.main(ARGV[:6] + ["--grid", "lr=", "--out-dir", str(tmp_path)])
    assert exit_info.value.code == 2 and "grid axis 'lr' has no values" in capsys.readouterr().err


def test_a_chunk_that_does_not_fit_is_refused_before_anything_runs(tmp_path):
    messages = []
    with jax.debug_key_reuse(False):
        with pytest.raises(ValueError, match=r"one chunk of 8 runs needs about .* but the limit is 20.0 KiB.*--chunk"):
            sweep.run(tmp_path, **{**SMALL, "max_memory": "20K", "log": messages.append})
    assert any(m.startswith("memory estimate per device") and "temporaries" in m for m in messages)
    assert not (tmp_path / "manifest.json").exists()  # a refused configuration does not claim the folder


@pytest.mark.parametrize("algorithm", ["batch-som", "minibatch-kmeans", "batch-neural-gas"])
def test_other_families(algorithm, tmp_path):
    with jax.debug_key_reuse(False):
        summary = sweep.run(tmp_path, **{**SMALL, "algorithm": algorithm, "grid": ["lr=0.3", "sigma=1,2"],
                                         "n_seeds": 2, "n_epochs": 1, "batch_size": 50, "select": "inertia"})
    assert summary["complete"] and len(summary["rows"]) == 2
    assert np.isfinite(runs_table(tmp_path)["nmi"]).all()


@pytest.mark.skipif(jax.device_count() != 1, reason="--mesh 1x1 needs exactly one visible device")
def test_mesh_option_gives_the_same_tables_and_bad_meshes_are_refused(whole, tmp_path):
    """--mesh SxD (a seeds x data mesh of all devices; several devices in tests/test_distributed.py)."""
    with jax.debug_key_reuse(False):
        sweep.run(tmp_path / "mesh", **{**SMALL, "mesh": "1x1"})
    a, b = runs_table(tmp_path / "mesh"), runs_table(whole[0])
    for column in a:
        np.testing.assert_allclose(a[column], b[column], rtol=1e-5, err_msg=column)
    with pytest.raises(ValueError, match=r"--mesh 2x4: S x D must be the 1 visible device"):
        sweep.run(tmp_path / "bad", **{**SMALL, "mesh": "2x4"})
    with pytest.raises(ValueError, match="--mesh must look like SxD"):
        sweep.run(tmp_path / "bad", **{**SMALL, "mesh": "two"})
