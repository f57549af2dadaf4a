"""A resumable seed x learning-rate sweep of an online SOM on scikit-learn's digits.

    python -m experiments.sweep --out-dir results/sweep --seeds 64 --chunk 16 --lrs 0.1 0.3 0.5 0.8

Seeds run in chunks; each chunk is one compiled ``compclust.sweep`` over all learning rates and
its seeds, saved as its own file atomically (``compclust.io.ResultStore``). Rerunning the same
command after an interruption skips the chunks already on disk. Seed i's key is
``fold_in(key(base_seed), i)``, so results do not depend on the chunk size or on interruptions.
A different configuration in the same folder is refused rather than mixed in.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import compclust as cc
from compclust.io import ResultStore, atomic_write_json


def seed_keys(base_seed: int, start: int, stop: int):
    root = jax.random.key(base_seed)
    return jax.vmap(lambda i: jax.random.fold_in(root, i))(jnp.arange(start, stop))


def run(out_dir, n_seeds=64, chunk=16, lrs=(0.1, 0.3, 0.5, 0.8), sigma=3.0, grid=(10, 10), n_epochs=10,
        base_seed=0, max_chunks=None) -> dict:
    """Run (or resume) the sweep; returns the summary, also written to ``out_dir/summary.json``.

    max_chunks: stop after computing this many new chunks (to split a long sweep over calls).
    """
    config = {"n_seeds": int(n_seeds), "chunk": int(chunk), "lrs": [float(v) for v in lrs], "sigma": float(sigma),
              "grid": [int(v) for v in grid], "n_epochs": int(n_epochs), "base_seed": int(base_seed),
              "data": "sklearn digits, minmax to [0, 1]"}
    if chunk < 1 or n_seeds < 1:
        raise ValueError(f"n_seeds and chunk must be positive, got {n_seeds} and {chunk}")
    out_dir = Path(out_dir)
    config_path = out_dir / "config.json"
    if config_path.exists() and json.loads(config_path.read_text()) != config:
        raise ValueError(f"{out_dir} holds a sweep with another configuration ({config_path}); "
                         "use a new --out-dir")
    atomic_write_json(config_path, config)

    images, _ = cc.data.load_digits()
    data = cc.transform(cc.fit_scaler(images, "minmax"), images)
    spec = cc.som(tuple(grid))
    hparams = cc.Hparams(lr=np.asarray(lrs, np.float32), sigma=sigma)
    store = ResultStore(out_dir)
    starts = range(0, n_seeds, chunk)
    computed = 0
    for start in starts:
        name = f"seeds-{start:05d}"
        if store.has(name):
            continue
        if max_chunks is not None and computed >= max_chunks:
            break
        began = time.perf_counter()
        result = cc.sweep(seed_keys(base_seed, start, min(start + chunk, n_seeds)), data, spec, hparams, n_epochs)
        store.save(name, {"weights": result.state.weights, "metrics": result.metrics._asdict()})
        computed += 1
        print(f"{name}: seeds {start}..{min(start + chunk, n_seeds) - 1} in {time.perf_counter() - began:.1f}s",
              flush=True)

    done = [f"seeds-{s:05d}" for s in starts if store.has(f"seeds-{s:05d}")]
    summary = {"config": config, "chunks_done": len(done), "chunks_total": len(starts), "complete": len(done) == len(starts)}
    if done:
        loaded = [store.load(name) for name in done]
        qe = np.concatenate([r["metrics/quantization_error"][..., -1] for r in loaded], axis=1)  # [H, S]
        te = np.concatenate([r["metrics/topographic_error"][..., -1] for r in loaded], axis=1)
        summary["per_lr"] = [{"lr": lr, "seeds": int(qe.shape[1]), "quantization_error_mean": float(q.mean()),
                              "quantization_error_std": float(q.std()), "topographic_error_mean": float(t.mean()),
                              "topographic_error_std": float(t.std())}
                             for lr, q, t in zip(config["lrs"], qe, te)]
    atomic_write_json(out_dir / "summary.json", summary)
    return summary


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", default="results/sweep")
    parser.add_argument("--seeds", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.1, 0.3, 0.5, 0.8])
    parser.add_argument("--sigma", type=float, default=3.0)
    parser.add_argument("--grid", type=int, nargs="+", default=[10, 10])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--base-seed", type=int, default=0)
    parser.add_argument("--max-chunks", type=int, default=None, help="compute at most this many new chunks")
    args = parser.parse_args(argv)
    summary = run(args.out_dir, args.seeds, args.chunk, args.lrs, args.sigma, args.grid, args.epochs,
                  args.base_seed, args.max_chunks)
    print(f"{summary['chunks_done']}/{summary['chunks_total']} chunks done")
    for row in summary.get("per_lr", []):
        print(f"lr {row['lr']:5.2f}  {row['seeds']:4d} seeds  QE {row['quantization_error_mean']:.4f} "
              f"+- {row['quantization_error_std']:.4f}  TE {row['topographic_error_mean']:.4f} "
              f"+- {row['topographic_error_std']:.4f}")
    return summary


if __name__ == "__main__":
    main()
