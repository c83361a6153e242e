"""``generate_world``: builds users, events, exposures and ground truth.

Users are generated in chunks of ``chunk_users`` (memory bound).  Each chunk
has its own random streams, derived from (seed, stream, chunk index) with
numpy's SeedSequence, so a world is a deterministic function of the config:

    stream 0  region x day factors (global)      stream 3  events
    stream 1  user attributes                    stream 4  exposure times
    stream 2  experiment assignment              stream 5  exposure faults
    stream 6  event / out-of-window faults (global)

Within a chunk: attributes -> untreated rates -> assignments -> realised
rates (untreated x product of every experiment's factors) -> sampled events,
and, from the same realised rates, the exact expected metrics of every unit
under every arm of each experiment (truth.py), all other experiments held at
their realised arms.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from . import design as D
from .config import FaultConfig, World, WorldConfig
from .events import EVENT_TYPES, PAYMENT, sample_events
from .experiments import EXPERIMENT_IDS, Assignment, factors, assign
from .exposures import VARIANTS, exposure_rows
from .population import Population, draw_population
from .rates import CHANNELS, US_PER_DAY, Calendar, base_rates, make_calendar, region_day_factors
from .truth import expected_daily_revenue, expected_metrics

_EPOCH = datetime.date(1970, 1, 1)

# event_id = EVENT_ID_PER_USER_ID * user_id + k, k = 1, 2, … the user's events in time order:
# unique, decided inside the user's chunk (so chunks can be written as they are generated), and
# disjoint across worlds with disjoint user ids. A user with EVENT_ID_PER_USER_ID events or more
# would collide with the next user: generation refuses it (the busiest of 1.6M users has ~3,000).
EVENT_ID_PER_USER_ID = 100_000

# per-unit truth exported to truth_unit_effects: experiment -> metrics
UNIT_TRUTH_METRICS = {
    "winback_email": ("reactivated", "sessions"),
    "ai_assistant_optin": ("ai_calls", "tasks_completed"),
}

USERS_SCHEMA = {
    "user_id": pl.Int64, "signup_date": pl.Date, "plan": pl.Utf8, "company_size": pl.Utf8,
    "region": pl.Utf8, "device": pl.Utf8, "tenure_days": pl.Int32,
    "engagement_score": pl.Float64, "engagement_level": pl.Utf8,
}
EVENTS_SCHEMA = {
    "event_id": pl.Int64, "user_id": pl.Int64, "event_ts": pl.Datetime("us", "UTC"),
    "event_type": pl.Utf8, "value": pl.Float64,
}
EXPOSURES_SCHEMA = {
    "experiment_id": pl.Utf8, "user_id": pl.Int64, "variant": pl.Utf8,
    "exposed_at": pl.Datetime("us", "UTC"),
}
TRUTH_EFFECTS_SCHEMA = {
    "experiment_id": pl.Utf8, "metric": pl.Utf8, "variant": pl.Utf8, "baseline": pl.Utf8,
    "estimand": pl.Utf8, "true_effect": pl.Float64, "true_mean_baseline": pl.Float64,
    "true_mean_variant": pl.Float64, "n_units": pl.Int64,
}
TRUTH_UNIT_SCHEMA = {
    "experiment_id": pl.Utf8, "user_id": pl.Int64, "metric": pl.Utf8, "true_cate": pl.Float64,
    "true_type": pl.Utf8,
}
TRUTH_REGIONAL_SCHEMA = {
    "region": pl.Utf8, "adoption_date": pl.Date, "activity_date": pl.Date,
    "true_effect": pl.Float64,
}


def _rng(seed: int, stream: int, chunk: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, stream, chunk])


def _labels(categories: tuple[str, ...], codes: np.ndarray, name: str) -> pl.Series:
    """Vectorised code -> label mapping."""
    return pl.Series(name, list(categories), dtype=pl.Utf8).gather(
        pl.Series(codes.astype(np.uint32)))


def _ts(us: np.ndarray, name: str) -> pl.Series:
    return pl.Series(name, us, dtype=pl.Int64).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")


class _TruthAccumulator:
    """Sums of exact expected metrics over units, accumulated chunk by chunk."""

    def __init__(self, cal: Calendar):
        self.cal = cal
        W = cal.experiment_days
        # (exp, arm, estimand) -> metric -> [sum E[Y(arm)], sum E[Y(baseline)], sum diff]
        self.sums: dict[tuple[str, str, str], dict[str, np.ndarray]] = {}
        self.n: dict[tuple[str, str, str], int] = {}
        self.unit_parts: list[pl.DataFrame] = []
        n_r = len(D.REGIONS)
        self.reg_effect = np.zeros((n_r, W))
        self.reg_base = np.zeros((n_r, W))
        self.reg_users = np.zeros(n_r, np.int64)

    def _add(self, key, metric, arm_vals, base_vals):
        acc = self.sums.setdefault(key, {}).setdefault(metric, np.zeros(3))
        acc += (arm_vals.sum(), base_vals.sum(), (arm_vals - base_vals).sum())

    def add_chunk(self, pop: Population, asgs: dict[str, Assignment],
                  real_f: dict[str, dict[str, np.ndarray]], realized: dict[str, np.ndarray],
                  billing: np.ndarray, conv_price: np.ndarray) -> None:
        win = self.cal.window
        W = self.cal.experiment_days
        for exp_id in EXPERIMENT_IDS:
            asg = asgs[exp_id]
            if asg.m == 0:
                continue
            rows = asg.rows
            # rates with every other experiment at its realised arm
            others = {c: realized[c][rows, win] for c in CHANNELS}
            for c, f in real_f[exp_id].items():
                others[c] = others[c] / f
            bill = billing[rows, win]
            cp = conv_price[rows]

            def under(arm_code: int) -> dict[str, np.ndarray]:
                f = factors(asg, np.full(asg.m, arm_code, np.int8), W)
                return {c: others[c] * f[c] if c in f else others[c] for c in CHANNELS}

            if exp_id == "regional_pricing":
                self._add_regional(pop, asg, under, bill, cp)
                continue

            spec = D.EXPERIMENTS[exp_id]
            base_m = expected_metrics(under(asg.baseline), bill, cp, asg.eday)
            for code, arm in enumerate(asg.arms):
                if code == asg.baseline:
                    continue
                # an experiment without factors (A/A) has identical arms: reuse
                # the baseline so its truth is exactly 0
                var_m = (expected_metrics(under(code), bill, cp, asg.eday) if real_f[exp_id]
                         else base_m)
                estimands = [("ATE", np.ones(asg.m, bool))]
                if not spec["randomized"]:
                    estimands.append(("ATT", asg.arm == code))
                for est, sel in estimands:
                    key = (exp_id, arm, est)
                    self.n[key] = self.n.get(key, 0) + int(sel.sum())
                    for metric in spec["metrics"]:
                        self._add(key, metric, var_m[metric][sel], base_m[metric][sel])
                if exp_id in UNIT_TRUTH_METRICS:
                    typ = (_labels(D.WINBACK_TYPES, asg.extra["type"], "true_type")
                           if exp_id == "winback_email"
                           else pl.repeat(None, asg.m, dtype=pl.Utf8, eager=True).alias("true_type"))
                    for metric in UNIT_TRUTH_METRICS[exp_id]:
                        self.unit_parts.append(pl.DataFrame({
                            "experiment_id": exp_id, "user_id": pop.user_id[rows],
                            "metric": metric, "true_cate": var_m[metric] - base_m[metric],
                            "true_type": typ}))

    def _add_regional(self, pop, asg, under, bill, cp) -> None:
        treated = asg.extra["adopt"] >= 0
        new_code = asg.arms.index("new_price")
        old = expected_daily_revenue(under(asg.baseline), bill, cp)
        new = expected_daily_revenue(under(new_code), bill, cp)
        onehot = (pop.region[None, :] == np.arange(len(D.REGIONS))[:, None]).astype(float)
        self.reg_effect += onehot @ np.where(treated[:, None], new - old, 0.0)
        self.reg_base += onehot @ old
        self.reg_users += onehot.sum(axis=1).astype(np.int64)

    # ------------------------------------------------------------------
    def frames(self, cfg: WorldConfig) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        rows = []
        for (exp_id, arm, est), metrics in self.sums.items():
            spec = D.EXPERIMENTS[exp_id]
            n = self.n[exp_id, arm, est]
            if n == 0:  # e.g. nobody opted in in a tiny world: no estimand to report
                continue
            for metric, (s_arm, s_base, s_diff) in metrics.items():
                rows.append({
                    "experiment_id": cfg.experiment_id(exp_id), "metric": metric, "variant": arm,
                    "baseline": spec["baseline"], "estimand": est,
                    "true_effect": s_diff / n, "true_mean_baseline": s_base / n,
                    "true_mean_variant": s_arm / n, "n_units": n})
        rows.extend(self._regional_att(cfg))
        effects = pl.DataFrame(rows, schema=TRUTH_EFFECTS_SCHEMA)

        units = (pl.concat(self.unit_parts) if self.unit_parts
                 else pl.DataFrame(schema=TRUTH_UNIT_SCHEMA))
        units = units.with_columns(pl.lit(cfg.experiment_suffix).alias("_s")).with_columns(
            (pl.col("experiment_id") + pl.col("_s")).alias("experiment_id")).drop("_s")
        units = units.select([pl.col(c).cast(t) for c, t in TRUTH_UNIT_SCHEMA.items()]).sort(
            "experiment_id", "metric", "user_id")
        return effects, units, self._regional_frame(cfg)

    def _adoption(self) -> np.ndarray:
        return np.array([-1 if D.REGIONAL_ADOPTION_DAY[r] is None else D.REGIONAL_ADOPTION_DAY[r]
                         for r in D.REGIONS])

    def _regional_att(self, cfg: WorldConfig) -> list[dict]:
        adopt = self._adoption()
        post = (np.arange(self.cal.experiment_days)[None, :] >= adopt[:, None]) & (adopt[:, None] >= 0)
        user_days = float((post.sum(axis=1) * self.reg_users).sum())
        n_treated = int(self.reg_users[adopt >= 0].sum())
        if user_days == 0:
            return []
        att = float(self.reg_effect[post].sum() / user_days)
        base = float(self.reg_base[post].sum() / user_days)
        spec = D.EXPERIMENTS["regional_pricing"]
        return [{"experiment_id": cfg.experiment_id("regional_pricing"),
                 "metric": "revenue_per_unit_day", "variant": "new_price",
                 "baseline": spec["baseline"], "estimand": "ATT", "true_effect": att,
                 "true_mean_baseline": base, "true_mean_variant": base + att,
                 "n_units": n_treated}]

    def _regional_frame(self, cfg: WorldConfig) -> pl.DataFrame:
        cal = self.cal
        adopt = self._adoption()
        n_r = len(D.REGIONS)
        eff = np.zeros((n_r, cal.T))
        # user-weighted mean effect; 0 for a region without users
        eff[:, cal.window] = self.reg_effect / np.maximum(self.reg_users, 1)[:, None]
        start = (cfg.start_date - _EPOCH).days
        adoption = np.where(adopt >= 0, start + adopt, -1)
        frame = pl.DataFrame({
            "region": np.repeat(np.array(D.REGIONS), cal.T),
            "adoption_date": pl.Series(np.repeat(adoption, cal.T), dtype=pl.Int32),
            "activity_date": pl.Series(np.tile(start + cal.day, n_r), dtype=pl.Int32),
            "true_effect": eff.ravel(),
        })
        return frame.with_columns(
            pl.when(pl.col("adoption_date") >= 0).then(pl.col("adoption_date"))
            .otherwise(None).cast(pl.Date).alias("adoption_date"),
            pl.col("activity_date").cast(pl.Date),
        ).select(list(TRUTH_REGIONAL_SCHEMA))


def _users_frame(pop: Population, cfg: WorldConfig) -> pl.DataFrame:
    start = (cfg.start_date - _EPOCH).days
    return pl.DataFrame([
        pl.Series("user_id", pop.user_id, dtype=pl.Int64),
        pl.Series("signup_date", (start - pop.tenure).astype(np.int32), dtype=pl.Int32).cast(pl.Date),
        _labels(D.PLANS, pop.plan, "plan"),
        _labels(D.COMPANY_SIZES, pop.size, "company_size"),
        _labels(D.REGIONS, pop.region, "region"),
        _labels(D.DEVICES, pop.device, "device"),
        pl.Series("tenure_days", pop.tenure, dtype=pl.Int32),
        pl.Series("engagement_score", pop.score, dtype=pl.Float64),
        _labels(D.ENGAGEMENT_LEVELS, pop.level, "engagement_level"),
    ])


def _events_frame(part: dict[str, np.ndarray], cal: Calendar, cfg: WorldConfig, rng: np.random.Generator,
                  negate: int) -> tuple[pl.DataFrame, int]:
    """One chunk's events in time order, with their ids and the event faults of the chunk:
    ``negate`` payment amounts negated, and every event of ``faults.duplicate_day`` delivered
    twice (same event_id)."""
    ev = pl.DataFrame({"user_id": part["user_id"], "ts_us": part["ts_us"], "etype": part["etype"], "value": part["value"]})
    # each user's events in time order (ties: type, then generation order) number k = 1, 2, …
    ev = ev.sort("user_id", "ts_us", "etype", maintain_order=True)
    ev = ev.with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("user_id").alias("seq"))
    if ev.height and ev["seq"].max() >= EVENT_ID_PER_USER_ID:
        raise ValueError(f"a user has {ev['seq'].max()} events: event ids allow fewer than {EVENT_ID_PER_USER_ID}")
    ev = ev.with_columns((pl.col("user_id").cast(pl.Int64) * EVENT_ID_PER_USER_ID + pl.col("seq")).alias("event_id"))
    ev = ev.sort("ts_us", "event_id")
    n = ev.height
    value = ev["value"].to_numpy().copy()
    # fault draws happen whatever the settings (fixed sizes), see FaultConfig
    pay_idx = np.flatnonzero(ev["etype"].to_numpy() == PAYMENT)
    order = rng.permutation(len(pay_idx))
    negated = min(negate, len(pay_idx))
    value[pay_idx[order[:negated]]] *= -1.0
    ev = ev.with_columns(pl.Series("value", value).fill_nan(None))
    faults: FaultConfig = cfg.faults
    if faults.duplicate_day is not None:
        lo = cal.day_start_us[cal.pre_days + faults.duplicate_day]
        ts = ev["ts_us"].to_numpy()
        dup = np.flatnonzero((ts >= lo) & (ts < lo + US_PER_DAY))
        ev = ev[np.sort(np.concatenate([np.arange(n), dup]), kind="stable")]
    return pl.DataFrame([
        ev["event_id"], ev["user_id"].cast(pl.Int64), _ts(ev["ts_us"].to_numpy(), "event_ts"),
        _labels(EVENT_TYPES, ev["etype"].to_numpy(), "event_type"), ev["value"],
    ]), negated


def _exposures_frame(parts: list[dict[str, np.ndarray]], cal: Calendar, cfg: WorldConfig,
                     rng: np.random.Generator) -> pl.DataFrame:
    ex = {k: np.concatenate([p[k] for p in parts]) for k in ("exp", "user_id", "variant", "ts_us")}
    m = len(ex["exp"])
    k = min(cfg.faults.events_outside_window, m)
    pick = rng.choice(m, size=k, replace=False) if k else np.zeros(0, np.int64)
    end_us = cal.day_start_us[-1] + US_PER_DAY
    late = end_us + rng.integers(0, 7 * US_PER_DAY, k)
    ex = {key: np.concatenate([v, v[pick]]) for key, v in ex.items()}
    ex["ts_us"][m:] = late
    frame = pl.DataFrame(ex).sort("ts_us", "exp", "user_id", maintain_order=True)
    exp_ids = tuple(cfg.experiment_id(e) for e in EXPERIMENT_IDS)
    return pl.DataFrame([
        _labels(exp_ids, frame["exp"].to_numpy(), "experiment_id"),
        frame["user_id"].cast(pl.Int64),
        _labels(VARIANTS, frame["variant"].to_numpy(), "variant"),
        _ts(frame["ts_us"].to_numpy(), "exposed_at"),
    ])


@dataclass(frozen=True)
class WorldChunk:
    """The users of one chunk and their events (in time order)."""

    index: int
    users: pl.DataFrame
    events: pl.DataFrame


@dataclass(frozen=True)
class WorldTail:
    """What is complete only after the last chunk: exposures and the ground truth."""

    exposures: pl.DataFrame
    truth_effects: pl.DataFrame
    truth_unit_effects: pl.DataFrame
    truth_regional: pl.DataFrame


class WorldStream:
    """The world chunk by chunk, so that it can be written as it is generated.

    Iterating yields one :class:`WorldChunk` per ``chunk_users`` users; afterwards :meth:`tail`
    returns the exposures and the truth. Memory is bounded by one chunk's working arrays (about
    0.5 GB per 50k users) plus the exposures and the truth accumulators, whatever ``n_users`` is.
    """

    def __init__(self, config: WorldConfig = WorldConfig()):
        self.config = config
        self._tail: WorldTail | None = None

    def __iter__(self) -> Iterator[WorldChunk]:
        cfg = self.config
        cal = make_calendar(cfg)
        W = cfg.experiment_days
        R = region_day_factors(_rng(cfg.seed, 0), cal)
        acc = _TruthAccumulator(cal)
        exposures = []
        negate_left = cfg.faults.negative_revenue_rows
        for k, first in enumerate(range(0, cfg.n_users, cfg.chunk_users)):  # loop over chunks
            n = min(cfg.chunk_users, cfg.n_users - first)
            pop = draw_population(_rng(cfg.seed, 1, k), n, first, cfg.user_id_offset, cfg.pre_days)
            base = base_rates(pop, cal, R)
            asgs = assign(pop, _rng(cfg.seed, 2, k), cal)
            real_f = {e: factors(a, a.arm, W) for e, a in asgs.items()}
            realized = base.rates
            for e, fd in real_f.items():  # loop over experiments
                rows = asgs[e].rows
                for c, f in fd.items():
                    block = realized[c][rows, cal.pre_days:]
                    realized[c][rows, cal.pre_days:] = block * f
            sampled = sample_events(_rng(cfg.seed, 3, k), pop, cal, realized, base.billing)
            exposures.append(exposure_rows(_rng(cfg.seed, 4, k), _rng(cfg.seed, 5, k), pop, cal, asgs, cfg.faults))
            acc.add_chunk(pop, asgs, real_f, realized, base.billing, base.conv_price)
            events, negated = _events_frame(sampled, cal, cfg, _rng(cfg.seed, 6, k), negate_left)
            negate_left -= negated
            del base, realized, real_f, sampled
            yield WorldChunk(k, _users_frame(pop, cfg), events)
        exposures_df = _exposures_frame(exposures, cal, cfg, _rng(cfg.seed, 7))
        truth_effects, truth_units, truth_regional = acc.frames(cfg)
        self._tail = WorldTail(exposures_df, truth_effects, truth_units, truth_regional)

    def tail(self) -> WorldTail:
        if self._tail is None:
            raise RuntimeError("WorldStream.tail() is known only after every chunk was consumed")
        return self._tail


def generate_world(config: WorldConfig = WorldConfig()) -> World:
    """Generate a synthetic SaaS world (users, events, exposures, truth) in memory.

    Deterministic for a config: same config -> identical frames; the same rows as
    :class:`WorldStream` yields, with the events of all chunks in time order. For worlds too
    large for memory, stream the chunks instead.
    """
    stream = WorldStream(config)
    chunks = list(stream)
    tail = stream.tail()
    events = pl.concat([c.events for c in chunks]).sort("event_ts", "event_id", maintain_order=True)
    return World(config=config, users=pl.concat([c.users for c in chunks]), events=events,
                 exposures=tail.exposures, truth_effects=tail.truth_effects,
                 truth_unit_effects=tail.truth_unit_effects, truth_regional=tail.truth_regional)
