"""Autoencoders for deep clustering, pretrained as one compiled program.

The default is DEC's fully connected autoencoder ``D-500-500-2000-10`` (ReLU hidden layers, a linear
embedding and a linear reconstruction, Glorot-uniform weights as Keras builds them), trained on the
mean squared reconstruction error with Adam. Any flax encoder/decoder pair can take its place.

Pretraining is ``lax.scan`` over epochs of ``lax.scan`` over minibatches: the whole run is one XLA
program. Each epoch draws a fresh permutation of the rows and uses its first ``N // batch_size *
batch_size`` (the rest wait for a later epoch, as ``drop_last`` does).

Augmentation (``shift > 0``, images only): every minibatch image is moved by a random whole number of
pixels in ``[-shift, shift]`` along each image axis, zeros shifted in, and the autoencoder
reconstructs the *shifted* image (as DEC-DA trains). It is drawn on the device inside the scan.

Keys: ``pretrain`` splits its key into ``(init, epochs)``; epoch ``e`` uses ``fold_in(epochs, e)``,
split into ``(permutation, batches)``; batch ``b`` uses ``fold_in(batches, b)`` for its shifts.
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax import lax

from .validation import check_config, check_deep_data, check_shift

DEC_HIDDEN = (500, 500, 2000)


class MLPEncoder(nn.Module):
    """Dense ReLU layers of widths ``hidden``, then a linear ``embedding_dim`` output."""

    hidden: Sequence[int] = DEC_HIDDEN
    embedding_dim: int = 10

    @nn.compact
    def __call__(self, x):
        glorot = nn.initializers.glorot_uniform()
        x = x.reshape((x.shape[0], -1))
        for width in self.hidden:
            x = nn.relu(nn.Dense(width, kernel_init=glorot)(x))
        return nn.Dense(self.embedding_dim, kernel_init=glorot)(x)


class MLPDecoder(nn.Module):
    """The mirror of ``MLPEncoder``: dense ReLU layers of widths ``hidden``, then a linear output of
    ``output_dim`` features."""

    hidden: Sequence[int] = DEC_HIDDEN[::-1]
    output_dim: int = 784

    @nn.compact
    def __call__(self, z):
        glorot = nn.initializers.glorot_uniform()
        for width in self.hidden:
            z = nn.relu(nn.Dense(width, kernel_init=glorot)(z))
        return nn.Dense(self.output_dim, kernel_init=glorot)(z)


class Autoencoder(nn.Module):
    """An encoder and a decoder; ``__call__`` returns ``(embedding, reconstruction)``, the
    reconstruction flattened to ``[B, D]``. ``encode`` / ``decode`` are the halves."""

    encoder: nn.Module
    decoder: nn.Module

    def __call__(self, x):
        z = self.encoder(x)
        return z, self.decoder(z).reshape((x.shape[0], -1))

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        return self.decoder(z)


def dec_autoencoder(n_features: int, embedding_dim: int = 10, hidden: Sequence[int] = DEC_HIDDEN) -> Autoencoder:
    """DEC's layout ``n_features-500-500-2000-embedding_dim`` and its mirror."""
    return Autoencoder(MLPEncoder(tuple(hidden), embedding_dim), MLPDecoder(tuple(hidden)[::-1], n_features))


# ----------------------------------------------------------------------------------------------
# Augmentation


def random_shifts(key, images, shift: int, image_shape: tuple[int, ...]):
    """Each row of ``images [B, D]`` (``D = prod(image_shape)``, ``image_shape = (H, W[, C])``) moved by
    its own random whole-pixel offset in ``[-shift, shift]`` along H and W, zeros shifted in."""
    if shift == 0:
        return images
    batch = images.shape[0]
    height, width = image_shape[:2]
    grid = images.reshape((batch, height, width, -1))
    padded = jnp.pad(grid, ((0, 0), (shift, shift), (shift, shift), (0, 0)))
    offsets = jax.random.randint(key, (batch, 2), 0, 2 * shift + 1)

    def crop(image, offset):
        return lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, grid.shape[-1]))

    return jax.vmap(crop)(padded, offsets).reshape(images.shape)


# ----------------------------------------------------------------------------------------------
# Pretraining


