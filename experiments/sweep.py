"""A resumable sweep of any compclust algorithm over a grid of settings and many seeds, kept in Parquet.

    python -m experiments.sweep --algorithm som --data digits --grid lr=0.1,0.5 sigma=1,3 \\
        --seeds 32 --epochs 10 --chunk 8 --out-dir results/som-digits

Every combination of the grid's values is a setting (a cartesian product, in the order the axes are
given; ``name=a:b:n`` is n values evenly spaced from a to b); each setting runs with every seed.
The work goes in chunks of ``--chunk`` seeds (times ``--settings-chunk`` settings, default all),
each chunk one call of one compiled ``compclust.sweep`` program, its seed axis sharded over all
visible devices when they divide it. Seed i's key is ``fold_in(key(base_seed), i)``; the last
chunk is padded with extra seeds (computed, then dropped) so that every chunk has one shape and the
program compiles once.

Each finished chunk is written atomically (temporary file, fsync, rename) as two Parquet tables,
``runs/<chunk>.parquet`` (one row per run: setting, seed, final metrics and, when the data has labels,
ACC/NMI/ARI/Rand/purity of the best-unit clustering) and ``curves/<chunk>.parquet`` (one row per run
and epoch), then recorded with the SHA-256 of both files in ``manifest.json`` (with the settings,
versions and devices of every session). Run it again with the same arguments after an interruption,
even SIGKILL, and it continues: a chunk counts as done only when the manifest lists it and both files
match their checksums; anything else (missing, half-written, corrupt) is recomputed, never read.
A different configuration in the same folder is refused. Read the tables with
``pyarrow.parquet.read_table("DIR/runs")`` (or pandas/polars/duckdb).

``--mesh SxD`` (e.g. ``2x4``) runs each chunk on a 2-D mesh of all visible devices instead: the
seeds split over S of them, each run's rows over D (batch and minibatch algorithms; an online
one needs D = 1), see ``compclust.sweep``'s ``mesh``. The chunk is then a multiple of S (the
default is rounded up; the padding seeds are computed, then dropped). Results equal the default's
to float rounding, so the mesh itself is not part of the configuration (the chunk is).

Before the first chunk it prints XLA's memory estimate of the compiled program per device
(arguments, outputs, temporaries) and refuses a chunk that would not fit in ``--max-memory``
(default: the memory available now, from /proc/meminfo; on a GPU the device's limit), suggesting
a smaller ``--chunk``. It ends with ``summary.csv`` / ``summary.md``: for each setting the mean and
95% confidence interval (Student's t) over seeds of every metric, and the best setting by
``--select`` (default with labels: clustering accuracy when there is one unit per class, else NMI;
without labels: quantization error).
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import io
import itertools
import json
import math
import os
import platform
import secrets
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import compclust as cc
from compclust.io import atomic_write_bytes, atomic_write_json

ALGORITHMS = ("som", "batch-som", "minibatch-som", "competitive-layer", "kmeans", "minibatch-kmeans",
              "neural-gas", "batch-neural-gas")
DATASETS = ("blobs", "digits", "iris", "wine", "mnist")
LOWER_IS_BETTER = ("quantization_error", "topographic_error", "inertia", "dead_units", "center_shift", "n_iter")
HIGHER_IS_BETTER = ("accuracy", "nmi", "ari", "rand_index", "purity")
FINAL_METRICS = ("quantization_error", "topographic_error", "inertia", "dead_units", "center_shift")
CURVE_METRICS = FINAL_METRICS + ("lr", "sigma")
MANIFEST = "manifest.json"
FORMAT = 1  # of the folder's layout; part of the configuration


# ----------------------------------------------------------------------------------------------
# Settings


def parse_grid(grid) -> dict:
    """``["lr=0.1,0.5", "sigma=1:3:3"]`` (or a dict of lists) as ``{"lr": [0.1, 0.5], "sigma": [1, 2, 3]}``."""
    if grid is None:
        return {}
    fields = cc.Hparams._fields
    items = []
    if isinstance(grid, dict):
        items = [(str(k), v) for k, v in grid.items()]
    else:
        for token in grid:
            if "=" not in token:
                raise ValueError(f"grid axis {token!r} must be NAME=v1,v2,... or NAME=start:stop:count")
            name, _, text = token.partition("=")
            items.append((name.strip(), text))
    axes = {}
    for name, values in items:
        if name not in fields:
            raise ValueError(f"grid axis {name!r} is not a hyperparameter; choose from {fields}")
        if name in axes:
            raise ValueError(f"grid axis {name!r} is given twice")
        if isinstance(values, str):
            text = values.strip()
            if ":" in text:
                parts = text.split(":")
                if len(parts) != 3:
                    raise ValueError(f"grid axis {name}={text!r}: a range is start:stop:count")
                try:
                    start, stop, count = float(parts[0]), float(parts[1]), int(parts[2])
                except ValueError:
                    raise ValueError(f"grid axis {name}={text!r}: a range is start:stop:count") from None
                values = list(np.linspace(start, stop, count)) if count > 0 else []
            else:
                values = [v for v in text.split(",") if v.strip()]
        try:
            numbers = [float(v) for v in values]
        except (TypeError, ValueError):
            raise ValueError(f"grid axis {name!r} has a value that is not a number: {values!r}") from None
        if not numbers:
            raise ValueError(f"grid axis {name!r} has no values (an empty axis makes an empty grid); "
                             f"give {name}=v1,v2,...")
        if not all(math.isfinite(v) for v in numbers):
            raise ValueError(f"grid axis {name!r} has a value that is not finite: {numbers}")
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"grid axis {name!r} repeats a value: {numbers}")
        axes[name] = numbers
    return axes


def settings_of(axes: dict) -> tuple[list, dict]:
    """The cartesian product of the axes, flattened: ``(names, {name: [H] values})`` (row-major,
    the last axis fastest). Without axes, one setting (the defaults)."""
    names = list(axes)
    if not names:
        return [], {}
    combos = list(itertools.product(*(axes[n] for n in names)))
    return names, {n: np.array([c[i] for c in combos], np.float64) for i, n in enumerate(names)}


def parse_bytes(text) -> int:
    """"8G", "512MiB", "1.5gb", "123456" -> bytes (powers of 1024)."""
    if isinstance(text, (int, np.integer)):
        return int(text)
    s = str(text).strip().lower().replace("ib", "").replace("b", "")
    scale = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    try:
        if s and s[-1] in scale:
            return int(float(s[:-1]) * scale[s[-1]])
        return int(float(s))
    except ValueError:
        raise ValueError(f"--max-memory {text!r} is not a size like 8G, 512M or a number of bytes") from None


def human(n_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n_bytes) < 1024 or unit == "TiB":
            return f"{n_bytes:.1f} {unit}" if unit != "B" else f"{int(n_bytes)} B"
        n_bytes /= 1024


def memory_limit():
    """``(bytes, where from, per_device)``: a GPU/TPU's own limit per device, else the host's
    available memory shared by all host devices."""
    device = jax.devices()[0]
    if device.platform != "cpu":
        try:
            stats = device.memory_stats() or {}
            if "bytes_limit" in stats:
                return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0)), f"{device.platform} bytes_limit", True
        except Exception:  # pragma: no cover - backends without memory_stats
            pass
    try:
        import psutil
        return int(psutil.virtual_memory().available), "available host memory (psutil)", False
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "MemAvailable (/proc/meminfo)", False
    except OSError:
        pass
    return None, "unknown (pass --max-memory)", False


# ----------------------------------------------------------------------------------------------
# Data and specs


def load_data(name: str, mnist_dir=None, labels_path=None, scale: str = "auto"):
    """``(x float32 [N, D], labels [N] int or None, description)``."""
    labels = None
    if name == "blobs":
        x, labels = cc.data.make_blobs(0)
    elif name == "digits":
        x, labels = cc.data.load_digits()
    elif name in ("iris", "wine"):
        from sklearn import datasets
        bunch = getattr(datasets, f"load_{name}")()
        x, labels = bunch.data, bunch.target
    elif name == "mnist":
        x, labels = cc.data.load_mnist(mnist_dir)
    elif name.endswith(".npy"):
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"--data {name}: file not found")
        x = np.load(path, allow_pickle=False)
    else:
        raise ValueError(f"--data must be one of {DATASETS} or a path to a .npy file, got {name!r}")
    if labels_path is not None:
        labels = np.load(labels_path, allow_pickle=False)
    x = cc.validation.check_data(x, dtype=None)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim != 1 or len(labels) != len(x) or labels.dtype.kind not in "iu" or labels.min() < 0:
            raise ValueError(f"labels must be [N={len(x)}] non-negative integers, got shape {labels.shape} "
                             f"dtype {labels.dtype}")
        labels = labels.astype(np.int64)
    if scale == "auto":
        scale = "none" if name == "mnist" else "minmax"
    if scale != "none":
        x = cc.transform(cc.fit_scaler(x, scale), x)
    return np.ascontiguousarray(x, np.float32), labels, scale


def parse_map(text) -> tuple:
    if isinstance(text, (tuple, list)):
        return tuple(int(v) for v in text)
    try:
        shape = tuple(int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"--map must look like 10x10 (or 20, or 4x4x4), got {text!r}") from None
    return shape


def make_spec(algorithm, *, units, map_shape, batch_size, chunk_size, topology):
    if algorithm not in ALGORITHMS:
        raise ValueError(f"--algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    family = {"batch-som": "batch", "minibatch-som": "minibatch", "minibatch-kmeans": "minibatch",
              "batch-neural-gas": "batch", "kmeans": "batch"}.get(algorithm, "online")
    batch = batch_size if family == "minibatch" else None
    if algorithm.endswith("som"):
        return cc.som(map_shape, topology=topology, algorithm=family, batch_size=batch, chunk_size=chunk_size)
    if algorithm == "competitive-layer":
        return cc.competitive_layer(units, chunk_size=chunk_size)
    if algorithm.endswith("kmeans"):
        return cc.kmeans(units, algorithm=family, batch_size=batch, chunk_size=chunk_size)
    return cc.neural_gas(units, algorithm=family, batch_size=batch, chunk_size=chunk_size)


def unused_fields(spec, names) -> list:
    """Grid axes that the spec never reads (sweeping them repeats the same runs)."""
    decays = ("linear", "exponential", "inverse_time")
    used = set()
    if spec.algorithm != "batch" and spec.lr_schedule != "count":
        used.add("lr")
        if callable(spec.lr_schedule) or spec.lr_schedule in decays:
            used.add("lr_final")
    if spec.kernel != "delta":
        used.add("sigma")
        if callable(spec.sigma_schedule) or spec.sigma_schedule in decays:
            used.add("sigma_final")
    if spec.winner == "softmax":
        used.add("temperature")
    if spec.winner == "desieno":
        used.update(("bias_scale", "frequency_rate"))
    return [n for n in names if n not in used]


def parse_mesh(text):
    """``"SxD"`` as a ``("seeds", "data")`` Mesh of all visible devices (S x D of them), or None."""
    if text is None:
        return None
    from jax.sharding import Mesh

    try:
        seeds, rows = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"--mesh must look like SxD (seeds x data devices), e.g. 2x4, got {text!r}") from None
    devices = jax.devices()
    if seeds < 1 or rows < 1 or seeds * rows != len(devices):
        raise ValueError(f"--mesh {text}: S x D must be the {len(devices)} visible device(s), got {seeds} x {rows}"
                         " (on a CPU set XLA_FLAGS=--xla_force_host_platform_device_count=N first)")
    return Mesh(np.array(devices).reshape(seeds, rows), ("seeds", "data"))


def seed_keys(base_seed: int, indices):
    root = jax.random.key(base_seed)
    return jax.vmap(lambda i: jax.random.fold_in(root, i))(jnp.asarray(indices, jnp.int32))


@functools.partial(jax.jit, static_argnames=("spec",))
def _best_units(weights, data, *, spec):
    """Best unit of every sample for each run's weights ``[R, K, D] -> [R, N]``, one run at a time."""
    return jax.lax.map(lambda w: cc.metrics.bmu_impl(spec, w, data), weights)


