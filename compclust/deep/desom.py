"""DESOM: a deep self-organizing map (Forest, Lebbah, Azzag & Lacaille 2019).

An autoencoder and a SOM on its embedding are trained together: each minibatch step minimises

    reconstruction error + gamma * mean_i sum_k h(k, bmu_i; T) |z_i - m_k|^2 / var(z)

(``h`` normalised to sum 1 over the units and the distortion divided by the batch's embedding
variance ``var(z) = mean_i |z_i - mean z|^2``: two departures from DESOM, see ``DESOMConfig``)

with respect to the autoencoder's parameters and the map's prototypes ``m [K, d]``, where ``bmu_i`` is
the unit nearest to ``z_i`` and ``h`` the grid neighbourhood kernel (``compclust.kernels``, on
``compclust.topology``'s grid distances: every grid and kernel of the SOM) at radius ``T``, which
decays exponentially from ``radius_start`` to ``radius_end`` over the steps, as in DESOM. The
best units and the weights are held constant within a step (no gradient flows through them).

The map starts from a compclust SOM trained on the pretrained embedding (DESOM's authors started
from random prototypes; a trained map is our decision: the joint phase then refines an ordered map).
The decoded prototypes are the map's pictures (``plots.plot_weights_as_images``).

Keys: step ``t`` uses ``fold_in(key, t)``, split into ``(rows, shifts)``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from .. import kernels, topology
from ..spec import Grid
from . import losses
from .autoencoder import encode_rows, random_minibatch
from .validation import check_config, check_deep_data, check_shift


@dataclasses.dataclass(frozen=True)
class DESOMConfig:
    """Static settings of DESOM's joint training (hashable: a ``jit`` static argument).

    grid: the map (any compclust ``Grid``; DESOM's MNIST map is 8x8 rectangular).
    kernel: a compclust neighbourhood kernel name ("gaussian", "bubble", ...).
    gamma: weight of the SOM term (DESOM: 0.001 on its unnormalised distortion; 0.01 on the relative
      one here: 0.1 blurred the digits on MNIST, 500 steps: purity 0.77 against 0.87).
    radius_start, radius_end: the kernel radius decays exponentially between them over the steps
      (DESOM: 10 -> 0.1 from a random map; here the map starts trained and ordered, so from 2).
    steps, batch_size, learning_rate: Adam on minibatches (DESOM: 10,000 steps of 256).
    normalize: divide each sample's neighbourhood weights by their sum, so the SOM term is a weighted
      mean distance whatever the map's size and radius (DESOM sums them: at a wide radius its SOM
      term outweighed the reconstruction ~100x here and shrank the embedding to a point).
    relative: divide the SOM term by the batch's embedding variance (``mean_i |z_i - mean z|^2``). An
      autoencoder can shrink its embedding at no cost to the reconstruction (the decoder scales it
      back), and the plain distortion falls with the scale: measured here, it collapsed the map onto
      a handful of units within 500 steps even at gamma 0.01 with normalised weights.
    shift, image_shape: random image shifts of the minibatches, as in ``PretrainConfig``.
    """

    grid: Grid = Grid((8, 8))
    kernel: str = "gaussian"
    gamma: float = 0.01
    radius_start: float = 2.0
    radius_end: float = 0.1
    steps: int = 10_000
    batch_size: int = 256
    learning_rate: float = 1e-3
    normalize: bool = True
    relative: bool = True
    shift: int = 0
    image_shape: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.kernel not in kernels.KERNEL_FNS or self.kernel == "neural_gas":
            raise ValueError(f"kernel must be a grid kernel of {sorted(set(kernels.KERNEL_FNS) - {'neural_gas'})}, "
                             f"got {self.kernel!r}")
        check_config(self, ints=("steps", "batch_size"),
                     positive=("gamma", "radius_start", "radius_end", "learning_rate"))
        check_shift(self.shift, self.image_shape)

class DESOMResult(NamedTuple):
    params: Any                # the autoencoder's parameters
    prototypes: jnp.ndarray    # [K, d] the map's units in the embedding
    units: jnp.ndarray         # [N] best matching unit of every sample
    losses: jnp.ndarray        # [steps, 2] reconstruction error and SOM distortion of each step


def radius_at(config: DESOMConfig, t):
    """DESOM's exponential decay: ``radius_start * (radius_end / radius_start) ** (t / (steps - 1))``."""
    fraction = t / max(config.steps - 1, 1)
    return config.radius_start * (config.radius_end / config.radius_start) ** fraction


