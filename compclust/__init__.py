"""compclust: competitive neural networks (online K-means, conscience layers, Kohonen SOMs) as
pure JAX functions, compiled once and run over many seeds and hyperparameters at a time.

``COMPCLUST_FAST_LOOPS=1`` in the environment turns on ``fast_cpu_loops()`` at import (see
``compclust.fast_loops``)."""
from .fast_loops import _from_environment, fast_cpu_loops

_from_environment()  # before anything below could start JAX's backend
from . import data, io, label_metrics
from .loop import EpochMetrics, FitResult, Restarts, State, StepMetrics, fit, init, restarts, step, sweep
from .metrics import Evaluation, bmu, distances, evaluate, grid_position, impute, quantize
from .preprocessing import Scaler, fit_scaler, inverse_transform, transform
from .persist import Model, load, save
from .spec import Grid, Hparams, Spec, competitive_layer, kmeans, neural_gas, som
from .streaming import StreamResult, evaluate_stream, fit_stream
from .label_metrics import (LabelMetrics, accuracy, ari, contingency, majority_accuracy, majority_labels, nmi,
                            purity, rand_index)
from .label_metrics import label_metrics as evaluate_labels  # the module keeps the name label_metrics

__all__ = [
    "Spec", "Grid", "Hparams", "competitive_layer", "som", "kmeans", "neural_gas",
    "State", "StepMetrics", "EpochMetrics", "FitResult", "Restarts", "init", "step", "fit", "sweep", "restarts",
    "Evaluation", "bmu", "distances", "evaluate", "grid_position", "quantize", "impute",
    "Scaler", "fit_scaler", "transform", "inverse_transform", "fast_cpu_loops",
]
__all__ += ["StreamResult", "fit_stream", "evaluate_stream"]
__all__ += ["label_metrics", "LabelMetrics", "evaluate_labels", "contingency", "accuracy", "nmi", "ari", "rand_index",
            "purity", "majority_accuracy", "majority_labels"]

# DNN K-means imports flax, so its names load on first use: `import compclust` stays flax-free.
_DNN_KMEANS = {"dnn_kmeans": "dnn_kmeans", "DNNKMeansSpec": "DNNKMeansSpec", "DNNKMeansResult": "DNNKMeansResult",
               "dnn_kmeans_fit": "fit", "dnn_kmeans_sweep": "sweep"}
__all__ += list(_DNN_KMEANS)


# scikit-learn estimators (compclust.estimators) load on first use: importing sklearn costs ~1 s.
__all__ += ["Model", "save", "load", "estimators"]
# Deep clustering (compclust.deep) imports flax and, for its UMAP methods, umap-learn: on first use too.
__all__ += ["deep"]


def __getattr__(name):
    if name in ("estimators", "deep"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    if name in _DNN_KMEANS:
        from .algorithms import dnn_kmeans as module
        return getattr(module, _DNN_KMEANS[name])
    raise AttributeError(f"module 'compclust' has no attribute {name!r}")
