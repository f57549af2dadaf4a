"""Benchmarks of the batch family (batch SOM, Lloyd's K-means, K-means restarts) against their anchors.

    python -m experiments.bench --family batch --json results/bench_batch.json [--quick] [--mnist-dir DIR]
    python -m experiments.bench_batch --json results/bench_batch.json [--quick] [--only WORKLOAD ...]

Same conventions as ``experiments/bench.py``: each anchor runs its own training code, compclust runs the
same rule from the same initial codebook (the batch map is deterministic given the codebook, so the final
weights must agree: ``max_abs_diff``); compilation is timed apart (``lower().compile()`` where the loop
exposes its jitted call, else the first call less the median of the steady runs, as ``compile_method``
says); every timed call is blocked on; medians and minima of several runs; the ratios are measured in
one process; a fast wrong answer fails the run (exit status 1). MNIST's test split is read from
``--mnist-dir`` or ``$COMPCLUST_MNIST_DIR``; without it the MNIST workloads are skipped.

Which compclust settings reproduce each anchor (read from the anchors' sources; see also ANCHOR_RULES):

* somoclu 1.7.6, dense CPU kernel (``src/denseCpuKernels.cpp: trainOneEpochDenseCPU``): unit
  ``k = som_y * n_columns + som_x``, grid distance Euclidean on integer coordinates
  (``src/mapDistanceFunctions.cpp: euclideanDistanceOnPlanarMap``), kernel
  ``exp(-d^2 / (2 (std_coeff * radius)^2))`` with ``std_coeff = 0.5`` (``gaussianNeighborhood``), cut to
  ``d <= radius`` when ``compactsupport=True`` (the Python default! ``getWeight``), radius linear per epoch
  ``r0 - e (r0 - rN) / (E - 1)`` (``src/training.cpp: linearCooling``); ``scale`` multiplies numerator and
  denominator alike, so it cancels. Run here with ``compactsupport=False`` and ``scale0 = scaleN = 1``:
  compclust ``kernel="gaussian", sigma_schedule="linear"``, ``sigma = 0.5 r0``, ``sigma_final = 0.5 rN``.
* XPySom 1.0.7 (``xpysom/xpysom.py: XPySom.train``, ``neighborhoods.py: gaussian_rect``,
  ``decays.py``): kernel ``exp(-d^2 / (2 (std_coeff sigma)^2))`` (separable product over the axes,
  ``std_coeff = 0.5``), default ``decay_function="exponential"``: ``sigma0 (sigmaN / sigma0)^(e / E)``
  (T = E: the last epoch does NOT reach sigmaN), the learning rate multiplies numerator and denominator
  alike (set to 1 here so no rounding enters), no compact support by default. compclust: gaussian,
  ``sigma_schedule="exponential"`` with ``sigma = 0.5 sigma0`` and
  ``sigma_final = 0.5 sigma0 (sigmaN / sigma0)^((E - 1) / E)``, exact because compclust's batch schedule
  runs on ``t = e, T = E - 1``.
* fastersom 0.5.0 (``fastersom/_som.py: SOM.fit, SOM._smooth``): kernel ``exp(-d^2 / (2 sigma^2))``
  (width sigma itself, applied as two 1-D products along the grid axes), ``sigma0 (sigma1 / sigma0)^(e / E)``
  (T = E), no compact support, node ``row * n_cols + col``. compclust: gaussian, exponential, ``sigma =
  sigma0``, ``sigma_final = sigma0 (sigma1 / sigma0)^((E - 1) / E)``.
* scikit-learn ``KMeans(algorithm="lloyd", tol=0)`` stops once the labels stop changing
  (``sklearn/cluster/_kmeans.py: _kmeans_single_lloyd``), counting that last iteration in ``n_iter_``:
  its time is compared PER ITERATION with compclust ``cc.fit(..., cc.kmeans(K), n_epochs=300, tol=0.0)``
  over ``res.n_iter``.

Installing the anchors (the ``bench`` extra of ``pyproject.toml`` holds XPySom, fastersom, PyTorch and
scikit-learn-intelex; somoclu cannot be a plain requirement):

    .venv/bin/pip install -e '.[bench]'           # torch==2.13.0 resolves to the CPU wheel on this machine
    # somoclu 1.7.6: its setup.py imports numpy (so no build isolation) and, where it finds nvcc on PATH,
    # builds the CUDA kernel instead of failing over cleanly; CUDAHOME pointing nowhere forces the CPU build.
    python3 -m venv /tmp/somoclu-build
    /tmp/somoclu-build/bin/pip install numpy==2.4.6 'setuptools>=70' wheel   # numpy as in .venv
    /tmp/somoclu-build/bin/pip download --no-deps --no-binary :all: --no-build-isolation somoclu==1.7.6 -d /tmp/somoclu
    CUDAHOME=/nonexistent /tmp/somoclu-build/bin/pip wheel --no-deps --no-build-isolation \\
        -w /tmp/somoclu /tmp/somoclu/somoclu-1.7.6.tar.gz
    .venv/bin/pip install --no-deps /tmp/somoclu/somoclu-1.7.6-cp311-cp311-linux_x86_64.whl
    ldd .venv/lib/python3.11/site-packages/_somoclu_wrap*.so | grep -c cud    # 0: dense CPU kernel only

fastersom and scikit-learn-intelex are optional: their workloads are skipped with a message when absent.
The anchors are never committed (sources, wheels), nor is MNIST.
"""
from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={os.cpu_count() or 1}")

