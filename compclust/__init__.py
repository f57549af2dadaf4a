"""compclust: competitive neural networks (online K-means, conscience layers, Kohonen SOMs) as
pure JAX functions, compiled once and run over many seeds and hyperparameters at a time."""
from . import data, io
from .loop import EpochMetrics, FitResult, State, StepMetrics, fit, init, step, sweep
from .metrics import Evaluation, bmu, distances, evaluate, grid_position, quantize
from .preprocessing import Scaler, fit_scaler, inverse_transform, transform
from .spec import Grid, Hparams, Spec, competitive_layer, som

__all__ = [
    "Spec", "Grid", "Hparams", "competitive_layer", "som",
    "State", "StepMetrics", "EpochMetrics", "FitResult", "init", "step", "fit", "sweep",
    "Evaluation", "bmu", "distances", "evaluate", "grid_position", "quantize",
    "Scaler", "fit_scaler", "transform", "inverse_transform",
]
