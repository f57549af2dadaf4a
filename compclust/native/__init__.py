"""compclust's native CPU kernel: one online epoch (``algorithms.online.epoch`` for the Euclidean
activation, the hard winner and a grid kernel) as a C++ loop called through XLA's FFI.

Why: on a CPU the XLA scan makes two passes over the weights per sample (the winner search, then
the move) and pays a kernel's overhead per step; the C++ loop (``online_epoch.cc``) makes one pass,
moving every unit and measuring its distance to the next sample together, in vector registers of
16 units. Digits 10x10: ~0.5 instead of ~1.1 us a step. It is the same rule, to float rounding.

When: with ``compclust.fast_cpu_loops()`` (the one switch for CPU speed), ``COMPCLUST_NATIVE=1`` or
``use(True)`` (``COMPCLUST_NATIVE=0`` / ``use(False)`` keep the XLA scan under the flag), on the CPU
backend, for specs ``applies`` accepts; anything else runs the XLA scan. The two engines agree to
float rounding, not bit for bit (each is deterministic), so a sweep records which one it used. The source is compiled
on first use with the system's C++ compiler (``$CXX``, else ``c++``) against JAX's FFI headers,
into ``$COMPCLUST_CACHE_DIR`` (default ``~/.cache/compclust``), keyed by a hash of the source,
flags and jaxlib version, and written atomically. Without a compiler it warns once and the XLA
scan runs.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .. import fast_loops, topology
from ..spec import Spec

SOURCE = Path(__file__).with_name("online_epoch.cc")
TARGET = "compclust_online_epoch"
CONSCIENCE_TARGET = "compclust_conscience_epoch"
KERNEL_IDS = {"gaussian": 0, "bubble": 1, "triangle": 2, "mexican_hat": 3, "cut_gaussian": 4, "delta": 5}
FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-w")
_choice: bool | None = None  # use(): None follows fast_cpu_loops


def use(enable: bool | None = True) -> None:
    """Turn the native online epoch on or off for this process (None: follow ``fast_cpu_loops``).
    Takes effect for programs compiled afterwards (fit and sweep compile one per setting)."""
    global _choice
    _choice = None if enable is None else bool(enable)


ENV_SWITCH = "COMPCLUST_NATIVE"  # "0" or "1": overrides following fast_cpu_loops (use() overrides both)


def active() -> bool:
    """Whether online epochs traced now use the native kernel (where ``applies``): ``use()``'s
    choice, else ``$COMPCLUST_NATIVE``, else whether ``fast_cpu_loops`` is on."""
    wanted = _choice
    if wanted is None:
        env = os.environ.get(ENV_SWITCH, "").strip().lower()
        wanted = fast_loops.is_enabled() if env not in ("0", "1", "false", "true") else env in ("1", "true")
    return wanted and jax.default_backend() == "cpu" and available()


def applies(spec: Spec, dtype) -> bool:
    """The specs the kernels implement: online, Euclidean activation, a rate on a schedule (not
    MacQueen's counts), complete float32 data; the hard winner with a grid kernel (or delta), or
    neurolab's conscience winner (``conscience_epoch``)."""
    rule = (spec.winner == "hard" and spec.kernel in KERNEL_IDS) or (spec.winner == "conscience"
                                                                     and spec.kernel == "delta")
    return (spec.algorithm == "online" and spec.activation == "neg_sq_euclidean" and rule
            and spec.lr_schedule != "count" and not spec.missing and jnp.dtype(dtype) == jnp.float32)


def _cache_dir() -> Path:
    return Path(os.environ.get("COMPCLUST_CACHE_DIR") or Path.home() / ".cache" / "compclust")


def _compile(compiler: str, flags) -> Path:
    """The shared library for these flags, compiled once into the cache (atomically: a temporary
    file renamed into place, so a concurrent or interrupted build never leaves half a library)."""
    import jaxlib

    key = hashlib.sha256(SOURCE.read_bytes() + " ".join((compiler, *flags, jaxlib.__version__)).encode()).hexdigest()
    library = _cache_dir() / f"libcompclust_online_{key[:16]}.so"
    if library.exists():
        return library
    library.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=library.parent) as work:
        built = Path(work) / library.name
        subprocess.run([compiler, *flags, f"-I{jax.ffi.include_dir()}", str(SOURCE), "-o", str(built)],
                       check=True, capture_output=True, text=True, timeout=300)
        os.replace(built, library)
    return library


