"""Design constants of the synthetic world: attribute distributions, rate
coefficients, prices and the six experiments.

Every number the data-generating process (DGP) uses lives here, so the DGP
(`population`, `rates`, `experiments`) and its documentation
(docs/synthetic_world.md) can be checked against one table.  Categorical
attributes are stored as integer codes indexing the tuples below.
"""

from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------
# Users
# --------------------------------------------------------------------------
PLANS = ("trial", "basic", "pro", "enterprise")
PLAN_P = np.array([0.35, 0.35, 0.22, 0.08])
TRIAL, BASIC, PRO, ENTERPRISE = 0, 1, 2, 3
PLAN_PRICE = np.array([0.0, 15.0, 39.0, 99.0])  # USD per 30-day billing cycle

COMPANY_SIZES = ("1-10", "11-50", "51-200", "201+")
# P(company_size | plan), rows = plan
SIZE_P_BY_PLAN = np.array(
    [
        [0.45, 0.30, 0.17, 0.08],  # trial
        [0.50, 0.30, 0.15, 0.05],  # basic
        [0.25, 0.35, 0.28, 0.12],  # pro
        [0.05, 0.15, 0.35, 0.45],  # enterprise
    ]
)

REGIONS = ("US", "IN", "GB", "DE", "BR", "FR", "CA", "JP",
           "AU", "ES", "MX", "IT", "NL", "SE", "PL", "SG")
REGION_P = np.array([0.22, 0.12, 0.08, 0.08, 0.07, 0.06, 0.05, 0.05,
                     0.04, 0.04, 0.04, 0.04, 0.03, 0.03, 0.03, 0.02])

DEVICES = ("desktop", "mobile", "tablet")
DEVICE_P = np.array([0.55, 0.35, 0.10])
DESKTOP, MOBILE, TABLET = 0, 1, 2

# tenure_days = pre_days + floor(X); trial: X ~ Exponential(mean 25) capped at
# 180; paid: X ~ LogNormal(log 400, 0.8) capped at 3650.
TRIAL_TENURE_MEAN = 25.0
TRIAL_TENURE_CAP = 180
PAID_TENURE_LOG_MEDIAN = np.log(400.0)
PAID_TENURE_LOG_SD = 0.8
PAID_TENURE_CAP = 3650

# Latent engagement g = PLAN_ENGAGEMENT_SHIFT[plan] + 0.9 u, u ~ N(0,1);
# observed engagement_score = (g + 0.5 eps - m) / s with eps ~ N(0,1) and
# (m, s) the exact population mean and sd of g + 0.5 eps.
PLAN_ENGAGEMENT_SHIFT = np.array([-0.35, -0.15, 0.25, 0.45])
ENGAGEMENT_LATENT_SD = 0.9
ENGAGEMENT_NOISE_SD = 0.5
ENGAGEMENT_MEAN = float(PLAN_P @ PLAN_ENGAGEMENT_SHIFT)
ENGAGEMENT_SD = float(np.sqrt(PLAN_P @ PLAN_ENGAGEMENT_SHIFT**2 - ENGAGEMENT_MEAN**2
                              + ENGAGEMENT_LATENT_SD**2 + ENGAGEMENT_NOISE_SD**2))
ENGAGEMENT_LEVELS = ("low", "medium", "high")
# terciles of the standard normal, Phi^-1(1/3) and Phi^-1(2/3)
ENGAGEMENT_CUTS = np.array([-0.4307272992954576, 0.4307272992954576])

# --------------------------------------------------------------------------
# Daily rates (per user-day; see rates.py for the formulas)
# --------------------------------------------------------------------------
# weekday factors, Monday..Sunday (a B2B product: quiet weekends)
WEEKDAY_ACTIVITY = np.array([1.05, 1.08, 1.08, 1.05, 0.95, 0.55, 0.50])
WEEKDAY_SUPPORT = np.array([1.10, 1.10, 1.05, 1.05, 1.00, 0.40, 0.35])
WEEKDAY_CONVERSION = np.array([1.10, 1.10, 1.10, 1.05, 1.00, 0.60, 0.55])
TREND_PER_DAY = 0.002  # common log growth of activity per day

