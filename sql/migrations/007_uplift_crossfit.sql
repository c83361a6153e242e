-- Cross-fitted uplift evaluation (issue #6): every unit is scored out of fold by models fitted
-- on the other folds, and all units are evaluated (liftlab.uplift.analysis). 005 stays as applied.

alter table results.uplift_models
    add column qini_simul_ci_low  double precision,
    add column qini_simul_ci_high double precision,
    add column n_folds            integer,
    add column n_repeats          integer;

comment on column results.uplift_models.n_test is
    'units scored out of fold and evaluated: all arm ∪ baseline units (cross-fitting)';
comment on column results.uplift_models.n_train is
    'units each fold model was fitted on (mean over the n_folds folds, ≈ (K−1)/K · n_test)';
comment on column results.uplift_models.n_folds is 'cross-fitting folds K';
comment on column results.uplift_models.n_repeats is
    'repetitions R of the K-fold deal (other seeds); a unit''s score is the mean of its R out-of-fold predictions';
comment on column results.uplift_models.qini_simul_ci_low is
    'sup-t bootstrap band over the candidate learners of this experiment × arm × metric: covers all '
    'of them at once, so it stays valid for the learner picked as best (is_best); null for references';
comment on column results.uplift_models.qini_simul_ci_high is
    'upper end of the simultaneous band (see qini_simul_ci_low)';
comment on column results.uplift_models.fit_seconds is 'fit time of the learner summed over the folds and repetitions';

-- Which fold's model scored the unit (the model fitted on every other fold).
alter table results.uplift_scores add column fold smallint;
comment on column results.uplift_scores.fold is
    'cross-fitting fold of the unit in the first repetition: its score comes from models fitted on the other folds';
