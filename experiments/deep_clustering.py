"""Deep clustering on the MNIST test split, against K-means on pixels and the seed's DNN K-means.

    python -m experiments.deep_clustering --mnist-dir ../shared/data/mnist      # 5 seeds, ~15 min each
    python -m experiments.deep_clustering --quick                                # < 1 min, 8x8 digits

For every seed: one autoencoder (DEC's 784-500-500-2000-10, images shifted by up to 3 pixels, 150
epochs) is pretrained and shared by the methods built on it; each method's wall time per seed counts
that pretraining. Methods:

- ``kmeans_pixels``: compclust's Lloyd K-means on the pixels, k-means++, best of 10 by inertia.
- ``dnn_kmeans``: the seed's DNN K-means (the authors' configuration, ``compclust.dnn_kmeans``).
- ``ae+kmeans``: compclust K-means on the embedding.
- ``dec`` / ``idec``: DEC / IDEC fine-tuning from ``ae+kmeans`` (with the image shifts: DEC-DA's way).
- ``n2d``: the embedding through UMAP (10 dimensions, 10 neighbours, min_dist 0), then K-means.
- ``desom``: the deep SOM (8x8 map), its units grouped by K-means.
- ``best``: N2D, then IDEC with image shifts (DEC-DA's fine-tuning) started from the N2D clusters
  (method ``"ae+umap+idec"``); 3 UMAP maps of the embedding, each clustered, and the clustering that
  agrees most with the other two kept (``compclust.deep.select``): no labels are used.

Everything a seed finishes is written atomically under ``--out`` (``runs/<method>-seed<i>.npz``), and a
rerun with the same arguments skips it; another configuration in the same folder is refused. The end:
``summary.json``, ``table.md`` (ACC, NMI, ARI: mean, 95% interval, minimum), the confusion matrix of
the best run and the deep SOM's map as pictures.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import compclust as cc
from compclust import deep
from compclust.io import ResultStore, atomic_write_bytes, atomic_write_json
from experiments.dnn_kmeans import claim_folder, mean_ci

METRICS = ("accuracy", "nmi", "ari")
METHODS = ("kmeans_pixels", "dnn_kmeans", "ae+kmeans", "dec", "idec", "n2d", "desom", "best")
# Published figures (ACC, NMI). N2D and DEC-DA report the MNIST test split; DEC the full 70,000.
PUBLISHED = {"n2d": {"accuracy": 0.948, "nmi": 0.882, "source": "N2D (McConville et al. 2020), test split"},
             "idec": {"accuracy": 0.983, "nmi": 0.958, "source": "DEC-DA (Guo et al. 2018), test split"},
             "dec": {"accuracy": 0.84, "source": "DEC (Xie et al. 2016), all 70,000 images"}}
# Methods that run on the seed's shared autoencoder, and the pipeline method each one is.
ON_AUTOENCODER = {"ae+kmeans": "ae+cluster", "dec": "dec", "idec": "idec", "n2d": "ae+umap+cluster",
                  "desom": "desom", "best": "ae+umap+idec"}


def configuration(quick: bool, n_seeds: int) -> dict:
    if quick:  # scikit-learn's 8x8 digits, a small autoencoder: every code path in well under a minute
        return {"quick": True, "n_seeds": n_seeds, "data": "digits", "n_clusters": 10, "image_shape": [8, 8],
                "hidden": [64, 64, 128], "embedding_dim": 10, "epochs": 60, "batch_size": 64, "shift": 1, "restarts": 3,
                "dec_max_updates": 3, "dec_update_interval": 20, "desom_steps": 100, "desom_grid": [5, 5],
                "desom_gamma": 0.01, "desom_radius": [2.0, 0.1],
                "umap_restarts": 3,
                "dnn_rounds": 3, "max_samples": 600}
    return {"quick": False, "n_seeds": n_seeds, "data": "mnist-test", "n_clusters": 10, "image_shape": [28, 28],
            "hidden": list(deep.DEC_HIDDEN), "embedding_dim": 10, "epochs": 150, "batch_size": 256, "shift": 3, "restarts": 3,
            "dec_max_updates": 30, "dec_update_interval": 140, "desom_steps": 3000, "desom_grid": [8, 8],
            "desom_gamma": 0.01, "desom_radius": [2.0, 0.1],
            "umap_restarts": 3,
            "dnn_rounds": 20, "max_samples": None}


def deep_config(config: dict, method: str) -> deep.DeepConfig:
    shape = tuple(config["image_shape"])
    return deep.DeepConfig(
        n_clusters=config["n_clusters"], method=method, embedding_dim=config["embedding_dim"],
        umap_restarts=config["umap_restarts"] if method == "ae+umap+idec" else 1,
        hidden=tuple(config["hidden"]),
        pretrain=deep.PretrainConfig(epochs=config["epochs"], batch_size=config["batch_size"], shift=config["shift"],
                                     image_shape=shape),
        dec=deep.DECConfig(max_updates=config["dec_max_updates"], update_interval=config["dec_update_interval"],
                           batch_size=config["batch_size"], shift=config["shift"], image_shape=shape),
        desom=deep.DESOMConfig(grid=cc.Grid(tuple(config["desom_grid"])), steps=config["desom_steps"],
                               gamma=config["desom_gamma"], radius_start=config["desom_radius"][0],
                               radius_end=config["desom_radius"][1], batch_size=config["batch_size"], shift=config["shift"], image_shape=shape))


def load(config: dict, mnist_dir):
    if config["data"] == "digits":
        data, labels = cc.data.load_digits()
        data = np.asarray(data, np.float32) / 16.0
    else:
        data, labels = cc.data.load_mnist(mnist_dir, split="test")
        data = np.asarray(data, np.float32).reshape(len(data), -1)
    if config["max_samples"]:
        data, labels = data[:config["max_samples"]], labels[:config["max_samples"]]
    return data, np.asarray(labels, np.int32)


def seed_key(seed: int):
    return jax.random.fold_in(jax.random.key(0), seed)


# ----------------------------------------------------------------------------------------------
# One (method, seed): {"labels": [N], "seconds": s, ...}


def run_kmeans_pixels(config, data, seed):
    spec = cc.kmeans(config["n_clusters"])
    best = cc.restarts(jax.random.split(seed_key(seed), 10), data, spec, cc.Hparams(), 300, tol=1e-4).best
    return {"labels": np.asarray(cc.bmu(spec, best.state.weights, data))}


def run_dnn_kmeans(config, data, seed):
    # The authors' CNN needs 28x28 images; the quick run's 8x8 digits take the MLP.
    spec = cc.dnn_kmeans(config["n_clusters"], n_rounds=config["dnn_rounds"],
                         network="mlp" if config["quick"] else "cnn", image_shape=tuple(config["image_shape"]) + (1,))
    return {"labels": np.asarray(cc.dnn_kmeans_fit(seed_key(seed), data, spec).labels)}


def pretrained_for(store, config, data, seed):
    """The seed's shared autoencoder (pretrained once, kept in the store)."""
    from flax import serialization

    cfg = deep_config(config, "ae+cluster")
    name = f"autoencoder-seed{seed}"
    model = cfg.autoencoder(data.shape[1])
    if store.has(name):
        saved = store.load(name)
        template = jax.eval_shape(model.init, seed_key(seed), data[:1])  # the parameters' structure only
        params = serialization.from_bytes(template, saved["params"].tobytes())
        return deep.Pretrained(params, jnp.asarray(saved["losses"])), float(saved["seconds"])
    began = time.perf_counter()
    pretrained = deep.pretrain(jax.random.split(seed_key(seed), 4)[0], data, model, cfg.pretrain)
    jax.block_until_ready(pretrained)
    seconds = time.perf_counter() - began
    store.save(name, {"params": np.frombuffer(serialization.to_bytes(pretrained.params), np.uint8),
                      "losses": np.asarray(pretrained.losses), "seconds": np.float64(seconds)})
    return pretrained, seconds


