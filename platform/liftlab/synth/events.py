"""Sampling of the raw event stream of one chunk from its realised rates.

Per user-day cell: sessions ~ Poisson(lam_s); AI calls and completed tasks
~ Poisson(lam_x) on days with >= 1 session (0 otherwise); support tickets
~ Poisson(lam_sup); AI add-on purchases ~ Poisson(a) as ``payment`` events
of the cell's add-on price; subscription ``payment`` events on billing days;
a trial user converts on the first window day t with U_t < h(t) (U iid
uniform), emitting ``upgrade`` and, seconds later, ``payment`` of the chosen
plan.  Timestamps are the day's UTC start plus a uniform offset in
microseconds.  The sampled counts are exactly the distributions truth.py
takes expectations of.
"""

from __future__ import annotations

import numpy as np

from . import design as D
from .population import Population, conditional_categorical
from .rates import US_PER_DAY, Calendar

EVENT_TYPES = ("session", "ai_call", "task_completed", "upgrade", "payment", "support_ticket")
SESSION, AI_CALL, TASK, UPGRADE, PAYMENT, SUPPORT = range(6)

_REGION_LATENCY = np.array([np.log(D.LATENCY_REGION_SLOWDOWN.get(r, 1.0)) for r in D.REGIONS])


def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of every event of an (n, T) count array, one per event."""
    T = counts.shape[1]
    flat = counts.ravel()
    nz = np.flatnonzero(flat)
    idx = np.repeat(nz, flat[nz])
    return idx // T, idx % T


def sample_events(rng: np.random.Generator, pop: Population, cal: Calendar,
                  rates: dict[str, np.ndarray], billing: np.ndarray) -> dict[str, np.ndarray]:
    """Sample the chunk's events; returns equal-length arrays ``user_id``,
    ``ts_us`` (int64 microseconds since epoch), ``etype`` (codes into
    EVENT_TYPES) and ``value`` (float, NaN = NULL)."""
    parts: list[tuple[np.ndarray, np.ndarray, int, np.ndarray | None]] = []

    def add(rows, cols, etype, value=None, ts=None):
        if ts is None:
            ts = cal.day_start_us[cols] + rng.integers(0, US_PER_DAY, len(rows))
        parts.append((rows, ts, etype, value))

    n_sess = rng.poisson(rates["sess"])
    active = n_sess > 0
    rows, cols = _expand(n_sess)
    log_med = D.LATENCY_LOG_MEDIAN_DEVICE[pop.device[rows]] + _REGION_LATENCY[pop.region[rows]]
    latency = np.round(np.exp(log_med + D.LATENCY_LOG_SD * rng.standard_normal(len(rows))), 1)
    add(rows, cols, SESSION, latency)
    del n_sess

    for channel, etype in (("ai", AI_CALL), ("task", TASK)):
        rows, cols = _expand(rng.poisson(np.where(active, rates[channel], 0.0)))
        add(rows, cols, etype)
    rows, cols = _expand(rng.poisson(rates["sup"]))
    add(rows, cols, SUPPORT)

    rows, cols = _expand(rng.poisson(rates["addon"]))
    add(rows, cols, PAYMENT, rates["price"][rows, cols])

    rows, cols = np.nonzero(billing)
    add(rows, cols, PAYMENT, billing[rows, cols])

    # trial -> paid conversion: first day with U < h (hazard is 0 outside the window)
    trial = np.flatnonzero(pop.plan == D.TRIAL)
    h = rates["hazard"][trial][:, cal.window]
    hit = rng.random(h.shape) < h
    conv = hit.any(axis=1)
    first = np.argmax(hit, axis=1)
    new_plan = conditional_categorical(rng, D.CONVERSION_PLAN_P, pop.size[trial]) + 1
    ts_up = rng.integers(0, US_PER_DAY - 600_000_000, len(trial))
    lag = rng.integers(1_000_000, 600_000_000, len(trial))
    rows, col = trial[conv], first[conv] + cal.pre_days
    ts_up = cal.day_start_us[col] + ts_up[conv]
    add(rows, col, UPGRADE, ts=ts_up)
    add(rows, col, PAYMENT, D.PLAN_PRICE[new_plan[conv]], ts=ts_up + lag[conv])

    user = np.concatenate([pop.user_id[p[0]] for p in parts])
    ts = np.concatenate([p[1] for p in parts])
    etype = np.concatenate([np.full(len(p[0]), p[2], np.uint8) for p in parts])
    value = np.concatenate([np.full(len(p[0]), np.nan) if p[3] is None else p[3].astype(float)
                            for p in parts])
    return {"user_id": user, "ts_us": ts, "etype": etype, "value": value}