SESSION_BASE = 0.55
SESSION_PLAN = np.array([0.80, 0.90, 1.15, 1.30])
SESSION_SIZE = np.array([0.95, 1.00, 1.05, 1.10])
SESSION_DEVICE = np.array([1.00, 1.15, 0.80])
SESSION_ENGAGEMENT = 0.60

AI_BASE = 1.20  # AI calls per *active* day (day with >= 1 session)
AI_PLAN = np.array([0.80, 0.90, 1.20, 1.40])
AI_ENGAGEMENT = 0.45
AI_REGION_POWER = 0.5

TASK_BASE = 0.55  # tasks completed per active day
TASK_PLAN = np.array([0.90, 1.00, 1.10, 1.20])
TASK_SIZE = np.array([0.90, 1.00, 1.10, 1.15])
TASK_ENGAGEMENT = 0.35

SUPPORT_BASE = 0.012
SUPPORT_PLAN = np.array([0.80, 1.00, 1.20, 1.60])
SUPPORT_SIZE = np.array([0.90, 1.00, 1.10, 1.30])
SUPPORT_ENGAGEMENT = -0.15

ADDON_BASE = 0.020  # AI add-on purchases per user-day (paid plans only)
ADDON_PLAN = np.array([0.0, 0.80, 1.20, 1.50])
ADDON_ENGAGEMENT = 0.35
ADDON_PRICE = 20.0

CONVERSION_BASE = 0.0066  # daily trial->paid hazard, days 0.. only
CONVERSION_SIZE = np.array([1.10, 1.00, 0.90, 0.85])
CONVERSION_ENGAGEMENT = 0.50
# P(chosen plan | company_size) at conversion, columns basic, pro, enterprise
CONVERSION_PLAN_P = np.array(
    [
        [0.75, 0.22, 0.03],
        [0.60, 0.33, 0.07],
        [0.45, 0.40, 0.15],
        [0.30, 0.40, 0.30],
    ]
)
CONVERSION_PRICE_BY_SIZE = CONVERSION_PLAN_P @ PLAN_PRICE[1:]

# session page latency (ms): LogNormal(log median, sd)
LATENCY_LOG_MEDIAN_DEVICE = np.log(np.array([320.0, 480.0, 400.0]))
LATENCY_REGION_SLOWDOWN = {"IN": 1.25, "BR": 1.20, "MX": 1.15, "JP": 0.95, "SG": 0.90, "AU": 1.10}
LATENCY_LOG_SD = 0.45

# region x day factor structure: log R[r, j] = level_r + trend * d_j
#   + sum_f loading[r, f] * F[f, j] + eps[r, j], F AR(1)
REGION_LEVEL_SD = 0.12
REGION_FACTOR_PHI = 0.8
REGION_FACTOR_SD = 0.05
REGION_LOADING_MEAN = np.array([1.0, 0.0])
REGION_LOADING_SD = np.array([0.3, 1.0])
REGION_IDIO_SD = 0.03

# exposure rows per randomized unit: 1, 2 or 3
EXPOSURE_ROWS_P = np.array([0.5, 0.3, 0.2])
EXPOSURE_DAY_MAX = 6  # randomized first exposure day uniform on 0..6

