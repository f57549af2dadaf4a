"""Deep clustering pipelines: learn a representation, cluster it with compclust, optionally fine-tune.

Methods (``DeepConfig.method``):

- ``"ae+cluster"``: pretrain the autoencoder, cluster its embedding with a compclust algorithm
  (``DeepConfig.clusterer``: K-means by default, or any compclust spec: competitive layer, SOM, ...).
- ``"ae+umap+cluster"`` (N2D, McConville et al. 2020): the embedding mapped by UMAP (``umap-learn``,
  which preserves local neighbourhoods) before the compclust clustering.
- ``"dec"`` / ``"idec"``: the ``"ae+cluster"`` clustering refined by DEC or IDEC (``deep.dec``), with the
  reconstruction term (IDEC) or without (DEC); augmented when ``dec.shift > 0`` (DEC-DA).
- ``"ae+umap+idec"``: IDEC started from the N2D clustering (each centre the embedding mean of an
  N2D cluster): UMAP finds the clusters, IDEC sharpens them in the autoencoder's own space.
- ``"desom"``: a deep SOM (``deep.desom``) trained jointly with the autoencoder; its units are then
  grouped into K clusters by K-means on the prototypes.

A clusterer with more units than ``n_clusters`` (a SOM, say) is read as two-level clustering
(Vesanto & Alhoniemi 2000): its units are grouped into K clusters by K-means on the data they
quantize (``group_units``), and a sample takes the cluster of its best unit.

Restarts and selection without labels (``select``): several keys run the whole pipeline; the
chosen run is the one that agrees most with the others (``"agreement"``: highest mean adjusted Rand
index to the other runs, the medoid of the partitions; a run that merged two clusters and split a
third disagrees with runs that did not, and with runs that erred elsewhere), or the one whose
clusters are best separated in the space they were found in (``"silhouette"``).

Keys: a run splits its key into ``(pretrain, umap, cluster, finetune)``; UMAP takes its integer seed
from the umap key (UMAP with a seed is deterministic, and single-threaded).
"""
from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import label_metrics
from ..loop import restarts as compclust_restarts
from ..metrics import bmu
from ..spec import Hparams, Spec, kmeans
from . import dec as dec_module
from . import desom as desom_module
from .autoencoder import DEC_HIDDEN, PretrainConfig, Pretrained, dec_autoencoder, embed, pretrain
from .validation import check_config, check_deep_data, check_n_clusters

METHODS = ("ae+cluster", "ae+umap+cluster", "dec", "idec", "ae+umap+idec", "desom")
SELECTIONS = ("agreement", "silhouette")


@dataclasses.dataclass(frozen=True)
class DeepConfig:
    """Everything a deep clustering run needs besides the key and the data.

    n_clusters: K.
    method: one of ``METHODS``.
    model: a flax ``Autoencoder`` (``deep.autoencoder``); None builds DEC's ``D-500-500-2000-d``.
    embedding_dim, hidden: the default autoencoder's sizes.
    pretrain: the autoencoder's pretraining (epochs, batch, learning rate, image shifts).
    clusterer, clusterer_hparams, clusterer_epochs, clusterer_restarts: the compclust algorithm run
      on the (UMAP-mapped) embedding; None is Lloyd's K-means with k-means++ and scikit-learn's tol,
      best of ``clusterer_restarts`` by inertia.
    umap_components, umap_neighbors, umap_min_dist: UMAP's settings (N2D: 10 components, 10 neighbours
      on MNIST, min_dist 0).
    umap_restarts: UMAP maps (seeds) of the same embedding, each clustered; the clustering that agrees
      most with the others is kept (``select``). Cheap next to restarting the autoencoder.
    dec: DEC/IDEC's settings (``gamma`` is set by the method: 0 for "dec", ``idec_gamma`` otherwise).
    desom: DESOM's settings.
    """

    n_clusters: int = 10
    method: str = "ae+umap+cluster"
    model: Any = None
    embedding_dim: int = 10
    hidden: tuple[int, ...] = DEC_HIDDEN
    pretrain: PretrainConfig = PretrainConfig()
    clusterer: Spec | None = None
    clusterer_hparams: Hparams = Hparams(lr=0.5, lr_final=0.01, sigma=1.0, sigma_final=0.1)
    clusterer_epochs: int = 100
    clusterer_restarts: int = 10
    umap_components: int = 10
    umap_neighbors: int = 10
    umap_min_dist: float = 0.0
    umap_restarts: int = 1
    dec: dec_module.DECConfig = dec_module.DECConfig()
    idec_gamma: float = 0.1
    desom: desom_module.DESOMConfig = desom_module.DESOMConfig()

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        check_n_clusters(self.n_clusters)
        check_config(self, ints=("clusterer_epochs", "clusterer_restarts", "umap_components", "umap_neighbors",
                                 "embedding_dim", "umap_restarts"))

    def autoencoder(self, n_features: int):
        return self.model if self.model is not None else dec_autoencoder(n_features, self.embedding_dim, self.hidden)


