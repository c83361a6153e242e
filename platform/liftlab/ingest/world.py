"""Load a generated synthetic world into ``raw`` and ``truth`` in one transaction."""

from __future__ import annotations

import psycopg

from liftlab.ingest.loaders import LoadReport, load_batch
from liftlab.ingest.validate import EVENT_RULES, EXPOSURE_RULES


def load_world(conn: psycopg.Connection, world, run_id: str | None = None) -> dict[str, LoadReport]:
    """Replace the world's tables; events and exposures pass the row-level rules first.

    A rerun replaces every table (no duplicates); a failure rolls everything back.
    """
    batches = [
        ("raw.users", world.users, None),
        ("raw.events", world.events, EVENT_RULES),
        ("raw.exposures", world.exposures, EXPOSURE_RULES),
        ("truth.effects", world.truth_effects, None),
        ("truth.unit_effects", world.truth_unit_effects, None),
        ("truth.regional_pricing", world.truth_regional, None),
    ]
    reports: dict[str, LoadReport] = {}
    with conn.transaction():
        for table, frame, rules in batches:
            reports[table] = load_batch(
                conn, source=f"synthetic:{table}", table=table, frame=frame, rules=rules, run_id=run_id
            )
    return reports
