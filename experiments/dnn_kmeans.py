"""DNN K-means on the MNIST test split against K-means (k-means++) and the online competitive layer.

    python -m experiments.dnn_kmeans [--mnist-dir DIR] [--quick] [--out results/dnn_kmeans] [--seeds N]

Methods, each over ``--seeds`` seeds (default 10), judged against the digit labels by clustering
accuracy (optimal one-to-one matching), NMI, ARI, Rand index and purity, as mean and 95% confidence
interval (Student t over seeds), with the authors' numbers beside them:

- ``dnn_kmeans_faithful``: the authors' algorithm exactly (their CNN, one Adam step on the K
  centroids per round, 20 rounds); its centroids round by round are drawn for seed 0.
- ``dnn_kmeans_best``: the best configuration found here (see BEST below for what was measured).
- ``kmeans_sklearn``: scikit-learn ``KMeans(init="k-means++", n_init=1)``, the reference the authors
  compared with (one initialisation per seed, so seeds are comparable with the other methods).
- ``kmeans_compclust``: compclust's Lloyd K-means (``cc.kmeans`` + ``cc.sweep``, greedy k-means++ as
  scikit-learn seeds it, run until the labels stop changing), all seeds in one compiled call.
- ``competitive_layer``: compclust's online winner-take-all layer (``cc.competitive_layer`` +
  ``cc.sweep``), K samples as initial weights, learning rate decaying linearly 0.5 -> 0.01.

Pixels are ``uint8 / 255`` (``compclust.data.load_mnist``), nothing else. Every finished chunk of
seeds is saved atomically (``compclust.io.ResultStore``) and skipped on a rerun; the table
(``summary.json``, ``table.md``) and the pictures are rewritten, atomically, from what is on disk.
``--quick`` runs 3 seeds of short runs on at most 2,000 images, for a smoke test.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import compclust as cc
from compclust.io import ResultStore, atomic_write_bytes, atomic_write_json

N_CLUSTERS = 10
METRICS = ("accuracy", "nmi", "ari", "rand_index", "purity")
# Reported by the authors (trained on the 60,000 training images; here: the 10,000 test images).
AUTHORS = {"dnn_kmeans_faithful": {"rand_index": 0.8506, "purity": 0.4923},
           "kmeans_sklearn": {"rand_index": 0.8802, "purity": 0.5944}}
# The best DNN K-means configuration found here (2-3 seeds each, MNIST test split, 20 rounds, mean
# accuracy / purity after the last round): the authors' 1 step on the centroids 0.42 / 0.47;
# 5 steps on the centroids 0.44 / 0.48; 5 steps with 4 members per cluster 0.50 / 0.54; 10 steps
# with 8 members per cluster 0.51 / 0.54 (chosen). Members are what helps: trained on the K
# centroids alone the network learns K points, not the regions around them.
BEST = dict(steps_per_round=10, train_on="centroids+members", members_per_cluster=8)


def seed_keys(base_seed: int, start: int, stop: int):
    """Seed i's key is ``fold_in(key(base_seed), i)``: results do not depend on the chunking."""
    root = jax.random.key(base_seed)
    return jax.vmap(lambda i: jax.random.fold_in(root, i))(jnp.arange(start, stop))


def configuration(quick: bool, n_seeds: int) -> dict:
    rounds = 4 if quick else 20
    return {
        "quick": quick, "n_seeds": n_seeds, "n_clusters": N_CLUSTERS, "base_seed": 0,
        "max_samples": 2000 if quick else None,
        "methods": {
            "dnn_kmeans_faithful": {"n_rounds": rounds},
            "dnn_kmeans_best": {"n_rounds": rounds, **BEST},
            "kmeans_sklearn": {"init": "k-means++", "n_init": 1, "max_iter": 300},
            "kmeans_compclust": {"init": "kmeans++", "n_epochs": 300, "tol": 0.0},
            "competitive_layer": {"n_epochs": 1 if quick else 5, "lr": 0.5, "lr_final": 0.01,
                                  "lr_schedule": "linear", "init": "random_samples"},
        },
        "chunk": {"dnn_kmeans_faithful": 5, "dnn_kmeans_best": 5, "kmeans_sklearn": 1, "kmeans_compclust": 10,
                  "competitive_layer": 10},
    }


# ----------------------------------------------------------------------------------------------
# One chunk of seeds per method: labels [S, N], centroids [S, K, D] (+ extras)


def run_dnn(settings, data, labels, start, stop, base_seed):
    spec = cc.dnn_kmeans(N_CLUSTERS, **settings)
    result = cc.dnn_kmeans_sweep(seed_keys(base_seed, start, stop), data, spec, labels=labels)
    out = {"labels": result.labels, "centroids": result.centroids,
           "round_centroids": np.concatenate([np.asarray(result.initial_centroids)[:, None],
                                              np.asarray(result.metrics.centroids)], axis=1),
           "round_inertia": result.metrics.inertia, "round_n_empty": result.metrics.n_empty}
    for name in METRICS:
        out[f"round_{name}"] = getattr(result.metrics.labels, name)
    return out