# --------------------------------------------------------------------------
# Experiments
# --------------------------------------------------------------------------
# onboarding_adaptive: multipliers 1 + delta * s_i on days >= e_i, with the
# segment factor s_i = size * tenure * device (normalised to mean 1 over the
# trial population, see experiments.onboarding_segment_factor)
ONB_HAZARD_DELTA = {"control": 0.0, "adaptive_v1": 0.15, "adaptive_v2": 0.30}
ONB_AI_DELTA = {"control": 0.0, "adaptive_v1": 0.10, "adaptive_v2": 0.20}
ONB_TASK_MULT = {"control": 1.0, "adaptive_v1": 1.03, "adaptive_v2": 1.06}
ONB_SUPPORT_MULT = {"control": 1.0, "adaptive_v1": 1.0, "adaptive_v2": 0.95}
ONB_SEG_SIZE = np.array([1.50, 1.00, 0.60, 0.30])
ONB_SEG_DEVICE = np.array([0.90, 1.30, 1.00])
ONB_SEG_NEW_TENURE = 30  # tenure_days < 30 counts as a new trial
ONB_SEG_TENURE = (1.30, 0.85)  # (new, older)

CHECKOUT_ADDON_MULT = 1.25

# winback_email: at-risk = paid plan and engagement_score < threshold
WINBACK_SCORE_THRESHOLD = -0.7
WINBACK_TYPES = ("persuadable", "sure_thing", "lost_cause", "sleeping_dog")
# activity (sessions and add-ons) multiplier of an at-risk user, all days
WINBACK_DORMANCY = np.array([0.06, 0.40, 0.015, 0.25])
# session-rate multiplier of the email, days >= 0
WINBACK_EMAIL_MULT = np.array([5.0, 1.0, 1.0, 0.2])
# multinomial-logit type model: argmax_k (INTERCEPT_k + SIGNAL * x'beta_k + G_k), G_k
# standard Gumbel (population.winback_type_scores).  SIGNAL scales the observable
# covariate part against the unit-scale noise, i.e. how learnable the type is.
# 6 (measured, docs §5.4): the covariate-ceiling regression of the true CATE reaches
# ~0.85-0.90 of the oracle Qini and the best learner ~0.8, while the most likely type
# still has only ~83 % probability on average (not deterministic).  The intercepts
# keep the at-risk type shares at about 29 / 26 / 24 / 21 %.
WINBACK_TYPE_SIGNAL = 6.0
WINBACK_TYPE_INTERCEPT = np.array([0.28, 2.00, 0.23, -1.58])

# ai_assistant_optin: P(opt in) = logistic(eta), eta in experiments.py
OPTIN_INTERCEPT = -1.15
OPTIN_SCORE = 1.4
OPTIN_PLAN = np.array([0.0, 0.0, 0.5, 0.8])
OPTIN_SIZE = np.array([0.0, 0.15, 0.30, 0.45])
OPTIN_LOG_TENURE = -0.25
OPTIN_TAU_BASE = 0.15  # ai-per-active-day multiplier 1 + tau_i
OPTIN_TAU_SCORE = 0.5  # tau_i = 0.15 * exp(0.5 * engagement_score)
OPTIN_TASK_SHARE = 0.5  # tasks multiplier 1 + 0.5 tau_i
OPTIN_SUPPORT_MULT = 0.92

# regional_pricing: adoption day by region (None = never treated).  DE adopts
# alone first (a synthetic-control case); never-treated: GB, CA, NL, SE, SG.
REGIONAL_ADOPTION_DAY = {
    "DE": 0,
    "US": 7, "FR": 7, "ES": 7,
    "BR": 14, "MX": 14, "IT": 14, "PL": 14,
    "IN": 21, "JP": 21, "AU": 21,
    "GB": None, "CA": None, "NL": None, "SE": None, "SG": None,
}
REGIONAL_NEW_PRICE = 15.0
# add-on purchase-rate multiplier s >= 0 days after adoption:
#   m(s) = ADDON_PRICE / REGIONAL_NEW_PRICE + kappa * min(s + 1, cap)
# so the expected add-on revenue change per unit of untreated purchase rate,
# REGIONAL_NEW_PRICE * m(s) - ADDON_PRICE = 15 kappa min(s + 1, cap), is
# proportional to days since adoption (capped).
REGIONAL_KAPPA = 0.12
REGIONAL_CAP_DAYS = 21