class DeepClustering(NamedTuple):
    labels: np.ndarray          # [N] cluster of every sample
    embedding: np.ndarray       # [N, d] the autoencoder's embedding at the end
    space: np.ndarray           # [N, d'] where the final clustering was found (UMAP map or embedding)
    params: Any                 # the autoencoder's parameters at the end
    pretrain_losses: np.ndarray  # [epochs] pretraining curve
    centers: np.ndarray | None  # [K, d'] cluster centres in ``space`` (None for DESOM)
    extra: dict                 # per method: DEC's curves, DESOM's prototypes and units, the clusterer's state
    seconds: float              # wall time of the run


def cluster_space(key, space, config: DeepConfig):
    """Cluster ``space [N, d]`` with the configured compclust algorithm: ``(labels [N], centres [K, d],
    the clusterer's weights [units, d])``."""
    spec = config.clusterer if config.clusterer is not None else kmeans(config.n_clusters)
    space = jnp.asarray(space, jnp.float32)
    if spec.n_units < config.n_clusters:
        raise ValueError(f"the clusterer has {spec.n_units} units, fewer than n_clusters={config.n_clusters}")
    if spec.n_units > space.shape[0]:
        raise ValueError(f"the clusterer has {spec.n_units} units but there are only {space.shape[0]} samples")
    keys = jax.random.split(jax.random.clone(key), config.clusterer_restarts)
    init = "kmeans++" if spec.n_units == config.n_clusters else "random_samples"
    tol = 1e-4 if spec.algorithm == "batch" else None
    # Only the last epoch's metrics choose the run: unmeasured, Lloyd runs on Hamerly's bounds (same answer).
    runs = compclust_restarts(keys, space, spec, config.clusterer_hparams, config.clusterer_epochs, init=init, tol=tol,
                              criterion="inertia" if spec.n_units == config.n_clusters else "quantization_error",
                              epoch_metrics=False)
    weights = runs.best.state.weights
    units = bmu(spec, weights, space)
    if spec.n_units == config.n_clusters:
        return np.asarray(units), np.asarray(weights), np.asarray(weights)
    unit_labels = group_units(jax.random.fold_in(jax.random.clone(key), 1), weights, units, config)
    labels = unit_labels[np.asarray(units)]
    centers = np.stack([np.asarray(space)[labels == k].mean(0) if np.any(labels == k) else np.full(space.shape[1], np.nan)
                        for k in range(config.n_clusters)])
    return labels, centers, np.asarray(weights)


def group_units(key, prototypes, units, config: DeepConfig) -> np.ndarray:
    """Two-level clustering: K-means on the data quantized by the map (every sample replaced by its
    unit's prototype, so each unit counts as often as it wins), then every unit takes its nearest
    K-means centre. ``[n_units]`` cluster of each unit. (K-means on the bare prototypes weighs a unit in
    an empty region like a busy one; measured on two deep SOM 8x8 MNIST maps of purity 0.77 and
    0.84, it gave ACC 0.50 and 0.62; by hits, 0.53 and 0.69.)"""
    prototypes = jnp.asarray(prototypes, jnp.float32)
    _, centers, _ = cluster_space(key, prototypes[jnp.asarray(units)], dataclasses.replace(config, clusterer=None))
    return np.asarray(bmu(kmeans(config.n_clusters), jnp.asarray(centers), prototypes))


