"""Neighbourhood kernels ``h(d^2, sigma) -> weight``: how much a unit at squared grid distance
``d^2`` from the winner moves. All are 1 at the winner (d = 0) and elementwise in ``d^2``;
Neural Gas's kernel takes the unit's distance rank instead of a grid distance.
"""
from __future__ import annotations

import jax.numpy as jnp


def gaussian(sq_dist, sigma):
    """``exp(-d^2 / (2 sigma^2))`` (MiniSom's gaussian)."""
    return jnp.exp(-sq_dist / (2.0 * sigma * sigma))


def bubble(sq_dist, sigma):
    """1 strictly inside radius sigma, else 0; the winner always moves (so sigma -> 0 is WTA)."""
    return ((sq_dist < sigma * sigma) | (sq_dist == 0)).astype(sq_dist.dtype)


def triangle(sq_dist, sigma):
    """``max(0, 1 - d / sigma)``: falls linearly to 0 at radius sigma."""
    return jnp.maximum(0.0, 1.0 - jnp.sqrt(sq_dist) / sigma)


def mexican_hat(sq_dist, sigma):
    """``(1 - d^2 / sigma^2) exp(-d^2 / (2 sigma^2))``: pushes the ring beyond sigma away (MiniSom's)."""
    return (1.0 - sq_dist / (sigma * sigma)) * jnp.exp(-sq_dist / (2.0 * sigma * sigma))


def cut_gaussian(sq_dist, sigma):
    """Gaussian inside radius sigma, 0 outside (SOM Toolbox / somoclu "cutgauss")."""
    return gaussian(sq_dist, sigma) * bubble(sq_dist, sigma)


def delta(sq_dist, sigma):
    """Only the winner: 1 at d = 0, else 0 (online K-means)."""
    del sigma
    return (sq_dist == 0).astype(sq_dist.dtype)


def neural_gas(rank, lam):
    """``exp(-rank / lambda)``: Martinetz's Neural Gas weight by distance rank (0 = nearest unit),
    not by grid distance; lambda plays the radius's part."""
    return jnp.exp(-rank / lam)


SIGMA_FLOOR = 1e-6  # a radius of exactly 0 would give 0/0 at the winner; this keeps h(0) = 1


KERNEL_FNS = {
    "gaussian": gaussian,
    "bubble": bubble,
    "triangle": triangle,
    "mexican_hat": mexican_hat,
    "cut_gaussian": cut_gaussian,
    "delta": delta,
    "neural_gas": neural_gas,
}


def neighbourhood(kernel: str, sq_dist, sigma):
    """Weights ``[K]`` of every unit given its squared grid distance to the winner (its distance
    rank for "neural_gas")."""
    return KERNEL_FNS[kernel](sq_dist, jnp.maximum(sigma, SIGMA_FLOOR))
