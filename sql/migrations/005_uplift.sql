-- Uplift modelling and targeting (issue #6). Written by the `uplift` asset group.

-- One row per experiment × arm × outcome (metric) × learner, on the held-out units.
-- learner 'oracle' ranks by the true CATE and 'covariate_ceiling' by a regression of the true
-- CATE on the features (synthetic data only; references, not learners).
create table results.uplift_models (
    experiment_id          text not null,
    arm                    text not null,
    baseline               text not null,
    metric                 text not null,
    learner                text not null,
    base_model             text not null,
    is_best                boolean not null,
    qini                   double precision,
    qini_ci_low            double precision,
    qini_ci_high           double precision,
    auuc                   double precision,
    auuc_ci_low            double precision,
    auuc_ci_high           double precision,
    oracle_qini            double precision,
    oracle_share           double precision,
    expected_oracle_share  double precision,
    uplift_at_10           double precision,
    uplift_at_20           double precision,
    uplift_at_30           double precision,
    uplift_at_50           double precision,
    calibration_slope      double precision,
    calibration_gap        double precision,
    n_train                bigint not null,
    n_test                 bigint not null,
    fit_seconds            double precision,
    n_base_fits            integer,
    run_id                 text,
    computed_at            timestamptz not null default now(),
    primary key (experiment_id, arm, metric, learner)
);

-- Predicted uplift per held-out unit × learner (the held-out part only: the rows every
-- evaluation is computed from), with the realised outcome and the predicted segment.
create table results.uplift_scores (
    experiment_id     text not null,
    arm               text not null,
    metric            text not null,
    learner           text not null,
    unit_id           text not null,
    variant           text not null,
    treated           smallint not null,
    outcome           double precision not null,
    predicted_uplift  double precision not null,
    predicted_control double precision,
    segment           text not null,
    run_id            text
);
create index uplift_scores_slice on results.uplift_scores (experiment_id, arm, metric, learner);

-- Per-decile calibration: mean predicted vs realised uplift (bin 1 = highest predictions).
create table results.uplift_deciles (
    experiment_id    text not null,
    arm              text not null,
    metric           text not null,
    learner          text not null,
    bin              integer not null,
    n                bigint not null,
    n_treated        bigint not null,
    n_control        bigint not null,
    predicted_uplift double precision,
    mean_treated     double precision,
    mean_control     double precision,
    realised_uplift  double precision,
    se               double precision,
    run_id           text,
    primary key (experiment_id, arm, metric, learner, bin)
);

-- Which features drive the predicted uplift of the best learner (grouped permutation importance).
create table results.uplift_explanations (
    experiment_id text not null,
    arm           text not null,
    metric        text not null,
    learner       text not null,
    feature       text not null,
    importance    double precision not null,
    importance_sd double precision,
    run_id        text,
    primary key (experiment_id, arm, metric, learner, feature)
);

-- Economics of targeting the top k % (policy 'top_k', one row per k) and the summary
-- policies 'treat_none', 'treat_all', 'break_even', 'best_k' with the profit difference from
-- treating everyone and its bootstrap CI. Money in the spec's currency, for the held-out units.
create table results.targeting_policy (
    experiment_id           text not null,
    arm                     text not null,
    metric                  text not null,
    learner                 text not null,
    policy                  text not null,
    k_pct                   double precision not null,
    n_targeted              bigint not null,
    n_units                 bigint not null,
    uplift                  double precision,
    incremental_conversions double precision,
    revenue                 double precision,
    cost                    double precision,
    profit                  double precision not null,
    roi                     double precision,
    profit_per_1000         double precision,
    profit_ci_low           double precision,
    profit_ci_high          double precision,
    profit_vs_all           double precision,
    vs_all_ci_low           double precision,
    vs_all_ci_high          double precision,
    cost_per_contact        double precision not null,
    value_per_conversion    double precision not null,
    run_id                  text,
    computed_at             timestamptz not null default now()
);
create index targeting_policy_slice on results.targeting_policy (experiment_id, arm, metric, learner, policy);

-- Segments per learner: counts and realised held-out uplift; agreement with the true types
-- (synthetic data) as precision = share of the segment whose true type matches.
create table results.uplift_segments (
    experiment_id    text not null,
    arm              text not null,
    metric           text not null,
    learner          text not null,
    segment          text not null,
    n                bigint not null,
    share            double precision,
    n_treated        bigint not null,
    mean_treated     double precision,
    mean_control     double precision,
    realised_uplift  double precision,
    ci_low           double precision,
    ci_high          double precision,
    true_precision   double precision,
    true_recall      double precision,
    run_id           text,
    primary key (experiment_id, arm, metric, learner, segment)
);