def umap_map(key, embedding, config: DeepConfig):
    """The embedding mapped by UMAP with a seed drawn from ``key`` (deterministic)."""
    try:
        import umap
    except ImportError as err:  # pragma: no cover - umap-learn is a dependency
        raise ImportError("the UMAP methods need umap-learn (pip install umap-learn)") from err
    seed = int(jax.random.randint(key, (), 0, 2 ** 31 - 1))
    reducer = umap.UMAP(n_components=config.umap_components, n_neighbors=min(config.umap_neighbors, len(embedding) - 1),
                        min_dist=config.umap_min_dist, random_state=seed, n_jobs=1)
    with warnings.catch_warnings():  # "n_jobs value 1 overridden to 1 by setting random_state": as asked
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
        return np.asarray(reducer.fit_transform(np.asarray(embedding)), np.float32)


def _centres_of(embedding, labels, n_clusters):
    """Each cluster's mean embedding (an empty cluster takes the overall mean: it can still win rows
    in DEC, where the Student-t kernel is never zero)."""
    embedding = np.asarray(embedding)
    return np.stack([embedding[labels == k].mean(0) if np.any(labels == k) else embedding.mean(0)
                     for k in range(n_clusters)])


def run(key, data, config: DeepConfig = DeepConfig(), pretrained: Pretrained | None = None) -> DeepClustering:
    """One deep clustering run of ``config.method`` on ``data [N, D]`` (or ``[N, *image_shape]``).

    ``pretrained``: an autoencoder already pretrained on this data (``autoencoder.pretrain``), to share
    one pretraining between methods; its key part is then unused."""
    start = time.perf_counter()
    data = np.asarray(check_deep_data(data, config.pretrain.image_shape))
    check_n_clusters(config.n_clusters, data.shape[0])
    model = config.autoencoder(data.shape[1])
    pretrain_key, umap_key, cluster_key, finetune_key = jax.random.split(key, 4)
    if pretrained is None:
        pretrained = pretrain(pretrain_key, data, model, config.pretrain)
    params = pretrained.params
    embedding = np.asarray(embed(model, params, data))
    extra: dict = {}

    if config.method == "desom":
        desom_config = config.desom
        prototypes = _initial_map(jax.random.clone(cluster_key), embedding, desom_config)
        trained = desom_module.train(finetune_key, model, params, prototypes, data, desom_config)
        params = trained.params
        embedding = np.asarray(embed(model, params, data))
        units = np.asarray(trained.units)
        unit_labels = group_units(jax.random.fold_in(jax.random.clone(cluster_key), 2), trained.prototypes, units, config)
        labels = unit_labels[units]
        extra.update(prototypes=np.asarray(trained.prototypes), units=units, unit_labels=np.asarray(unit_labels),
                     desom_losses=np.asarray(trained.losses))
        return DeepClustering(labels, embedding, embedding, params, np.asarray(pretrained.losses), None, extra,
                              time.perf_counter() - start)

    if "umap" in config.method:
        # Map r draws from fold_in(umap_key, r) (map 0 from umap_key); every map is clustered from the
        # same cluster_key. ``clone`` marks these reuses as intended for JAX's key-reuse checker.
        maps = [umap_map(jax.random.fold_in(jax.random.clone(umap_key), r) if r else umap_key, embedding, config)
                for r in range(config.umap_restarts)]
        found = [cluster_space(jax.random.clone(cluster_key), space, config) for space in maps]
        chosen = select([DeepClustering(f[0], None, space, None, None, None, {}, 0.0) for f, space in zip(found, maps)],
                        config.n_clusters).best_index if len(maps) > 1 else 0
        space, (labels, centers, weights) = maps[chosen], found[chosen]
        extra.update(umap_chosen=chosen, umap_labels=np.stack([f[0] for f in found]))
    else:
        space = embedding
        labels, centers, weights = cluster_space(cluster_key, space, config)
    extra["clusterer_weights"] = weights
    if config.method in ("dec", "idec", "ae+umap+idec"):
        gamma = 0.0 if config.method == "dec" else config.idec_gamma
        dec_config = dataclasses.replace(config.dec, gamma=gamma)
        start_centres = _centres_of(embedding, labels, config.n_clusters)
        extra["start_labels"] = labels
        tuned = dec_module.finetune(finetune_key, model, params, start_centres, data, dec_config)
        params = tuned.params
        embedding = np.asarray(embed(model, params, data))
        labels, centers, space = np.asarray(tuned.labels), np.asarray(tuned.centers), embedding
        n = int(tuned.n_updates)
        extra.update(n_updates=n, changed=np.asarray(tuned.changed)[:n], dec_losses=np.asarray(tuned.loss)[:n])
    return DeepClustering(np.asarray(labels), embedding, np.asarray(space), params, np.asarray(pretrained.losses),
                          centers, extra, time.perf_counter() - start)