def run_kmeans_sklearn(settings, data, labels, start, stop, base_seed):
    from sklearn.cluster import KMeans

    found = [KMeans(N_CLUSTERS, random_state=base_seed * 100_000 + seed, **settings).fit(data)
             for seed in range(start, stop)]
    return {"labels": np.stack([k.labels_ for k in found]).astype(np.int32),
            "centroids": np.stack([k.cluster_centers_ for k in found]).astype(np.float32),
            "n_iter": np.array([k.n_iter_ for k in found])}


def run_kmeans_compclust(settings, data, labels, start, stop, base_seed):
    spec = cc.kmeans(N_CLUSTERS)
    result = cc.sweep(seed_keys(base_seed + 2, start, stop), data, spec, cc.Hparams(), settings["n_epochs"],
                      init=settings["init"], tol=settings["tol"])
    weights = np.asarray(result.state.weights)
    return {"labels": np.stack([np.asarray(cc.bmu(spec, w, data)) for w in weights]), "centroids": weights,
            "n_iter": np.asarray(result.n_iter)}


def run_competitive(settings, data, labels, start, stop, base_seed):
    spec = cc.competitive_layer(N_CLUSTERS, lr_schedule=settings["lr_schedule"])
    hparams = cc.Hparams(lr=settings["lr"], lr_final=settings["lr_final"])
    result = cc.sweep(seed_keys(base_seed + 1, start, stop), data, spec, hparams, settings["n_epochs"],
                      init=settings["init"])
    weights = np.asarray(result.state.weights)
    return {"labels": np.stack([np.asarray(cc.bmu(spec, w, data)) for w in weights]), "centroids": weights}


RUNNERS = {"dnn_kmeans_faithful": run_dnn, "dnn_kmeans_best": run_dnn,
           "kmeans_sklearn": run_kmeans_sklearn, "kmeans_compclust": run_kmeans_compclust,
           "competitive_layer": run_competitive}


# ----------------------------------------------------------------------------------------------
# Summaries, table, pictures


def mean_ci(values) -> dict:
    """Mean, half-width of the 95% Student-t interval, minimum and count of per-seed values."""
    from scipy import stats

    values = np.asarray(values, np.float64)
    n = len(values)
    half = float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return {"mean": float(values.mean()), "ci95": half, "min": float(values.min()), "n": n}


def claim_folder(out: Path, config: dict) -> None:
    """Record ``config`` in ``out/config.json`` (atomically), refusing a folder that holds results of
    another configuration: a rerun with the same arguments resumes, a different one cannot mix in."""
    config_path = out / "config.json"
    if config_path.exists() and json.loads(config_path.read_text()) != json.loads(json.dumps(config)):
        raise ValueError(f"{out} holds results of another configuration ({config_path}); use another --out")
    atomic_write_json(config_path, config)


def _cell(stat) -> str:
    return f"{stat['mean']:.4f} ± {stat['ci95']:.4f}" if np.isfinite(stat["ci95"]) else f"{stat['mean']:.4f}"