# ----------------------------------------------------------------------------------------------
# Files


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _parquet_bytes(columns: dict) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer, compression="zstd")
    return buffer.getvalue()


def _read_verified(path: Path, sha256: str):
    """The table at ``path`` if its bytes have the recorded checksum, else None."""
    import pyarrow.parquet as pq

    try:
        data = path.read_bytes()
    except OSError:
        return None
    if _sha256(data) != sha256:
        return None
    return pq.read_table(io.BytesIO(data))


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for package in ("compclust", "jax", "jaxlib", "numpy", "pyarrow", "scikit-learn"):
        try:
            out[package] = md.version(package)
        except md.PackageNotFoundError:
            out[package] = None
    try:
        root = Path(__file__).resolve().parents[1]
        out["git_commit"] = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                           text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        out["git_commit"] = None
    return out


def _devices() -> dict:
    devices = jax.devices()
    return {"backend": jax.default_backend(), "count": len(devices), "process_count": jax.process_count(),
            "devices": [f"{d.platform}:{d.id} {getattr(d, 'device_kind', '')}".strip() for d in devices]}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------------------------
# The sweep


def _suggest_chunk(chunk, n_devices, fixed, total, limit):
    """The largest chunk (a multiple of the devices) whose estimate fits, scaling the per-run part."""
    per_run = max(total - fixed, 1) / chunk
    fits = int((limit - fixed) // per_run) if limit > fixed else 0
    if fits >= n_devices:
        fits -= fits % n_devices
    return max(fits, 0)


def run(out_dir, *, algorithm="som", data="digits", grid=None, n_seeds=8, n_epochs=10, chunk=None,
        settings_chunk=None, base_seed=0, units=None, map_shape=(10, 10), topology="rectangular", batch_size=64,
        init=None, tol=None, scale="auto", mnist_dir=None, labels=None, chunk_size=None, select=None,
        max_memory=None, max_chunks=None, pause_after_chunk=0.0, progress=True, log=print, mesh=None) -> dict:
    """Run (or resume) the sweep; returns the summary (see the module docstring).

    mesh: None (seeds over all devices when they divide the chunk), or "SxD" / a ("seeds", "data") Mesh.

    max_chunks: compute at most this many new chunks, then stop (split a long sweep over calls).
    pause_after_chunk: seconds to sleep after each finished chunk (to demonstrate or test a kill).
    """
    out_dir = Path(out_dir)
    axes = parse_grid(grid)
    names, columns = settings_of(axes)
    n_settings = len(next(iter(columns.values()))) if names else 1
    for value, what in ((n_seeds, "seeds"), (n_epochs, "epochs")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"--{what} must be a positive integer, got {value!r}")
    n_devices = jax.device_count()
    if isinstance(mesh, str):
        mesh = parse_mesh(mesh)
    seed_devices = 1 if mesh is None else mesh.shape.get("seeds", 1)
    if chunk is None:
        chunk = min(n_seeds, 8 * n_devices)
        chunk = -(-chunk // seed_devices) * seed_devices  # a multiple of the mesh's seed devices
    settings_chunk = n_settings if settings_chunk is None else min(int(settings_chunk), n_settings)
    for value, what in ((chunk, "chunk"), (settings_chunk, "settings-chunk")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"--{what} must be a positive integer, got {value!r}")
    if mesh is None:
        chunk = min(int(chunk), n_seeds)
    elif chunk % seed_devices:
        raise ValueError(f"--chunk {chunk} must be a multiple of the mesh's {seed_devices} seed devices (--mesh)")
    else:
        chunk = min(int(chunk), -(-n_seeds // seed_devices) * seed_devices)

    x, y, scale = load_data(data, mnist_dir, labels, scale)
    n_classes = int(y.max()) + 1 if y is not None else None
    if units is None:
        units = n_classes or 10
    spec = make_spec(algorithm, units=units, map_shape=parse_map(map_shape), batch_size=batch_size,
                     chunk_size=chunk_size, topology=topology)
    if init is None:
        init = "kmeans++" if algorithm.endswith("kmeans") else "random_samples"
    if select is None:  # one-to-one accuracy when there is a unit per class, else NMI (any number of clusters)
        select = ("accuracy" if spec.n_units == n_classes else "nmi") if y is not None else "quantization_error"
    for name in unused_fields(spec, names):
        log(f"note: {name} has no effect on {algorithm} (its values give identical runs)")
    if select not in LOWER_IS_BETTER + HIGHER_IS_BETTER or (select in HIGHER_IS_BETTER and y is None):
        allowed = LOWER_IS_BETTER + (HIGHER_IS_BETTER if y is not None else ())
        raise ValueError(f"--select {select!r}: choose from {allowed}")

    fingerprint = hashlib.sha256(x.tobytes())
    if y is not None:
        fingerprint.update(y.tobytes())
    config = {
        "format": FORMAT, "algorithm": algorithm, "spec": repr(spec), "init": init, "tol": tol,
        "data": {"name": str(data), "rows": int(x.shape[0]), "features": int(x.shape[1]), "scale": scale,
                 "labels": y is not None, "n_classes": n_classes, "sha256": fingerprint.hexdigest()},
        "grid": axes, "n_settings": n_settings, "n_seeds": int(n_seeds), "n_epochs": int(n_epochs),
        "chunk": int(chunk), "settings_chunk": int(settings_chunk), "base_seed": int(base_seed),
        # compclust.native's online epochs agree with the XLA scan to rounding only: a resume must use the same
        "online_engine": "native" if cc.loop._native_threads(spec, x, sweep=True) else "xla",
    }
    manifest_path = out_dir / MANIFEST
    manifest = None
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{manifest_path} is unreadable ({err}); move the folder aside") from None
        if manifest.get("config") != json.loads(json.dumps(config)):
            old = manifest.get("config", {})
            diff = sorted(k for k in set(old) | set(config) if old.get(k) != json.loads(json.dumps(config)).get(k))
            raise ValueError(f"{out_dir} holds a sweep with another configuration (differs in {diff}); use a new "
                             "--out-dir, or the original arguments to resume it")

    # The chunks: settings blocks x seed blocks, each padded to one shape.
    setting_blocks = [(h, min(h + settings_chunk, n_settings)) for h in range(0, n_settings, settings_chunk)]
    seed_blocks = [(s, min(s + chunk, n_seeds)) for s in range(0, n_seeds, chunk)]
    plan = []
    for h0, h1 in setting_blocks:
        for s0, s1 in seed_blocks:
            name = f"s{s0:06d}" if len(setting_blocks) == 1 else f"h{h0:05d}-s{s0:06d}"
            plan.append((name, h0, h1, s0, s1))

    chunks_record = dict(manifest["chunks"]) if manifest else {}
    done = set()
    for name, *_ in plan:
        entry = chunks_record.get(name)
        if entry is None:
            continue
        ok = all((out_dir / entry[kind]["file"]).is_file() and
                 _sha256((out_dir / entry[kind]["file"]).read_bytes()) == entry[kind]["sha256"]
                 for kind in ("runs", "curves"))
        if ok:
            done.add(name)
        else:
            log(f"chunk {name}: a file is missing or does not match its checksum: recomputing it")
            del chunks_record[name]
    todo = [p for p in plan if p[0] not in done]

    def hparams_for(h0, h1):
        fields = {}
        for n in names:
            values = columns[n][h0:h1]
            values = np.concatenate([values, np.full(settings_chunk - len(values), values[-1])])
            fields[n] = values.astype(np.float32)
        if not fields:  # always sweep one field, so results have a settings axis
            fields["lr"] = np.full(settings_chunk, cc.Hparams().lr, np.float32)
        return cc.Hparams(**fields)

    def keys_for(s0):
        return seed_keys(base_seed, np.arange(s0, s0 + chunk))

    session = {"id": secrets.token_hex(6), "started": _now(), "versions": _versions(), "devices": _devices(),
               "argv": sys.argv[1:], "computed": [],
               "mesh": None if mesh is None else {str(k): int(v) for k, v in mesh.shape.items()}}
    report = {"runs_per_chunk": settings_chunk * chunk, "devices": n_devices}
    compiled = labels_compiled = None
    if todo:
        if mesh is None and chunk % n_devices:
            log(f"note: --chunk {chunk} is not a multiple of the {n_devices} devices: each chunk runs on one device")
        _, h0, h1, s0, _ = todo[0]
        jitted, args, static = cc.loop.sweep_call(keys_for(s0), x, spec, hparams_for(h0, h1), n_epochs, init=init,
                                                  tol=tol, mesh=mesh)
        began = time.perf_counter()
        compiled = jitted.lower(*args, **static).compile()
        weights_shape = jax.ShapeDtypeStruct((settings_chunk * chunk, spec.n_units, x.shape[1]), jnp.float32)
        labels_compiled = _best_units.lower(weights_shape, x, spec=spec).compile() if y is not None else None
        report["compile_seconds"] = round(time.perf_counter() - began, 2)
        report.update(_check_memory(compiled, labels_compiled, chunk, n_devices, max_memory, log, report))

    record = manifest or {"config": config, "created": _now(), "chunks": {}, "sessions": []}
    record["config"] = config
    record["chunks"] = chunks_record
    record["sessions"] = list(record.get("sessions", [])) + [session]
    if todo:
        atomic_write_json(manifest_path, record)

    bar = None
    if progress and todo:
        from tqdm import tqdm
        bar = tqdm(total=len(plan), initial=len(plan) - len(todo), unit="chunk", desc=f"{algorithm} sweep",
                   file=sys.stderr, dynamic_ncols=True)
    computed = 0
    try:
        for name, h0, h1, s0, s1 in todo:
            if max_chunks is not None and computed >= max_chunks:
                break
            began = time.perf_counter()
            _, args, _ = cc.loop.sweep_call(keys_for(s0), x, spec, hparams_for(h0, h1), n_epochs, init=init, tol=tol,
                                            mesh=mesh)
            result = compiled(*args)
            tables = _tables(result, x, y, spec, names, columns, h0, h1, s0, s1, n_classes, labels_compiled)
            entry = {"settings": [h0, h1], "seeds": [s0, s1]}
            for kind, table in zip(("runs", "curves"), tables):
                blob = _parquet_bytes(table)
                rel = f"{kind}/{name}.parquet"
                atomic_write_bytes(out_dir / rel, blob)
                entry[kind] = {"file": rel, "sha256": _sha256(blob), "rows": len(next(iter(table.values())))}
            entry["seconds"] = round(time.perf_counter() - began, 3)
            entry["finished"] = _now()
            entry["session"] = session["id"]
            record["chunks"][name] = entry
            session["computed"].append(name)
            atomic_write_json(manifest_path, record)  # the chunk counts as done from here on
            computed += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(runs_per_s=f"{settings_chunk * chunk / entry['seconds']:.1f}")
            if pause_after_chunk:
                time.sleep(pause_after_chunk)
    finally:
        if bar is not None:
            bar.close()

    return _summarize(out_dir, record, plan, names, select, report, session, log)


def _check_memory(compiled, labels_compiled, chunk, n_devices, max_memory, log, report) -> dict:
    """Print XLA's estimate and refuse a chunk that would not fit."""
    out = {}
    try:
        stats = compiled.memory_analysis()
    except Exception as err:  # pragma: no cover - backends without the analysis
        log(f"memory estimate: not available on this backend ({err})")
        return out
    if stats is None:  # pragma: no cover
        log("memory estimate: not available on this backend")
        return out
    args, outs, temp, alias = (stats.argument_size_in_bytes, stats.output_size_in_bytes,
                               stats.temp_size_in_bytes, stats.alias_size_in_bytes)
    total = args + outs + temp - alias
    out["memory_per_device"] = {"arguments": args, "outputs": outs, "temporaries": temp, "aliased": alias,
                                "total": total}
    log(f"memory estimate per device (XLA, one chunk = {report['runs_per_chunk']} runs over {n_devices} "
        f"device(s)): arguments {human(args)}, outputs {human(outs)}, temporaries {human(temp)}"
        f"{f', aliased {human(alias)}' if alias else ''}; total {human(total)}")
    need = total
    if labels_compiled is not None:  # runs after training, while its arguments and outputs are still held
        ls = labels_compiled.memory_analysis()
        extra = ls.output_size_in_bytes + ls.temp_size_in_bytes
        out["labels_memory"] = extra
        need = max(total, args + outs + extra)
        log(f"  then the best units of every run for the label metrics: outputs {human(ls.output_size_in_bytes)}, "
            f"temporaries {human(ls.temp_size_in_bytes)}")
    if max_memory is None:
        limit, source, per_device = memory_limit()
    else:
        limit, source, per_device = parse_bytes(max_memory), "--max-memory", jax.default_backend() != "cpu"
    if limit is None:
        log(f"  memory limit: {source}")
        return out
    devices_sharing = 1 if per_device else jax.local_device_count()
    need_all = need * devices_sharing
    where = "per device" if per_device else f"for {devices_sharing} host device(s) together"
    log(f"  limit: {human(limit)} ({source}); needed {where}: {human(need_all)}")
    out["memory_limit"] = limit
    if need_all > limit:
        fixed = args * devices_sharing
        suggestion = _suggest_chunk(chunk, n_devices, fixed, need_all, limit)
        hint = (f"try --chunk {suggestion}" if suggestion >= 1 else
                "even one seed per chunk does not fit: lower --settings-chunk, or set --chunk-size (rows per block)")
        raise ValueError(f"one chunk of {report['runs_per_chunk']} runs needs about {human(need_all)} {where} "
                         f"(XLA's estimate) but the limit is {human(limit)} ({source}): {hint}")
    return out


def _tables(result, x, y, spec, names, columns, h0, h1, s0, s1, n_classes, labels_compiled):
    """The chunk's runs and curves tables (padding settings and seeds dropped)."""
    n_h, n_s = h1 - h0, s1 - s0
    metrics = jax.tree_util.tree_map(lambda a: np.asarray(a)[:n_h, :n_s], result.metrics)
    n_iter = np.asarray(result.n_iter)[:n_h, :n_s]
    setting = np.repeat(np.arange(h0, h1), n_s)
    seed = np.tile(np.arange(s0, s1), n_h)
    runs = {"setting": setting.astype(np.int64)}
    for n in names:
        runs[n] = np.repeat(columns[n][h0:h1], n_s)
    runs["seed"] = seed.astype(np.int64)
    for field in FINAL_METRICS:
        values = getattr(metrics, field)[..., -1].reshape(-1)
        runs[field] = values.astype(np.int64 if field == "dead_units" else np.float64)
    runs["n_iter"] = n_iter.reshape(-1).astype(np.int64)
    if y is not None:
        weights = np.asarray(result.state.weights)  # [H, S, K, D] padded
        flat = weights.reshape(-1, *weights.shape[2:])
        best = labels_compiled(flat, x)  # [H * S, N] padded: every chunk has one shape, one compilation
        scores = cc.label_metrics.label_metrics(y, best, n_classes=n_classes, n_clusters=spec.n_units)
        for field in HIGHER_IS_BETTER:
            values = np.asarray(getattr(scores, field), np.float64).reshape(weights.shape[:2])
            runs[field] = values[:n_h, :n_s].reshape(-1)
    n_epochs = metrics.quantization_error.shape[-1]
    curves = {"setting": np.repeat(setting, n_epochs).astype(np.int64),
              "seed": np.repeat(seed, n_epochs).astype(np.int64),
              "epoch": np.tile(np.arange(1, n_epochs + 1), n_h * n_s).astype(np.int64)}
    for field in CURVE_METRICS:
        values = getattr(metrics, field).reshape(-1)
        curves[field] = values.astype(np.int64 if field == "dead_units" else np.float64)
    return runs, curves


def _confidence(values: np.ndarray):
    from scipy import stats

    values = values[np.isfinite(values)]
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    mean = float(values.mean())
    if n < 2:
        return mean, float("nan")
    half = float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n))
    return mean, half


def _summarize(out_dir, record, plan, names, select, report, session, log) -> dict:
    import pyarrow as pa

    tables = []
    for name, *_ in plan:
        entry = record["chunks"].get(name)
        if entry is None:
            continue
        table = _read_verified(out_dir / entry["runs"]["file"], entry["runs"]["sha256"])
        if table is None:  # changed on disk since the check at the start: never read as a result
            log(f"chunk {name}: runs file no longer matches its checksum; rerun to recompute it")
            continue
        tables.append(table)
    complete = len(tables) == len(plan)
    summary = {"out_dir": str(out_dir), "chunks_done": len(tables), "chunks_total": len(plan), "complete": complete,
               "computed_now": list(session["computed"]), "select": select, **report}
    if not tables:
        return summary
    runs = pa.concat_tables(tables)
    data = {c: runs.column(c).to_numpy() for c in runs.column_names}
    metric_names = [c for c in runs.column_names
                    if c in LOWER_IS_BETTER + HIGHER_IS_BETTER and np.isfinite(data[c].astype(float)).any()]
    rows = []
    for setting in np.unique(data["setting"]):
        mask = data["setting"] == setting
        row = {"setting": int(setting)}
        for n in names:
            row[n] = float(data[n][mask][0])
        row["seeds"] = int(mask.sum())
        for m in metric_names:
            mean, half = _confidence(data[m][mask].astype(np.float64))
            row[f"{m}_mean"], row[f"{m}_ci95"] = mean, half
        rows.append(row)
    key = f"{select}_mean"
    scored = [r for r in rows if key in r and math.isfinite(r[key])]
    best = None
    if scored:
        pick = min if select in LOWER_IS_BETTER else max
        best = pick(scored, key=lambda r: r[key])
    summary.update(rows=rows, best=best, runs=int(runs.num_rows))
    text = _markdown(rows, names, metric_names, best, select, complete)
    summary["markdown"] = text
    log(text)
    if complete:
        header = list(rows[0])
        csv = ",".join(header) + "\n" + "".join(",".join(_csv(r[h]) for h in header) + "\n" for r in rows)
        atomic_write_bytes(out_dir / "summary.csv", csv.encode())
        atomic_write_bytes(out_dir / "summary.md", (text + "\n").encode())
        atomic_write_json(out_dir / "summary.json", {k: v for k, v in summary.items() if k != "markdown"})
    return summary


def _csv(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _markdown(rows, names, metric_names, best, select, complete) -> str:
    head = ["setting"] + names + ["seeds"] + metric_names
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        cells = [str(r["setting"])] + [f"{r[n]:g}" for n in names] + [str(r["seeds"])]
        cells += [f"{r[f'{m}_mean']:.4g} ± {r[f'{m}_ci95']:.2g}" for m in metric_names]
        lines.append("| " + " | ".join(cells) + " |")
    title = "Mean ± 95% confidence interval over seeds" + ("" if complete else " (INCOMPLETE: chunks missing)")
    text = title + "\n\n" + "\n".join(lines)
    if best is not None:
        chosen = ", ".join(f"{n}={best[n]:g}" for n in names) or "the defaults"
        direction = "lowest" if select in LOWER_IS_BETTER else "highest"
        text += (f"\n\nBest setting by {select} ({direction} mean): setting {best['setting']} ({chosen}): "
                 f"{best[f'{select}_mean']:.4g} ± {best[f'{select}_ci95']:.2g}")
    return text


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--algorithm", choices=ALGORITHMS, default="som")
    parser.add_argument("--data", default="digits", help=f"one of {DATASETS} or PATH.npy")
    parser.add_argument("--labels", default=None, help="PATH.npy of integer labels for a .npy data set")
    parser.add_argument("--mnist-dir", default=None, help="folder of MNIST's IDX .gz files (or COMPCLUST_MNIST_DIR)")
    parser.add_argument("--scale", choices=("auto", "none", "minmax", "standard", "global_norm"), default="auto",
                        help="auto: minmax, except MNIST (already in [0, 1])")
    parser.add_argument("--grid", nargs="*", default=[], metavar="NAME=V1,V2",
                        help=f"hyperparameter axes (cartesian product): fields of Hparams {cc.Hparams._fields}")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=None, help="seeds per compiled chunk (default 8 per device)")
    parser.add_argument("--mesh", default=None, metavar="SxD",
                        help="a seeds x data mesh of all visible devices, e.g. 2x4 (default: seeds over all devices)")
    parser.add_argument("--settings-chunk", type=int, default=None, help="settings per chunk (default: all)")
    parser.add_argument("--units", type=int, default=None, help="units/clusters (default: classes, else 10)")
    parser.add_argument("--map", default="10x10", help="SOM grid, e.g. 10x10")
    parser.add_argument("--topology", choices=("rectangular", "hexagonal"), default="rectangular")
    parser.add_argument("--batch-size", type=int, default=64, help="minibatch algorithms")
    parser.add_argument("--chunk-size", type=int, default=None, help="rows per block of the [N, K] distance work")
    parser.add_argument("--init", default=None, help="initializer (default kmeans++ for K-means, else random_samples)")
    parser.add_argument("--tol", type=float, default=None, help="stop runs early (see compclust.fit)")
    parser.add_argument("--base-seed", type=int, default=0)
    parser.add_argument("--select", default=None, help="metric that picks the best setting")
    parser.add_argument("--max-memory", default=None, help="refuse a chunk whose estimate is above this (e.g. 8G)")
    parser.add_argument("--max-chunks", type=int, default=None, help="compute at most this many new chunks")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--pause-after-chunk", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        summary = run(args.out_dir, algorithm=args.algorithm, data=args.data, grid=args.grid, n_seeds=args.seeds,
                      n_epochs=args.epochs, chunk=args.chunk, settings_chunk=args.settings_chunk,
                      base_seed=args.base_seed, units=args.units, map_shape=args.map, topology=args.topology,
                      batch_size=args.batch_size, init=args.init, tol=args.tol, scale=args.scale,
                      mnist_dir=args.mnist_dir, labels=args.labels, chunk_size=args.chunk_size, select=args.select,
                      max_memory=args.max_memory, max_chunks=args.max_chunks,
                      pause_after_chunk=args.pause_after_chunk, progress=not args.no_progress, mesh=args.mesh)
    except ValueError as err:
        parser.exit(2, f"error: {err}\n")
    print(f"{summary['chunks_done']}/{summary['chunks_total']} chunks done"
          + ("" if summary["complete"] else " (run the same command again to continue)"))
    return summary


if __name__ == "__main__":
    cc.fast_cpu_loops(strict=False)  # XLA:CPU loop hoisting, before JAX starts (compclust.fast_loops)
    main()