def _initial_map(key, embedding, desom_config):
    """A compclust batch SOM on the pretrained embedding: DESOM's starting map."""
    from ..loop import fit
    from ..spec import som

    grid = desom_config.grid
    spec = som(grid.shape, topology=grid.topology, toroidal=grid.toroidal, kernel=desom_config.kernel,
               algorithm="batch")
    radius = max(grid.shape) / 2.0
    result = fit(key, jnp.asarray(embedding), spec, Hparams(sigma=radius, sigma_final=1.0), 20, init="random_samples")
    return result.state.weights


# ----------------------------------------------------------------------------------------------
# Restarts and unsupervised selection


class Selected(NamedTuple):
    best: DeepClustering
    best_index: int
    scores: np.ndarray       # [R] the selection score of every run (higher is better)
    runs: list               # every run


def agreement_scores(labelings, n_clusters: int) -> np.ndarray:
    """Mean adjusted Rand index of each labelling to all the others, ``[R]`` (``nan`` for one run)."""
    labelings = [np.asarray(l) for l in labelings]
    r = len(labelings)
    if r == 1:
        return np.array([np.nan])
    pair = np.eye(r)
    for i in range(r):
        for j in range(i + 1, r):
            pair[i, j] = pair[j, i] = float(label_metrics.ari(labelings[i], labelings[j], n_clusters, n_clusters))
    return (pair.sum(1) - 1.0) / (r - 1)


def silhouette(space, labels, max_rows: int = 5000, seed: int = 0) -> float:
    """Silhouette of ``labels`` in ``space`` (scikit-learn), on at most ``max_rows`` rows."""
    from sklearn.metrics import silhouette_score

    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return -1.0
    return float(silhouette_score(np.asarray(space), labels, sample_size=min(max_rows, len(labels)),
                                  random_state=seed))


def select(runs, n_clusters: int, criterion: str = "agreement") -> Selected:
    """Pick one of several runs without labels (see the module docstring): ``"agreement"`` (needs 3
    runs or more to break ties; with fewer it falls back to ``"silhouette"``) or ``"silhouette"``."""
    if criterion not in SELECTIONS:
        raise ValueError(f"criterion must be one of {SELECTIONS}, got {criterion!r}")
    if not runs:
        raise ValueError("no runs to select from")
    if criterion == "agreement" and len(runs) >= 3:
        scores = agreement_scores([r.labels for r in runs], n_clusters)
    else:
        scores = np.array([silhouette(r.space, r.labels) for r in runs])
    best = int(np.argmax(scores))
    return Selected(runs[best], best, scores, list(runs))


def run_restarts(keys, data, config: DeepConfig = DeepConfig(), criterion: str = "agreement") -> Selected:
    """The pipeline once per key, then the run ``select`` picks without labels."""
    keys = jnp.asarray(keys)
    if keys.ndim != 1 or keys.shape[0] < 1:
        raise ValueError(f"keys must be a non-empty 1-D array of keys, got shape {tuple(keys.shape)}")
    return select([run(k, data, config) for k in keys], config.n_clusters, criterion)
