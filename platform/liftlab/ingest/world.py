"""Load the synthetic world into ``raw`` and ``truth`` in one transaction, chunk by chunk."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import psycopg

from liftlab.ingest.loaders import LoadReport, SliceLoad, load_batch
from liftlab.ingest.validate import EVENT_RULES, EXPOSURE_RULES


def load_world_stream(conn: psycopg.Connection, stream, run_id: str | None = None, timings: dict | None = None) -> dict[str, LoadReport]:
    """Replace the world's tables with the chunks of a :class:`liftlab.synth.WorldStream`.

    Users and events are COPYed chunk by chunk as they are generated (memory: one chunk), events
    through the row rules with ``event_id`` unique across chunks; exposures and truth follow the
    last chunk. One transaction: a rerun replaces everything, a failure or a killed process
    leaves the previous world. ``timings`` (if given) receives the seconds spent generating
    (``generate_s``), loading everything (``load_s``) and loading the events (``events_load_s``).
    """
    return _load(conn, stream, stream.tail, run_id, timings)


def load_world(conn: psycopg.Connection, world, run_id: str | None = None) -> dict[str, LoadReport]:
    """Replace the world's tables with an in-memory :class:`liftlab.synth.World` (one chunk)."""
    from liftlab.synth import WorldChunk, WorldTail

    tail = WorldTail(world.exposures, world.truth_effects, world.truth_unit_effects, world.truth_regional)
    return _load(conn, [WorldChunk(0, world.users, world.events)], lambda: tail, run_id, None)


def _load(conn, chunks: Iterable, tail: Callable, run_id: str | None, timings: dict | None) -> dict[str, LoadReport]:
    spent = {"generate_s": 0.0, "load_s": 0.0, "events_load_s": 0.0}
    with conn.transaction():
        users = SliceLoad(conn, source="synthetic:raw.users", table="raw.users", run_id=run_id)
        events = SliceLoad(conn, source="synthetic:raw.events", table="raw.events", rules=EVENT_RULES,
                           unique=("event_id", "duplicate event_id"), run_id=run_id)
        iterator = iter(chunks)
        while True:
            started = time.perf_counter()
            chunk = next(iterator, None)
            loading = time.perf_counter()
            spent["generate_s"] += loading - started
            if chunk is None:
                break
            users.add(chunk.users)
            events_from = time.perf_counter()
            events.add(chunk.events)
            done = time.perf_counter()
            spent["events_load_s"] += done - events_from
            spent["load_s"] += done - loading
        reports = {"raw.users": users.finish(), "raw.events": events.finish()}
        started = time.perf_counter()
        rest = tail()
        for table, frame, rules in [
            ("raw.exposures", rest.exposures, EXPOSURE_RULES),
            ("truth.effects", rest.truth_effects, None),
            ("truth.unit_effects", rest.truth_unit_effects, None),
            ("truth.regional_pricing", rest.truth_regional, None),
        ]:
            reports[table] = load_batch(conn, source=f"synthetic:{table}", table=table, frame=frame, rules=rules,
                                        run_id=run_id)
        spent["load_s"] += time.perf_counter() - started
    if timings is not None:
        timings.update(spent)
    return reports
