"""Contamination (crossover) gate: units exposed to more than one variant.

A unit that saw two arms received a mixture of treatments; its outcome belongs to neither arm.
Such units are excluded from the analysis and counted. A handful is normal (shared devices,
cache races); many mean the assignment is not sticky and the comparison is diluted and
possibly biased (Kohavi, Tang & Xu 2020, *Trustworthy Online Controlled Experiments*, ch. 3
and 21). Above ``max_share`` of the exposed units (default 1 %) the experiment is halted.
Pure module: no Dagster, no database.
"""

from __future__ import annotations

from collections.abc import Mapping

from liftlab.gates.result import GateResult

DEFAULT_MAX_SHARE = 0.01


def contamination_test(
    n_units: int,
    n_contaminated: int,
    *,
    max_share: float = DEFAULT_MAX_SHARE,
    by_first_variant: Mapping[str, int] | None = None,
) -> GateResult:
    """FAIL when ``n_contaminated / n_units > max_share``; WARN when any unit is contaminated;
    ``N/A`` when there is no exposed unit (nothing was checked).

    ``by_first_variant`` (contaminated units per first-exposure arm) goes into the details to
    show whether the crossover is one-directional (a bug in one arm's code path).
    """
    if not 0 <= max_share < 1:
        raise ValueError("max_share must be in [0, 1)")
    if n_units < 0 or not 0 <= n_contaminated <= max(n_units, 0):
        raise ValueError(f"need 0 <= n_contaminated ({n_contaminated}) <= n_units ({n_units})")
    share = n_contaminated / n_units if n_units else 0.0
    details = {
        "n_units": int(n_units),
        "n_contaminated": int(n_contaminated),
        "share": share,
        "max_share": max_share,
        "excluded_units": int(n_contaminated),
        "by_first_variant": dict(by_first_variant or {}),
    }
    if n_units == 0:
        return GateResult("contamination", "N/A", "not applicable: no exposed unit to check for crossover",
                          details=details)
    text = f"{n_contaminated:,} of {n_units:,} units ({share:.2%}) were exposed to more than one variant"
    if share > max_share:
        return GateResult("contamination", "FAIL", f"contamination: {text}, above the {max_share:.0%} limit", share, details=details)
    if n_contaminated:
        return GateResult("contamination", "WARN", f"{text}; they are excluded and counted (limit {max_share:.0%})", share, details=details)
    return GateResult("contamination", "PASS", "no unit was exposed to more than one variant", share, details=details)
