"""Schema, determinism, chunking, id offsets and the structure of the generated frames."""

from __future__ import annotations

import dataclasses
import datetime

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from liftlab.synth import EXPERIMENTS, FaultConfig, World, WorldConfig, WorldStream, generate_world
from liftlab.synth.world import EVENT_ID_PER_USER_ID
from liftlab.synth.world import (EVENTS_SCHEMA, EXPOSURES_SCHEMA, TRUTH_EFFECTS_SCHEMA,
                                 TRUTH_REGIONAL_SCHEMA, TRUTH_UNIT_SCHEMA, USERS_SCHEMA)
from tests.synth.marts import first_exposures

FRAMES = ("users", "events", "exposures", "truth_effects", "truth_unit_effects", "truth_regional")

# the data contract of docs/architecture.md, as polars dtypes
CONTRACT = {
    "users": {"user_id": pl.Int64, "signup_date": pl.Date, "plan": pl.Utf8, "company_size": pl.Utf8,
              "region": pl.Utf8, "device": pl.Utf8, "tenure_days": pl.Int32,
              "engagement_score": pl.Float64, "engagement_level": pl.Utf8},
    "events": {"event_id": pl.Int64, "user_id": pl.Int64, "event_ts": pl.Datetime("us", "UTC"),
               "event_type": pl.Utf8, "value": pl.Float64},
    "exposures": {"experiment_id": pl.Utf8, "user_id": pl.Int64, "variant": pl.Utf8,
                  "exposed_at": pl.Datetime("us", "UTC")},
    "truth_effects": {"experiment_id": pl.Utf8, "metric": pl.Utf8, "variant": pl.Utf8,
                      "baseline": pl.Utf8, "estimand": pl.Utf8, "true_effect": pl.Float64,
                      "true_mean_baseline": pl.Float64, "true_mean_variant": pl.Float64,
                      "n_units": pl.Int64},
    "truth_unit_effects": {"experiment_id": pl.Utf8, "user_id": pl.Int64, "metric": pl.Utf8,
                           "true_cate": pl.Float64, "true_type": pl.Utf8},
    "truth_regional": {"region": pl.Utf8, "adoption_date": pl.Date, "activity_date": pl.Date,
                       "true_effect": pl.Float64},
}


def _assert_worlds_equal(a: World, b: World) -> None:
    for name in FRAMES:
        assert_frame_equal(getattr(a, name), getattr(b, name))


def test_schema_matches_contract(small_world):
    for name in FRAMES:
        assert dict(getattr(small_world, name).schema) == CONTRACT[name], name
    assert CONTRACT["users"] == USERS_SCHEMA and CONTRACT["events"] == EVENTS_SCHEMA
    assert CONTRACT["exposures"] == EXPOSURES_SCHEMA
    assert CONTRACT["truth_effects"] == TRUTH_EFFECTS_SCHEMA
    assert CONTRACT["truth_unit_effects"] == TRUTH_UNIT_SCHEMA
    assert CONTRACT["truth_regional"] == TRUTH_REGIONAL_SCHEMA


def test_not_null_where_the_database_requires_it(small_world):
    for name, cols in {
        "truth_effects": ["experiment_id", "metric", "variant", "baseline", "estimand", "true_effect"],
        "truth_unit_effects": ["experiment_id", "user_id", "metric", "true_cate"],
        "truth_regional": ["region", "activity_date", "true_effect"],
        "users": list(CONTRACT["users"]),
        "exposures": list(CONTRACT["exposures"]),
        "events": ["event_id", "user_id", "event_ts", "event_type"],
    }.items():
        frame = getattr(small_world, name)
        assert frame.select(pl.col(cols).null_count()).sum_horizontal().item() == 0, name


def test_deterministic_for_a_config(small_config, small_world):
    _assert_worlds_equal(small_world, generate_world(small_config))


def test_different_seed_gives_a_different_world(small_config, small_world):
    other = generate_world(dataclasses.replace(small_config, seed=small_config.seed + 1))
    assert not other.users.equals(small_world.users)
    assert other.events.height != small_world.events.height or not other.events.equals(small_world.events)
    assert not other.truth_effects.equals(small_world.truth_effects)


def test_chunks_are_prefix_stable():
    """A chunk's users and events depend only on (seed, chunk index, chunk size)."""
    a = generate_world(WorldConfig(n_users=2_000, chunk_users=1_000, seed=3))
    b = generate_world(WorldConfig(n_users=3_000, chunk_users=1_000, seed=3))
    assert_frame_equal(a.users, b.users.head(2_000))
    ev_b = b.events.filter(pl.col("user_id") <= 2_000)
    assert_frame_equal(a.events, ev_b)  # event ids too: they are decided within the user's chunk


