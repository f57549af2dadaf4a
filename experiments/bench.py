"""Benchmarks against the anchors, in one process, from the same initial weights and sample order.

    python -m experiments.bench --json results/bench.json [--quick] [--mnist-dir DIR] [--family online|batch|scale|all]

For each workload the anchor (MiniSom, neurolab) runs its own training code and compclust runs
the same rule; both start from the anchor's initial weights and visit the samples in the same
order, so the final weights must agree (``max_abs_diff``). Compilation is timed apart
(``jit(...).lower(...).compile()``) and excluded; every timed call is wrapped in
``jax.block_until_ready``; medians and minima of several runs are reported as ratios measured in
the same run. A result that is fast but wrong fails the run (exit status 1).

The seed sweep shards its seeds over the CPU cores: this script asks XLA for one host device
per core before JAX is imported. Run as a script it also turns on ``compclust.fast_cpu_loops()``
(XLA:CPU's small-while-loop hoisting, the documented switch the online family needs on a CPU);
``--no-fast-loops`` or ``COMPCLUST_FAST_LOOPS=0`` leaves it off, and a user's own
``xla_backend_extra_options`` in ``XLA_FLAGS`` is kept as it is. Besides the anchored workloads it
records the seed sweep's throughput (updates per second over all seeds) and, in two fresh
processes, what the switch changes for other JAX code (``experiments/flag_effect.py``).
``--family scale`` runs ``experiments/bench_scale.py`` instead: the batch SOM split over two
devices against one, and K-means restarts per second at 64, 256 and 1024 seeds.
"""
from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={os.cpu_count() or 1}")

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

import compclust as cc  # noqa: E402
from compclust import loop  # noqa: E402

# neurolab 0.3.5 predates NumPy 2.
np.Inf = getattr(np, "Inf", np.inf)
if not hasattr(np, "asfarray"):
    np.asfarray = lambda a, dtype=float: np.asarray(a, dtype=dtype)

PARITY_TOL = 1e-5
TARGETS = {"som-online-digits": 30, "som-online-mnist": 20, "som-sweep-64": 60, "cwta-blobs": 500}


OUR_MIN_SECONDS = 0.5  # compclust's side runs at least this long in all (see timed)


def timed(fn, repeats, min_seconds=0.0):
    """Seconds of each call of fn (its result blocked on), and the last result: ``repeats`` calls,
    and more until they add up to ``min_seconds`` (at most 1000). compclust's side passes
    OUR_MIN_SECONDS: the median of 7 calls of a millisecond is as much timer and scheduler noise
    as run time (cwta: 1.3 and 1.6 ms in two runs of the same code); the anchors take seconds a call."""
    times, out = [], None
    while len(times) < repeats or (sum(times) < min_seconds and len(times) < 1000):
        start = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return times, out


def compile_seconds(call, *args, **kwargs):
    """Seconds to lower and compile what ``loop.fit_call``/``loop.sweep_call`` would run."""
    jitted, call_args, static = call(*args, **kwargs)
    start = time.perf_counter()
    jitted.lower(*call_args, **static).compile()
    return time.perf_counter() - start


def minisom_start(X, shape, sigma, lr, seed):
    """A MiniSom map as its ``random_seed`` initialises it, and those starting weights ``[K, D]``
    (rounded to float32 so that both sides start from the same values)."""
    from minisom import MiniSom

    som = MiniSom(shape[0], shape[1], X.shape[1], sigma=sigma, learning_rate=lr, random_seed=seed)
    start = som.get_weights().reshape(-1, X.shape[1]).astype(np.float32)
    som._weights = start.reshape(som._weights.shape).astype(np.float64)  # both start from float32 values
    return som, start


