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


MAPS = Path("/proc/self/maps")


@pytest.fixture(autouse=True)
def _release_compiled_programs():
    """XLA:CPU maps about 80 memory regions per compiled program, and Linux allows a process 65,530
    (vm.max_map_count): past ~800 live programs the next compilation segfaults. The suite compiles
    far more than that (check_estimator alone fits every estimator on a dozen shapes), so once the
    count passes half the limit, JAX's caches are dropped, which unmaps them."""
    yield
    if MAPS.exists() and sum(1 for _ in MAPS.open()) > 30_000:
        import gc
        jax.clear_caches()
        gc.collect()


@pytest.fixture(params=["xla", "native"])
def engine(request):
    """Runs a test with the online epochs as XLA scans and again as compclust.native's C++ loop
    (skipped where no C++ compiler builds it)."""
    from compclust import native

    if request.param == "native" and not native.available():
        pytest.skip("compclust.native did not build here (no C++ compiler)")
    native.use(request.param == "native")
    yield request.param
    native.use(None)