def test_user_id_offset_and_experiment_suffix(small_config, small_world):
    cfg = dataclasses.replace(small_config, user_id_offset=10_000_000, experiment_suffix="__s07")
    w = generate_world(cfg)
    assert_frame_equal(w.users.with_columns(pl.col("user_id") - 10_000_000), small_world.users)
    assert_frame_equal(w.events.with_columns(pl.col("user_id") - 10_000_000,
                                             pl.col("event_id") - EVENT_ID_PER_USER_ID * 10_000_000),
                       small_world.events)
    # concatenated worlds with disjoint user ids keep event_id unique
    assert w.events["event_id"].min() > small_world.events["event_id"].max()
    assert w.users["user_id"].min() == 10_000_001
    for name in ("exposures", "truth_effects", "truth_unit_effects"):
        ids = getattr(w, name)["experiment_id"].unique()
        assert ids.str.ends_with("__s07").all(), name
        assert set(ids.str.replace("__s07$", "")) <= set(EXPERIMENTS)
    base = small_world.exposures.with_columns(pl.col("experiment_id") + "__s07",
                                              pl.col("user_id") + 10_000_000)
    assert_frame_equal(w.exposures, base)
    assert_frame_equal(w.truth_effects, small_world.truth_effects.with_columns(
        pl.col("experiment_id") + "__s07"))


def test_users(small_world):
    u = small_world.users
    cfg = small_world.config
    assert u.height == cfg.n_users and u["user_id"].is_unique().all()
    assert u["user_id"].to_list() == list(range(1, cfg.n_users + 1))
    assert set(u["plan"]) == {"trial", "basic", "pro", "enterprise"}
    assert set(u["company_size"]) == {"1-10", "11-50", "51-200", "201+"}
    assert set(u["device"]) == {"desktop", "mobile", "tablet"}
    assert set(u["engagement_level"]) == {"low", "medium", "high"}
    assert u["region"].n_unique() == 16
    shares = u["plan"].value_counts(normalize=True)
    shares = dict(zip(shares["plan"], shares["proportion"]))
    assert shares["trial"] == pytest.approx(0.35, abs=0.03)
    assert shares["enterprise"] == pytest.approx(0.08, abs=0.02)
    assert abs(u["engagement_score"].mean()) < 0.06 and abs(u["engagement_score"].std() - 1) < 0.06
    lv = u["engagement_level"].value_counts(normalize=True)["proportion"]
    assert lv.min() > 0.28 and lv.max() < 0.39
    assert (u["tenure_days"] >= cfg.pre_days).all()
    ends = u.select(pl.col("signup_date") + pl.duration(days=pl.col("tenure_days")))["signup_date"]
    assert (ends == cfg.start_date).all()


