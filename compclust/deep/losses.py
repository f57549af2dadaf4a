"""The clustering losses of DEC, IDEC and DESOM as pure functions of a minibatch.

Shapes: embedding ``z [B, d]``, cluster centres or map prototypes ``[K, d]``, soft assignments and
neighbourhood weights ``[B, K]``.
"""
from __future__ import annotations

import jax.numpy as jnp

EPS = 1e-12  # keeps log(p / q) finite where a probability underflows to 0


def sq_distances(z, centers):
    """``|z_i - c_k|^2``, ``[B, K]``, computed directly (not by the expanded dot product) so that it
    is exact near zero, where the Student-t kernel is steepest."""
    diff = z[:, None, :] - centers[None, :, :]
    return jnp.sum(diff * diff, axis=-1)


def student_t(z, centers, alpha: float = 1.0):
    """DEC's soft assignment ``q_ik ∝ (1 + |z_i - c_k|^2 / alpha)^(-(alpha + 1) / 2)``, rows sum to 1."""
    kernel = (1.0 + sq_distances(z, centers) / alpha) ** (-(alpha + 1.0) / 2.0)
    return kernel / jnp.sum(kernel, axis=1, keepdims=True)


def target_distribution(q):
    """DEC's sharpened target ``p_ik ∝ q_ik^2 / f_k`` with cluster frequencies ``f_k = sum_i q_ik``."""
    weight = q * q / jnp.sum(q, axis=0)
    return weight / jnp.sum(weight, axis=1, keepdims=True)


def kl_divergence(p, q):
    """``KL(P || Q)`` per row, averaged over the rows (Keras' ``kld`` loss, as DEC and IDEC train)."""
    return jnp.mean(jnp.sum(p * jnp.log((p + EPS) / (q + EPS)), axis=1))


def som_distortion(z, prototypes, weights):
    """DESOM's SOM loss: ``mean_i sum_k w_ik |z_i - m_k|^2`` with neighbourhood weights ``w_ik`` of
    unit k around sample i's best matching unit (held constant: no gradient flows through them)."""
    return jnp.mean(jnp.sum(weights * sq_distances(z, prototypes), axis=1))


def reconstruction_error(x, x_hat):
    """Mean over rows and features of ``(x_hat - x)^2``."""
    return jnp.mean((x_hat - x) ** 2)
