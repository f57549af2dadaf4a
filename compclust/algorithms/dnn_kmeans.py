"""K-means simulated by a deep network ("DNN K-means"): a small classifier stands in for the
distance to the centroids.

The algorithm, as its authors described and coded it (the faithful configuration is the default):

1. Pick K samples at random as the first centroids and label them 0..K-1.
2. Train the network on those K labelled centroids with cross-entropy: the loss is the *sum* of the
   K cross-entropies, one gradient step (Adam, learning rate 1e-3) per round, dropout 0.5 on.
3. Let the network assign every sample to the class it predicts (argmax, dropout off).
4. Replace each centroid by the pixel mean of its members; repeat from 2 (20 rounds).

The network and its optimizer state persist from round to round (one model trained on, as the
authors' Keras model was). Settings beyond theirs: any flax module or optax optimizer, several
gradient steps per round, and training on a sample of each cluster's members beside the centroids.

Decisions where the authors' code was silent or broken:

- **Empty clusters keep their previous centroid** (their code divided by zero and produced NaN).
  An empty cluster also contributes no members to the next round's training batch.
- **Members** (``train_on="centroids+members"``) are drawn uniformly with replacement from each
  cluster of the previous assignment, afresh at every gradient step, and labelled by their cluster;
  in round 1 there is no assignment yet, so only the centroids are trained on.
- **Keys**: ``fit`` splits its key into ``(init, rounds)``; ``init`` into ``(centroid pick, network
  init)``; each round key into one key per gradient step, and a step key into ``(dropout, members)``.

Shapes: data ``[N, D]`` with ``D = prod(image_shape)`` (or ``[N, *image_shape]``); centroids
``[K, D]``; the network sees ``[B, *image_shape]`` and returns logits ``[B, K]``.

This module imports flax; ``import compclust`` does not (the top-level names load it lazily).
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from typing import Any, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from .. import label_metrics as lm
from ..spec import _positive_int
from ..validation import check_data, check_keys

NETWORKS = ("cnn", "mlp")
TRAIN_ON = ("centroids", "centroids+members")
SEED_STRATEGIES = ("auto", "map", "vmap")


# ----------------------------------------------------------------------------------------------
# Networks


_NHWC = ("NHWC", "HWIO", "NHWC")


@jax.custom_vjp
def conv_valid(x, kernel):
    """A stride-1 "valid" convolution, ``x [B, H, W, C]`` with ``kernel [kh, kw, C, F]`` (HWIO), as
    ``flax.linen.Conv(padding="VALID")`` computes it; only its gradient is written differently.

    XLA:CPU runs the weight gradient of a convolution (a convolution contracting over the batch)
    about 100x slower than the forward pass; here both gradients are matrix products over
    im2col patches, the same sums in another order (measured 2x faster for the whole CNN step)."""
    return lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=_NHWC)


def _conv_fwd(x, kernel):
    return conv_valid(x, kernel), (x, kernel)


def _conv_bwd(residuals, g):
    x, kernel = residuals
    kh, kw, c, f = kernel.shape
    h, w = g.shape[1], g.shape[2]
    offsets = [(i, j) for i in range(kh) for j in range(kw)]  # the HWIO kernel's row order
    patches = jnp.concatenate([x[:, i:i + h, j:j + w, :] for i, j in offsets], axis=-1)  # [B, h, w, kh*kw*C]
    d_kernel = jnp.matmul(patches.reshape(-1, kh * kw * c).T, g.reshape(-1, f)).reshape(kernel.shape)
    d_patches = jnp.matmul(g, kernel.reshape(-1, f).T)
    d_x = jnp.zeros_like(x)
    for n, (i, j) in enumerate(offsets):
        d_x = d_x.at[:, i:i + h, j:j + w, :].add(d_patches[..., n * c:(n + 1) * c])
    return d_x, d_kernel


conv_valid.defvjp(_conv_fwd, _conv_bwd)


def _max_pool_views(x):
    h, w = x.shape[-3] // 2 * 2, x.shape[-2] // 2 * 2
    x = x[..., :h, :w, :]
    return jnp.maximum(jnp.maximum(x[..., 0::2, 0::2, :], x[..., 0::2, 1::2, :]),
                       jnp.maximum(x[..., 1::2, 0::2, :], x[..., 1::2, 1::2, :]))


@jax.custom_vjp
def max_pool_2x2(x):
    """``flax.linen.max_pool(x, (2, 2), strides=(2, 2))`` (odd edges dropped), whose gradient is
    taken through the maximum of four strided views (elementwise ops) rather than XLA:CPU's
    select-and-scatter, ~10x slower here. The forward pass stays the fast reduce-window (the
    strided views were 5x slower forward). Ties split the gradient; after a ReLU ties are zeros,
    whose gradient is zero either way."""
    return nn.max_pool(x, (2, 2), strides=(2, 2))


def _pool_fwd(x):
    return max_pool_2x2(x), x


def _pool_bwd(x, g):
    return jax.vjp(_max_pool_views, x)[1](g)


max_pool_2x2.defvjp(_pool_fwd, _pool_bwd)


class ConvValid(nn.Module):
    """``nn.Conv(features, (k, k), padding="VALID")`` with the same parameters ("kernel" HWIO,
    "bias"), computed by ``conv_valid``."""

    features: int
    size: int = 3
    kernel_init: Any = nn.initializers.glorot_uniform()

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", self.kernel_init, (self.size, self.size, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return conv_valid(x, kernel) + bias


class CNN(nn.Module):
    """The authors' network (the Keras MNIST convnet): 28x28x1 -> Conv 32 3x3 ReLU -> max-pool 2 ->
    Conv 64 3x3 ReLU -> max-pool 2 -> flatten -> dropout -> dense K (logits; softmax is in the
    loss). "valid" convolutions and Keras' Glorot-uniform kernels with zero biases, as Keras builds
    it: 34,826 parameters for K = 10."""

    n_classes: int = 10
    dropout: float = 0.5

    @nn.compact
    def __call__(self, x, train: bool = False):
        glorot = nn.initializers.glorot_uniform()
        x = max_pool_2x2(nn.relu(ConvValid(32, kernel_init=glorot)(x)))
        x = max_pool_2x2(nn.relu(ConvValid(64, kernel_init=glorot)(x)))
        x = x.reshape((x.shape[0], -1))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.n_classes, kernel_init=glorot)(x)


class MLP(nn.Module):
    """Flatten -> (dense ReLU -> dropout) per hidden layer -> dense K logits."""

    n_classes: int = 10
    hidden: tuple = (128,)
    dropout: float = 0.5

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.reshape((x.shape[0], -1))
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.n_classes)(x)


def n_parameters(variables) -> int:
    """Number of scalars in a parameter tree (the faithful CNN has 34,826 for K = 10)."""
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(variables)))


# ----------------------------------------------------------------------------------------------
# Spec, state, results


@dataclasses.dataclass(frozen=True)
class DNNKMeansSpec:
    """Static description of a DNN K-means run (hashable; passed to ``jit`` as a static argument).

    n_clusters: K.
    network: "cnn" (the authors' CNN), "mlp", or any flax linen Module whose
      ``__call__(x, train: bool)`` maps ``[B, *image_shape]`` to logits ``[B, n_clusters]`` (use
      ``nn.Dropout(deterministic=not train)``; the dropout rng stream is "dropout"; parameters only,
      no batch statistics).
    image_shape: the shape of one sample as the network sees it, e.g. ``(28, 28, 1)``, or ``(D,)``.
    n_rounds: rounds of (train, assign, recompute centroids); the run is one ``lax.scan`` over them.
    steps_per_round: gradient steps on the training batch per round (the authors: 1).
    train_on: "centroids" (the K centroids labelled 0..K-1, the authors' choice) or
      "centroids+members" (also ``members_per_cluster`` samples of each cluster, labelled by it).
    optimizer: any optax GradientTransformation; None means ``optax.adam(1e-3)`` (the authors').
      Specs are equal (and share compiled code) only when they hold the same optimizer object.
    dropout: dropout rate of the built-in networks during training (off for assignment).
    hidden: the hidden layer widths of the "mlp" network.
    chunk_size: samples per forward pass when assigning, bounding activation memory (the CNN's
      first layer holds ~87 kB per image).
    seed_strategy: how ``sweep`` runs its seeds inside its one compiled call: "map" (``lax.map``, one
      seed after another), "vmap" (all seeds in lockstep, or ``seed_group`` at a time), or "auto":
      "map" on a CPU, "vmap" elsewhere. On this project's CPU, vmapped convolution parameters become
      grouped convolutions that XLA:CPU runs ~10x slower than the same networks one after another
      (measured: 26 s vs 2.6 s per assignment pass of 10 seeds); a GPU fills up with lockstep seeds.
    seed_group: with "vmap", run the seeds in groups of this many (``lax.map`` over vmapped groups)
      to bound memory; None vmaps all seeds at once.
    """

    n_clusters: int
    network: Any = "cnn"
    image_shape: tuple = (28, 28, 1)
    n_rounds: int = 20
    steps_per_round: int = 1
    train_on: str = "centroids"
    members_per_cluster: int = 0
    optimizer: Any = None
    dropout: float = 0.5
    hidden: tuple = (128,)
    chunk_size: int = 1000
    seed_strategy: str = "auto"
    seed_group: Optional[int] = None

    def __post_init__(self):
        _positive_int(self.n_clusters, "n_clusters")
        shape = self.image_shape if isinstance(self.image_shape, (tuple, list)) else (self.image_shape,)
        object.__setattr__(self, "image_shape", tuple(_positive_int(n, "image_shape entries") for n in shape))
        object.__setattr__(self, "hidden", tuple(_positive_int(n, "hidden widths") for n in self.hidden))
        for name in ("n_rounds", "steps_per_round", "chunk_size"):
            _positive_int(getattr(self, name), name)
        if isinstance(self.network, str):
            if self.network not in NETWORKS:
                raise ValueError(f"unknown network {self.network!r}; choose from {NETWORKS} or pass a flax Module")
        elif not isinstance(self.network, nn.Module):
            raise ValueError(f"network must be one of {NETWORKS} or a flax linen Module, got {type(self.network).__name__}")
        elif "train" not in inspect.signature(type(self.network).__call__).parameters:
            raise ValueError(f"the network {type(self.network).__name__} must take a `train: bool` argument "
                             "(its __call__(x, train)); dropout is on when training and off when assigning")
        if self.train_on not in TRAIN_ON:
            raise ValueError(f"unknown train_on {self.train_on!r}; choose from {TRAIN_ON}")
        if self.train_on == "centroids+members":
            _positive_int(self.members_per_cluster, "members_per_cluster (with train_on='centroids+members')")
        elif self.members_per_cluster:
            raise ValueError("members_per_cluster is only used with train_on='centroids+members'")
        if self.optimizer is not None and not isinstance(self.optimizer, optax.GradientTransformation):
            raise ValueError(f"optimizer must be an optax GradientTransformation, got {type(self.optimizer).__name__}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.seed_strategy not in SEED_STRATEGIES:
            raise ValueError(f"unknown seed_strategy {self.seed_strategy!r}; choose from {SEED_STRATEGIES}")
        if self.seed_group is not None:
            _positive_int(self.seed_group, "seed_group")

    @property
    def module(self) -> nn.Module:
        if self.network == "cnn":
            return CNN(self.n_clusters, self.dropout)
        if self.network == "mlp":
            return MLP(self.n_clusters, self.hidden, self.dropout)
        return self.network

    @property
    def tx(self) -> optax.GradientTransformation:
        return optax.adam(1e-3) if self.optimizer is None else self.optimizer

    @property
    def n_features(self) -> int:
        return math.prod(self.image_shape)


def dnn_kmeans(n_clusters: int = 10, *, network="cnn", image_shape=(28, 28, 1), n_rounds: int = 20,
               steps_per_round: int = 1, train_on: str = "centroids", members_per_cluster: int = 0,
               optimizer=None, dropout: float = 0.5, hidden=(128,), chunk_size: int = 1000,
               seed_strategy: str = "auto", seed_group: int | None = None) -> DNNKMeansSpec:
    """A DNN K-means spec; the defaults are the authors' configuration (CNN on 28x28x1 images,
    Adam 1e-3, one step per round on the K centroids, 20 rounds). See ``DNNKMeansSpec``."""
    return DNNKMeansSpec(n_clusters=n_clusters, network=network, image_shape=tuple(np.atleast_1d(image_shape).tolist()),
                         n_rounds=n_rounds, steps_per_round=steps_per_round, train_on=train_on,
                         members_per_cluster=members_per_cluster, optimizer=optimizer, dropout=dropout,
                         hidden=tuple(hidden), chunk_size=chunk_size, seed_strategy=seed_strategy,
                         seed_group=seed_group)


class DNNKMeansState(NamedTuple):
    variables: Any         # the network's variables {"params": ...} (pytree of float32)
    opt_state: Any         # the optimizer's state (pytree)
    centroids: jax.Array   # [K, D] float32
    labels: jax.Array      # [N] int32: the last assignment (-1 before the first round)


class RoundMetrics(NamedTuple):
    """Each field ``[n_rounds, ...]`` (``[S, n_rounds, ...]`` from ``sweep``), after each round."""
    loss: jax.Array            # [R] float32: training loss (sum of cross-entropies) at the round's last step
    inertia: jax.Array         # [R] float32: sum of squared distances from each sample to its centroid
    center_shift: jax.Array    # [R] float32: Frobenius norm of the change of the centroids
    n_changed: jax.Array       # [R] int32: samples whose cluster changed (all N in round 1)
    n_empty: jax.Array         # [R] int32: clusters with no member (they kept their centroid)
    cluster_sizes: jax.Array   # [R, K] int32
    centroids: jax.Array       # [R, K, D] float32: the centroids after each round
    labels: Optional[lm.LabelMetrics]  # [R] each field, against the true labels if given to fit


class DNNKMeansResult(NamedTuple):
    centroids: jax.Array          # [K, D] float32: final centroids (means of the final clusters)
    labels: jax.Array             # [N] int32: final assignment by the network
    variables: Any                # the trained network's variables
    opt_state: Any                # the optimizer's final state
    initial_centroids: jax.Array  # [K, D] float32: the K samples picked in step 1
    metrics: RoundMetrics

    @property
    def state(self) -> DNNKMeansState:
        return DNNKMeansState(self.variables, self.opt_state, self.centroids, self.labels)


# ----------------------------------------------------------------------------------------------
# The pure pieces


def _logits(spec: DNNKMeansSpec, variables, x, train: bool, key=None):
    images = x.reshape((x.shape[0],) + spec.image_shape)
    rngs = {"dropout": key} if train else {}
    return spec.module.apply(variables, images, train=train, rngs=rngs)


def _assign(spec: DNNKMeansSpec, variables, data):
    """The network's class of every sample, ``[N]`` int32, ``chunk_size`` samples per pass."""
    n = data.shape[0]
    chunk = min(spec.chunk_size, n)
    n_chunks = -(-n // chunk)
    padded = jnp.pad(data, ((0, n_chunks * chunk - n), (0, 0))).reshape(n_chunks, chunk, -1)
    labels = lax.map(lambda x: jnp.argmax(_logits(spec, variables, x, False), axis=1), padded)
    return labels.reshape(-1)[:n].astype(jnp.int32)


def _sample_members(key, labels, n_clusters: int, m: int):
    """``m`` members of each cluster drawn uniformly with replacement: indices ``[K, m]`` and
    whether each is real ``[K, m]`` (False for a cluster with no member, or labels -1)."""
    n = labels.shape[0]
    counts = jnp.sum(labels[:, None] == jnp.arange(n_clusters), axis=0)
    order = jnp.argsort(jnp.where(labels < 0, n_clusters, labels), stable=True)  # samples grouped by cluster
    starts = jnp.cumsum(counts) - counts
    u = jax.random.uniform(key, (n_clusters, m))
    offset = jnp.minimum(jnp.floor(u * counts[:, None]).astype(jnp.int32), jnp.maximum(counts[:, None] - 1, 0))
    index = order[jnp.clip(starts[:, None] + offset, 0, n - 1)]
    return index, jnp.broadcast_to(counts[:, None] > 0, (n_clusters, m))


def _training_batch(spec: DNNKMeansSpec, centroids, labels, data, key):
    """Inputs ``[B, D]``, targets ``[B]`` and weights ``[B]`` of one gradient step."""
    k = spec.n_clusters
    x, y, w = centroids, jnp.arange(k), jnp.ones(k, centroids.dtype)
    if spec.train_on == "centroids+members":
        index, real = _sample_members(key, labels, k, spec.members_per_cluster)
        x = jnp.concatenate([x, data[index.reshape(-1)]])
        y = jnp.concatenate([y, jnp.repeat(jnp.arange(k), spec.members_per_cluster)])
        w = jnp.concatenate([w, real.reshape(-1).astype(w.dtype)])
    return x, y, w


def _loss(spec: DNNKMeansSpec, variables, x, y, w, key):
    """Sum (not mean) of the weighted cross-entropies, as the authors' loss."""
    logits = _logits(spec, variables, x, True, key)
    return jnp.sum(w * optax.softmax_cross_entropy_with_integer_labels(logits, y))


def _centroids_of(spec: DNNKMeansSpec, data, labels, previous):
    """Member means ``[K, D]`` and counts ``[K]``; an empty cluster keeps its previous centroid."""
    onehot = (labels[:, None] == jnp.arange(spec.n_clusters)).astype(data.dtype)  # [N, K]
    counts = onehot.sum(axis=0)
    sums = jnp.matmul(onehot.T, data, precision=lax.Precision.HIGHEST)  # a matmul: far faster than a scatter on CPU
    means = sums / jnp.maximum(counts, 1)[:, None]
    return jnp.where(counts[:, None] > 0, means, previous), counts.astype(jnp.int32)


def init_impl(key, data, spec: DNNKMeansSpec) -> DNNKMeansState:
    k_pick, k_net = jax.random.split(key)
    picked = jax.random.choice(k_pick, data.shape[0], (spec.n_clusters,), replace=False)
    variables = spec.module.init(k_net, jnp.zeros((1,) + spec.image_shape, data.dtype), train=False)
    return DNNKMeansState(variables=variables, opt_state=spec.tx.init(variables), centroids=data[picked],
                          labels=jnp.full(data.shape[0], -1, jnp.int32))


def round_impl(key, state: DNNKMeansState, data, spec: DNNKMeansSpec, true_labels=None, n_classes: int = 0):
    """One round: ``steps_per_round`` gradient steps (step 2), assignment (3), centroids (4)."""
    tx = spec.tx

    def train_step(carry, step_key):
        variables, opt_state = carry
        if spec.train_on == "centroids+members":
            dropout_key, members_key = jax.random.split(step_key)
        else:
            dropout_key, members_key = step_key, None
        x, y, w = _training_batch(spec, state.centroids, state.labels, data, members_key)
        loss, grads = jax.value_and_grad(functools.partial(_loss, spec))(variables, x, y, w, dropout_key)
        updates, opt_state = tx.update(grads, opt_state, variables)
        return (optax.apply_updates(variables, updates), opt_state), loss

    step_keys = jax.random.split(key, spec.steps_per_round)
    (variables, opt_state), losses = lax.scan(train_step, (state.variables, state.opt_state), step_keys)
    labels = _assign(spec, variables, data)
    centroids, counts = _centroids_of(spec, data, labels, state.centroids)
    diff = data - centroids[labels]
    shift = centroids - state.centroids
    judged = None
    if true_labels is not None:
        judged = lm.metrics_from_table(lm.contingency_impl(true_labels, labels, n_classes, spec.n_clusters))
    metrics = RoundMetrics(loss=losses[-1], inertia=jnp.sum(diff * diff), center_shift=jnp.sqrt(jnp.sum(shift * shift)),
                           n_changed=jnp.sum(labels != state.labels).astype(jnp.int32),
                           n_empty=jnp.sum(counts == 0).astype(jnp.int32), cluster_sizes=counts,
                           centroids=centroids, labels=judged)
    return DNNKMeansState(variables, opt_state, centroids, labels), metrics


def fit_impl(key, data, true_labels=None, *, spec: DNNKMeansSpec, n_classes: int = 0) -> DNNKMeansResult:
    k_init, k_rounds = jax.random.split(key)
    state = init_impl(k_init, data, spec)

    def body(state, round_key):
        return round_impl(round_key, state, data, spec, true_labels, n_classes)

    final, metrics = lax.scan(body, state, jax.random.split(k_rounds, spec.n_rounds))
    return DNNKMeansResult(centroids=final.centroids, labels=final.labels, variables=final.variables,
                           opt_state=final.opt_state, initial_centroids=state.centroids, metrics=metrics)


def resolve_seed_strategy(spec: DNNKMeansSpec, backend: str | None = None) -> str:
    """"map" or "vmap": "auto" is "map" on a CPU (grouped convolutions are slow there), else "vmap"."""
    if spec.seed_strategy != "auto":
        return spec.seed_strategy
    return "map" if (backend or jax.default_backend()) == "cpu" else "vmap"


def sweep_impl(keys, data, true_labels=None, *, spec: DNNKMeansSpec, n_classes: int = 0, strategy: str = "map"):
    def one(key):
        return fit_impl(key, data, true_labels, spec=spec, n_classes=n_classes)

    if strategy == "map":
        return lax.map(one, keys)
    if spec.seed_group is None:
        return jax.vmap(one)(keys)
    return lax.map(one, keys, batch_size=spec.seed_group)  # lax.map over vmapped groups of seeds


_fit_jit = jax.jit(fit_impl, static_argnames=("spec", "n_classes"))
_sweep_jit = jax.jit(sweep_impl, static_argnames=("spec", "n_classes", "strategy"))
_round_jit = jax.jit(round_impl, static_argnames=("spec", "n_classes"))
_init_jit = jax.jit(init_impl, static_argnames=("spec",))
_assign_jit = jax.jit(_assign, static_argnums=0)


# ----------------------------------------------------------------------------------------------
# Validation (on the host, before anything is compiled) and the public entry points


@functools.cache
def _check_network(spec: DNNKMeansSpec) -> None:
    """The network must take ``[B, *image_shape]`` and give ``[B, K]``: checked by abstract
    evaluation (shapes only, nothing compiled), once per spec."""
    name = spec.network if isinstance(spec.network, str) else type(spec.network).__name__
    x = jax.ShapeDtypeStruct((2,) + spec.image_shape, jnp.float32)
    try:
        variables = jax.eval_shape(functools.partial(spec.module.init, train=False), jax.random.key(0), x)
        out = jax.eval_shape(functools.partial(spec.module.apply, train=False), variables, x)
    except Exception as err:  # flax/lax shape errors: restate them as a bad image shape
        raise ValueError(f"network {name!r} cannot take images of shape {spec.image_shape}: "
                         f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None
    if set(variables) != {"params"}:
        raise ValueError(f"network {name!r} has variable collections {sorted(variables)}; only 'params' is "
                         "supported (no batch statistics)")
    if getattr(out, "shape", None) != (2, spec.n_clusters):
        raise ValueError(f"network {name!r} maps images of shape {spec.image_shape} to "
                         f"{getattr(out, 'shape', type(out).__name__)} but must give logits [B, {spec.n_clusters}]")


def _check_data(data, spec: DNNKMeansSpec):
    if not isinstance(spec, DNNKMeansSpec):
        raise ValueError(f"spec must be a DNNKMeansSpec (from dnn_kmeans(...)), got {type(spec).__name__}")
    _check_network(spec)
    shape = tuple(np.shape(data))
    if len(shape) > 2:  # images [N, *image_shape], or [N, H, W] for image_shape (H, W, 1)
        if shape[1:] not in (spec.image_shape, spec.image_shape[:-1] if spec.image_shape[-1:] == (1,) else None):
            raise ValueError(f"images of shape {shape[1:]} do not fit the network's image_shape {spec.image_shape}")
        data = data.reshape(shape[0], -1) if isinstance(data, jax.Array) else np.asarray(data).reshape(shape[0], -1)
    data = check_data(data, jnp.float32)
    if data.shape[1] != spec.n_features:
        raise ValueError(f"data has {data.shape[1]} features per sample but the network takes images of shape "
                         f"{spec.image_shape} ({spec.n_features} values); set image_shape to match the data")
    if spec.n_clusters > data.shape[0]:
        raise ValueError(f"n_clusters={spec.n_clusters} is larger than the number of samples {data.shape[0]}")
    return data


def _check_true_labels(labels, n_samples: int):
    """Integer labels ``[N]`` to judge each round by; returns ``(labels, n_classes)``."""
    if labels is None:
        return None, 0
    array = np.asarray(labels)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"labels must be integer class labels, got dtype {array.dtype}")
    if array.shape != (n_samples,):
        raise ValueError(f"labels must have one entry per sample, shape ({n_samples},), got {array.shape}")
    if array.min() < 0:
        raise ValueError(f"labels must be non-negative, got {array.min()}")
    return array.astype(np.int32), int(array.max()) + 1


def init(key, data, spec: DNNKMeansSpec) -> DNNKMeansState:
    """Step 1 and the network's initial parameters: the state before the first round."""
    key = check_keys(key, batched=False)
    return _init_jit(key, _check_data(data, spec), spec=spec)


def round_step(key, state: DNNKMeansState, data, spec: DNNKMeansSpec) -> tuple[DNNKMeansState, RoundMetrics]:
    """One compiled round (steps 2 to 4) from ``state``; ``fit`` scans this over the rounds."""
    key = check_keys(key, batched=False)
    return _round_jit(key, state, _check_data(data, spec), spec=spec)


def predict(spec: DNNKMeansSpec, variables, data) -> jax.Array:
    """The cluster the trained network gives each sample: ``[N]`` int32 (dropout off, in chunks)."""
    return _assign_jit(spec, variables, _check_data(data, spec))


def fit(key, data, spec: DNNKMeansSpec, *, labels=None) -> DNNKMeansResult:
    """Run DNN K-means once: one compiled program, a ``lax.scan`` over ``spec.n_rounds`` rounds.

    key: ``jax.random.key(seed)``.
    data: ``[N, D]`` with ``D = prod(spec.image_shape)``, or images ``[N, *image_shape]``; pixels as
      given (the authors: ``uint8 / 255``).
    labels: optional true classes ``[N]``; each round is then judged against them on the device
      (``result.metrics.labels``: accuracy, NMI, ARI, Rand index, purity per round).
    Raises ValueError before compiling for a bad spec, images the network cannot take, K > N,
    non-finite pixels or labels of the wrong length.
    """
    key = check_keys(key, batched=False)
    data = _check_data(data, spec)
    true_labels, n_classes = _check_true_labels(labels, data.shape[0])
    return _fit_jit(key, data, true_labels, spec=spec, n_classes=n_classes)


def sweep(keys, data, spec: DNNKMeansSpec, *, labels=None) -> DNNKMeansResult:
    """``fit`` for many seeds in one compiled call: every field gains a leading ``[S]`` axis and
    ``sweep(keys)[i]`` equals ``fit(keys[i])``.

    How the seeds run inside the call is ``spec.seed_strategy``: "auto" runs them one after another
    (``lax.map``) on a CPU, where vmapped convolution parameters become grouped convolutions that
    XLA:CPU runs about 10x slower, and in lockstep (``vmap``, optionally in ``seed_group`` groups)
    on accelerators, which lockstep seeds fill.
    """
    keys = check_keys(keys, batched=True)
    data = _check_data(data, spec)
    true_labels, n_classes = _check_true_labels(labels, data.shape[0])
    return _sweep_jit(keys, data, true_labels, spec=spec, n_classes=n_classes,
                      strategy=resolve_seed_strategy(spec))
