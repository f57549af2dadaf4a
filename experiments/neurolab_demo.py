"""neurolab's competitive-layer demo, reproduced with compclust and checked against scikit-learn.

Five 3-D Gaussian blobs (``compclust.data.make_blobs``: 100 points each, noise 0.8 * N(0, 1)) are
shuffled once, as neurolab's example does with ``rand.shuffle(inp)``, and divided by their Frobenius
norm. A 5-unit conscience layer (neurolab's ``newc`` + ``train_cwta``: lr 0.01, samples in data order
every epoch) starts from 5 random samples. "E epochs" means E learning passes; neurolab checks its
epoch limit before learning, so its equivalent call is ``net.train(epochs=E + 1)``. The recovered centroids are scaled back to the original units, matched
to the true centres with the Hungarian method and compared with KMeans on the same scaled data.

Without the shuffle (blobs one after another) the conscience rule, which forces every unit to win
equally often within each pass, leaves the units between blobs; ``--blob-order`` shows it.

    python -m experiments.neurolab_demo --epochs 100 1000 --out-dir results
"""
from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np

import compclust
from compclust.data import BLOB_CENTRES, make_blobs
from compclust.io import atomic_write_json

N_UNITS = 5
LEARNING_RATE = 0.01  # neurolab's train_cwta default


def match_centres(true_centres, found_centres) -> dict:
    """Pair found with true centres (Hungarian method on Euclidean distance) and measure the errors.

    ``centres[i]`` is the found centre matched to ``true_centres[i]``, ``errors[i]`` their distance.
    """
    from scipy.optimize import linear_sum_assignment

    true_centres = np.asarray(true_centres, np.float64)
    found_centres = np.asarray(found_centres, np.float64)
    cost = np.linalg.norm(true_centres[:, None, :] - found_centres[None, :, :], axis=-1)
    rows, cols = linear_sum_assignment(cost)
    errors = cost[rows, cols]
    return {"centres": found_centres[cols].tolist(), "errors": errors.tolist(),
            "mean_error": float(errors.mean()), "max_error": float(errors.max())}


def run(seed: int = 0, epochs=(100, 1000), out_dir="results", plot: bool = True, shuffle: bool = True) -> dict:
    """Train the conscience layer for each epoch count in ``epochs`` and KMeans once.

    Returns a JSON-serialisable dict (also written to ``out_dir/neurolab_demo.json``) with the
    matched centres in original units, their errors, timings and the files written.
    """
    from sklearn.cluster import KMeans

    epochs = [int(e) for e in epochs]
    if not epochs or min(epochs) < 1:
        raise ValueError(f"epochs must be positive integers, got {epochs}")
    points, _ = make_blobs(seed)
    if shuffle:
        points = points[np.random.default_rng(seed).permutation(len(points))]
    scaler = compclust.fit_scaler(points, "global_norm")
    data = compclust.transform(scaler, points)
    spec = compclust.competitive_layer(N_UNITS, winner="conscience")
    hparams = compclust.Hparams(lr=LEARNING_RATE)
    order = np.arange(len(data))  # neurolab visits the samples in data order every epoch

    runs, found = {}, {}
    for n_epochs in epochs:
        start = time.perf_counter()
        # One key for every run: the same 5 initial samples, so longer runs extend shorter ones.
        result = compclust.fit(jax.random.key(seed), data, spec, hparams, n_epochs, order=order, progress=True)
        weights = np.asarray(jax.block_until_ready(result.state.weights))
        seconds = time.perf_counter() - start
        centres = compclust.inverse_transform(scaler, weights)
        name = f"conscience_{n_epochs}"
        runs[name] = {"method": f"conscience layer, {n_epochs} epochs", "epochs": n_epochs,
                      "neurolab_equivalent": f"net.train(epochs={n_epochs + 1})", "seconds": seconds,
                      "dead_units": int(result.metrics.dead_units[-1]), **match_centres(BLOB_CENTRES, centres)}
        found[f"conscience, {n_epochs} epochs"] = centres

    start = time.perf_counter()
    kmeans = KMeans(n_clusters=N_UNITS, n_init=10, random_state=seed).fit(data)
    centres = compclust.inverse_transform(scaler, kmeans.cluster_centers_)
    runs["kmeans"] = {"method": "scikit-learn KMeans(n_init=10)", "seconds": time.perf_counter() - start,
                      **match_centres(BLOB_CENTRES, centres)}
    found["KMeans"] = centres

    files = {}
    if plot:
        from compclust.plots import plot_blobs_3d

        files["png"] = plot_blobs_3d(points, BLOB_CENTRES, found, os.path.join(os.fspath(out_dir), "neurolab_demo.png"),
                                     title=f"neurolab conscience demo (seed {seed})")
    files["json"] = os.path.join(os.fspath(out_dir), "neurolab_demo.json")
    summary = {"seed": seed, "n_points": int(len(points)), "noise": 0.8, "shuffled": shuffle,
               "norm": float(scaler.scale[0]), "learning_rate": LEARNING_RATE,
               "true_centres": BLOB_CENTRES.tolist(), "runs": runs, "files": files}
    atomic_write_json(files["json"], summary)
    return summary


def format_table(summary: dict) -> str:
    """A readable report: one line per method, then each true centre beside what each method found."""
    lines = [f"neurolab conscience demo: seed {summary['seed']}, {summary['n_points']} points, "
             f"{'shuffled' if summary['shuffled'] else 'blob'} order, norm {summary['norm']:.2f}",
             f"{'method':<40}{'mean err':>10}{'max err':>10}{'time s':>9}"]
    for run_ in summary["runs"].values():
        lines.append(f"{run_['method']:<40}{run_['mean_error']:>10.3f}{run_['max_error']:>10.3f}"
                     f"{run_['seconds']:>9.2f}")
    names = list(summary["runs"])
    lines.append("")
    lines.append(f"{'true centre':<18}" + "".join(f"{name:>28}" for name in names))
    for i, centre in enumerate(summary["true_centres"]):
        cells = []
        for name in names:
            found, error = summary["runs"][name]["centres"][i], summary["runs"][name]["errors"][i]
            cells.append(f"{'(' + ', '.join(f'{v:5.2f}' for v in found) + ')'} {error:5.2f}".rjust(28))
        lines.append(f"{str(tuple(int(v) for v in centre)):<18}" + "".join(cells))
    lines.append("")
    lines.extend(f"{kind}: {path}" for kind, path in summary["files"].items())
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, nargs="+", default=[100, 1000],
                        help="learning passes (neurolab's equivalent: train(epochs=E + 1))")
    parser.add_argument("--out-dir", default="results")
    parser.add_argument("--no-plot", action="store_true", help="skip the 3-D PNG")
    parser.add_argument("--blob-order", action="store_true",
                        help="keep the blobs one after another instead of shuffling them once")
    args = parser.parse_args(argv)
    summary = run(seed=args.seed, epochs=args.epochs, out_dir=args.out_dir, plot=not args.no_plot,
                  shuffle=not args.blob_order)
    print(format_table(summary))
    return summary


if __name__ == "__main__":
    compclust.fast_cpu_loops(strict=False)  # XLA:CPU loop hoisting, before JAX starts (compclust.fast_loops)
    main()