def markdown_table(summary: dict) -> str:
    lines = ["| method | seeds | ACC | NMI | ARI | Rand index | purity | authors' RI | authors' purity | s / seed |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in summary["methods"].items():
        authors = AUTHORS.get(name, {})
        cells = [_cell(row["metrics"][m]) for m in METRICS]
        lines.append(f"| {name} | {row['seeds']} | " + " | ".join(cells) + " | "
                     f"{authors.get('rand_index', '–')} | {authors.get('purity', '–')} | {row['seconds_per_seed']:.2f} |")
    return "\n".join(lines) + "\n"


def _image_grid(rows, titles, path, row_labels):
    """Rows of 28x28 centroid images: ``rows [R, K, 784]``."""
    from matplotlib.figure import Figure

    from compclust.plots import save_figure

    n_rows, n_cols = len(rows), rows[0].shape[0]
    fig = Figure(figsize=(1.0 * n_cols + 1.6, 1.05 * n_rows + 0.5))
    for r, (row, label) in enumerate(zip(rows, row_labels)):
        for k in range(n_cols):
            ax = fig.add_subplot(n_rows, n_cols, r * n_cols + k + 1)
            ax.imshow(np.asarray(row[k]).reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if k == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(titles, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()))  # keep the title above the images
    save_figure(fig, path, dpi=80)


# ----------------------------------------------------------------------------------------------


def run(mnist_dir=None, out="results/dnn_kmeans", quick=False, n_seeds=None) -> dict:
    began = time.perf_counter()
    n_seeds = (3 if quick else 10) if n_seeds is None else int(n_seeds)
    if n_seeds < 1:
        raise ValueError(f"--seeds must be positive, got {n_seeds}")
    config = configuration(quick, n_seeds)
    out = Path(out)
    claim_folder(out, config)

    data, labels = cc.data.load_mnist(mnist_dir, split="test")
    if config["max_samples"] is not None:
        data, labels = data[:config["max_samples"]], labels[:config["max_samples"]]
    if len(data) < N_CLUSTERS:
        raise ValueError(f"need at least {N_CLUSTERS} images, the folder holds {len(data)}")
    print(f"MNIST test split: {len(data)} images; {n_seeds} seeds per method; results in {out}", flush=True)

    store = ResultStore(out / "runs")
    for method, settings in config["methods"].items():
        chunk = config["chunk"][method]
        for start in range(0, n_seeds, chunk):
            stop = min(start + chunk, n_seeds)
            name = f"{method}-{start:03d}-{stop:03d}"
            if store.has(name):
                print(f"  {method} seeds {start}..{stop - 1}: done before, skipped", flush=True)
                continue
            t0 = time.perf_counter()
            result = RUNNERS[method](settings, data, labels, start, stop, config["base_seed"])
            result = jax.tree.map(np.asarray, result)
            result["seconds"] = np.float64(time.perf_counter() - t0)
            store.save(name, result)
            print(f"  {method} seeds {start}..{stop - 1}: {result['seconds']:.1f} s", flush=True)

    summary = {"config": config, "n_samples": int(len(data)), "methods": {}}
    loaded = {}
    for method in config["methods"]:
        chunk = config["chunk"][method]
        parts = [store.load(f"{method}-{s:03d}-{min(s + chunk, n_seeds):03d}") for s in range(0, n_seeds, chunk)]
        loaded[method] = parts
        predicted = np.concatenate([p["labels"] for p in parts])  # [S, N]
        judged = cc.evaluate_labels(labels, predicted, N_CLUSTERS, N_CLUSTERS)  # all seeds in one call
        row = {"seeds": int(len(predicted)), "metrics": {m: mean_ci(getattr(judged, m)) for m in METRICS},
               "per_seed": {m: np.asarray(getattr(judged, m)).tolist() for m in METRICS},
               "seconds_per_seed": float(sum(float(p["seconds"]) for p in parts) / len(predicted))}
        if method.startswith("dnn"):
            rounds = np.concatenate([p["round_accuracy"] for p in parts])
            row["per_round_accuracy_mean"] = rounds.mean(axis=0).tolist()
            row["per_round_rand_index_mean"] = np.concatenate([p["round_rand_index"] for p in parts]).mean(0).tolist()
            row["empty_clusters_at_end"] = np.concatenate([p["round_n_empty"] for p in parts])[:, -1].tolist()
        if method in AUTHORS:
            row["authors"] = AUTHORS[method]
        summary["methods"][method] = row

    _image_grid([loaded[m][0]["centroids"][0] for m in config["methods"]],
                "final centroids (seed 0) of each method", out / "centroids.png", list(config["methods"]))
    history = loaded["dnn_kmeans_faithful"][0]["round_centroids"][0]  # [R + 1, K, D]
    _image_grid(history, "faithful DNN K-means (seed 0): centroids round by round", out / "faithful_rounds.png",
                ["start"] + [f"round {r}" for r in range(1, len(history))])

    summary["wall_seconds_this_call"] = time.perf_counter() - began
    summary["backend"] = jax.default_backend()
    atomic_write_json(out / "summary.json", summary)
    table = markdown_table(summary)
    note = (f"MNIST test split, {len(data)} images, {n_seeds} seeds, mean ± 95% CI (Student t). The authors' "
            "numbers come from training on the 60,000 training images.\n\n")
    atomic_write_bytes(out / "table.md", (note + table).encode())
    print(table, flush=True)
    print(f"wall time of this call: {summary['wall_seconds_this_call']:.1f} s", flush=True)
    return summary


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mnist-dir", default=None, help="folder of MNIST's IDX .gz files (default: "
                        "$COMPCLUST_MNIST_DIR)")
    parser.add_argument("--quick", action="store_true", help="3 seeds of short runs on <= 2,000 images")
    parser.add_argument("--out", default=None, help="results folder (default results/dnn_kmeans, "
                        "results/dnn_kmeans_quick with --quick)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per method (default 10; 3 with --quick)")
    args = parser.parse_args(argv)
    if args.mnist_dir is None and not os.environ.get("COMPCLUST_MNIST_DIR"):
        parser.error("give --mnist-dir or set COMPCLUST_MNIST_DIR")
    out = args.out or ("results/dnn_kmeans_quick" if args.quick else "results/dnn_kmeans")
    return run(args.mnist_dir, out, args.quick, args.seeds)


if __name__ == "__main__":
    main()
