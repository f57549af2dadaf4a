"""Learning-rate and radius schedules ``value(v0, v_final, t, T)`` for step t of T.

Named schedules are closed forms of traced numbers, so v0 and v_final can be swept with vmap.
optax's exponential schedule rejects a traced rate, which is why these are not built on it; any
optax schedule (a callable ``step -> value``) may still be passed instead of a name.
"""
from __future__ import annotations


def constant(v0, v_final, t, total):
    return v0 + 0.0 * t


def linear(v0, v_final, t, total):
    """Straight line from v0 to v_final over the run (optax.linear_schedule)."""
    return v0 + (v_final - v0) * (t / total)


def exponential(v0, v_final, t, total):
    """``v0 (v_final / v0)^(t / T)``: geometric decay reaching v_final at the end."""
    return v0 * (v_final / v0) ** (t / total)


def inverse_time(v0, v_final, t, total):
    """``v0 / (1 + (v0 / v_final - 1) t / T)``: MiniSom's inverse decays, reaching v_final at the end."""
    return v0 / (1.0 + (v0 / v_final - 1.0) * (t / total))


def asymptotic(v0, v_final, t, total):
    """MiniSom's default ``v0 / (1 + 2 t / T)``, which ends at v0 / 3 (v_final unused)."""
    return v0 / (1.0 + t / (total / 2.0))


SCHEDULE_FNS = {
    "constant": constant,
    "linear": linear,
    "exponential": exponential,
    "inverse_time": inverse_time,
    "asymptotic": asymptotic,
}


def value(schedule, v0, v_final, t, total):
    """The scheduled value at step t: a name from SCHEDULE_FNS or an optax-style ``step -> value``."""
    if callable(schedule):
        return schedule(t)
    return SCHEDULE_FNS[schedule](v0, v_final, t, total)
