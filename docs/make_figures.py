"""Regenerate the README's pictures in docs/ (about a minute on a 2-core CPU; the MNIST picture
needs the test split in COMPCLUST_MNIST_DIR and is skipped without it).

    python docs/make_figures.py
"""
from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

import compclust as cc
from compclust import plots

HERE = Path(__file__).resolve().parent
DPI = 80


def shrink(path, colours: int = 128):
    """Re-save a PNG with a palette of ``colours`` (about a third of the bytes; needs Pillow)."""
    try:
        from PIL import Image
    except ImportError:
        return path
    image = Image.open(path).convert("RGB").quantize(colors=colours, method=Image.Quantize.MEDIANCUT)
    image.save(path, optimize=True)
    return path


def som_digits():
    """A 12x12 hexagonal SOM on the 1,797 digits: its units as images and its label map."""
    images, digits = cc.data.load_digits()
    X = cc.transform(cc.fit_scaler(images, "minmax"), images).astype(np.float32)
    spec = cc.som((12, 12), topology="hexagonal")
    som = cc.fit(jax.random.key(0), X, spec, cc.Hparams(lr=0.5, sigma=4.0), 20, init="pca")
    fig = Figure(figsize=(11.5, 5.0), layout="constrained")
    left, right = fig.subplots(1, 2)
    plots.plot_weights_as_images(som.state.weights, (8, 8), spec, ax=left)
    left.set_title("units as 8x8 images", fontsize=9)
    plots.plot_label_map(spec, som.state.weights, X, digits, ax=right)
    fig.suptitle("12x12 hexagonal SOM on scikit-learn's digits (cc.som, 20 epochs)", fontsize=10)
    return plots.save_figure(fig, HERE / "som_digits.png", dpi=DPI)


def som_mnist():
    """A 20x20 batch SOM on MNIST's 10,000 test images, its units as 28x28 images on the grid."""
    try:
        images, _ = cc.data.load_mnist()
    except ValueError as error:
        print("skipping the MNIST picture:", error)
        return None
    spec = cc.som((20, 20), algorithm="batch", sigma_schedule="linear")
    som = cc.fit(jax.random.key(0), images, spec, cc.Hparams(sigma=8.0, sigma_final=1.0), 20, init="pca")
    fig = plots.plot_weights_as_images(som.state.weights, (28, 28), spec)
    fig.set_size_inches(7.0, 7.0)
    fig.axes[0].set_title("20x20 batch SOM on the MNIST test split (cc.som(..., algorithm='batch'))", fontsize=9)
    return plots.save_figure(fig, HERE / "som_mnist.png", dpi=DPI)


def sweep_curves():
    """64 seeds x 4 radii of a 10x10 SOM on the digits in one cc.sweep: curves and final spread."""
    images, _ = cc.data.load_digits()
    X = cc.transform(cc.fit_scaler(images, "minmax"), images).astype(np.float32)
    spec = cc.som((10, 10), topology="hexagonal")
    sigmas = jnp.array([1.0, 2.0, 3.0, 5.0])
    keys = jax.random.split(jax.random.key(0), 64)
    swept = cc.sweep(keys, X, spec, cc.Hparams(lr=0.5, sigma=sigmas), 10)
    settings = [f"sigma0={s:g}" for s in np.asarray(sigmas)]
    fig = Figure(figsize=(11.5, 3.2), layout="constrained")
    axes = fig.subplots(1, 3)
    plots.plot_training_curves(swept, ["quantization_error", "topographic_error"], settings=settings, ax=axes[:2])
    plots.plot_final_metrics(swept, "topographic_error", settings=settings, ax=axes[2])
    fig.suptitle("64 seeds x 4 radii, one compiled cc.sweep: mean and 95% band over seeds, final spread", fontsize=10)
    return plots.save_figure(fig, HERE / "sweep_curves.png", dpi=DPI)


if __name__ == "__main__":
    for make in (som_digits, som_mnist, sweep_curves):
        path = make()
        print(path and shrink(path))
