"""DEC and IDEC: an autoencoder's encoder fine-tuned so that its embedding clusters.

Each *target update* computes the Student-t soft assignment ``Q`` of every sample to the K centres
and the sharpened target ``P`` (``losses.target_distribution``); then ``update_interval`` Adam steps
minimise, on minibatches, ``KL(P || Q) + gamma * reconstruction error`` with respect to the encoder
(and decoder), and the centres. ``gamma = 0`` is DEC (Xie et al. 2016), ``gamma > 0`` IDEC (Guo et al.
2017, gamma = 0.1). With ``shift > 0`` the minibatch images are randomly shifted while ``P`` comes from
the clean images, as DEC-DA (Guo et al. 2018) trains.

Training stops when the fraction of samples whose label (argmax Q) changed between two target
updates falls below ``tol``, or after ``max_updates`` target updates. The whole fine-tuning is one
``lax.while_loop`` of target updates around a ``lax.scan`` of minibatch steps: one XLA program.

Keys: ``finetune`` folds the target-update index into its key, then the step index, and splits a
step key into ``(rows, shifts)``. Minibatches are drawn without replacement within a step.
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

from . import losses
from .autoencoder import random_minibatch
from .validation import check_config, check_deep_data, check_shift


@dataclasses.dataclass(frozen=True)
class DECConfig:
    """Static settings of DEC / IDEC fine-tuning (hashable: a ``jit`` static argument).

    gamma: weight of the reconstruction term (0: DEC; IDEC uses 0.1).
    alpha: degrees of freedom of the Student-t kernel (DEC: 1).
    update_interval: minibatch steps between target updates (DEC, IDEC: 140).
    max_updates: at most this many target updates.
    tol: stop when fewer than this fraction of labels changed between updates (DEC: 0.001).
    batch_size, learning_rate: Adam on minibatches (IDEC and DEC-DA fine-tune with Adam).
    shift, image_shape: random image shifts of the minibatches (DEC-DA), as in ``PretrainConfig``.
    """

    gamma: float = 0.0
    alpha: float = 1.0
    update_interval: int = 140
    max_updates: int = 100
    tol: float = 0.001
    batch_size: int = 256
    learning_rate: float = 1e-4
    shift: int = 0
    image_shape: tuple[int, ...] | None = None

    def __post_init__(self):
        check_config(self, ints=("update_interval", "max_updates", "batch_size"), positive=("alpha", "learning_rate"),
                     non_negative=("gamma", "tol"))
        check_shift(self.shift, self.image_shape)

class DECResult(NamedTuple):
    params: Any            # the fine-tuned autoencoder's parameters
    centers: jnp.ndarray   # [K, d] cluster centres in the embedding
    labels: jnp.ndarray    # [N] argmax of the final soft assignment
    q: jnp.ndarray         # [N, K] the final soft assignment
    n_updates: jnp.ndarray  # target updates run
    changed: jnp.ndarray   # [max_updates] fraction of labels changed at each update (NaN where not run)
    loss: jnp.ndarray      # [max_updates] mean minibatch loss after each update (NaN where not run)


def soft_assignments(model: nn.Module, params, centers, data, alpha: float, block: int = 1024):
    """``Q`` for every row of ``data``, computed over row blocks (``lax.map``) to bound memory."""
    def one_row(x):
        z = model.apply(params, x[None], method=model.encode)
        return losses.student_t(z, centers, alpha)[0]

    return lax.map(one_row, data, batch_size=min(block, data.shape[0]))


def _finetune(key, params, centers, data, *, model: nn.Module, config: DECConfig):
    n = data.shape[0]
    batch_size = min(config.batch_size, n)
    optimizer = optax.adam(config.learning_rate)
    trainable = (params, centers)

    def loss_fn(trainable, x, p):
        params, centers = trainable
        if config.gamma > 0:
            z, x_hat = model.apply(params, x)
            recon = losses.reconstruction_error(x, x_hat)
        else:
            z, recon = model.apply(params, x, method=model.encode), 0.0
        return losses.kl_divergence(p, losses.student_t(z, centers, config.alpha)) + config.gamma * recon

    def step(carry, inputs):
        trainable, opt_state, target = carry
        step_key = inputs
        rows, x = random_minibatch(step_key, data, batch_size, config.shift, config.image_shape)
        loss, grads = jax.value_and_grad(loss_fn)(trainable, x, target[rows])
        updates, opt_state = optimizer.update(grads, opt_state, trainable)
        return (optax.apply_updates(trainable, updates), opt_state, target), loss

    def assign(trainable):
        params, centers = trainable
        q = soft_assignments(model, params, centers, data, config.alpha)
        return q, jnp.argmax(q, axis=1)

    def update(state):
        trainable, opt_state, labels, u, _, changed, loss_curve = state
        q, new_labels = assign(trainable)
        fraction = jnp.mean(new_labels != labels)
        update_key = jax.random.fold_in(key, u)
        step_keys = jax.vmap(lambda s: jax.random.fold_in(update_key, s))(jnp.arange(config.update_interval))
        (trainable, opt_state, _), step_losses = lax.scan(step, (trainable, opt_state,
                                                                 losses.target_distribution(q)), step_keys)
        return (trainable, opt_state, new_labels, u + 1, fraction, changed.at[u].set(fraction),
                loss_curve.at[u].set(jnp.mean(step_losses)))

    def keep_going(state):
        u, fraction = state[3], state[4]
        return (u < config.max_updates) & ((u < 2) | (fraction >= config.tol))

    nan = jnp.full((config.max_updates,), jnp.nan, jnp.float32)
    start = (trainable, optimizer.init(trainable), jnp.full((n,), -1, jnp.int32), jnp.int32(0),
             jnp.float32(1.0), nan, nan)
    trainable, _, _, n_updates, _, changed, loss_curve = lax.while_loop(keep_going, update, start)
    q, labels = assign(trainable)
    return DECResult(trainable[0], trainable[1], labels, q, n_updates, changed, loss_curve)


_finetune_jit = jax.jit(_finetune, static_argnames=("model", "config"))


def finetune(key, model: nn.Module, params, centers, data, config: DECConfig = DECConfig()) -> DECResult:
    """Fine-tune a (pretrained) autoencoder and K centres ``[K, d]`` with DEC / IDEC on ``data [N, D]``.

    Start the centres from a clustering of the pretrained embedding (``pipeline`` uses compclust's
    K-means). Returns the parameters, centres, final labels and soft assignments, and the curves."""
    data = check_deep_data(data, config.image_shape)
    centers = jnp.asarray(centers, jnp.float32)
    if centers.ndim != 2 or not np.all(np.isfinite(np.asarray(centers))):
        raise ValueError(f"centers must be a finite [K, d] array, got shape {tuple(centers.shape)}")
    if centers.shape[0] > data.shape[0]:
        raise ValueError(f"{centers.shape[0]} centres but only {data.shape[0]} samples")
    return _finetune_jit(key, params, centers, jnp.asarray(data), model=model, config=config)