def neighbourhood_weights(config: DESOMConfig, units, radius):
    """``h(k, bmu_i)`` for every sample's best unit ``units [B]``: ``[B, K]``."""
    coords = jnp.asarray(topology.coordinates(config.grid), jnp.float32)
    delta = topology.axis_offsets(config.grid, coords[units][:, None, :], coords[None, :, :])
    weights = kernels.neighbourhood(config.kernel, jnp.sum(delta * delta, axis=-1), radius)
    if config.normalize:
        weights = weights / jnp.sum(weights, axis=1, keepdims=True)
    return weights


def _train(key, params, prototypes, data, *, model: nn.Module, config: DESOMConfig):
    n = data.shape[0]
    batch_size = min(config.batch_size, n)
    optimizer = optax.adam(config.learning_rate)

    def loss_fn(trainable, x, radius):
        params, prototypes = trainable
        z, x_hat = model.apply(params, x)
        units = jnp.argmin(losses.sq_distances(lax.stop_gradient(z), lax.stop_gradient(prototypes)), axis=1)
        weights = lax.stop_gradient(neighbourhood_weights(config, units, radius))
        recon = losses.reconstruction_error(x, x_hat)
        som = losses.som_distortion(z, prototypes, weights)
        if config.relative:
            som = som / jnp.mean(jnp.sum((z - jnp.mean(z, axis=0)) ** 2, axis=1))
        return recon + config.gamma * som, (recon, som)

    def step(carry, t):
        trainable, opt_state = carry
        _, x = random_minibatch(jax.random.fold_in(key, t), data, batch_size, config.shift, config.image_shape)
        (_, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable, x, radius_at(config, t))
        updates, opt_state = optimizer.update(grads, opt_state, trainable)
        return (optax.apply_updates(trainable, updates), opt_state), jnp.stack(parts)

    trainable = (params, prototypes)
    (trainable, _), curve = lax.scan(step, (trainable, optimizer.init(trainable)), jnp.arange(config.steps))
    params, prototypes = trainable
    z = encode_rows(model, params, data)
    units = jnp.argmin(losses.sq_distances(z, prototypes), axis=1)
    return DESOMResult(params, prototypes, units, curve)


_train_jit = jax.jit(_train, static_argnames=("model", "config"))


def train(key, model: nn.Module, params, prototypes, data, config: DESOMConfig = DESOMConfig()) -> DESOMResult:
    """Train an autoencoder and a map of ``prototypes [K, d]`` (K = the grid's units) jointly on
    ``data [N, D]``. Returns the parameters, prototypes, every sample's best unit and the loss curve."""
    data = check_deep_data(data, config.image_shape)
    prototypes = jnp.asarray(prototypes, jnp.float32)
    if prototypes.ndim != 2 or prototypes.shape[0] != config.grid.n_units:
        raise ValueError(f"prototypes must be [{config.grid.n_units}, d] for a {config.grid.shape} grid, "
                         f"got shape {tuple(prototypes.shape)}")
    if not np.all(np.isfinite(np.asarray(prototypes))):
        raise ValueError("prototypes contain NaN or inf")
    return _train_jit(key, params, prototypes, jnp.asarray(data), model=model, config=config)


def decode_prototypes(model: nn.Module, params, prototypes):
    """The map's prototypes decoded into input space (images, for a picture of the map)."""
    return model.apply(params, prototypes, method=model.decode)
