"""Injected data faults do what FaultConfig says, and nothing else changes."""

from __future__ import annotations

import datetime

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from liftlab.synth import FaultConfig, WorldConfig, generate_world
from tests.synth.marts import first_exposures

N_USERS = 6_000


@pytest.fixture(scope="module")
def clean():
    return generate_world(WorldConfig(n_users=N_USERS, seed=5, faults=FaultConfig(checkout_exposure_loss=0.0)))


@pytest.fixture(scope="module")
def faulty():
    faults = FaultConfig(checkout_exposure_loss=0.2, contamination_share=0.1, duplicate_day=3,
                         negative_revenue_rows=25, events_outside_window=40)
    return generate_world(WorldConfig(n_users=N_USERS, seed=5, faults=faults))


def test_faults_leave_users_and_truth_unchanged(clean, faulty):
    for name in ("users", "truth_effects", "truth_unit_effects", "truth_regional"):
        assert_frame_equal(getattr(clean, name), getattr(faulty, name))


def test_checkout_exposure_loss_drops_whole_treatment_units(clean, faulty):
    c = first_exposures(clean, "checkout_redesign")
    f = first_exposures(faulty, "checkout_redesign")
    assert c.height == N_USERS
    lost = c.join(f, on="user_id", how="anti")
    assert (lost["variant"] == "treatment").all()
    n_treat = (c["variant"] == "treatment").sum()
    share = lost.height / n_treat
    assert abs(share - 0.2) < 4 * (0.2 * 0.8 / n_treat) ** 0.5
    # surviving units keep all their rows
    end = clean.config.end_date
    kept = clean.exposures.filter(pl.col("experiment_id") == "checkout_redesign").join(
        lost.select("user_id"), on="user_id", how="anti")
    got = faulty.exposures.filter((pl.col("experiment_id") == "checkout_redesign")
                                  & (pl.col("exposed_at").dt.date() <= end))
    assert_frame_equal(kept, got)


def test_checkout_exposure_loss_default_is_on():
    assert FaultConfig().checkout_exposure_loss == 0.03
    w = generate_world(WorldConfig(n_users=N_USERS, seed=5))
    units = first_exposures(w, "checkout_redesign")
    n_ctrl = (units["variant"] == "control").sum()
    n_treat = (units["variant"] == "treatment").sum()
    assert n_treat < n_ctrl and units.height < N_USERS


def test_contamination_adds_a_second_arm_after_the_first(clean, faulty):
    c = first_exposures(clean, "onboarding_adaptive")
    f = first_exposures(faulty, "onboarding_adaptive")
    # the first exposure (variant, date) is unchanged for every unit
    assert_frame_equal(c.select("user_id", "variant", "exposure_date").sort("user_id"),
                       f.select("user_id", "variant", "exposure_date").sort("user_id"))
    mixed = f.filter(pl.col("n_variants") == 2)
    assert (f["n_variants"] <= 2).all()
    share = mixed.height / f.height
    assert abs(share - 0.1) < 4 * (0.1 * 0.9 / f.height) ** 0.5
    assert (mixed["n_exposures"] >= 2).all()
    assert (c["n_variants"] == 1).all()


def test_duplicate_day_repeats_events_with_the_same_id(clean, faulty):
    day = faulty.config.start_date + datetime.timedelta(days=3)
    dup = faulty.events.filter(pl.col("event_id").is_duplicated())
    assert dup.height > 0
    assert (dup["event_ts"].dt.date() == day).all()
    n_day = clean.events.filter(pl.col("event_ts").dt.date() == day).height
    assert dup.height == 2 * n_day
    assert faulty.events.height == clean.events.height + n_day
    # the duplicated rows are identical copies
    assert dup.unique().height == n_day


def test_negative_revenue_rows(clean, faulty):
    neg = faulty.events.filter((pl.col("event_type") == "payment") & (pl.col("value") < 0)).unique()
    assert neg.height == 25  # distinct events (rows on the duplicated day appear twice)
    assert (clean.events.filter(pl.col("event_type") == "payment")["value"] > 0).all()
    # the same rows, negated (compare on the undisturbed part: event ids are identical)
    orig = clean.events.join(neg.select("event_id"), on="event_id")
    assert orig.height == 25
    assert orig.sort("event_id")["value"].to_list() == (-neg.sort("event_id")["value"]).to_list()


def test_events_outside_window(clean, faulty):
    end = faulty.config.end_date
    late = faulty.exposures.filter(pl.col("exposed_at").dt.date() > end)
    assert late.height == 40
    assert (late["exposed_at"].dt.date() <= end + datetime.timedelta(days=7)).all()
    assert clean.exposures.filter(pl.col("exposed_at").dt.date() > end).height == 0
    # each late row repeats an existing (experiment, unit, variant)
    assert late.join(faulty.exposures.filter(pl.col("exposed_at").dt.date() <= end),
                     on=["experiment_id", "user_id", "variant"], how="semi").height == 40