def run_on_autoencoder(config, data, seed, method, pretrained, pretrain_seconds):
    result = deep.run(seed_key(seed), data, deep_config(config, ON_AUTOENCODER[method]), pretrained=pretrained)
    out = {"labels": result.labels, "seconds": pretrain_seconds + result.seconds}
    if method == "best":
        out.update(umap_chosen=np.int32(result.extra["umap_chosen"]), umap_labels=result.extra["umap_labels"],
                   start_labels=result.extra["start_labels"])
    if method == "desom":
        model = deep_config(config, "desom").autoencoder(data.shape[1])
        out["prototype_images"] = np.asarray(deep.decode_prototypes(model, result.params, result.extra["prototypes"]))
        out["unit_labels"] = result.extra["unit_labels"]
        out["units"] = result.extra["units"]
    return out


# ----------------------------------------------------------------------------------------------
# Summary, table, pictures


def _cell(stat) -> str:
    interval = f" ± {stat['ci95']:.3f}" if np.isfinite(stat["ci95"]) else ""
    return f"{stat['mean']:.3f}{interval} (min {stat['min']:.3f})"


def markdown_table(summary: dict) -> str:
    lines = ["| method | seeds | ACC | NMI | ARI | published ACC / NMI | s / seed |", "|---|---|---|---|---|---|---|"]
    for name, row in summary["methods"].items():
        published = PUBLISHED.get(name)
        cite = (f"{published['accuracy']} / {published.get('nmi', '–')} ({published['source']})" if published else "–")
        cells = " | ".join(_cell(row["metrics"][m]) for m in METRICS)
        lines.append(f"| {name} | {row['seeds']} | {cells} | {cite} | {row['seconds_per_seed']:.0f} |")
    return "\n".join(lines) + "\n"


