"""The DNN K-means experiment's --quick mode on tiny IDX files written here: it writes its table,
pictures and per-chunk results, and a rerun skips every finished chunk."""
import gzip
import hashlib
import json
import struct

import jax
import numpy as np
import pytest

from compclust import data
from experiments import dnn_kmeans as experiment


def write_tiny_mnist(folder, n=40):
    """``n`` 28x28 images of ten blocky "digits" (a bright square whose place is the label)."""
    rng = np.random.default_rng(0)
    labels = (np.arange(n) % 10).astype(np.uint8)
    images = rng.integers(0, 40, (n, 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        r, c = divmod(int(label), 5)
        images[i, 4 + 10 * r: 12 + 10 * r, 1 + 5 * c: 6 + 5 * c] = 255
    image_name, label_name = data.MNIST_FILES["test"]
    for name, array in ((image_name, images), (label_name, labels)):
        raw = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
        (folder / name).write_bytes(gzip.compress(raw))
    (folder / "MD5SUMS").write_text("".join(f"{hashlib.md5(p.read_bytes()).hexdigest()}  {p.name}\n"
                                            for p in sorted(folder.glob("*.gz"))))


# The competitive layer's cc.sweep vmaps a scan over split keys, which jax's key-reuse checker wrongly
# flags (NO_KEY_REUSE_CHECK in test_loop.py); DNN K-means is checked with it on in test_dnn_kmeans.py.
@jax.debug_key_reuse(False)
def test_quick_mode_runs_and_resumes(tmp_path, capsys):
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    write_tiny_mnist(mnist)
    out = tmp_path / "out"
    summary = experiment.main(["--quick", "--mnist-dir", str(mnist), "--out", str(out), "--seeds", "2"])
    assert set(summary["methods"]) == {"dnn_kmeans_faithful", "dnn_kmeans_best", "kmeans_sklearn", "kmeans_compclust",
                                      "competitive_layer"}
    for row in summary["methods"].values():
        assert row["seeds"] == 2
        for stat in row["metrics"].values():
            assert 0 <= stat["mean"] <= 1 and np.isfinite(stat["ci95"])
    assert summary["methods"]["dnn_kmeans_faithful"]["authors"] == {"rand_index": 0.8506, "purity": 0.4923}
    assert json.loads((out / "summary.json").read_text())["n_samples"] == 40
    table = (out / "table.md").read_text()
    assert "dnn_kmeans_faithful" in table and "0.8802" in table and " ± " in table
    for picture in ("centroids.png", "faithful_rounds.png"):
        assert (out / picture).read_bytes()[:4] == b"\x89PNG"
    chunks = sorted(p.name for p in (out / "runs").glob("*.npz"))
    assert len(chunks) == 1 + 1 + 2 + 1 + 1  # DNN: chunks of 5 seeds; sklearn: one per seed; compclust's: one each
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.npz")}
    capsys.readouterr()

    again = experiment.main(["--quick", "--mnist-dir", str(mnist), "--out", str(out), "--seeds", "2"])
    assert "skipped" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.npz")} == stamps  # nothing recomputed
    assert again["methods"]["kmeans_sklearn"]["metrics"] == summary["methods"]["kmeans_sklearn"]["metrics"]

    with pytest.raises(ValueError, match="another configuration"):
        experiment.main(["--quick", "--mnist-dir", str(mnist), "--out", str(out), "--seeds", "3"])