def som_workload(name, X, shape, sigma, lr, n_epochs, repeats, anchor_repeats):
    X = np.asarray(X, np.float32)
    X64 = X.astype(np.float64)
    order = np.arange(len(X))
    spec, hp = cc.som(shape), cc.Hparams(lr=lr, sigma=sigma)

    def anchor():  # MiniSom's default online training: train(data, epochs * N), samples in data order
        som, _ = minisom_start(X, shape, sigma, lr, seed=0)
        som.train(X64, n_epochs * len(X))
        return som.get_weights()

    _, start = minisom_start(X, shape, sigma, lr, seed=0)
    anchor_times, theirs = timed(anchor, anchor_repeats)

    def ours():
        return cc.fit(jax.random.key(0), X, spec, hp, n_epochs, init=start, order=order)

    compile_s = compile_seconds(loop.fit_call, jax.random.key(0), X, spec, hp, n_epochs, init=start, order=order)
    ours()  # warm the cache of the public entry point
    our_times, result = timed(ours, repeats, OUR_MIN_SECONDS)
    last_times = last_epoch_only(lambda: cc.fit(jax.random.key(0), X, spec, hp, n_epochs, init=start, order=order,
                                                epoch_metrics=False), repeats, result)
    weights = np.asarray(result.state.weights)
    theirs = theirs.reshape(-1, X.shape[1])
    som_eval = cc.evaluate(spec, theirs.astype(np.float32), X)
    return record(name, "MiniSom", anchor_times, our_times, compile_s, **last_times,
                  max_abs_diff=float(np.abs(weights - theirs).max()),
                  qe_anchor=float(som_eval.quantization_error), qe_compclust=float(result.metrics.quantization_error[-1]),
                  shape=list(X.shape), grid=list(shape), sigma=sigma, lr=lr, epochs=n_epochs, seeds=[0])


def sweep_workload(name, X, shape, sigma, lr, n_epochs, n_seeds, repeats, anchor_repeats):
    X = np.asarray(X, np.float32)
    X64 = X.astype(np.float64)
    spec, hp = cc.som(shape), cc.Hparams(lr=lr, sigma=sigma)
    starts = np.stack([minisom_start(X, shape, sigma, lr, seed=s)[1] for s in range(n_seeds)])

    def anchor():
        finals = []
        for s in range(n_seeds):
            som, _ = minisom_start(X, shape, sigma, lr, seed=s)
            som.train(X64, n_epochs * len(X))
            finals.append(som.get_weights().reshape(-1, X.shape[1]))
        return np.stack(finals)

    anchor_times, theirs = timed(anchor, anchor_repeats)
    order = np.arange(len(X))

    def ours():
        keys = jax.random.split(jax.random.key(0), n_seeds)
        return cc.sweep(keys, X, spec, hp, n_epochs, init=starts, order=order)

    compile_s = compile_seconds(loop.sweep_call, jax.random.split(jax.random.key(0), n_seeds), X, spec, hp, n_epochs,
                                init=starts, order=order)
    ours()
    our_times, result = timed(ours, repeats, OUR_MIN_SECONDS)
    last_times = last_epoch_only(lambda: cc.sweep(jax.random.split(jax.random.key(0), n_seeds), X, spec, hp, n_epochs,
                                                  init=starts, order=order, epoch_metrics=False), repeats, result)
    diffs = np.abs(np.asarray(result.state.weights) - theirs).max(axis=(1, 2))
    qe_anchor = np.mean([float(cc.evaluate(spec, w.astype(np.float32), X).quantization_error) for w in theirs])
    return record(name, "MiniSom", anchor_times, our_times, compile_s, **last_times,
                  max_abs_diff=float(np.median(diffs)), max_abs_diff_worst_seed=float(diffs.max()),
                  seeds_over_tolerance=int(np.sum(diffs > PARITY_TOL)),
                  qe_anchor=float(qe_anchor), qe_compclust=float(np.mean(result.metrics.quantization_error[:, -1])),
                  shape=list(X.shape), grid=list(shape), sigma=sigma, lr=lr, epochs=n_epochs,
                  seeds=list(range(n_seeds)), devices=len(jax.devices()))


