"""The common outcome of a trust gate (what ``gates.check_results`` stores)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

#: N/A: the gate does not apply to this experiment (said why in the reason), nothing was checked.
Status = Literal["PASS", "WARN", "FAIL", "N/A"]


@dataclass(frozen=True)
class GateResult:
    """Status, statistic, p-value, a human ``reason`` and JSON-able ``details``."""

    check: str
    status: Status
    reason: str
    statistic: float = math.nan
    p_value: float = math.nan
    details: dict = field(default_factory=dict)

    def as_details(self) -> dict:
        return {"reason": self.reason, **self.details}


def worst(statuses: list[str]) -> Status:
    """FAIL over WARN over PASS (N/A counts as nothing)."""
    for status in ("FAIL", "WARN"):
        if status in statuses:
            return status  # type: ignore[return-value]
    return "PASS"