def test_events(small_world):
    ev = small_world.events
    cfg = small_world.config
    # a user's k-th event (in time order) has id user_id × EVENT_ID_PER_USER_ID + k
    assert ev["event_id"].is_unique().all()
    assert (ev["event_id"] // EVENT_ID_PER_USER_ID == ev["user_id"]).all()
    seq = ev.sort("event_id").select((pl.col("event_id") % EVENT_ID_PER_USER_ID).alias("k"), "user_id", "event_ts")
    assert (seq["k"] == seq.select(pl.int_range(1, pl.len() + 1).over("user_id").alias("k"))["k"]).all()
    assert seq.select(pl.col("event_ts").is_sorted().over("user_id")).to_series().all()
    assert ev["event_ts"].is_sorted()
    d = ev["event_ts"].dt.date()
    assert d.min() >= cfg.pre_start_date and d.max() <= cfg.end_date
    per_user = ev.height / cfg.n_users
    assert 50 <= per_user <= 90, per_user
    t = pl.col("event_type")
    assert ev.filter(t.is_in(["session", "payment"]))["value"].null_count() == 0
    assert ev.filter(~t.is_in(["session", "payment"]))["value"].null_count() == \
        ev.filter(~t.is_in(["session", "payment"])).height
    assert (ev.filter(t == "payment")["value"] > 0).all()
    assert (ev.filter(t == "session")["value"] > 0).all()
    # conversions: only in the window, only trial users, once, with a same-day payment
    up = ev.filter(t == "upgrade").with_columns(pl.col("event_ts").dt.date().alias("d"))
    assert up["d"].min() >= cfg.start_date
    assert up["user_id"].is_unique().all()
    plans = small_world.users.join(up, on="user_id")["plan"]
    assert (plans == "trial").all()
    pay = ev.filter(t == "payment").join(up.select("user_id", "d", pl.col("event_ts").alias("up_ts")),
                                         on="user_id")
    same_day = pay.filter(pl.col("event_ts").dt.date() == pl.col("d"))
    assert same_day.height >= up.height
    assert (same_day["event_ts"] > same_day["up_ts"]).all()
    # trial users pay nothing before converting
    trial_pay = ev.filter(t == "payment").join(
        small_world.users.filter(pl.col("plan") == "trial").select("user_id"), on="user_id")
    assert trial_pay.height == up.height


def test_exposures_structure(small_world):
    cfg = small_world.config
    ex = small_world.exposures
    assert set(ex["experiment_id"]) == set(EXPERIMENTS)
    users = small_world.users
    for exp, spec in EXPERIMENTS.items():
        fe = first_exposures(small_world, exp)
        assert set(fe["variant"]) <= set(spec["variants"]), exp
        assert (fe["n_variants"] == 1).all(), exp  # no contamination by default
        days = fe.select((pl.col("exposure_date") - pl.lit(cfg.start_date)).dt.total_days()).to_series()
        if spec["randomized"]:
            assert fe["n_exposures"].min() == 1 and fe["n_exposures"].max() == 3, exp
            if exp == "winback_email":
                assert (days == 0).all()
            else:
                assert days.min() == 0 and days.max() == 6, exp
        else:
            assert (fe["n_exposures"] == 1).all(), exp
    ex_d = ex["exposed_at"].dt.date()
    assert ex_d.min() >= cfg.start_date and ex_d.max() <= cfg.end_date
    onb = first_exposures(small_world, "onboarding_adaptive").join(users, on="user_id")
    assert (onb["plan"] == "trial").all()
    assert onb.height == users.filter(pl.col("plan") == "trial").height
    aa = first_exposures(small_world, "aa_check")
    assert aa.height == users.height
    opt = first_exposures(small_world, "ai_assistant_optin").join(users, on="user_id")
    assert opt.height == users.filter(pl.col("plan") != "trial").height
    reg = first_exposures(small_world, "regional_pricing").join(users, on="user_id")
    assert reg.height == users.height
    adoption = EXPERIMENTS["regional_pricing"]["adoption_day"]
    exp_day = reg.with_columns(
        (pl.col("exposure_date") - pl.lit(cfg.start_date)).dt.total_days().alias("d"))
    for r in exp_day.select("region", "variant", "d").unique().iter_rows(named=True):
        a = adoption[r["region"]]
        assert (r["variant"], r["d"]) == (("old_price", 0) if a is None else ("new_price", a))


def test_truth_frames_cover_every_experiment(small_world):
    te = small_world.truth_effects
    for exp, spec in EXPERIMENTS.items():
        rows = te.filter(pl.col("experiment_id") == exp)
        if exp == "regional_pricing":
            assert rows.height == 1
            continue
        n_est = 1 if spec["randomized"] else 2
        assert rows.height == n_est * len(spec["metrics"]) * (len(spec["variants"]) - 1), exp
        assert set(rows["metric"]) == set(spec["metrics"])
        assert (rows["baseline"] == spec["baseline"]).all()
    diff = te["true_mean_variant"] - te["true_mean_baseline"] - te["true_effect"]
    assert diff.abs().max() < 1e-9
    assert set(te["estimand"]) == {"ATE", "ATT"}


def test_experiment_design_constants():
    for exp, spec in EXPERIMENTS.items():
        assert spec["baseline"] in spec["variants"]
        if spec["randomized"]:
            assert sum(spec["variants"].values()) == pytest.approx(1.0)
    assert set(EXPERIMENTS) == {"onboarding_adaptive", "aa_check", "checkout_redesign",
                                "winback_email", "ai_assistant_optin", "regional_pricing"}


def test_config_validation():
    with pytest.raises(ValueError):
        WorldConfig(experiment_days=10)
    with pytest.raises(ValueError):
        WorldConfig(faults=FaultConfig(duplicate_day=28))
    with pytest.raises(ValueError):
        FaultConfig(checkout_exposure_loss=1.5)
    cfg = WorldConfig()
    assert cfg.end_date == datetime.date(2026, 9, 28)
    assert cfg.pre_start_date == datetime.date(2026, 8, 18)


def test_tiny_world_is_valid():
    w = generate_world(WorldConfig(n_users=30, chunk_users=7, seed=11))
    assert w.users.height == 30
    for name in FRAMES:
        assert dict(getattr(w, name).schema) == CONTRACT[name], name
    assert w.truth_effects["true_effect"].null_count() == 0
    assert w.truth_regional["true_effect"].null_count() == 0


def test_the_stream_yields_the_rows_of_the_world_chunk_by_chunk(small_config, small_world):
    """Streaming (what the ingest asset writes) and the in-memory world hold the same rows."""
    cfg = dataclasses.replace(small_config, faults=FaultConfig(negative_revenue_rows=7, duplicate_day=2))
    stream = WorldStream(cfg)
    chunks = list(stream)
    assert len(chunks) == -(-cfg.n_users // cfg.chunk_users) and [c.index for c in chunks] == list(range(len(chunks)))
    world = generate_world(cfg)
    assert_frame_equal(pl.concat([c.events for c in chunks]).sort("event_ts", "event_id", maintain_order=True), world.events)
    assert_frame_equal(pl.concat([c.users for c in chunks]), world.users)
    assert_frame_equal(stream.tail().exposures, world.exposures)
    # the fault's count holds across chunks (a negated payment on the duplicated day appears twice)
    assert world.events.filter(pl.col("value") < 0)["event_id"].n_unique() == 7
    for chunk in chunks:  # each chunk is in time order, as it is written
        assert chunk.events["event_ts"].is_sorted()
    with pytest.raises(RuntimeError, match="after every chunk"):
        WorldStream(cfg).tail()
