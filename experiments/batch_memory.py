"""Peak memory of a batch SOM on the MNIST test split with and without row blocks.

    /usr/bin/time -v python -m experiments.batch_memory --chunk-size 1000 [--mnist-dir DIR]

A 40x40 batch SOM (1,600 units) on 10,000 images: without blocks each epoch holds the whole
``[N, K]`` distance matrix (64 MB in float32) and its temporaries; with ``--chunk-size c`` only
``[c, K]`` at a time. Read "Maximum resident set size" from ``/usr/bin/time -v``; the script
prints its own peak (``ru_maxrss``) and the result, which must not depend on the block size.
"""
from __future__ import annotations

import argparse
import json
import resource
import time

import jax
import numpy as np

import compclust as cc


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk-size", type=int, default=None, help="rows per block (default: all)")
    parser.add_argument("--mnist-dir", default=None, help="IDX folder (default: $COMPCLUST_MNIST_DIR)")
    parser.add_argument("--shape", type=int, nargs="+", default=[40, 40])
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    images, _ = cc.data.load_mnist(args.mnist_dir)
    spec = cc.som(tuple(args.shape), algorithm="batch", sigma_schedule="linear", chunk_size=args.chunk_size)
    start = time.perf_counter()
    result = cc.fit(jax.random.key(0), images, spec, cc.Hparams(sigma=10.0, sigma_final=1.0), args.epochs)
    quantization_error = float(jax.block_until_ready(result.metrics.quantization_error[-1]))
    print(json.dumps({"shape": args.shape, "chunk_size": args.chunk_size, "epochs": args.epochs,
                      "quantization_error": round(quantization_error, 6),
                      "seconds_with_compile": round(time.perf_counter() - start, 2),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


if __name__ == "__main__":
    main()
