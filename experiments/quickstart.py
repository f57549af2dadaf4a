"""compclust in under a minute, on a laptop CPU, with no downloads.

(a) neurolab's conscience-layer demo on five 3-D blobs (100 and 1000 epochs) against KMeans;
(b) a 10x10 online SOM on scikit-learn's digits scaled to [0, 1] (sigma 3, lr 0.5, 10 epochs,
    PCA init), drawn as a U-matrix and a hit map;
(c) the same SOM over 16 seeds as one compiled ``compclust.sweep``: final quantization and
    topographic error, mean +- std.

    python -m experiments.quickstart [--out-dir results] [--quick]
"""
from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np

import compclust
from compclust import plots
from compclust.data import load_digits
from compclust.io import atomic_write_json

from . import neurolab_demo

SOM_SHAPE = (10, 10)
SOM_HPARAMS = compclust.Hparams(lr=0.5, sigma=3.0)


def digits_som(out_dir, n_epochs: int) -> dict:
    """One SOM on the digits, with its U-matrix and hit map saved as PNGs."""
    images, _ = load_digits()
    data = compclust.transform(compclust.fit_scaler(images, "minmax"), images)
    spec = compclust.som(SOM_SHAPE)
    start = time.perf_counter()
    result = compclust.fit(jax.random.key(0), data, spec, SOM_HPARAMS, n_epochs, init="pca", progress=True)
    weights = np.asarray(jax.block_until_ready(result.state.weights))
    seconds = time.perf_counter() - start
    files = {"u_matrix": plots.save_figure(plots.plot_u_matrix(spec, weights),
                                           os.path.join(out_dir, "digits_u_matrix.png")),
             "hit_map": plots.save_figure(plots.plot_hit_map(spec, weights, data),
                                          os.path.join(out_dir, "digits_hit_map.png"))}
    return {"epochs": n_epochs, "seconds": seconds,
            "quantization_error": float(result.metrics.quantization_error[-1]),
            "topographic_error": float(result.metrics.topographic_error[-1]),
            "dead_units": int(result.metrics.dead_units[-1]), "files": files}


def digits_sweep(n_seeds: int, n_epochs: int) -> dict:
    """The same SOM over many seeds in one compiled call; the spread shows how much a seed matters."""
    images, _ = load_digits()
    data = compclust.transform(compclust.fit_scaler(images, "minmax"), images)
    keys = jax.random.split(jax.random.key(0), n_seeds)
    start = time.perf_counter()
    result = compclust.sweep(keys, data, compclust.som(SOM_SHAPE), SOM_HPARAMS, n_epochs, init="pca",
                             progress=True)
    jax.block_until_ready(result.state.weights)
    seconds = time.perf_counter() - start
    qe = np.asarray(result.metrics.quantization_error[:, -1], np.float64)
    te = np.asarray(result.metrics.topographic_error[:, -1], np.float64)
    return {"seeds": n_seeds, "epochs": n_epochs, "seconds": seconds,
            "quantization_error_mean": float(qe.mean()), "quantization_error_std": float(qe.std()),
            "topographic_error_mean": float(te.mean()), "topographic_error_std": float(te.std())}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", default="results")
    parser.add_argument("--quick", action="store_true", help="fewer epochs and seeds (for tests)")
    args = parser.parse_args(argv)
    demo_epochs, som_epochs, n_seeds = ((5, 20), 2, 4) if args.quick else ((100, 1000), 10, 16)

    start = time.perf_counter()
    demo = neurolab_demo.run(seed=0, epochs=demo_epochs, out_dir=args.out_dir, plot=True)
    demo_seconds = time.perf_counter() - start
    som = digits_som(args.out_dir, som_epochs)
    swept = digits_sweep(n_seeds, som_epochs)
    summary = {"quick": args.quick, "backend": jax.default_backend(), "neurolab_demo": demo,
               "neurolab_demo_seconds": demo_seconds, "digits_som": som, "digits_sweep": swept,
               "total_seconds": time.perf_counter() - start}
    summary["files"] = {"summary": os.path.join(args.out_dir, "quickstart.json"),
                        **{f"neurolab_{kind}": path for kind, path in demo["files"].items()}, **som["files"]}
    atomic_write_json(summary["files"]["summary"], summary)

    print(f"compclust quickstart ({'quick' if args.quick else 'full'}, backend {summary['backend']})")
    print(f"{'step':<46}{'time s':>8}  result")
    for run in demo["runs"].values():
        print(f"{'(a) ' + run['method']:<46}{run['seconds']:>8.2f}  "
              f"centre error mean {run['mean_error']:.3f}, max {run['max_error']:.3f}")
    print(f"{f'(b) SOM {SOM_SHAPE[0]}x{SOM_SHAPE[1]} on digits, {som_epochs} epochs':<46}{som['seconds']:>8.2f}  "
          f"QE {som['quantization_error']:.3f}, TE {som['topographic_error']:.3f}, "
          f"dead units {som['dead_units']}")
    print(f"{f'(c) same SOM, {n_seeds} seeds in one sweep':<46}{swept['seconds']:>8.2f}  "
          f"QE {swept['quantization_error_mean']:.3f} +- {swept['quantization_error_std']:.3f}, "
          f"TE {swept['topographic_error_mean']:.3f} +- {swept['topographic_error_std']:.3f}")
    print(f"{'total':<46}{summary['total_seconds']:>8.2f}")
    for kind, path in summary["files"].items():
        print(f"  {kind:<14} {path}")
    return summary


if __name__ == "__main__":
    compclust.fast_cpu_loops(strict=False)  # XLA:CPU loop hoisting, before JAX starts (compclust.fast_loops)
    main()