_UNIT_METRICS = ["sessions", "ai_calls", "tasks_completed", "support_tickets",
                 "revenue", "converted", "reactivated", "active_days"]
_PAID_METRICS = [m for m in _UNIT_METRICS if m != "converted"]

EXPERIMENTS: dict[str, dict] = {
    "onboarding_adaptive": {
        "design": "randomized",
        "randomized": True,
        "baseline": "control",
        "variants": {"control": 0.34, "adaptive_v1": 0.33, "adaptive_v2": 0.33},
        "population": "plan == 'trial'",
        "exposure": "first exposure on a day uniform on 0..6; 1-3 exposure rows",
        "primary_metric": "converted",
        "metrics": list(_UNIT_METRICS),
        "description": "Adaptive onboarding flow for trial users: raises the daily "
        "conversion hazard (x1.15 / x1.30 on average) and AI calls per active day "
        "(+10% / +20%), more for small companies, new trials and mobile users; "
        "v2 slightly lowers support tickets.",
    },
    "aa_check": {
        "design": "randomized",
        "randomized": True,
        "baseline": "control",
        "variants": {"control": 0.5, "treatment": 0.5},
        "population": "all users",
        "exposure": "first exposure on a day uniform on 0..6; 1-3 exposure rows",
        "primary_metric": "sessions",
        "metrics": list(_UNIT_METRICS),
        "description": "A/A test: the arms are identical, every true effect is 0.",
    },
    "checkout_redesign": {
        "design": "randomized",
        "randomized": True,
        "baseline": "control",
        "variants": {"control": 0.5, "treatment": 0.5},
        "population": "all users",
        "exposure": "first exposure on a day uniform on 0..6; 1-3 exposure rows; "
        "faults.checkout_exposure_loss of treatment units lose all exposure rows",
        "primary_metric": "revenue",
        "metrics": list(_UNIT_METRICS),
        "description": "Redesigned checkout: AI add-on purchase rate x1.25 "
        "(paid plans; trial users buy no add-ons).",
    },
    "winback_email": {
        "design": "randomized",
        "randomized": True,
        "baseline": "control",
        "variants": {"control": 0.5, "email": 0.5},
        "population": "paid plan and engagement_score < -0.7 (at-risk)",
        "exposure": "first exposure on day 0; 1-3 exposure rows",
        "primary_metric": "reactivated",
        "metrics": list(_PAID_METRICS),
        "description": "Win-back email to at-risk users; its effect on the session "
        "rate depends on a latent type (persuadable x5, sure_thing and lost_cause "
        "x1, sleeping_dog x0.2).",
    },
    "ai_assistant_optin": {
        "design": "observational",
        "randomized": False,
        "baseline": "not_opted_in",
        "variants": {"not_opted_in": None, "opted_in": None},
        "population": "plan != 'trial'",
        "exposure": "one exposure row on day 0",
        "primary_metric": "ai_calls",
        "metrics": list(_PAID_METRICS),
        "description": "Self-selected opt-in to the AI assistant; selection on "
        "observed covariates only (engagement_score, plan, company_size, "
        "tenure_days); heterogeneous effect, larger for engaged users.",
    },
    "regional_pricing": {
        "design": "staggered_rollout",
        "randomized": False,
        "baseline": "old_price",
        "variants": {"old_price": None, "new_price": None},
        "population": "all users; treatment by region",
        "exposure": "one exposure row per user: new_price at the region's adoption "
        "day, old_price on day 0 in never-treated regions",
        "primary_metric": "revenue_per_unit_day",
        "metrics": ["revenue_per_unit_day"],
        "adoption_day": dict(REGIONAL_ADOPTION_DAY),
        "description": "AI add-on price cut 20 -> 15 USD rolled out by region; the "
        "purchase rate rises with days since adoption, so the revenue effect grows "
        "over time (staggered adoption with dynamic effects).",
    },
}
