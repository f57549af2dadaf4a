"""Test-wide settings: key reuse is an error, as DESIGN.md asks."""
import jax
import numpy as np
import pytest

jax.config.update("jax_debug_key_reuse", True)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