def cwta_workload(name, n_epochs, repeats, anchor_repeats, seed=0, n_units=5):
    import neurolab

    points, _ = cc.data.make_blobs(seed)
    X = cc.transform(cc.fit_scaler(points, "global_norm"), points).astype(np.float64)

    def anchor():
        net = neurolab.net.newc([[X.min(), X.max()]] * 3, n_units)
        np.random.seed(seed)
        # neurolab checks its epoch limit before learning: epochs=E+1 makes E learning passes.
        net.train(X, epochs=n_epochs + 1, show=0)
        return net.layers[0].np["w"]

    anchor_times, theirs = timed(anchor, anchor_repeats)
    np.random.seed(seed)
    start = X[[np.random.randint(0, len(X)) for _ in range(n_units)]].astype(np.float32)
    X32, order = X.astype(np.float32), np.arange(len(X))
    spec, hp = cc.competitive_layer(n_units, winner="conscience"), cc.Hparams(lr=0.01)

    def ours():
        return cc.fit(jax.random.key(0), X32, spec, hp, n_epochs, init=start, order=order)

    compile_s = compile_seconds(loop.fit_call, jax.random.key(0), X32, spec, hp, n_epochs, init=start, order=order)
    ours()
    our_times, result = timed(ours, repeats, OUR_MIN_SECONDS)
    return record(name, "neurolab newc (train_cwta)", anchor_times, our_times, compile_s,
                  max_abs_diff=float(np.abs(np.asarray(result.state.weights) - theirs).max()),
                  qe_anchor=float(cc.evaluate(spec, theirs.astype(np.float32), X32).quantization_error),
                  qe_compclust=float(result.metrics.quantization_error[-1]),
                  shape=list(X.shape), units=n_units, lr=0.01, epochs=n_epochs, seeds=[seed])


def last_epoch_only(run, repeats, reference):
    """compclust again with ``epoch_metrics=False`` (MiniSom's train measures nothing per epoch):
    a second figure beside the default one, which measures every epoch. Same weights required."""
    run()
    times, result = timed(run, repeats, OUR_MIN_SECONDS)
    same = bool(np.array_equal(np.asarray(result.state.weights), np.asarray(reference.state.weights)))
    if not same:
        raise AssertionError("epoch_metrics=False changed the trained weights")
    return {"last_epoch_only_median_s": statistics.median(times), "last_epoch_only_min_s": min(times)}


def record(name, anchor, anchor_times, our_times, compile_s, **extra):
    anchor_median, ours_median = statistics.median(anchor_times), statistics.median(our_times)
    speedup = anchor_median / ours_median
    entry = {
        "workload": name, "anchor": anchor,
        "anchor_median_s": anchor_median, "anchor_min_s": min(anchor_times), "anchor_runs": len(anchor_times),
        "compclust_median_s": ours_median, "compclust_min_s": min(our_times), "compclust_runs": len(our_times),
        "speedup": speedup, "target_speedup": TARGETS.get(name), "compile_s": compile_s, **extra,
    }
    entry["parity_ok"] = entry["max_abs_diff"] <= PARITY_TOL
    if "last_epoch_only_median_s" in entry:
        entry["speedup_last_epoch_only"] = anchor_median / entry["last_epoch_only_median_s"]
    entry["meets_target"] = entry["target_speedup"] is not None and speedup >= entry["target_speedup"]
    entry["env"] = environment()
    print(f"{name:20s} {anchor:28s} anchor {anchor_median:8.3f}s  compclust {ours_median:8.4f}s  "
          f"x{speedup:7.1f} (target {entry['target_speedup']})  compile {compile_s:5.2f}s  "
          f"max|dW| {entry['max_abs_diff']:.1e}"
          + (f"  (last epoch only: x{entry['speedup_last_epoch_only']:.1f})" if "speedup_last_epoch_only" in entry else ""),
          flush=True)
    return entry


