"""Sources: one adapter per kind of data, the only place that knows the kinds apart.

=========== ======================================================= =============================
kind        what it reads                                           unit table the analysis reads
=========== ======================================================= =============================
``file``    a unit-level CSV/Parquet file (checked, then loaded)    ``raw.src_<id>``
``table``   a unit-level table or view, read in place               the table itself
``warehouse`` assignments + catalogue fact tables (compiled SQL)    ``units.<id>`` (materialized)
``demo``    the synthetic world, as a warehouse over its tables     ``units.<id>`` (materialized)
=========== ======================================================= =============================

Everything downstream — gates, statistics, looks, slices, uplift, causal studies — reads the
unit table through :func:`unit_table` and :mod:`liftlab.units`. An adapter also says which
integrity checks apply to its kind (:meth:`Adapter.integrity`) and where ground truth exists.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from liftlab.sources.base import SourceError, UnitTable, reading
from liftlab.specs import ExperimentSpec, LoadedSpec

__all__ = ["Adapter", "SourceError", "UnitTable", "adapter", "reading", "unit_table"]


class Adapter:
    """What a source kind provides; subclasses override what differs."""

    kind = ""
    #: Units have exposure times (days, looks, contamination, exposure window).
    timestamped = False

    def __init__(self, spec: ExperimentSpec) -> None:
        self.spec = spec

    def unit_table(self) -> UnitTable:
        raise NotImplementedError

    def prepare(self, conn: psycopg.Connection, spec_path: Path, run_id: str | None) -> dict:
        """Bring the experiment's units in (load, check or build); returns metadata to show."""
        raise NotImplementedError

    def integrity(self, conn: psycopg.Connection) -> list:
        """The exposure-window, quarantine and data-quality gate results for this kind."""
        from liftlab.gates import integrity

        return [integrity.not_applicable("exposure_window", f"a {self.kind} source has no exposure times"),
                integrity.not_applicable("quarantine", f"a {self.kind} source is read, not ingested"),
                integrity.not_applicable("data_quality", f"no data-quality suite runs on a {self.kind} source")]

    @property
    def has_truth(self) -> bool:
        """Ground truth exists (the synthetic world)."""
        return False


class FileAdapter(Adapter):
    kind = "file"

    def unit_table(self) -> UnitTable:
        columns = self.spec.source.columns
        return UnitTable(relation=f"raw.src_{self.spec.id}",
                         booleans=frozenset(c for c, t in columns.items() if t == "boolean"))

    def prepare(self, conn, spec_path, run_id) -> dict:
        from liftlab.ingest.files import FileSourceError, read_user_file, write_user_file

        try:
            user_file = read_user_file(self.spec, spec_path)
        except FileSourceError as exc:
            raise SourceError(str(exc)) from None
        rows = write_user_file(conn, user_file, self.spec.source, run_id=run_id)
        return {"table": user_file.table, "rows": rows, "file": str(user_file.path)}

    def integrity(self, conn) -> list:
        from liftlab.gates import integrity

        return [integrity.not_applicable("exposure_window", "a file source has no exposure times"),
                integrity.file_quarantine_gate(conn, self.spec),
                integrity.data_quality_gate(conn, self.spec, [f"raw/src_{self.spec.id}"])]


class TableAdapter(Adapter):
    kind = "table"

    def unit_table(self) -> UnitTable:
        s = self.spec.source
        return UnitTable(relation=s.table, unit=s.unit_column, variant=s.variant_column,
                         booleans=frozenset(c for c, t in s.columns.items() if t == "boolean"), connection=s.connection)

    def prepare(self, conn, spec_path, run_id) -> dict:
        from liftlab.sources.table import check_table

        summary = check_table(conn, self.spec, spec_path)
        _record_build(conn, self.spec, self.unit_table().relation, summary["units_by_variant"], run_id)
        return summary


