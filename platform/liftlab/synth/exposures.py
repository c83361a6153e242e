"""Exposure rows of one chunk, including the exposure-level data faults.

A randomized unit gets 1-3 rows, all in its arm: the first on its exposure
day e_i at a uniform time of day, the others on uniform days in e_i..end
(strictly after the first).  ai_assistant_optin and regional_pricing units
get exactly one row.  Faults (``FaultConfig``): checkout_redesign treatment
units lose all their rows with probability ``checkout_exposure_loss``;
onboarding_adaptive units get, with probability ``contamination_share``, one
extra row in another arm after their first exposure.  Fault draws come from a
stream of their own and are made for every user whatever the fault settings,
so switching faults changes nothing else.
"""

from __future__ import annotations

import numpy as np

from . import design as D
from .config import FaultConfig
from .experiments import EXPERIMENT_IDS, Assignment
from .population import Population
from .rates import US_PER_DAY, Calendar

VARIANTS = tuple(sorted({v for spec in D.EXPERIMENTS.values() for v in spec["variants"]}))
_VARIANT_CODE = {v: i for i, v in enumerate(VARIANTS)}


def _later(day0, t0, W, u_day, u_time):
    """A (day, time-of-day) uniformly after (day0, t0) within the window:
    day uniform on day0..W-1; on day0 itself the time is after t0."""
    day = day0 + np.floor(u_day * (W - day0)).astype(np.int64)
    same = day == day0
    tod_same = np.minimum(t0 + 1 + np.floor(u_time * (US_PER_DAY - t0 - 1)).astype(np.int64),
                          US_PER_DAY - 1)
    tod_other = np.floor(u_time * US_PER_DAY).astype(np.int64)
    return day, np.where(same, tod_same, tod_other)


def exposure_rows(rng: np.random.Generator, fault_rng: np.random.Generator, pop: Population,
                  cal: Calendar, asgs: dict[str, Assignment],
                  faults: FaultConfig) -> dict[str, np.ndarray]:
    """Return equal-length arrays ``exp`` (index into EXPERIMENT_IDS),
    ``user_id``, ``variant`` (index into VARIANTS) and ``ts_us``."""
    n, W = pop.n, cal.experiment_days
    u_loss = fault_rng.random(n)
    u_cont, u_cont_arm, u_cont_day, u_cont_time = fault_rng.random((4, n))

    out = {"exp": [], "user_id": [], "variant": [], "ts_us": []}

    def emit(k, rows, variant_codes, day, tod):
        out["exp"].append(np.full(len(rows), k, np.uint8))
        out["user_id"].append(pop.user_id[rows])
        out["variant"].append(variant_codes.astype(np.uint8))
        out["ts_us"].append(cal.day_start_us[cal.pre_days + day] + tod)

    for k, exp_id in enumerate(EXPERIMENT_IDS):
        asg = asgs[exp_id]
        m = asg.m
        t0 = rng.integers(0, US_PER_DAY, m)
        u = rng.random((4, m))
        arm_code = np.array([_VARIANT_CODE[a] for a in asg.arms])  # per arm, not per unit
        codes = arm_code[asg.arm]
        keep = np.ones(m, bool)
        if exp_id == "checkout_redesign":
            treated = asg.arm == asg.arms.index("treatment")
            keep = ~(treated & (u_loss[asg.rows] < faults.checkout_exposure_loss))
        emit(k, asg.rows[keep], codes[keep], asg.eday[keep], t0[keep])
        for r in (1, 2):
            sel = keep & (asg.n_rows > r)
            day, tod = _later(asg.eday[sel], t0[sel], W, u[2 * r - 2, sel], u[2 * r - 1, sel])
            emit(k, asg.rows[sel], codes[sel], day, tod)
        if exp_id == "onboarding_adaptive":
            sel = u_cont[asg.rows] < faults.contamination_share
            n_arms = len(asg.arms)
            shift = 1 + np.floor(u_cont_arm[asg.rows][sel] * (n_arms - 1)).astype(np.int64)
            other = arm_code[(asg.arm[sel] + shift) % n_arms]
            day, tod = _later(asg.eday[sel], t0[sel], W, u_cont_day[asg.rows][sel],
                              u_cont_time[asg.rows][sel])
            emit(k, asg.rows[sel], other, day, tod)
    return {key: np.concatenate(v) for key, v in out.items()}