def environment():
    import minisom
    import neurolab

    return {"python": platform.python_version(), "jax": jax.__version__, "numpy": np.__version__,
            "minisom": getattr(minisom, "__version__", "2.3.6"), "neurolab": getattr(neurolab, "__version__", "?"),
            "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
            "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "fast_cpu_loops": cc.fast_loops.is_enabled(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "sweep_group_size": loop.default_group_size(jax.default_backend()), "loadavg": os.getloadavg()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True, help="where to write the JSON list of results")
    parser.add_argument("--quick", action="store_true", help="smaller workloads, fewer repeats")
    parser.add_argument("--mnist-dir", default=os.environ.get("COMPCLUST_MNIST_DIR"),
                        help="folder with the MNIST IDX files (default: $COMPCLUST_MNIST_DIR)")
    parser.add_argument("--only", nargs="*", help="run only these workloads")
    parser.add_argument("--family", choices=("online", "batch", "scale", "all"), default="all",
                        help="the online workloads here, the batch family (experiments/bench_batch.py), the "
                             "scaling workloads (experiments/bench_scale.py), or all of them")
    parser.add_argument("--no-fast-loops", action="store_true",
                        help="leave XLA:CPU's small-while-loop hoisting off (read when run as a script)")
    parser.add_argument("--no-extras", action="store_true",
                        help="skip the sweep throughput and the flag-effect measurements")
    args = parser.parse_args(argv)
    quick = args.quick
    repeats, anchor_repeats = (3, 3) if quick else (7, 3)
    digits, _ = cc.data.load_digits()
    digits = cc.transform(cc.fit_scaler(digits, "minmax"), digits)

    plan = {
        "som-online-digits": lambda: som_workload("som-online-digits", digits, (10, 10), 3.0, 0.5,
                                                  2 if quick else 10, repeats, anchor_repeats),
        "som-sweep-64": lambda: sweep_workload("som-sweep-64", digits, (10, 10), 3.0, 0.5, 1 if quick else 10,
                                               8 if quick else 64, repeats, 1 if quick else anchor_repeats),
        "cwta-blobs": lambda: cwta_workload("cwta-blobs", 20 if quick else 100, repeats, anchor_repeats),
        "som-online-mnist": lambda: mnist_workload(args.mnist_dir, quick, repeats, anchor_repeats),
    }
    if not args.no_extras:
        plan["sweep-throughput"] = lambda: throughput_workloads(digits, args.mnist_dir, quick, results)
        plan["fast-cpu-loops-effect"] = lambda: flag_effect(quick)
    if args.family in ("batch", "scale"):
        plan = {}
    results = []
    for name, run in plan.items():
        if args.only and name not in args.only:
            continue
        entry = run()
        for one in entry if isinstance(entry, list) else [entry]:
            if one is not None:
                results.append(one)
        cc.io.atomic_write_json(args.json, results)  # each finished workload is kept
    if args.family in ("batch", "all"):
        from experiments import bench_batch

        bench_batch.run(args.mnist_dir, quick, args.only, results=results, json_path=args.json)
    if args.family in ("scale", "all"):
        from experiments import bench_scale

        bench_scale.run(args.mnist_dir, quick, args.only, results=results, json_path=args.json)
    failed = [r["workload"] for r in results if not r["parity_ok"]]
    if failed:
        print(f"PARITY FAILED (max_abs_diff > {PARITY_TOL}): {failed}", file=sys.stderr)
        return 1
    return 0


def mnist_workload(mnist_dir, quick, repeats, anchor_repeats):
    if not mnist_dir:
        print("som-online-mnist skipped: no --mnist-dir and COMPCLUST_MNIST_DIR is unset", file=sys.stderr)
        return None
    images, _ = cc.data.load_mnist(mnist_dir)
    if quick:
        images = images[:1000]
    return som_workload("som-online-mnist", images, (20, 20), 4.0, 0.5, 1 if quick else 5,
                        3 if quick else 5, 1 if quick else anchor_repeats)


def throughput_workloads(digits, mnist_dir, quick, results):
    """Updates per second over all seeds of ``cc.sweep`` (the digits 10x10 map at 1, 8, 64 and 256
    seeds, the MNIST 20x20 map at 8), against the MiniSom loop's updates per second measured above
    in this process. Each sweep's first seed must equal ``fit`` of its key (a wrong answer fails)."""
    entries = []
    minisom_rate = {r["workload"]: r["epochs"] * r["shape"][0] / r["anchor_median_s"] for r in results
                    if r.get("anchor") == "MiniSom" and r["workload"] in ("som-online-digits", "som-online-mnist")}
    cases = [("digits", digits, (10, 10), 3.0, 2, s, None) for s in ((1, 8) if quick else (1, 8, 64, 256))]
    # The strategy the default replaced, for comparison: every run of a device vmapped in lockstep.
    cases.append(("digits", digits, (10, 10), 3.0, 2, 8 if quick else 64, "all"))
    if mnist_dir:
        images, _ = cc.data.load_mnist(mnist_dir)
        cases.append(("mnist", images[:1000] if quick else images, (20, 20), 4.0, 1, 8, None))
    for data_name, X, shape, sigma, n_epochs, n_seeds, group in cases:
        group_size = n_seeds if group == "all" else group
        X = np.asarray(X, np.float32)
        spec, hp = cc.som(shape), cc.Hparams(lr=0.5, sigma=sigma)
        starts = np.random.default_rng(0).random((n_seeds, spec.n_units, X.shape[1])).astype(np.float32)
        order = np.arange(len(X))

        def keys():
            return jax.random.split(jax.random.key(0), n_seeds)

        def ours():
            return cc.sweep(keys(), X, spec, hp, n_epochs, init=starts, order=order, group_size=group_size)

        compile_s = compile_seconds(loop.sweep_call, keys(), X, spec, hp, n_epochs, init=starts, order=order,
                                    group_size=group_size)
        ours()
        times, result = timed(ours, 3 if n_seeds >= 64 or data_name == "mnist" else 5)
        one = cc.fit(keys()[0], X, spec, hp, n_epochs, init=starts[0], order=order)
        diff = float(np.abs(np.asarray(result.state.weights[0]) - np.asarray(one.state.weights)).max())
        updates = n_seeds * n_epochs * len(X)
        median = statistics.median(times)
        anchor = minisom_rate.get(f"som-online-{data_name}")
        entry = {"workload": f"sweep-throughput-{data_name}-{n_seeds}" + ("-vmap" if group == "all" else ""),
                 "kind": "throughput", "seeds": n_seeds, "group_size": group_size or loop.default_group_size(
                     jax.default_backend()), "devices": len(jax.devices()),
                 "grid": list(shape), "shape": list(X.shape), "epochs": n_epochs, "updates": updates,
                 "compclust_median_s": median, "compclust_min_s": min(times), "compclust_runs": len(times),
                 "updates_per_s": updates / median, "compile_s": compile_s,
                 "minisom_loop_updates_per_s": anchor, "vs_minisom_loop": None if anchor is None else updates / median / anchor,
                 "max_abs_diff": diff, "parity_ok": diff <= PARITY_TOL,
                 "parity_note": "seed 0 of the sweep against fit of its key", "env": environment()}
        print(f"sweep throughput {data_name:6s} {n_seeds:4d} seeds {'vmap' if group == 'all' else 'map ':4s} {median:8.3f}s  {updates / median:12,.0f} updates/s"
              + ("" if anchor is None else f"  x{updates / median / anchor:6.1f} MiniSom loop")
              + f"  compile {compile_s:5.2f}s", flush=True)
        entries.append(entry)
    return entries


def flag_effect(quick):
    """``experiments/flag_effect.py`` in two fresh processes, with and without the switch."""
    import json
    import subprocess

    runs = {}
    for label, switch in (("without", "0"), ("with", "1")):
        env = {**os.environ, "COMPCLUST_FAST_LOOPS": switch}
        env["XLA_FLAGS"] = " ".join(t for t in env.get("XLA_FLAGS", "").split()
                                    if "small_while_loop" not in t)
        command = [sys.executable, "-m", "experiments.flag_effect"] + (["--quick"] if quick else [])
        out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if out.returncode != 0:
            print(f"flag effect ({label}) failed: {out.stderr[-2000:]}", file=sys.stderr)
            return None
        runs[label] = json.loads(out.stdout.strip().splitlines()[-1])
    effect = {name: {"without_s": runs["without"][name], "with_s": runs["with"][name],
                     "with_over_without": runs["with"][name] / runs["without"][name]}
              for name in runs["without"] if name != "env"}
    for name, e in effect.items():
        print(f"fast_cpu_loops effect {name:28s} without {e['without_s'] * 1e3:9.2f} ms  with "
              f"{e['with_s'] * 1e3:9.2f} ms  (x{e['with_over_without']:.2f} time)", flush=True)
    return {"workload": "fast-cpu-loops-effect", "kind": "flag_effect", "effect": effect,
            "parity_ok": True, "env": environment()}


if __name__ == "__main__":
    if "--no-fast-loops" not in sys.argv[1:]:
        cc.fast_cpu_loops(strict=False)  # before JAX's backend starts; see compclust.fast_loops
    sys.exit(main())
