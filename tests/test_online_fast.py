"""The online step's fast paths (issue 5): carried squared norms equal the plain path on every
Euclidean kernel and grid; the seed sweep's strategies give equal results; the XLA:CPU loop switch
never overrides a user's XLA_FLAGS."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import compclust as cc
from compclust import loop
from compclust.algorithms import online
from compclust.spec import GRID_KERNELS


def _scan(spec, hp, X, W0, order, with_norms):
    """Drive the step over ``order`` by the plain path or the carried-norm path (fresh jit each)."""
    hp = loop.validation.check_hparams(hp, spec, jnp.float32, sweepable=False)
    keys = jax.random.split(jax.random.key(3), order.size)

    @jax.jit
    def run(X, W0):
        state = loop.initial_state(spec, W0.T)
        norms = online.sq_norms_of(state.weights) if with_norms else None

        def body(carry, inputs):
            state, norms = carry
            i, key = inputs
            if with_norms:
                state, norms, m = online.step_with_norms(spec, state, norms, X[i], hp, order.size, key)
            else:
                state, m = online.step_units_last(spec, state, X[i], hp, order.size, key)
            return (state, norms), m.winner

        (state, _), winners = lax.scan(body, (state, norms), (jnp.asarray(order), keys))
        return state.weights.T, winners

    return run(X, W0)


SHAPES = [((12,), "rectangular", False), ((4, 3), "rectangular", True), ((3, 4), "hexagonal", False),
          ((3, 2, 2), "rectangular", True)]


@pytest.mark.parametrize("kernel", GRID_KERNELS)
@pytest.mark.parametrize("shape,topo,toroidal", SHAPES)
@pytest.mark.parametrize("activation", online.NORM_ACTIVATIONS)
def test_carried_norms_equal_the_plain_path_on_every_grid_and_kernel(rng, kernel, shape, topo, toroidal, activation):
    X = rng.random((60, 20)).astype(np.float32)  # wide enough for the norm form's matrix-vector product
    W0 = rng.random((12, 20)).astype(np.float32)
    order = np.concatenate([rng.permutation(60) for _ in range(3)])
    spec = cc.som(shape, topology=topo, toroidal=toroidal, kernel=kernel, activation=activation,
                  lr_schedule="exponential", sigma_schedule="linear")
    assert online.carries_norms(spec)
    hp = cc.Hparams(lr=0.4, lr_final=0.05, sigma=1.8, sigma_final=0.3)
    plain_w, plain_win = _scan(spec, hp, X, W0, order, False)
    fast_w, fast_win = _scan(spec, hp, X, W0, order, True)
    np.testing.assert_array_equal(fast_win, plain_win)
    np.testing.assert_array_equal(fast_w, plain_w)  # same winners, same update: the same bits


@pytest.mark.parametrize("lr_schedule", ["constant", "count"])
def test_carried_norms_on_the_delta_kernel(rng, lr_schedule):
    X = rng.normal(size=(80, 10)).astype(np.float32)
    W0 = X[:6].copy()
    order = np.concatenate([rng.permutation(80) for _ in range(4)])
    spec = cc.competitive_layer(6, lr_schedule=lr_schedule)
    plain = _scan(spec, cc.Hparams(lr=0.3), X, W0, order, False)
    fast = _scan(spec, cc.Hparams(lr=0.3), X, W0, order, True)
    np.testing.assert_array_equal(fast[1], plain[1])
    np.testing.assert_array_equal(fast[0], plain[0])


def test_softmax_winner_with_carried_norms_matches_to_rounding(rng):
    X = rng.random((50, 16)).astype(np.float32)
    W0 = rng.random((9, 16)).astype(np.float32)
    order = np.concatenate([rng.permutation(50) for _ in range(2)])
    spec = cc.som((3, 3), winner="softmax")
    hp = cc.Hparams(lr=0.3, sigma=1.0, temperature=0.05)
    plain = _scan(spec, hp, X, W0, order, False)
    fast = _scan(spec, hp, X, W0, order, True)
    np.testing.assert_array_equal(fast[1], plain[1])
    np.testing.assert_allclose(fast[0], plain[0], atol=1e-6)


def test_near_ties_are_resolved_exactly(rng, monkeypatch):
    # Far from the origin the norm form |w|^2 - 2 w.x + |x|^2 cancels ~1e8 to resolve gaps of ~1e-3:
    # its rounding alone would pick other winners; the near-tie check hands those steps to the plain path.
    base = 1000.0 + rng.random(64)
    X = (base + 0.01 * rng.random((40, 64))).astype(np.float32)
    W0 = (base + 0.01 * rng.random((6, 64))).astype(np.float32)
    order = np.arange(40)
    spec, hp = cc.competitive_layer(6), cc.Hparams(lr=1e-30)  # the weights stay put: every step is a test
    plain = _scan(spec, hp, X, W0, order, False)
    fast = _scan(spec, hp, X, W0, order, True)
    np.testing.assert_array_equal(fast[1], plain[1])
    monkeypatch.setattr(online, "nearest_winner", lambda spec, w, x, activation, *_: jnp.argmax(activation))
    unchecked = _scan(spec, hp, X, W0, order, True)
    assert np.any(np.asarray(unchecked[1]) != np.asarray(plain[1]))  # the check is what made them equal


def test_which_specs_carry_norms():
    assert online.carries_norms(cc.som((3, 3)))
    assert online.carries_norms(cc.competitive_layer(4, activation="nearest_centroid"))
    assert not online.carries_norms(cc.competitive_layer(4, winner="conscience"))
    assert not online.carries_norms(cc.competitive_layer(4, winner="desieno"))
    assert not online.carries_norms(cc.competitive_layer(4, activation="cosine"))
    assert not online.carries_norms(cc.neural_gas(4))


# ------------------------------------------------------------------------ the seed sweep's strategies

@jax.debug_key_reuse(False)  # vmap of a scan over split keys: see NO_KEY_REUSE_CHECK in test_loop.py
@pytest.mark.parametrize("spec,tol", [
    (cc.som((3, 2)), None),
    (cc.som((3, 2), algorithm="batch"), 1e-4),
    (cc.kmeans(4, algorithm="minibatch", batch_size=8), 1e-4),
])
def test_every_group_size_gives_the_same_sweep_and_one_equals_fit(rng, spec, tol):
    X = rng.normal(size=(40, 18)).astype(np.float32)
    hp = cc.Hparams(lr=np.array([0.2, 0.6], np.float32), sigma=1.2)

    def keys():
        return jax.random.split(jax.random.key(2), 3)

    runs = {g: cc.sweep(keys(), X, spec, hp, 3, group_size=g, tol=tol) for g in (1, 2, None)}
    assert runs[1].state.weights.shape == (2, 3, spec.n_units, 18)
    for g in (2, None):  # vmapped groups: the same runs, to rounding (fused differently)
        for a, b in zip(jax.tree.leaves(runs[g]), jax.tree.leaves(runs[1])):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    for j, lr in enumerate((0.2, 0.6)):
        for i in range(3):
            one = cc.fit(keys()[i], X, spec, cc.Hparams(lr=lr, sigma=1.2), 3, tol=tol)
            np.testing.assert_array_equal(runs[1].state.weights[j, i], one.state.weights)  # one run at a time: the same bits
            np.testing.assert_array_equal(runs[1].n_iter[j, i], one.n_iter)


def test_group_size_is_checked(rng):
    X = rng.normal(size=(10, 2)).astype(np.float32)
    with pytest.raises(ValueError, match="group_size"):
        cc.sweep(jax.random.split(jax.random.key(0), 2), X, cc.som((2, 2)), cc.Hparams(), 1, group_size=0)
    assert loop.default_group_size("cpu") == 1 and loop.default_group_size("gpu") is None


# ------------------------------------------------------------------------ the XLA:CPU loop switch

def _python(code, env):
    from test_devices_and_dtypes import run_python

    return run_python(code, env)


PROBE = """
import json, os, warnings
import compclust as cc
report = {"after_import": os.environ.get("XLA_FLAGS", "")}
"""


def _probe(env, extra=""):
    import textwrap

    return _python(PROBE + textwrap.dedent(extra) + "\nprint(json.dumps(report))\n", env)


def test_switch_from_the_environment_keeps_the_users_other_flags():
    report = _probe({"COMPCLUST_FAST_LOOPS": "1", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
                    """
    import jax
    report["devices"] = len(jax.devices())
    """)
    assert report["after_import"].split() == [
        "--xla_force_host_platform_device_count=2",
        "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=100000000"]
    assert report["devices"] == 2  # the user's flag still read


def test_switch_never_overrides_a_users_xla_backend_extra_options():
    users = "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=5"
    report = _probe({"COMPCLUST_FAST_LOOPS": "1", "XLA_FLAGS": users}, """
    report["call"] = cc.fast_cpu_loops()
    report["off"] = cc.fast_cpu_loops(False)
    report["after_calls"] = os.environ["XLA_FLAGS"]
    """)
    assert report["after_import"] == report["after_calls"] == users
    assert report["call"] is True and report["off"] is True  # the user's value stays, and it enables hoisting


def test_switch_off_by_default_and_can_be_turned_off_and_refuses_a_started_backend():
    report = _probe({"COMPCLUST_FAST_LOOPS": "0", "XLA_FLAGS": ""}, """
    report["on"] = cc.fast_cpu_loops()
    report["with_flag"] = os.environ["XLA_FLAGS"]
    report["off"] = cc.fast_cpu_loops(False)
    report["without_flag"] = os.environ["XLA_FLAGS"]
    import jax
    jax.numpy.zeros(1).block_until_ready()  # the backend starts here
    try:
        cc.fast_cpu_loops()
        report["late"] = "no error"
    except RuntimeError as error:
        report["late"] = str(error)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report["late_lenient"] = cc.fast_cpu_loops(strict=False)
    report["warned"] = any("already started" in str(w.message) for w in caught)
    report["final"] = os.environ["XLA_FLAGS"]
    """)
    assert report["after_import"] == ""
    assert report["on"] is True and "small_while_loop_byte_threshold" in report["with_flag"]
    assert report["off"] is False and report["without_flag"] == ""
    assert "already started" in report["late"]
    assert report["late_lenient"] is False and report["warned"] and report["final"] == ""


# ------------------------------------------------------------------------ measuring only the last epoch

@jax.debug_key_reuse(False)
@pytest.mark.parametrize("spec", [cc.som((3, 3)), cc.kmeans(4, algorithm="minibatch", batch_size=10)])
def test_epoch_metrics_off_measures_the_last_epoch_and_trains_the_same(rng, spec):
    X = rng.random((60, 18)).astype(np.float32)
    hp = cc.Hparams(lr=0.5, sigma=1.5)
    every = cc.fit(jax.random.key(0), X, spec, hp, 3)
    last = cc.fit(jax.random.key(0), X, spec, hp, 3, epoch_metrics=False)
    np.testing.assert_array_equal(last.state.weights, every.state.weights)
    np.testing.assert_allclose(last.metrics.quantization_error[-1], every.metrics.quantization_error[-1], rtol=1e-6)
    assert int(last.metrics.dead_units[-1]) == int(every.metrics.dead_units[-1])
    assert np.all(np.isnan(last.metrics.inertia[:-1])) and np.all(np.asarray(last.metrics.dead_units[:-1]) == -1)
    np.testing.assert_array_equal(last.metrics.center_shift, every.metrics.center_shift)
    swept = cc.sweep(jax.random.split(jax.random.key(1), 2), X, spec, hp, 3, epoch_metrics=False)
    assert swept.metrics.inertia.shape == (2, 3) and np.all(np.isfinite(swept.metrics.inertia[:, -1]))
    with pytest.raises(ValueError, match="epoch_metrics"):
        cc.fit(jax.random.key(0), X, spec, hp, 3, epoch_metrics=False, tol=1e-4)
