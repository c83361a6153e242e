"""Load the synthetic world into ``raw`` and ``truth`` in one transaction, chunk by chunk.

The world's tables are created with it (``liftlab.synth.tables.WORLD_DDL``), and the settings it
was generated with — seed, size, faults and a fingerprint of the generator's code — are recorded
in ``raw.world_settings``, so that a world already loaded is not generated again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Iterable

import psycopg

from liftlab.ingest.loaders import LoadReport, SliceLoad, load_batch
from liftlab.ingest.validate import EVENT_RULES, EXPOSURE_RULES


def uses_demo_world(specs=None) -> bool:
    """Does any spec analyse the demo world (``source: {kind: demo}``)?"""
    from liftlab.specs import load_specs

    return any(item.spec.source.kind == "demo" for item in (load_specs() if specs is None else specs))


def generator_fingerprint() -> str:
    """sha256 of the world generator's source: a new generator makes a loaded world stale."""
    from pathlib import Path

    import liftlab.synth as synth

    digest = hashlib.sha256()
    for path in sorted(Path(synth.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def world_settings(config) -> dict:
    """What makes a world: every field of its config, faults included, and the generator."""
    return {"config": json.loads(json.dumps(dataclasses.asdict(config), default=str)), "generator": generator_fingerprint()}


def loaded_settings(conn: psycopg.Connection) -> dict | None:
    """What the loaded world was generated with (:func:`world_settings`), or None."""
    if conn.execute("select to_regclass('raw.world_settings') is null").fetchone()[0]:
        return None
    row = conn.execute("select settings from raw.world_settings order by generated_at desc limit 1").fetchone()
    return None if row is None else row[0]


def loaded_world_matches(conn: psycopg.Connection, config, loaded: dict | None = None) -> bool:
    """The world loaded in this database (``loaded``: its :func:`loaded_settings`, read if not
    given) was generated with exactly these settings, and cleaned into the marts."""
    if conn.execute("select to_regclass('marts.fct_user_daily') is null").fetchone()[0]:
        return False
    loaded = loaded if loaded is not None else loaded_settings(conn)
    return loaded is not None and loaded == world_settings(config)


def load_world_stream(conn: psycopg.Connection, stream, run_id: str | None = None, timings: dict | None = None) -> dict[str, LoadReport]:
    """Replace the world's tables with the chunks of a :class:`liftlab.synth.WorldStream`.

    Users and events are COPYed chunk by chunk as they are generated (memory: one chunk), events
    through the row rules with ``event_id`` unique across chunks; exposures and truth follow the
    last chunk. One transaction: a rerun replaces everything, a failure or a killed process
    leaves the previous world. ``timings`` (if given) receives the seconds spent generating
    (``generate_s``), loading everything (``load_s``) and loading the events (``events_load_s``).
    """
    return _load(conn, stream, stream.tail, run_id, timings, stream.config)


def load_world(conn: psycopg.Connection, world, run_id: str | None = None) -> dict[str, LoadReport]:
    """Replace the world's tables with an in-memory :class:`liftlab.synth.World` (one chunk)."""
    from liftlab.synth import WorldChunk, WorldTail

    tail = WorldTail(world.exposures, world.truth_effects, world.truth_unit_effects, world.truth_regional)
    return _load(conn, [WorldChunk(0, world.users, world.events)], lambda: tail, run_id, None, world.config)


def _load(conn, chunks: Iterable, tail: Callable, run_id: str | None, timings: dict | None, config) -> dict[str, LoadReport]:
    from liftlab.synth.tables import TAIL_TABLES, WORLD_DDL

    spent = {"generate_s": 0.0, "load_s": 0.0, "events_load_s": 0.0}
    with conn.transaction():
        conn.execute(WORLD_DDL)
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
        for table, attribute in TAIL_TABLES.items():
            frame, rules = getattr(rest, attribute), EXPOSURE_RULES if table == "raw.exposures" else None
            reports[table] = load_batch(conn, source=f"synthetic:{table}", table=table, frame=frame, rules=rules,
                                        run_id=run_id)
        spent["load_s"] += time.perf_counter() - started
        # fresh statistics at once: the compiled metric SQL reads these tables right after the load
        conn.execute("analyze raw.users, raw.events, raw.exposures")
        conn.execute("delete from raw.world_settings")
        conn.execute("insert into raw.world_settings (seed, n_users, settings, run_id) values (%s, %s, %s, %s)",
                     (config.seed, config.n_users, json.dumps(world_settings(config)), run_id))
    if timings is not None:
        timings.update(spent)
    return reports
