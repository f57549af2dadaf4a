"""One switch for CPU speed: XLA:CPU's small-while-loop hoisting (a process-wide flag) and, with
it, compclust's native online epochs (``compclust.native``: the online SOM / competitive layer
step as a C++ loop called through XLA's FFI, compiled on first use; ``native.use(False)`` keeps
the XLA scan while leaving the flag on).

XLA:CPU normally runs a ``while`` loop (every ``lax.scan``) as a sequence of kernels with a
dispatch between them; with ``xla_cpu_small_while_loop_byte_threshold`` raised it compiles a loop
that touches fewer bytes per iteration than the threshold as one kernel, so a small online step
(a few microseconds of arithmetic) no longer pays for dispatch. The flag can only be given through
``XLA_FLAGS`` before JAX's CPU backend starts (``jax.jit(compiler_options=...)`` and
``Lowered.compile(...)`` reject it), so it applies to every jitted function in the process.

    import compclust
    compclust.fast_cpu_loops()          # before the first JAX computation
    # or: COMPCLUST_FAST_LOOPS=1 python ...   (read at ``import compclust``)

What it changes for other JAX code in the same process (measured on the 2-core CPU, recorded in
``experiments/bench_cpu_2core.json`` under ``fast_cpu_loops_effect``): a loop of small
elementwise steps gets faster; a loop whose body holds a matrix product gets much slower, because
the product inside the hoisted loop is compiled as a plain loop nest instead of a library call.
A loop holding a scatter, sort or custom call is never hoisted (compclust's per-epoch metrics
keep a scatter for that reason), and code outside loops is unaffected.

The switch never overrides the user: if ``XLA_FLAGS`` already names
``xla_backend_extra_options``, it is left alone. ``COMPCLUST_FAST_LOOPS=0`` (or unset) leaves
everything as JAX has it; ``fast_cpu_loops(False)`` removes the flag this module added, before
the backend starts.
"""
from __future__ import annotations

import os
import warnings

ENV_SWITCH = "COMPCLUST_FAST_LOOPS"
OPTION = "xla_cpu_small_while_loop_byte_threshold"
# Every online loop of the benchmarks is far below this per iteration (MNIST's 20x20 map: ~4 MB).
DEFAULT_THRESHOLD = 100_000_000
_added: str | None = None  # the exact flag this module appended to XLA_FLAGS, if any


def _backend_started() -> bool:
    try:
        from jax._src import xla_bridge
    except ImportError:  # JAX not installed or reorganised: assume the worst only if jax is loaded
        return False
    return xla_bridge.backends_are_initialized()


def _without_ours(flags: str) -> str:
    if _added is None:
        return flags
    return " ".join(token for token in flags.split() if token != _added)


def user_set_option(flags: str | None = None) -> bool:
    """Whether ``XLA_FLAGS`` already names ``xla_backend_extra_options`` (other than this switch's)."""
    flags = os.environ.get("XLA_FLAGS", "") if flags is None else flags
    return "xla_backend_extra_options" in _without_ours(flags)


def is_enabled() -> bool:
    """Whether ``XLA_FLAGS`` asks for small-while-loop hoisting (by this switch or by the user)."""
    return OPTION in os.environ.get("XLA_FLAGS", "")


def fast_cpu_loops(enable: bool = True, *, threshold: int = DEFAULT_THRESHOLD, strict: bool = True) -> bool:
    """Turn XLA:CPU's small-while-loop hoisting on (or, with ``enable=False``, off again) for this
    process. Returns whether hoisting is now asked for in ``XLA_FLAGS``.

    Must run before JAX's backend starts (the first computation, ``jax.devices()``...): after
    that XLA has read its flags and nothing would change, so this raises a RuntimeError
    (``strict=False``: warns and changes nothing). A value the user put in ``XLA_FLAGS`` (any
    ``xla_backend_extra_options``) is never overridden: the call then changes nothing and
    returns whether that value enables hoisting. Only GPU-less code paths are affected: the
    option is read by XLA:CPU alone.
    """
    global _added
    flags = os.environ.get("XLA_FLAGS", "")
    if user_set_option(flags):
        return is_enabled()
    ours = _added is not None and _added in flags.split()
    if ours == bool(enable):
        return ours
    if _backend_started():
        message = ("compclust.fast_cpu_loops: JAX's backend has already started, so XLA_FLAGS is no longer read; "
                   f"call it (or set {ENV_SWITCH}=1) before the first JAX computation")
        if strict:
            raise RuntimeError(message)
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        return ours
    if enable:
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
            raise ValueError(f"threshold must be a non-negative integer (bytes), got {threshold!r}")
        _added = f"--xla_backend_extra_options={OPTION}={threshold}"
        os.environ["XLA_FLAGS"] = f"{flags} {_added}".strip()
    else:
        os.environ["XLA_FLAGS"] = _without_ours(flags)
        _added = None
    return bool(enable)


def _from_environment() -> None:
    """``COMPCLUST_FAST_LOOPS=1`` at ``import compclust``: the switch, warning (not failing the
    import) if the backend has already started."""
    value = os.environ.get(ENV_SWITCH, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return
    if value not in ("1", "true", "yes", "on"):
        warnings.warn(f"{ENV_SWITCH}={value!r} is not understood (use 1 or 0); leaving XLA_FLAGS as it is",
                      RuntimeWarning, stacklevel=3)
        return
    fast_cpu_loops(True, strict=False)
