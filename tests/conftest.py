"""Test-wide settings: key reuse is an error, as DESIGN.md asks; the real MNIST files beside the
checkout (../shared/data/mnist) are used when COMPCLUST_MNIST_DIR does not say otherwise."""
import os
from pathlib import Path

import jax
import numpy as np
import pytest

jax.config.update("jax_debug_key_reuse", True)

_SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
if "COMPCLUST_MNIST_DIR" not in os.environ and _SHARED_MNIST.is_dir():
    os.environ["COMPCLUST_MNIST_DIR"] = str(_SHARED_MNIST)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
