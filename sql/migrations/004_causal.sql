-- Causal estimates for launches that were not randomized (issue #5).
-- One row per study × analysis × metric × estimand × estimator; written by the assets of
-- the `causal` group through liftlab.db.replace_slice (one slice per study × analysis).
create table results.causal_effects (
    study        text not null,             -- experiment id, e.g. ai_assistant_optin
    analysis     text not null,             -- selection_on_observables | staggered_did | synthetic_control
    metric       text not null,
    estimand     text not null,             -- ATE, ATT, ATT(e=3), ...
    estimator    text not null,             -- naive_difference, ipw_hajek_logistic, aipw_logistic_gbm, twfe, ...
    estimate     double precision,
    ci_low       double precision,
    ci_high      double precision,
    se           double precision,
    n            bigint,
    diagnostics  jsonb not null default '{}'::jsonb,
    true_effect  double precision,          -- the synthetic world's truth when known, else NULL
    run_id       text,
    computed_at  timestamptz not null default now(),
    primary key (study, analysis, metric, estimand, estimator)
);