import argparse  # noqa: E402
import importlib  # noqa: E402
import importlib.metadata  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import compclust as cc  # noqa: E402
from experiments.bench import timed  # noqa: E402  (bench imports this module only inside its main)

# The batch SOM on MNIST does not let two float32 implementations agree to 1e-4 after 20 epochs, whatever
# the rule: at a wide neighbourhood the units are nearly equal, so many samples sit on near-ties between
# units, and the order in which float32 sums run decides them. Measured here against a float64 transcription
# of its own rule, from the same codebook, XPySom agrees to 1.5e-7 after one epoch, then 1.1e-4 after two
# (4 best units flipped), 2.8e-3 after five, 0.24 after twenty (984 of 10,000 flipped); somoclu and fastersom
# likewise (0.15, 0.025). So the weights are compared where that is meaningful: ONE epoch of each side from
# the same codebook (at the first, middle and last width of the schedule; float32 sums of 10,000 terms in
# [0, 1] round at ~1e-6, so 1e-4 is safe and a wrong kernel width or update moves units by >1e-2), the
# schedule (compclust's per-epoch sigma against the anchor's formula) and the final quantization error
# (rounding moves it by ~1e-4 relative, a schedule off by one epoch of T by 1.3%, linear on T = E by 4%).
# The full-run max_abs_diff is recorded, not checked.
SOM_TOL = 1e-4
SOM_QE_RTOL = 2e-3
SCHEDULE_RTOL = 1e-5
KMEANS_INERTIA_RTOL = 1e-5
RESTARTS_INERTIA_SLACK = 0.005  # compclust's best inertia may be worse than scikit-learn's by at most 0.5%

TARGETS = {"som-batch-mnist": 30, "som-batch-mnist-xpysom": 3, "som-batch-mnist-fastersom": 1.1,
           "kmeans-lloyd-mnist": 1.5, "kmeans-lloyd-mnist-intelex": 1.0, "kmeans-restarts-mnist": 3}
WORKLOADS = tuple(TARGETS)

ANCHOR_RULES = {
    "somoclu": "w_k = sum_i h x_i / sum_i h, h = exp(-d^2 / (2 (0.5 r)^2)) (cut to d <= r with the default "
               "compactsupport=True; run with False), r = r0 - e (r0 - rN) / (E - 1)",
    "xpysom": "w_k = sum_i h x_i / sum_i h, h = exp(-d^2 / (2 (0.5 s)^2)), s = s0 (sN / s0)^(e / E)",
    "fastersom": "w_k = sum_i h x_i / sum_i h, h = exp(-d^2 / (2 s^2)), s = s0 (s1 / s0)^(e / E)",
}


# ----------------------------------------------------------------------------------------------- timing

def compile_seconds(call):
    """Seconds to ``lower().compile()`` the jitted call that ``call()`` gives as ``(jitted, args, static
    kwargs)`` (``loop.fit_call`` / ``loop.sweep_call``), or None where that is unavailable."""
    if call is None:
        return None
    try:
        jitted, args, static = call()
        start = time.perf_counter()
        jitted.lower(*args, **static).compile()
        return time.perf_counter() - start
    except Exception as error:  # noqa: BLE001 - fall back to the first call less the median
        print(f"  (lower().compile() unavailable: {type(error).__name__}: {error})", file=sys.stderr)
        return None


def loop_call(name, *args, **kwargs):
    """A thunk giving ``loop.<name>(*args, **kwargs)`` (``fit_call``, ``sweep_call``) if the loop has it."""
    from compclust import loop

    call = getattr(loop, name, None)
    return None if call is None else (lambda: call(*args, **kwargs))


def run_compclust(fn, repeats, call=None):
    """(steady times, last result, compile seconds, how they were measured) of a compclust call: the
    compilation first, timed alone with ``lower().compile()``, else the first call less the steady median."""
    compile_s = compile_seconds(call)
    start = time.perf_counter()
    jax.block_until_ready(fn())  # warms the public entry point's cache
    first = time.perf_counter() - start
    times, out = timed(fn, repeats)
    if compile_s is not None:
        return times, out, compile_s, "lower().compile()"
    return times, out, max(first - statistics.median(times), 0.0), "first call - median of steady runs"


