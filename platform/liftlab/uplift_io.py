"""Database side of uplift modelling: read one experiment's units, write the result tables.

Kept out of ``liftlab.uplift`` (pure code, no database) and out of ``liftlab.defs.uplift``
(the assets only orchestrate). Identifiers are validated and quoted; values are parameters.
"""

from __future__ import annotations

import polars as pl
import psycopg
from psycopg import sql

from liftlab.db import read_frame
from liftlab.specs import ExperimentSpec
from liftlab.uplift.features import check_pre_treatment


def uplift_features(spec: ExperimentSpec) -> tuple[str, ...]:
    """The spec's uplift features after the pre-treatment guard (all allowed ones if empty)."""
    return check_pre_treatment(spec, spec.uplift.features)


def load_units(conn: psycopg.Connection, spec: ExperimentSpec) -> pl.DataFrame:
    """``unit_id``, ``variant``, the features (with their own types: text stays text), the
    outcomes (float) and, where ground truth exists (the demo world), ``true_cate__<outcome>``
    and ``true_type`` for every unit — read from the experiment's unit table."""
    from liftlab.sources import adapter
    from liftlab.units import attribute_frame, unit_frame

    up = spec.uplift
    features = list(uplift_features(spec))
    outcomes = list(up.outcomes)
    frame = unit_frame(conn, spec, outcomes)
    if features:
        frame = frame.join(attribute_frame(conn, spec, features).drop("variant"), on="unit_id", how="left",
                           maintain_order="left").select("unit_id", "variant", *features, *outcomes)
    if adapter(spec).has_truth:
        truth = read_frame(
            conn,
            "select user_id::text as unit_id, metric, true_cate, true_type from truth.unit_effects "
            "where experiment_id = %s and metric = any(%s)",
            (spec.id, outcomes),
        )
        if not truth.is_empty():
            wide = truth.pivot(on="metric", index="unit_id", values="true_cate")
            wide = wide.rename({m: f"true_cate__{m}" for m in wide.columns if m != "unit_id"})
            types = truth.group_by("unit_id").agg(pl.col("true_type").first())
            frame = frame.join(wide, on="unit_id", how="left").join(types, on="unit_id", how="left")
    return frame.with_columns([pl.col(o).cast(pl.Float64) for o in outcomes])


#: Columns of results.uplift_scores read back by the policy and segment assets, with types.
_SCORE_SCHEMA = {
    "experiment_id": pl.Utf8, "arm": pl.Utf8, "metric": pl.Utf8, "learner": pl.Utf8, "unit_id": pl.Utf8,
    "treated": pl.Int16, "outcome": pl.Float64, "predicted_uplift": pl.Float64, "segment": pl.Utf8,
}


def load_scores(conn: psycopg.Connection, experiment_id: str | None = None) -> pl.DataFrame:
    """The out-of-fold scores of one experiment (or all), streamed with ``COPY … TO STDOUT``
    as CSV (every unit × learner: about a million rows for Hillstrom, where a row-by-row
    fetch is slower). Floats round-trip exactly (Postgres ≥ 12 prints the shortest exact
    text)."""
    import io

    where = sql.SQL(" where experiment_id = {}").format(sql.Literal(experiment_id)) if experiment_id else sql.SQL("")
    query = sql.SQL(
        "copy (select {} from results.uplift_scores{}) to stdout with (format csv, header true)"
    ).format(sql.SQL(", ").join(map(sql.Identifier, _SCORE_SCHEMA)), where)
    buf = io.BytesIO()
    with conn.cursor() as cur, cur.copy(query) as copy:
        for block in copy:
            buf.write(block)
    buf.seek(0)
    # Sorted here (byte order of unit_id, as liftlab.uplift.analysis sorts its input), not by the
    # server: ties in a ranking then break the same way as when the models were evaluated.
    return pl.read_csv(buf, schema=_SCORE_SCHEMA).sort("experiment_id", "arm", "metric", "learner", "unit_id")


def true_types(conn: psycopg.Connection, experiment_id: str, metric: str) -> pl.DataFrame:
    return read_frame(
        conn,
        "select user_id::text as unit_id, true_type from truth.unit_effects "
        "where experiment_id = %s and metric = %s and true_type is not null",
        (experiment_id, metric),
    )
