"""Choosing the winning unit. Each function is pure and written for one input."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def hard_winner(activation):
    """Winner-take-all: the unit with the largest activation (lowest index on a tie). ``[K] -> []``."""
    return jnp.argmax(activation)


def softmax_winner(key, activation, temperature):
    """A unit sampled with probability ``softmax(activation / temperature)``. ``[K] -> []``."""
    return jax.random.categorical(key, activation / temperature)


def conscience_winner(distance, conscience):
    """neurolab's ``train_cwta``: ``argmin_k conscience_k * |x - w_k|``. ``[K], [K] -> []``."""
    return jnp.argmin(conscience * distance)


def desieno_winner(activation, frequency, bias_scale):
    """DeSieno (1988): ``argmax_k activation_k + C (1/K - p_k)``, handicapping frequent winners."""
    n_units = activation.shape[0]
    return jnp.argmax(activation + bias_scale * (1.0 / n_units - frequency))


def desieno_frequencies(frequency, activation, rate):
    """DeSieno's running win frequency ``p_k += B (y_k - p_k)``, y the unbiased winner's one-hot."""
    won = jax.nn.one_hot(jnp.argmax(activation), activation.shape[0], dtype=frequency.dtype)
    return frequency + rate * (won - frequency)