def matmul_rate(n=2048, repeats=5):
    """This machine's float32 matrix-product rate: a jitted ``[n, n] @ [n, n]`` (GFLOP/s, median and best)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    jax.block_until_ready(dot(a, b))
    times, _ = timed(lambda: dot(a, b), repeats)
    flops = 2.0 * n ** 3
    return {"matmul_n": n, "matmul_gflops_median": flops / statistics.median(times) / 1e9,
            "matmul_gflops_best": flops / min(times) / 1e9}


def gemm_rate(n, d, k, repeats=5):
    """Rate of the batch SOM's own distance GEMM shape ``[N, D] @ [D, K]`` (GFLOP/s, median)."""
    a = jax.random.uniform(jax.random.key(0), (n, d), jnp.float32)
    b = jax.random.uniform(jax.random.key(1), (d, k), jnp.float32)
    dot = jax.jit(jnp.dot)
    jax.block_until_ready(dot(a, b))
    times, _ = timed(lambda: dot(a, b), repeats)
    return 2.0 * n * d * k / statistics.median(times) / 1e9


# --------------------------------------------------------------------------- NumPy helpers (float64)

def grid_coords(shape):
    """Integer grid coordinates ``[K, 2]`` of a C-order ``(rows, cols)`` grid."""
    rows, cols = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    return np.stack([rows.ravel(), cols.ravel()], 1).astype(np.float64)


def nearest(X, W):
    """(index of the nearest row of W, squared distance to it) for every row of X, in float64."""
    X, W = np.asarray(X, np.float64), np.asarray(W, np.float64)
    d2 = (X ** 2).sum(1)[:, None] - 2 * X @ W.T + (W ** 2).sum(1)[None]
    idx = d2.argmin(1)
    return idx, np.maximum(d2[np.arange(len(X)), idx], 0.0)


def quantization_error(X, W):
    return float(np.sqrt(nearest(X, W)[1]).mean())


def inertia(X, W):
    return float(nearest(X, W)[1].sum())


def batch_som_reference(X, W0, shape, sigmas):
    """Kohonen's batch map in float64: per epoch ``w_k = sum_i h(k, bmu_i) x_i / sum_i h(k, bmu_i)`` with
    ``h = exp(-d^2 / (2 sigma^2))``; a unit with a zero denominator keeps its weights."""
    X, W = np.asarray(X, np.float64), np.asarray(W0, np.float64).copy()
    coords = grid_coords(shape)
    grid_d2 = ((coords[:, None] - coords[None]) ** 2).sum(-1)
    for sigma in sigmas:
        bmu, _ = nearest(X, W)
        onehot = np.zeros((len(X), len(W)))
        onehot[np.arange(len(X)), bmu] = 1.0
        H = np.exp(-grid_d2 / (2.0 * sigma ** 2))
        num, den = H @ (onehot.T @ X), H @ onehot.sum(0)
        W = np.where(den[:, None] > 0, num / np.where(den > 0, den, 1.0)[:, None], W)
    return W


# ------------------------------------------------------------------------ schedules of the anchors

def somoclu_sigmas(n_epochs, radius0, radius_n, std_coeff=0.5):
    """somoclu's gaussian width per epoch: ``std_coeff * linearCooling(r0, rN, E, e)``."""
    e = np.arange(n_epochs)
    return std_coeff * (radius0 - e * (radius0 - radius_n) / (n_epochs - 1))


def exponential_sigmas(n_epochs, sigma0, sigma_n, std_coeff=1.0):
    """XPySom's ``exponential_decay`` (std_coeff 0.5) and fastersom's schedule (1.0): ``s0 (sN/s0)^(e/E)``."""
    e = np.arange(n_epochs)
    return std_coeff * sigma0 * (sigma_n / sigma0) ** (e / n_epochs)


def compclust_som(anchor, shape, n_epochs, sigma0, sigma_n, chunk_size=None):
    """The compclust spec and Hparams that reproduce ``anchor``'s batch map (see the module docstring), and
    the per-epoch gaussian widths they give."""
    if anchor == "somoclu":  # linear radius, width 0.5 * radius: compclust's linear runs on t = e, T = E - 1
        s0, s1, schedule = 0.5 * sigma0, 0.5 * sigma_n, "linear"
        sigmas = somoclu_sigmas(n_epochs, sigma0, sigma_n)
    else:  # exponential on T = E, written as compclust's exponential on T = E - 1 with an exact sigma_final
        coeff = 0.5 if anchor == "xpysom" else 1.0
        s0 = coeff * sigma0
        s1 = s0 * (sigma_n / sigma0) ** ((n_epochs - 1) / n_epochs)
        schedule = "exponential"
        sigmas = exponential_sigmas(n_epochs, sigma0, sigma_n, coeff)
    spec = cc.som(shape, algorithm="batch", kernel="gaussian", sigma_schedule=schedule, chunk_size=chunk_size)
    return spec, cc.Hparams(sigma=float(s0), sigma_final=float(s1)), sigmas


# ---------------------------------------------------------------------------------------- anchors

