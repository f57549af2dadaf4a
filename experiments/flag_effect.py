"""What ``compclust.fast_cpu_loops()`` (XLA:CPU small-while-loop hoisting) does to other JAX code
in the same process. Run it twice, in fresh processes, with and without the switch:

    COMPCLUST_FAST_LOOPS=0 python -m experiments.flag_effect
    COMPCLUST_FAST_LOOPS=1 python -m experiments.flag_effect

(``python -m experiments.bench`` does both and records the ratios.) Prints one JSON line: the
median seconds of each function, compilation excluded.

- ``elementwise_loop``: an ordinary jitted loop, ``lax.fori_loop`` of 20,000 small elementwise
  steps (a damped oscillator on 64 points, explicit Euler);
- ``mlp_sgd_scan``: matrix products in a loop, 50 SGD steps of a 784-256-10 MLP on batches of
  256 in ``lax.scan`` (the usual JAX training loop);
- ``small_matmul_scan``: a small matrix product in a loop, 20 rounds of nearest-centroid
  assignment (distances [1797, 64] x [64, 100] as a product, argmin) in ``lax.scan``: the shape of
  compclust's own per-epoch metrics, which is why those keep a scatter (never hoisted);
- ``matmul_chain``: matrix products outside any loop, four 512 x 512 products.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time

import compclust  # noqa: F401  (reads COMPCLUST_FAST_LOOPS before JAX's backend starts)
import jax
import jax.numpy as jnp
from jax import lax


def elementwise_loop(state):
    def step(_, carry):
        x, v = carry
        a = -x - 0.1 * v + 0.01 * jnp.sin(3.0 * x)
        return x + 0.001 * v, v + 0.001 * a

    return lax.fori_loop(0, 20_000, step, state)


def mlp_sgd_scan(params, images, labels):
    def loss(params, x, y):
        w1, b1, w2, b2 = params
        logits = jnp.tanh(x @ w1 + b1) @ w2 + b2
        return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * y, axis=1))

    def step(params, batch):
        grads = jax.grad(loss)(params, *batch)
        return jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads), None

    return lax.scan(step, params, (images, labels))[0]


def small_matmul_scan(data, centres):
    def step(centres, _):
        sq = jnp.sum(data * data, 1)[:, None] + jnp.sum(centres * centres, 1)[None] - 2.0 * data @ centres.T
        best = jnp.argmin(sq, axis=1)
        return centres + 1e-3 * jnp.mean(sq), jnp.sum(best)

    return lax.scan(step, centres, None, length=20)


def matmul_chain(a, b):
    for _ in range(4):
        a = jnp.tanh(a @ b)
    return a


def measure(fn, args, repeats):
    compiled = jax.jit(fn).lower(*args).compile()
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> dict:
    quick = "--quick" in (sys.argv[1:] if argv is None else argv)
    repeats = 3 if quick else 7
    key = jax.random.key(0)
    k1, k2, k3, k4, k5 = jax.random.split(key, 5)
    state = (jax.random.normal(k1, (64,)), jnp.zeros((64,)))
    params = (0.05 * jax.random.normal(k2, (784, 256)), jnp.zeros(256), 0.05 * jax.random.normal(k3, (256, 10)),
              jnp.zeros(10))
    images = jax.random.uniform(k4, (50, 256, 784))
    labels = jax.nn.one_hot(jax.random.randint(k5, (50, 256), 0, 10), 10)
    a = jax.random.normal(k1, (512, 512)) / 20
    out = {"elementwise_loop": measure(elementwise_loop, (state,), repeats),
           "mlp_sgd_scan": measure(mlp_sgd_scan, (params, images, labels), repeats),
           "small_matmul_scan": measure(small_matmul_scan, (jax.random.uniform(k4, (1797, 64)),
                                                            jax.random.uniform(k5, (100, 64))), repeats),
           "matmul_chain": measure(matmul_chain, (a, a), repeats)}
    out["env"] = {"xla_flags": os.environ.get("XLA_FLAGS", ""), "jax": jax.__version__}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