@functools.cache
def available() -> bool:
    """Compiles (or finds) the kernel and registers it with XLA; False, with one warning, where that fails."""
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        warnings.warn("compclust.native: no C++ compiler found ($CXX, c++, g++, clang++); online epochs run as "
                      "XLA scans", RuntimeWarning, stacklevel=2)
        return False
    errors = []
    for flags in (FLAGS, tuple(f for f in FLAGS if f != "-march=native")):  # some compilers lack -march=native
        try:
            library = ctypes.cdll.LoadLibrary(str(_compile(compiler, flags)))
            jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(library.CompclustOnlineEpoch), platform="cpu")
            jax.ffi.register_ffi_target(CONSCIENCE_TARGET, jax.ffi.pycapsule(library.CompclustConscienceEpoch),
                                        platform="cpu")
            return True
        except (OSError, subprocess.SubprocessError, AttributeError) as error:
            errors.append(getattr(error, "stderr", None) or str(error))
    warnings.warn("compclust.native: the kernel did not build; online epochs run as XLA scans:\n"
                  + "\n".join(str(e)[-2000:] for e in errors), RuntimeWarning, stacklevel=2)
    return False


@functools.cache
def _grid_sq(spec: Spec) -> np.ndarray:
    """``[K, K]`` squared grid distances between units (toroidal aware); for a layer without a grid,
    0 on the diagonal and 1 elsewhere (only the delta kernel goes with it)."""
    if spec.grid is None:
        return (1.0 - np.eye(spec.n_units)).astype(np.float32)
    coords = topology.coordinates(spec.grid).astype(np.float32)
    delta = topology.axis_offsets(spec.grid, coords[:, None, :], coords[None, :, :], xp=np)
    return np.sum(delta * delta, axis=-1).astype(np.float32)


def threads_for(spec: Spec, n_features: int) -> int:
    """Threads for one run's epoch: the units split over two cores where the map is larger than
    about half a core's L2 cache (MNIST 20x20: 1.25 MB; each core then keeps its half in cache),
    else one (the per-step barrier would cost more than it saves). Sweeps use one per run: their
    runs already fill the cores."""
    big = spec.n_units * n_features * 4 > 512 * 1024
    return 2 if big and (os.cpu_count() or 1) >= 2 else 1


def epoch(spec: Spec, weights, data, order, lr, sigma, threads: int = 1):
    """One online epoch: ``weights [K, D]``, ``data [N, D]``, the sample of every step ``order [S]``
    and its rate and radius ``lr, sigma [S]``, the units split over ``threads`` threads (the same
    bits for any number). Returns the new weights, every step's winner ``[S]`` int32 and its
    distance to the sample before the move ``[S]``."""
    n_steps = order.shape[0]
    out = (jax.ShapeDtypeStruct(weights.shape, jnp.float32), jax.ShapeDtypeStruct((n_steps,), jnp.int32),
           jax.ShapeDtypeStruct((n_steps,), jnp.float32))
    call = jax.ffi.ffi_call(TARGET, out, vmap_method="sequential")
    return call(weights, data, order.astype(jnp.int32), lr, sigma, jnp.asarray(_grid_sq(spec)),
                kernel=np.int64(KERNEL_IDS[spec.kernel]), threads=np.int64(threads))


def conscience_epoch(weights, data, order, lr, conscience):
    """One epoch of neurolab's conscience rule: ``weights [K, D]``, ``data [N, D]``, ``order [S]``,
    ``lr [S]``, the consciences at its start ``[K]``. Returns the new weights and consciences, every
    step's winner ``[S]`` int32 and its distance to the sample before the move ``[S]``."""
    n_steps = order.shape[0]
    out = (jax.ShapeDtypeStruct(weights.shape, jnp.float32), jax.ShapeDtypeStruct(conscience.shape, jnp.float32),
           jax.ShapeDtypeStruct((n_steps,), jnp.int32), jax.ShapeDtypeStruct((n_steps,), jnp.float32))
    call = jax.ffi.ffi_call(CONSCIENCE_TARGET, out, vmap_method="sequential")
    return call(weights, data, order.astype(jnp.int32), lr, conscience)