def somoclu_train(X, W0, shape, n_epochs, radius0, radius_n, cooling="linear"):
    """somoclu's dense CPU kernel (kerneltype=0), gaussian without compact support, from codebook W0."""
    import somoclu

    rows, cols = shape
    som = somoclu.Somoclu(cols, rows, initialcodebook=W0.reshape(rows, cols, -1).copy(), kerneltype=0,
                          maptype="planar", gridtype="rectangular", compactsupport=False,
                          neighborhood="gaussian", std_coeff=0.5)
    # scale multiplies numerator and denominator alike; 1 keeps it out of the rounding. The exponential
    # cooling is only for one-epoch runs: linearCooling divides by nEpoch - 1 (NaN at one epoch).
    som.train(X, epochs=n_epochs, radius0=radius0, radiusN=radius_n, radiuscooling=cooling,
              scale0=1.0, scaleN=1.0, scalecooling=cooling)
    return som.codebook.reshape(rows * cols, -1)


def somoclu_epoch(X, W, shape, radius):
    """One somoclu epoch at ``radius`` from codebook W (exponentialCooling at epoch 0 of 1 is radius0)."""
    return somoclu_train(X, W, shape, 1, radius, radius, cooling="exponential")


def xpysom_train(X, W0, shape, n_epochs, sigma0, sigma_n):
    """XPySom on NumPy with its default exponential decay; learning rate fixed at 1 (it cancels)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from xpysom import XPySom

    rows, cols = shape
    som = XPySom(rows, cols, X.shape[1], sigma=sigma0, sigmaN=sigma_n, learning_rate=1.0, learning_rateN=1.0,
                 decay_function="exponential", neighborhood_function="gaussian", std_coeff=0.5,
                 topology="rectangular", activation_distance="euclidean", random_seed=0, xp=np)
    som._weights = W0.reshape(rows, cols, -1).astype(np.float32).copy()
    som.train(X, n_epochs)
    return np.asarray(som.get_weights()).reshape(rows * cols, -1)


def xpysom_epoch(X, W, shape, sigma):
    """One XPySom epoch at ``sigma`` (exponential_decay at iteration 0 is sigma0)."""
    return xpysom_train(X, W, shape, 1, sigma, sigma)


def fastersom_train(X, W0, shape, n_epochs, sigma0, sigma_n):
    """fastersom's batch SOM on the PyTorch CPU device."""
    from fastersom import SOM

    som = SOM(n_rows=shape[0], n_cols=shape[1], n_epochs=n_epochs, sigma_initial=sigma0, sigma_final=sigma_n,
              init=W0, device="cpu")
    som.fit(X)
    return np.asarray(som.weights_)


def fastersom_epoch(X, W, shape, sigma):
    return fastersom_train(X, W, shape, 1, sigma, sigma)


# name -> (label, full training, one epoch at a given width, module, compclust sigma per anchor width)
SOM_ANCHORS = {"somoclu": ("somoclu (dense CPU kernel)", somoclu_train, somoclu_epoch, "somoclu", 0.5),
               "xpysom": ("XPySom (NumPy)", xpysom_train, xpysom_epoch, "xpysom", 0.5),
               "fastersom": ("fastersom (PyTorch CPU)", fastersom_train, fastersom_epoch, "fastersom", 1.0)}


def available(module):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importlib.import_module(module)
        return True
    except Exception:  # noqa: BLE001 - any failed import means the anchor is absent
        return False