def pictures(out: Path, labels, best_labels, desom, config):
    from compclust.plots import plot_weights_as_images, save_figure
    from matplotlib.figure import Figure

    k = config["n_clusters"]
    table = np.asarray(cc.contingency(labels, best_labels, k, k))  # [true, cluster]
    rows, cols = cc.label_metrics.linear_sum_assignment(-table)
    order = np.asarray(cols)[np.argsort(np.asarray(rows))]  # cluster matched to each digit
    fig = Figure(figsize=(5.2, 4.6))
    ax = fig.add_subplot(1, 1, 1)
    shown = table[:, order]
    ax.imshow(shown, cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(int(shown[i, j])), ha="center", va="center", fontsize=6,
                    color="white" if shown[i, j] > shown.max() / 2 else "black")
    ax.set_xticks(range(k), [str(int(c)) for c in order], fontsize=7)
    ax.set_yticks(range(k), [str(i) for i in range(k)], fontsize=7)
    ax.set_xlabel("cluster (matched to the digit by the Hungarian method)")
    ax.set_ylabel("digit")
    ax.set_title("best pipeline, seed with the highest ACC: confusion matrix", fontsize=9)
    save_figure(fig, out / "confusion_best.png", dpi=100)
    spec = cc.som(tuple(config["desom_grid"]))
    fig = plot_weights_as_images(desom["prototype_images"], tuple(config["image_shape"]), spec)
    fig.suptitle("deep SOM (seed 0): the map's prototypes decoded")
    save_figure(fig, out / "desom_map.png", dpi=100)


# ----------------------------------------------------------------------------------------------


