"""Configuration and result containers of the synthetic SaaS world.

``WorldConfig`` fixes everything that determines a world: the seed, the size,
the calendar and the injected data faults (``FaultConfig``).  The same
configuration always yields identical frames (see ``generate_world``).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

import polars as pl

# Smallest experiment window the design supports: the regional roll-out's
# last cohort adopts on day 21 and must have at least one post-adoption day.
MIN_EXPERIMENT_DAYS = 22


@dataclass(frozen=True)
class FaultConfig:
    """Switches for injected data faults, used by the trust layer's tests.

    Faults are drawn from random streams of their own, so switching one on or
    off changes nothing else in the world (users, assignments, events and
    truth stay identical).
    """

    checkout_exposure_loss: float = 0.03
    """Share of checkout_redesign *treatment* units whose exposure rows are
    all dropped from ``exposures`` (a logging bug: the users were still
    treated, so their events and the truth are unchanged).  On by default."""
    contamination_share: float = 0.0
    """Share of onboarding_adaptive units that get one extra exposure row in
    a second (different) arm, timestamped after their first exposure."""
    duplicate_day: int | None = None
    """Relative experiment day (0..experiment_days-1) whose events are
    emitted twice, with the same event_id."""
    negative_revenue_rows: int = 0
    """Number of payment events whose value is negated."""
    events_outside_window: int = 0
    """Number of extra exposure rows (copies of existing rows: same
    experiment, unit and variant) timestamped after the experiment end."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.checkout_exposure_loss <= 1.0:
            raise ValueError("checkout_exposure_loss must be in [0, 1]")
        if not 0.0 <= self.contamination_share <= 1.0:
            raise ValueError("contamination_share must be in [0, 1]")
        if self.negative_revenue_rows < 0 or self.events_outside_window < 0:
            raise ValueError("fault row counts must be >= 0")


@dataclass(frozen=True)
class WorldConfig:
    """Size, calendar and seed of a synthetic world.

    Day 0 is ``start_date`` (UTC).  The pre-period is days ``-pre_days..-1``,
    the experiment window days ``0..experiment_days-1``; every user is active
    (signed up) before the pre-period starts.
    """

    seed: int = 20261122
    n_users: int = 100_000
    start_date: datetime.date = datetime.date(2026, 9, 1)
    experiment_days: int = 28
    pre_days: int = 14
    chunk_users: int = 50_000
    user_id_offset: int = 0
    """Added to every user_id; event_id starts at 1000 * user_id_offset + 1, so
    worlds with disjoint user-id ranges also have disjoint event ids."""
    experiment_suffix: str = ""
    faults: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        if self.n_users < 1:
            raise ValueError("n_users must be >= 1")
        if self.chunk_users < 1:
            raise ValueError("chunk_users must be >= 1")
        if self.experiment_days < MIN_EXPERIMENT_DAYS:
            raise ValueError(f"experiment_days must be >= {MIN_EXPERIMENT_DAYS}")
        if self.pre_days < 0:
            raise ValueError("pre_days must be >= 0")
        if self.user_id_offset < 0:
            raise ValueError("user_id_offset must be >= 0")
        dd = self.faults.duplicate_day
        if dd is not None and not 0 <= dd < self.experiment_days:
            raise ValueError("faults.duplicate_day must be in 0..experiment_days-1")

    @property
    def end_date(self) -> datetime.date:
        """Last day of the experiment window (inclusive)."""
        return self.start_date + datetime.timedelta(days=self.experiment_days - 1)

    @property
    def pre_start_date(self) -> datetime.date:
        """First day of the pre-period."""
        return self.start_date - datetime.timedelta(days=self.pre_days)

    def experiment_id(self, base_id: str) -> str:
        """The world's id of a design experiment (``base_id`` + suffix)."""
        return base_id + self.experiment_suffix


@dataclass
class World:
    """One generated world: raw frames (data contract) plus ground truth."""

    config: WorldConfig
    users: pl.DataFrame
    events: pl.DataFrame
    exposures: pl.DataFrame
    truth_effects: pl.DataFrame
    truth_unit_effects: pl.DataFrame
    truth_regional: pl.DataFrame