class Pretrained(NamedTuple):
    params: Any          # the autoencoder's parameters
    losses: jnp.ndarray  # [epochs] mean reconstruction loss of each epoch's minibatches


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """Static settings of autoencoder pretraining (hashable: a ``jit`` static argument).

    epochs, batch_size: minibatch Adam on the reconstruction MSE.
    learning_rate: Adam's step size (DEC-DA and N2D: Adam 1e-3).
    shift: random image shifts of up to this many pixels (0: none); needs ``image_shape``.
    image_shape: ``(H, W)`` or ``(H, W, C)`` of one row, for the shifts.
    """

    epochs: int = 150
    batch_size: int = 256
    learning_rate: float = 1e-3
    shift: int = 0
    image_shape: tuple[int, ...] | None = None

    def __post_init__(self):
        check_config(self, ints=("epochs", "batch_size"), positive=("learning_rate",))
        check_shift(self.shift, self.image_shape)

def reconstruction_loss(model: nn.Module, params, x):
    """Mean over rows and features of the squared reconstruction error of ``x [B, D]``."""
    _, x_hat = model.apply(params, x)
    return jnp.mean((x_hat - x) ** 2)


def random_minibatch(key, data, batch_size: int, shift: int = 0, image_shape=None):
    """``batch_size`` rows of ``data`` drawn without replacement (augmented when ``shift > 0``):
    ``(row indices, rows)``. The key splits into ``(rows, shifts)``. The fine-tuning steps of DEC and
    DESOM draw their minibatches this way."""
    rows_key, shift_key = jax.random.split(key)
    rows = jax.random.permutation(rows_key, data.shape[0])[:batch_size]
    return rows, random_shifts(shift_key, data[rows], shift, image_shape)


def minibatch_epoch(key, data, n_batches: int, batch_size: int, step, carry, shift: int = 0, image_shape=None):
    """One epoch of ``step(carry, batch) -> (carry, loss)`` over ``n_batches`` minibatches of a fresh
    permutation of ``data`` (augmented when ``shift > 0``): ``(carry, mean loss)``."""
    order_key, batch_keys = jax.random.split(key)
    order = jax.random.permutation(order_key, data.shape[0])[:n_batches * batch_size]

    def one_batch(carry, b):
        rows = lax.dynamic_slice_in_dim(order, b * batch_size, batch_size)
        batch = random_shifts(jax.random.fold_in(batch_keys, b), data[rows], shift, image_shape)
        return step(carry, batch)

    carry, losses = lax.scan(one_batch, carry, jnp.arange(n_batches))
    return carry, jnp.mean(losses)


def _pretrain(key, data, *, model: nn.Module, config: PretrainConfig):
    init_key, epoch_key = jax.random.split(key)
    params = model.init(init_key, data[:1])
    optimizer = optax.adam(config.learning_rate)
    batch_size = min(config.batch_size, data.shape[0])
    n_batches = data.shape[0] // batch_size

    def step(carry, batch):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(lambda p: reconstruction_loss(model, p, batch))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    def one_epoch(carry, e):
        return minibatch_epoch(jax.random.fold_in(epoch_key, e), data, n_batches, batch_size, step, carry,
                               config.shift, config.image_shape)

    (params, _), losses = lax.scan(one_epoch, (params, optimizer.init(params)), jnp.arange(config.epochs))
    return Pretrained(params, losses)


_pretrain_jit = jax.jit(_pretrain, static_argnames=("model", "config"))


def pretrain(key, data, model: nn.Module | None = None, config: PretrainConfig = PretrainConfig()) -> Pretrained:
    """Pretrain ``model`` (default: ``dec_autoencoder(D)``) on ``data [N, D]`` as one compiled program.
    Returns the parameters and each epoch's mean loss. Same key, same result."""
    data = check_deep_data(data, config.image_shape)
    model = model if model is not None else dec_autoencoder(data.shape[1])
    return _pretrain_jit(key, data, model=model, config=config)


def encode_rows(model: nn.Module, params, data, block: int = 1024):
    """The encoder on every row of ``data`` inside a traced program, ``lax.map`` over blocks of rows
    (memory bounded by the block, not N)."""
    return lax.map(lambda x: model.apply(params, x[None], method=model.encode)[0], data,
                   batch_size=min(block, data.shape[0]))


def embed(model: nn.Module, params, data, batch_size: int = 2048):
    """The encoder's embedding of every row of ``data``, ``[N, embedding_dim]``, in row blocks."""
    data = jnp.asarray(data, jnp.float32)
    encode = jax.jit(lambda p, x: model.apply(p, x, method=model.encode))
    return jnp.concatenate([encode(params, data[i:i + batch_size]) for i in range(0, data.shape[0], batch_size)])