def run(mnist_dir=None, out="results/deep_clustering", quick=False, n_seeds=None, methods=METHODS) -> dict:
    began = time.perf_counter()
    n_seeds = (2 if quick else 5) if n_seeds is None else int(n_seeds)
    if n_seeds < 1:
        raise ValueError(f"--seeds must be positive, got {n_seeds}")
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    config = configuration(quick, n_seeds)
    out = Path(out)
    claim_folder(out, config)
    data, labels = load(config, mnist_dir)
    print(f"{config['data']}: {len(data)} images; {n_seeds} seeds; methods {', '.join(methods)}; results in {out}",
          flush=True)

    store = ResultStore(out / "runs")
    for seed in range(n_seeds):
        pretrained = None
        for method in methods:
            name = f"{method}-seed{seed}"
            if store.has(name):
                continue
            t0 = time.perf_counter()
            if method == "kmeans_pixels":
                result = run_kmeans_pixels(config, data, seed)
            elif method == "dnn_kmeans":
                result = run_dnn_kmeans(config, data, seed)
            else:
                if pretrained is None:
                    pretrained, pretrain_seconds = pretrained_for(store, config, data, seed)
                result = run_on_autoencoder(config, data, seed, method, pretrained, pretrain_seconds)
            result.setdefault("seconds", time.perf_counter() - t0)
            result["seconds"] = np.float64(result["seconds"])
            store.save(name, result)
            acc = float(cc.accuracy(labels, result["labels"], config["n_clusters"], config["n_clusters"]))
            print(f"  seed {seed} {method}: ACC {acc:.4f}, {result['seconds']:.0f} s", flush=True)

    summary = {"config": config, "n_samples": int(len(data)), "methods": {}}
    for method in methods:
        runs = [store.load(f"{method}-seed{s}") for s in range(n_seeds)]
        predicted = np.stack([r["labels"] for r in runs])
        judged = cc.evaluate_labels(labels, predicted, config["n_clusters"], config["n_clusters"])
        summary["methods"][method] = {
            "seeds": n_seeds, "metrics": {m: mean_ci(getattr(judged, m)) for m in METRICS},
            "per_seed": {m: np.asarray(getattr(judged, m)).tolist() for m in METRICS},
            "seconds_per_seed": float(np.mean([float(r["seconds"]) for r in runs])),
            **({"published": PUBLISHED[method]} if method in PUBLISHED else {})}
        if method == "desom":  # DESOM's own figure: the purity of its map's units
            n_units = int(np.prod(config["desom_grid"]))
            summary["methods"][method]["map_purity"] = mean_ci(
                [float(cc.majority_accuracy(labels, r["units"], config["n_clusters"], n_units)) for r in runs])
        if method == "best":  # how the unsupervised choice among the UMAP maps did
            summary["methods"][method]["umap_chosen"] = [int(r["umap_chosen"]) for r in runs]
            summary["methods"][method]["umap_restart_accuracy"] = [
                np.asarray(cc.evaluate_labels(labels, r["umap_labels"], 10, 10).accuracy).tolist() for r in runs]
            summary["methods"][method]["accuracy_before_idec"] = [
                float(cc.accuracy(labels, r["start_labels"], 10, 10)) for r in runs]
    if "best" in methods and "desom" in methods:
        best_acc = summary["methods"]["best"]["per_seed"]["accuracy"]
        top = int(np.argmax(best_acc))
        pictures(out, labels, store.load(f"best-seed{top}")["labels"], store.load("desom-seed0"), config)
    summary["wall_seconds_this_call"] = time.perf_counter() - began
    summary["backend"] = jax.default_backend()
    atomic_write_json(out / "summary.json", summary)
    note = (f"{config['data']}, {len(data)} images, {n_seeds} seeds; mean ± 95% interval (Student t) and the "
            "minimum over seeds; s / seed includes the shared autoencoder's pretraining.\n\n")
    table = markdown_table(summary)
    if "desom" in summary["methods"]:
        table += (f"\nThe deep SOM's {'x'.join(map(str, config['desom_grid']))} map itself (each unit labelled by "
                  f"its majority digit): purity {_cell(summary['methods']['desom']['map_purity'])}.\n")
    atomic_write_bytes(out / "table.md", (note + table).encode())
    print(table, flush=True)
    print(f"wall time of this call: {summary['wall_seconds_this_call']:.1f} s", flush=True)
    return summary


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mnist-dir", default=None, help="folder of MNIST's IDX .gz files (default: "
                        "$COMPCLUST_MNIST_DIR)")
    parser.add_argument("--quick", action="store_true", help="2 seeds of tiny runs on 600 8x8 digits (no MNIST)")
    parser.add_argument("--out", default=None, help="results folder (default results/deep_clustering[_quick])")
    parser.add_argument("--seeds", type=int, default=None, help="seeds (default 5; 2 with --quick)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {METHODS}")
    args = parser.parse_args(argv)
    if not args.quick and args.mnist_dir is None and not os.environ.get("COMPCLUST_MNIST_DIR"):
        parser.error("give --mnist-dir or set COMPCLUST_MNIST_DIR (or use --quick)")
    out = args.out or ("results/deep_clustering_quick" if args.quick else "results/deep_clustering")
    methods = tuple(m for m in args.methods.split(",") if m)
    return run(args.mnist_dir, out, args.quick, args.seeds, methods)


if __name__ == "__main__":
    main()
