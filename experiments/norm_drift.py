"""How far the online step's carried squared norms ``|w_k|^2`` drift from the exact ones.

    python -m experiments.norm_drift --mnist-dir DIR [--epochs 100] [--json results/norm_drift.json]

Trains the MNIST 20x20 SOM of the benchmark (sigma 4, lr 0.5, asymptotic decays, samples in data
order) for ``--epochs`` epochs with the carried-norm step, and reports, per epoch, the largest
relative difference between the carried norms at the epoch's end (before they are recomputed
exactly, as every epoch start does) and the exact norms of the same weights. A second run carries
the norms through the whole run with no recomputation at all, to show what the recomputation buys.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import compclust as cc
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from compclust import loop, validation
from compclust.algorithms import online


def drift_run(spec, hparams, data, weights, n_epochs, recompute_each_epoch: bool):
    """Per epoch: max_k |carried - exact| / exact at the epoch's end, and the final weights ``[D, K]``."""
    n_samples = data.shape[0]
    total = n_epochs * n_samples

    @jax.jit
    def run(data, weights):
        state = loop.initial_state(spec, weights.T)

        def one_epoch(carry, _):
            state, norms = carry
            norms = online.sq_norms_of(state.weights) if recompute_each_epoch else norms

            def one_step(carry, index):
                state, norms = carry
                state, norms, _ = online.step_with_norms(spec, state, norms, data[index], hparams, total)
                return (state, norms), None

            (state, norms), _ = lax.scan(one_step, (state, norms), jnp.arange(n_samples))
            exact = online.sq_norms_of(state.weights)
            return (state, norms), (jnp.max(jnp.abs(norms - exact) / exact), jnp.max(jnp.abs(norms - exact)))

        (state, _), drift = lax.scan(one_epoch, (state, online.sq_norms_of(state.weights)), None, length=n_epochs)
        return drift, state.weights

    return run(data, weights)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mnist-dir", default=os.environ.get("COMPCLUST_MNIST_DIR"))
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    images, _ = cc.data.load_mnist(args.mnist_dir)
    data = jnp.asarray(images, jnp.float32)
    spec = cc.som((20, 20))
    hparams = validation.check_hparams(cc.Hparams(lr=0.5, sigma=4.0), spec, jnp.float32, sweepable=False)
    weights = jnp.asarray(np.random.default_rng(0).random((400, 784)), jnp.float32)
    out = {"epochs": args.epochs, "grid": [20, 20], "shape": list(images.shape), "dtype": "float32"}
    for label, recompute in (("recomputed_each_epoch", True), ("never_recomputed", False)):
        start = time.perf_counter()
        (relative, absolute), _ = jax.block_until_ready(drift_run(spec, hparams, data, weights, args.epochs, recompute))
        relative, absolute = np.asarray(relative, np.float64), np.asarray(absolute, np.float64)
        out[label] = {"max_relative_drift": float(relative.max()), "median_relative_drift": float(np.median(relative)),
                      "max_absolute_drift": float(absolute.max()),
                      "per_epoch_relative": [float(v) for v in relative], "seconds": time.perf_counter() - start}
        print(f"{label:24s} max relative drift {relative.max():.2e} (median over epochs {np.median(relative):.2e}), "
              f"max absolute {absolute.max():.2e}; epoch 1 {relative[0]:.2e}, last {relative[-1]:.2e}", flush=True)
    out["float32_eps"] = float(np.finfo(np.float32).eps)
    if args.json:
        cc.io.atomic_write_json(args.json, out)
    return out


if __name__ == "__main__":
    cc.fast_cpu_loops(strict=False)
    main()
