"""Host memory of streaming training on a file larger than the memory the run is allowed.

    # 1. a ~1.3 GB .npy: the MNIST test split (10,000 x 784 float32) repeated 42 times (never commit it)
    python -m experiments.stream_memory make /tmp/mnist_x42.npy --repeat 42 --mnist-dir ../shared/data/mnist
    # 2. stream it through minibatch K-means, measuring the peak resident set
    /usr/bin/time -v python -m experiments.stream_memory train /tmp/mnist_x42.npy --max-rss-mb 320

``train`` runs ``compclust.fit_stream`` over the file in compiled chunks (one epoch, file order),
then reads the process's peak resident set size (``getrusage``, the figure ``/usr/bin/time -v``
prints as "Maximum resident set size") and fails if it is over ``--max-rss-mb``. ``--source mmap``
streams ``np.load(path, mmap_mode="r")`` instead of the path (pages are released after each chunk).
The record (file size, allowed and peak memory, seconds, chunk size, result quality) is printed as
JSON and, with ``--record``, written to a file.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np


def make(path, repeat: int, mnist_dir=None) -> dict:
    """Write the MNIST test split ``repeat`` times into one float32 ``.npy``, one copy at a time."""
    import compclust as cc

    images, _ = cc.data.load_mnist(mnist_dir)  # float32 [10000, 784] in [0, 1]
    images = np.ascontiguousarray(images, np.float32)
    path = Path(path)
    shape = (images.shape[0] * repeat, images.shape[1])
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(images.dtype),
                                                 "fortran_order": False, "shape": shape})
        for _ in range(repeat):
            f.write(images.tobytes())
    os.replace(tmp, path)
    return {"path": str(path), "shape": shape, "bytes": path.stat().st_size}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def train(path, *, algorithm="kmeans", units=10, batch_size=1024, chunk_rows=None, n_epochs=1, source="path",
          max_rss_mb=None, evaluate=False, seed=0) -> dict:
    import jax

    import compclust as cc

    path = Path(path)
    if algorithm == "kmeans":
        spec, hparams = cc.kmeans(units, algorithm="minibatch", batch_size=batch_size), cc.Hparams()
    elif algorithm == "som":
        side = int(round(units ** 0.5))
        spec = cc.som((side, side), algorithm="minibatch", batch_size=batch_size)
        hparams = cc.Hparams(lr=0.5, sigma=side / 2)
    else:
        raise ValueError(f"algorithm must be 'kmeans' or 'som', got {algorithm!r}")
    data = path if source == "path" else np.load(path, mmap_mode="r")
    chunks = []
    began = time.perf_counter()
    result = cc.fit_stream(jax.random.key(seed), data, spec, hparams, n_epochs=n_epochs, chunk_rows=chunk_rows,
                           callback=lambda info: chunks.append(info["rows"]))
    seconds = time.perf_counter() - began
    record = {
        "file": str(path), "file_bytes": path.stat().st_size, "source": source, "rows": result.n_samples,
        "algorithm": algorithm, "units": spec.n_units, "batch_size": batch_size, "chunk_rows": result.chunk_rows,
        "chunk_bytes": result.chunk_rows * 784 * 4, "chunks": result.n_chunks, "epochs": n_epochs,
        "train_seconds": round(seconds, 2), "steps": int(result.state.step),
        "peak_rss_mb_after_training": round(peak_rss_mb(), 1),
        "max_rss_mb": max_rss_mb, "python": sys.version.split()[0], "jax": jax.__version__,
        "backend": jax.default_backend(), "machine": platform.machine(),
    }
    if evaluate:
        quality = cc.evaluate_stream(spec, result.state.weights, data)
        record["quantization_error"] = float(quality.quantization_error)
        record["dead_units"] = int(quality.dead_units)
    record["peak_rss_mb"] = round(peak_rss_mb(), 1)
    if max_rss_mb is not None:
        record["file_over_allowed"] = round(record["file_bytes"] / (max_rss_mb * 2**20), 2)
        record["within_limit"] = record["peak_rss_mb"] <= max_rss_mb
    return record


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    mk = sub.add_parser("make", help="write the MNIST test split repeated into one .npy")
    mk.add_argument("path")
    mk.add_argument("--repeat", type=int, default=42)
    mk.add_argument("--mnist-dir", default=None, help="folder of MNIST's IDX .gz files (or COMPCLUST_MNIST_DIR)")
    tr = sub.add_parser("train", help="stream the .npy through minibatch training and measure the peak RSS")
    tr.add_argument("path")
    tr.add_argument("--algorithm", choices=("kmeans", "som"), default="kmeans")
    tr.add_argument("--units", type=int, default=10)
    tr.add_argument("--batch-size", type=int, default=1024)
    tr.add_argument("--chunk-rows", type=int, default=None)
    tr.add_argument("--epochs", type=int, default=1)
    tr.add_argument("--source", choices=("path", "mmap"), default="path")
    tr.add_argument("--max-rss-mb", type=float, default=None, help="fail if the peak resident set is above this")
    tr.add_argument("--evaluate", action="store_true", help="one more pass: quantization error of the result")
    tr.add_argument("--record", default=None, help="also write the JSON record here")
    args = parser.parse_args(argv)
    if args.command == "make":
        record = make(args.path, args.repeat, args.mnist_dir)
    else:
        record = train(args.path, algorithm=args.algorithm, units=args.units, batch_size=args.batch_size,
                       chunk_rows=args.chunk_rows, n_epochs=args.epochs, source=args.source,
                       max_rss_mb=args.max_rss_mb, evaluate=args.evaluate)
        if args.record:
            from compclust.io import atomic_write_json
            atomic_write_json(args.record, record)
    print(json.dumps(record, indent=2))
    if record.get("within_limit") is False:
        raise SystemExit(f"peak resident set {record['peak_rss_mb']} MB is over --max-rss-mb {args.max_rss_mb}")
    return record


if __name__ == "__main__":
    main()