def version_of(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment():
    # PyTorch's threads, only if a fastersom workload already loaded it: importing PyTorch here would
    # put its native libraries beside XLA's compiler in processes that never use it (the test suite).
    torch = sys.modules.get("torch")
    torch_threads = None if torch is None else torch.get_num_threads()
    return {"python": platform.python_version(), "jax": jax.__version__, "numpy": np.__version__,
            "compclust": version_of("compclust"), "scikit-learn": version_of("scikit-learn"),
            "scikit-learn-intelex": version_of("scikit-learn-intelex"), "daal": version_of("daal"),
            "somoclu": version_of("somoclu"), "xpysom": version_of("XPySom"), "fastersom": version_of("fastersom"),
            "torch": version_of("torch"), "torch_threads": torch_threads,
            "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
            "cpu_count": os.cpu_count(), "machine": platform.machine()}


# -------------------------------------------------------------------------------------- records

def record(name, anchor, anchor_times, our_times, compile_s, ok, **extra):
    anchor_median, ours_median = statistics.median(anchor_times), statistics.median(our_times)
    speedup = anchor_median / ours_median
    entry = {
        "workload": name, "anchor": anchor,
        "anchor_median_s": anchor_median, "anchor_min_s": min(anchor_times), "anchor_runs": len(anchor_times),
        "compclust_median_s": ours_median, "compclust_min_s": min(our_times), "compclust_runs": len(our_times),
        "speedup": speedup, "target_speedup": TARGETS.get(name), "compile_s": compile_s, **extra,
    }
    entry["parity_ok"] = bool(ok)
    entry["meets_target"] = entry["target_speedup"] is not None and speedup >= entry["target_speedup"]
    entry["env"] = environment()
    unit = entry.get("time_unit", "total")
    diff = "n/a" if entry["max_abs_diff"] is None else f"{entry['max_abs_diff']:.1e}"
    print(f"{name:27s} {anchor:28s} anchor {anchor_median:8.4f}s  compclust {ours_median:8.4f}s ({unit})  "
          f"x{speedup:6.1f} (target {entry['target_speedup']})  compile {compile_s:5.2f}s  "
          f"max|dW| {diff}  {'ok' if ok else 'QUALITY FAILED'}", flush=True)
    return entry


def skipped(name, why):
    print(f"{name} skipped: {why}", file=sys.stderr, flush=True)
    return None


# ------------------------------------------------------------------------------------ workloads

def initial_codebook(X, n_units, seed=0):
    """The shared starting codebook: ``n_units`` distinct samples drawn with ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    return np.ascontiguousarray(X[rng.choice(len(X), n_units, replace=False)], np.float32)


def anchor_widths(anchor, n_epochs, width0, width_n):
    """The anchor's own neighbourhood parameter per epoch (somoclu's radius, XPySom's and fastersom's sigma),
    transcribed from its source."""
    if anchor == "somoclu":
        return somoclu_sigmas(n_epochs, width0, width_n, std_coeff=1.0)
    return exponential_sigmas(n_epochs, width0, width_n)


def som_batch_workload(name, anchor, X, shape, n_epochs, radius0, radius_n, repeats, anchor_repeats,
                       rates=None, reference=True):
    """Full runs from the same codebook, timed; then the checks that carry meaning on MNIST (see SOM_TOL):
    one epoch of each side from the same codebook at the first, middle and last width of the schedule, the
    schedule itself (compclust's per-epoch sigma against the anchor's formula) and the final QE."""
    label, train, one_epoch, module, coeff = SOM_ANCHORS[anchor]
    if not available(module):
        return skipped(name, f"{module} is not installed (see the install steps in experiments/bench_batch.py)")
    X = np.ascontiguousarray(X, np.float32)
    n, d = X.shape
    k = shape[0] * shape[1]
    W0 = initial_codebook(X, k)
    spec, hp, sigmas = compclust_som(anchor, shape, n_epochs, radius0, radius_n)
    widths = anchor_widths(anchor, n_epochs, radius0, radius_n)

    anchor_times, theirs = timed(lambda: train(X, W0, shape, n_epochs, radius0, radius_n), anchor_repeats)
    theirs = np.asarray(theirs, np.float32).reshape(k, d)

    def ours():  # a fresh key per call: the same run each time, without reusing a key
        return cc.fit(jax.random.key(0), X, spec, hp, n_epochs, init=W0)

    our_times, result, compile_s, method = run_compclust(
        ours, repeats, loop_call("fit_call", jax.random.key(0), X, spec, hp, n_epochs, init=W0))
    weights = np.asarray(result.state.weights)
    diff = float(np.abs(weights - theirs).max())
    bmu_ours, bmu_theirs = nearest(X, weights)[0], nearest(X, theirs)[0]
    qe_theirs, qe_ours = quantization_error(X, theirs), quantization_error(X, weights)
    qe_rel = abs(qe_ours - qe_theirs) / qe_theirs

    # One epoch from the same codebook: the rule (kernel, its width convention, the update) without the
    # float32 near-tie flips that compound over the run.
    one_spec = cc.som(shape, algorithm="batch", kernel="gaussian", sigma_schedule="constant")
    one_epoch_diffs, one_epoch_ref = [], []
    for start, width in ((W0, widths[0]), (theirs, widths[n_epochs // 2]), (theirs, widths[-1])):
        a = np.asarray(one_epoch(X, start, shape, float(width)), np.float32).reshape(k, d)
        o = np.asarray(cc.fit(jax.random.key(0), X, one_spec, cc.Hparams(sigma=float(coeff * width)), 1,
                              init=start).state.weights)
        one_epoch_diffs.append(float(np.abs(a - o).max()))
        if reference:
            ref = batch_som_reference(X, start, shape, [coeff * width])
            one_epoch_ref.append(float(np.abs(a - ref).max()))
    one_epoch_diff = max(one_epoch_diffs)

    reported_sigma = getattr(result.metrics, "sigma", None)
    schedule_rel = None
    if reported_sigma is not None:
        reported_sigma = np.asarray(reported_sigma, np.float64)
        schedule_rel = float(np.max(np.abs(reported_sigma - sigmas) / sigmas))
    ok = (one_epoch_diff <= SOM_TOL and qe_rel <= SOM_QE_RTOL
          and (schedule_rel is None or schedule_rel <= SCHEDULE_RTOL))

    extra = {}
    if reference:  # the float64 transcription of the rule the settings claim: the float32 noise floor
        ref = batch_som_reference(X, W0, shape, sigmas)
        extra.update(reference_max_abs_diff_anchor=float(np.abs(theirs - ref).max()),
                     reference_max_abs_diff_compclust=float(np.abs(weights - ref).max()),
                     reference_qe=quantization_error(X, ref),
                     one_epoch_reference_max_abs_diff_anchor=max(one_epoch_ref))
    # FLOPs counted per epoch: 2NKD for the distance GEMM plus 2K^2D for the dense neighbourhood product
    # H @ S (the separable form would take 2K(rows + cols)D instead); metrics and the arg-min not counted.
    flops_dense = n_epochs * (2.0 * n * k * d + 2.0 * k * k * d)
    flops_separable = n_epochs * (2.0 * n * k * d + 2.0 * k * (shape[0] + shape[1]) * d)
    rate = flops_dense / statistics.median(our_times) / 1e9
    if rates:
        extra.update(achieved_gflops=rate, fraction_of_matmul_peak=rate / rates["matmul_gflops_median"],
                     fraction_of_gemm_shape_rate=rate / rates["gemm_shape_gflops"], **rates)
    qe_reported = getattr(result.metrics, "quantization_error", None)
    if qe_reported is not None:
        extra["qe_compclust_reported"] = float(np.asarray(qe_reported)[-1])
    print(f"  {name}: one epoch max|dW| {one_epoch_diff:.1e} (tol {SOM_TOL:g}), schedule rel "
          f"{schedule_rel if schedule_rel is None else f'{schedule_rel:.1e}'}, QE {qe_ours:.5f} vs "
          f"{qe_theirs:.5f} (rel {qe_rel:.1e}, tol {SOM_QE_RTOL:g}); full run max|dW| {diff:.1e} with "
          f"{int((bmu_ours != bmu_theirs).sum())} of {n} best units different", flush=True)
    return record(name, label, anchor_times, our_times, compile_s, ok,
                  max_abs_diff=diff, max_abs_diff_one_epoch=one_epoch_diff,
                  max_abs_diff_one_epoch_each=one_epoch_diffs, tolerance_one_epoch=SOM_TOL,
                  schedule_max_rel_diff=schedule_rel, schedule_rtol=SCHEDULE_RTOL,
                  qe_anchor=qe_theirs, qe_compclust=qe_ours, qe_rel_diff=qe_rel, qe_rtol=SOM_QE_RTOL,
                  bmu_disagreements=int((bmu_ours != bmu_theirs).sum()), compile_method=method,
                  anchor_rule=ANCHOR_RULES[anchor],
                  compclust_settings={"kernel": "gaussian", "sigma_schedule": spec.sigma_schedule,
                                      "sigma": hp.sigma, "sigma_final": hp.sigma_final},
                  anchor_width_per_epoch=[float(w) for w in widths],
                  sigma_per_epoch=[float(s) for s in sigmas],
                  flops_counted="per epoch 2NKD (distance GEMM) + 2K^2D (dense H @ S); metrics not counted",
                  flops=flops_dense, flops_separable=flops_separable,
                  shape=[n, d], grid=list(shape), radius=[radius0, radius_n], epochs=n_epochs,
                  initial_codebook="default_rng(0) choice of K distinct samples", seeds=[0], **extra)


def kmeans_lloyd_workload(name, X, n_clusters, repeats, anchor_repeats, intelex=False, max_iter=300):
    if intelex:
        if not available("sklearnex"):
            return skipped(name, "scikit-learn-intelex is not installed")
        from sklearnex.cluster import KMeans
        label = f"sklearnex KMeans (daal {version_of('daal')})"
    else:
        from sklearn.cluster import KMeans
        label = "scikit-learn KMeans(lloyd)"
    from sklearn.cluster import kmeans_plusplus

    X = np.ascontiguousarray(X, np.float32)
    C0, _ = kmeans_plusplus(X, n_clusters, random_state=0)
    C0 = np.ascontiguousarray(C0, np.float32)

    def anchor():
        return KMeans(n_clusters, init=C0, n_init=1, algorithm="lloyd", tol=0.0, max_iter=max_iter).fit(X)

    anchor_times, km = timed(anchor, anchor_repeats)
    anchor_iters = int(km.n_iter_)
    spec = cc.kmeans(n_clusters)
    hp = cc.Hparams()

    def ours(epoch_metrics=False):
        # scikit-learn reports the final inertia only: so does compclust unmeasured (epoch_metrics=False),
        # whose Lloyd then runs on Hamerly's bounds (same labels); measuring every epoch is timed below.
        return cc.fit(jax.random.key(0), X, spec, hp, max_iter, init=C0, tol=0.0, epoch_metrics=epoch_metrics)

    our_times, result, compile_s, method = run_compclust(
        ours, repeats, loop_call("fit_call", jax.random.key(0), X, spec, hp, max_iter, init=C0, tol=0.0,
                                 epoch_metrics=False))
    our_iters = int(np.asarray(result.n_iter))
    measured_times, measured, _, _ = run_compclust(lambda: ours(epoch_metrics=True), repeats)
    measured_iters = int(np.asarray(measured.n_iter))
    measured_same = bool(np.array_equal(np.asarray(measured.state.weights), np.asarray(result.state.weights)))
    elkan = {}
    if not intelex:  # scikit-learn's own bound-based Lloyd (Elkan's), for comparison
        elkan_times, km_elkan = timed(lambda: KMeans(n_clusters, init=C0, n_init=1, algorithm="elkan", tol=0.0,
                                                     max_iter=max_iter).fit(X), anchor_repeats)
        elkan = {"anchor_elkan_per_iter_median_s": statistics.median(elkan_times) / int(km_elkan.n_iter_),
                 "n_iter_anchor_elkan": int(km_elkan.n_iter_)}
    centres = np.asarray(result.state.weights)
    labels = np.asarray(cc.bmu(spec, centres, X))
    theirs = np.asarray(km.cluster_centers_, np.float32)
    inertia_ours, inertia_theirs = inertia(X, centres), inertia(X, theirs)
    rel = abs(inertia_ours - inertia_theirs) / inertia_theirs
    same_labels = bool(np.array_equal(labels, np.asarray(km.labels_)))
    ok = same_labels and rel <= KMEANS_INERTIA_RTOL and measured_same and measured_iters == our_iters
    per_anchor = [t / anchor_iters for t in anchor_times]
    per_ours = [t / our_iters for t in our_times]
    per_measured = statistics.median(measured_times) / measured_iters
    print(f"{'':27s} measuring every epoch: compclust {per_measured:8.4f}s per iteration "
          f"(x{statistics.median(per_anchor) / per_measured:5.2f}), same centres {measured_same}", flush=True)
    return record(name, label, per_anchor, per_ours, compile_s, ok, time_unit="per iteration",
                  epoch_metrics=False, compclust_measured_per_iter_median_s=per_measured,
                  speedup_measured=statistics.median(per_anchor) / per_measured,
                  measured_same_centres=measured_same, **elkan,
                  max_abs_diff=float(np.abs(centres - theirs).max()), compile_method=method,
                  same_labels=same_labels, label_disagreements=int((labels != np.asarray(km.labels_)).sum()),
                  inertia_anchor=inertia_theirs, inertia_compclust=inertia_ours, inertia_rel_diff=rel,
                  inertia_anchor_reported=float(km.inertia_), inertia_rtol=KMEANS_INERTIA_RTOL,
                  n_iter_anchor=anchor_iters, n_iter_compclust=our_iters,
                  anchor_total_median_s=statistics.median(anchor_times),
                  compclust_total_median_s=statistics.median(our_times),
                  initial_centres="sklearn.cluster.kmeans_plusplus(X, K, random_state=0)",
                  shape=list(X.shape), clusters=n_clusters, max_iter=max_iter, tol=0.0, seeds=[0])


def kmeans_restarts_workload(name, X, n_clusters, n_restarts, n_epochs, repeats, anchor_repeats):
    from sklearn.cluster import KMeans

    X = np.ascontiguousarray(X, np.float32)

    def anchor():  # scikit-learn's defaults otherwise: greedy k-means++, tol=1e-4, max_iter=300
        return KMeans(n_clusters, n_init=n_restarts, init="k-means++", algorithm="lloyd", random_state=0).fit(X)

    anchor_times, km = timed(anchor, anchor_repeats)
    spec, hp = cc.kmeans(n_clusters), cc.Hparams()
    def keys():
        return jax.random.split(jax.random.key(0), n_restarts)

    def ours(epoch_metrics=False):
        # scikit-learn's own stopping rule (tol=1e-4 of the mean feature variance, labels unchanged):
        # on a CPU the restarts run one after another (lax.map), so a converged run stops costing.
        # scikit-learn keeps the final inertia only; so does compclust unmeasured (Lloyd on bounds).
        return cc.restarts(keys(), X, spec, hp, n_epochs=n_epochs, init="kmeans++", tol=1e-4,
                           epoch_metrics=epoch_metrics)

    our_times, best, compile_s, method = run_compclust(
        ours, repeats, loop_call("sweep_call", keys(), X, spec, hp, n_epochs, init="kmeans++", tol=1e-4,
                                 epoch_metrics=False))
    measured_times, measured, _, _ = run_compclust(lambda: ours(epoch_metrics=True), repeats)
    measured_same = bool(np.array_equal(np.asarray(measured.best.state.weights),
                                        np.asarray(best.best.state.weights)))
    print(f"{'':27s} measuring every epoch: compclust {statistics.median(measured_times):8.4f}s "
          f"(x{statistics.median(anchor_times) / statistics.median(measured_times):5.2f}), same best {measured_same}",
          flush=True)
    centres = np.asarray(best.best.state.weights)
    theirs = np.asarray(km.cluster_centers_, np.float32)
    best_ours, best_theirs = inertia(X, centres), inertia(X, theirs)
    ok = best_ours <= best_theirs * (1 + RESTARTS_INERTIA_SLACK) and measured_same
    runs_inertia = None
    try:
        runs_inertia = np.asarray(best.runs.metrics.inertia)[:, -1]
    except AttributeError:
        pass
    extra = {} if runs_inertia is None else {
        "inertia_compclust_runs_median": float(np.median(runs_inertia)),
        "inertia_compclust_runs_worst": float(np.max(runs_inertia))}
    return record(name, f"scikit-learn KMeans(n_init={n_restarts})", anchor_times, our_times, compile_s, ok,
                  time_unit="total", max_abs_diff=None, compile_method=method,  # different starts
                  epoch_metrics=False, compclust_measured_median_s=statistics.median(measured_times),
                  speedup_measured=statistics.median(anchor_times) / statistics.median(measured_times),
                  measured_same_best=measured_same,
                  inertia_anchor=best_theirs, inertia_compclust=best_ours,
                  inertia_ratio=best_ours / best_theirs, inertia_slack=RESTARTS_INERTIA_SLACK,
                  inertia_anchor_reported=float(km.inertia_), best_index=int(np.asarray(best.best_index)),
                  n_iter_anchor_best=int(km.n_iter_), epochs_compclust=n_epochs,
                  shape=list(X.shape), clusters=n_clusters, restarts=n_restarts, seeds="split(key(0), R)",
                  **extra)


# ---------------------------------------------------------------------------------------------- plan

def plan(mnist_dir, quick):
    """{workload: thunk} for the batch family; MNIST workloads are skipped without MNIST."""
    repeats, anchor_repeats = (3, 1) if quick else (5, 3)
    cache = {}

    def mnist():
        if "X" not in cache:
            images, _ = cc.data.load_mnist(mnist_dir)
            cache["X"] = np.ascontiguousarray(images[:2000] if quick else images, np.float32)
        return cache["X"]

    shape, epochs, r0, rn = ((10, 10), 5, 5.0, 1.0) if quick else ((20, 20), 20, 10.0, 1.0)
    n_restarts, restart_epochs = (8, 50) if quick else (32, 300)  # 300: scikit-learn's max_iter

    def rates():
        if "rates" not in cache:
            X = mnist()
            cache["rates"] = {**matmul_rate(1024 if quick else 2048),
                              "gemm_shape_gflops": gemm_rate(len(X), X.shape[1], shape[0] * shape[1])}
        return cache["rates"]

    def som(name, anchor):
        return lambda: som_batch_workload(name, anchor, mnist(), shape, epochs, r0, rn, repeats,
                                          anchor_repeats, rates=rates())

    thunks = {
        "som-batch-mnist": som("som-batch-mnist", "somoclu"),
        "som-batch-mnist-xpysom": som("som-batch-mnist-xpysom", "xpysom"),
        "som-batch-mnist-fastersom": som("som-batch-mnist-fastersom", "fastersom"),
        "kmeans-lloyd-mnist": lambda: kmeans_lloyd_workload("kmeans-lloyd-mnist", mnist(), 10, repeats,
                                                            anchor_repeats),
        "kmeans-lloyd-mnist-intelex": lambda: kmeans_lloyd_workload("kmeans-lloyd-mnist-intelex", mnist(), 10,
                                                                    repeats, anchor_repeats, intelex=True),
        # scikit-learn's 32 restarts take minutes on this shared 2-core machine: one anchor run
        "kmeans-restarts-mnist": lambda: kmeans_restarts_workload("kmeans-restarts-mnist", mnist(), 10,
                                                                  n_restarts, restart_epochs, 3, 1),
    }
    if not mnist_dir:
        return {name: (lambda name=name: skipped(name, "no --mnist-dir and COMPCLUST_MNIST_DIR is unset"))
                for name in thunks}
    return thunks


def run_workloads(thunks: dict, only=None, results=None, json_path=None, env=environment):
    """Runs each ``name -> thunk`` (``only`` filters by name); a thunk returns an entry, a list of
    entries or None. Appends them to ``results`` and writes ``json_path`` after each workload; a
    workload that raises becomes an entry with its error (``env()`` records the machine). Returns
    ``results``."""
    results = [] if results is None else results
    for name, thunk in thunks.items():
        if only and name not in only:
            continue
        try:
            entry = thunk()
        except Exception as error:  # noqa: BLE001 - one broken workload must not hide the others' figures
            import traceback

            traceback.print_exc()
            entry = {"workload": name, "error": f"{type(error).__name__}: {error}", "parity_ok": False,
                     "env": env()}
        entries = [e for e in (entry if isinstance(entry, list) else [entry]) if e is not None]
        results.extend(entries)
        if entries and json_path:
            cc.io.atomic_write_json(json_path, results)
    return results


def run(mnist_dir, quick, only=None, results=None, json_path=None):
    """Runs the batch workloads (``only`` filters by name), appending finished entries to ``results`` and
    writing them to ``json_path`` after each one. Returns ``results``."""
    return run_workloads(plan(mnist_dir, quick), only, results, json_path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True, help="where to write the JSON list of results")
    parser.add_argument("--quick", action="store_true", help="smaller workloads, fewer repeats")
    parser.add_argument("--mnist-dir", default=os.environ.get("COMPCLUST_MNIST_DIR"),
                        help="folder with the MNIST IDX files (default: $COMPCLUST_MNIST_DIR)")
    parser.add_argument("--only", nargs="*", choices=WORKLOADS, help="run only these workloads")
    args = parser.parse_args(argv)
    results = run(args.mnist_dir, args.quick, args.only, json_path=args.json)
    failed = [r["workload"] for r in results if not r["parity_ok"]]
    if failed:
        print(f"QUALITY FAILED: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
