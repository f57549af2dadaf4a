"""One model trained over several processes (hosts), each holding only its own rows.

    # on each of P hosts (here: P processes on one machine), with i = 0 .. P-1:
    python -m experiments.multihost --process-id i --num-processes P --coordinator 10.0.0.1:12345 \\
        [--algorithm batch-som|kmeans|batch-neural-gas|minibatch-kmeans] [--out result.json]

The recipe, which is all a user needs on a real cluster:

1. ``jax.config.update("jax_cpu_collectives_implementation", "gloo")`` (CPU hosts; GPU hosts use
   NCCL by default), then ``jax.distributed.initialize(coordinator, num_processes, process_id)``
   before anything else touches JAX;
2. a mesh over all processes' devices, ``Mesh(np.array(jax.devices()), ("data",))``;
3. each process loads only its own rows (here: a contiguous slice of a data set every process can
   name; in practice its own file or shard) and ``jax.make_array_from_process_local_data`` turns
   them into one global ``[N, D]`` array sharded over the mesh;
4. the same ``compclust.fit(key, global_data, spec, hparams, n_epochs, mesh=mesh)`` call on every
   process trains one model: each device computes its rows' sufficient statistics and the
   collective sum combines them; the result is replicated, so every process holds it.

The rows must split evenly over the processes (pad or drop a few rows otherwise). Every process
prints the same result; ``--num-processes 1`` is the single-process reference.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

ALGORITHMS = ("batch-som", "kmeans", "batch-neural-gas", "minibatch-kmeans")


def make_spec(cc, algorithm: str):
    if algorithm == "batch-som":
        return cc.som((4, 4), algorithm="batch", sigma_schedule="linear"), cc.Hparams(sigma=2.0, sigma_final=0.5)
    if algorithm == "kmeans":
        return cc.kmeans(5), cc.Hparams()
    if algorithm == "batch-neural-gas":
        return cc.neural_gas(6, algorithm="batch"), cc.Hparams(sigma=3.0, sigma_final=0.3)
    return cc.kmeans(5, algorithm="minibatch", batch_size=20), cc.Hparams()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--coordinator", default="127.0.0.1:12355")
    parser.add_argument("--algorithm", choices=ALGORITHMS, default="batch-som")
    parser.add_argument("--samples", type=int, default=240)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", default=None, help="also write the result here (JSON)")
    args = parser.parse_args(argv)

    import jax
    if args.num_processes > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.num_processes,
                                   process_id=args.process_id)
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    import compclust as cc

    if args.samples % args.num_processes or args.samples % 5:
        raise ValueError(f"--samples {args.samples} must split evenly over 5 blobs and {args.num_processes} processes")
    points = cc.data.make_blobs(0, n_per_blob=args.samples // 5)[0]  # every process can name it
    data = points[np.random.default_rng(1).permutation(len(points))].astype(np.float32)
    share = args.samples // args.num_processes
    own_rows = data[args.process_id * share:(args.process_id + 1) * share]  # all this process loads

    mesh = Mesh(np.array(jax.devices()), ("data",))
    global_data = jax.make_array_from_process_local_data(NamedSharding(mesh, PartitionSpec("data")), own_rows)
    spec, hparams = make_spec(cc, args.algorithm)
    start = data[:spec.n_units]  # the same initial weights everywhere
    result = cc.fit(jax.random.key(0), global_data, spec, hparams, args.epochs, init=start, mesh=mesh)
    record = {"process_id": args.process_id, "num_processes": args.num_processes, "devices": len(jax.devices()),
              "algorithm": args.algorithm, "weights": np.asarray(result.state.weights).tolist(),
              "quantization_error": np.asarray(result.metrics.quantization_error).tolist()}
    print(json.dumps(record))
    if args.out:
        cc.io.atomic_write_json(args.out, record)
    if args.num_processes > 1:
        jax.distributed.shutdown()


if __name__ == "__main__":
    main()