class WarehouseAdapter(Adapter):
    kind = "warehouse"
    timestamped = True

    def unit_table(self) -> UnitTable:
        return UnitTable(relation=f"units.{self.spec.id}", day="exposure_date", crossover="n_variants")

    def prepare(self, conn, spec_path, run_id) -> dict:
        from liftlab.db import replace_table
        from liftlab.sources.warehouse import build_units, twins_of

        used = [*self.spec.metric_roles(), *self.spec.unit_metrics(), *twins_of(self.spec)]
        problems = self.spec.catalogue.problems_of(dict.fromkeys(used))
        if problems:
            raise SourceError("\n".join(problems))
        built = build_units(conn, self.spec, spec_path)
        frame = built.frame
        by_variant = dict(frame.group_by("variant").len().sort("variant").iter_rows())
        incomplete = {m: int(frame[m].null_count()) for m in self.spec.unit_metrics() if m in frame.columns}
        relation = self.unit_table().relation
        with conn.transaction():
            replace_table(conn, relation, built.column_types, frame, primary_key="unit_id")
            _record_build(conn, self.spec, relation, by_variant, run_id, built)
        return {"table": relation, "units": frame.height, "units_by_variant": by_variant,
                "window_incomplete": incomplete, "assignments": built.assignment_summary,
                "seconds": {k: round(v, 3) for k, v in built.seconds.items()},
                "statements": [c.show() for c in built.statements]}

    def integrity(self, conn) -> list:
        from liftlab.gates import integrity

        return [integrity.assignment_window_gate(conn, self.spec),
                integrity.not_applicable("quarantine", "a warehouse source is read in place, not ingested"),
                integrity.not_applicable("data_quality", "no data-quality suite runs on a warehouse source")]


class DemoAdapter(WarehouseAdapter):
    """The synthetic world: a warehouse whose ingest quarantines rows and runs GE suites."""

    kind = "demo"

    def integrity(self, conn) -> list:
        from liftlab.gates import integrity

        return [integrity.assignment_window_gate(conn, self.spec), integrity.quarantine_gate(conn, self.spec),
                integrity.data_quality_gate(conn, self.spec, list(integrity.WORLD_ASSETS))]

    @property
    def has_truth(self) -> bool:
        return True


ADAPTERS: dict[str, type[Adapter]] = {a.kind: a for a in (FileAdapter, TableAdapter, WarehouseAdapter, DemoAdapter)}


def adapter(spec: ExperimentSpec) -> Adapter:
    return ADAPTERS[spec.source.kind](spec)


def unit_table(spec: ExperimentSpec) -> UnitTable:
    """Where the analysis reads the experiment's units."""
    return adapter(spec).unit_table()


def prepare(conn: psycopg.Connection, loaded: LoadedSpec, run_id: str | None = None) -> dict:
    """Bring one experiment's units in; raises :class:`SourceError` naming file, key, table, column."""
    return adapter(loaded.spec).prepare(conn, loaded.path, run_id)


def _record_build(conn, spec: ExperimentSpec, relation: str, by_variant: dict, run_id, built=None) -> None:
    """One row in ``units.builds``: what the unit table was built from (replaced on every build)."""
    incomplete = {}
    if built is not None:
        incomplete = {m: int(built.frame[m].null_count()) for m in spec.unit_metrics() if m in built.frame.columns}
    statements = [{"description": c.description, "sql": c.text(), "params": [str(p) for p in c.params]}
                  for c in (built.statements if built is not None else [])]
    with conn.transaction():
        conn.execute("delete from units.builds where experiment_id = %s", (spec.id,))
        conn.execute(
            "insert into units.builds (experiment_id, source_kind, relation, catalogue_sha256, units, units_by_variant, "
            "assignment_summary, window_incomplete, windows, statements, seconds, run_id) "
            "values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (spec.id, spec.source.kind, relation, spec.catalogue.sha256 if spec.catalogue is not None else None,
             sum(by_variant.values()), json.dumps(by_variant),
             json.dumps(built.assignment_summary if built is not None else {}), json.dumps(incomplete),
             json.dumps(built.windows if built is not None else {}), json.dumps(statements), json.dumps({k: round(v, 3) for k, v in (built.seconds if built else {}).items()}),
             run_id),
        )
