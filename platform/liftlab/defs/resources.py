"""Resources: liftlab's Postgres, the synthetic-world settings and dbt."""


import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg
from dagster_dbt import DbtCliResource
from pydantic import PrivateAttr

from liftlab import config, db, migrations


class PostgresResource(dg.ConfigurableResource):
    """liftlab's database: ``database_url`` if given, else ``DATABASE_URL``, else embedded.

    Migrations are applied when a run first uses the resource, so a fresh database works.
    """

    database_url: str | None = None
    _info: db.ConnInfo | None = PrivateAttr(default=None)

    def conn_info(self) -> db.ConnInfo:
        if self._info is None:
            info = db.ConnInfo.parse(self.database_url) if self.database_url else db.resolve()
            with db.connect(info) as conn:
                migrations.apply(conn)
            # cached only once the migrations are applied: a retried step applies them again
            self._info = info
        return self._info

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        conn = db.connect(self.conn_info())
        try:
            yield conn
            conn.commit()
        finally:
            conn.close()


class SyntheticWorldResource(dg.ConfigurableResource):
    """Size and seed of the synthetic SaaS world, and its injected faults.

    The fault fields mirror ``liftlab.synth.FaultConfig`` (see its docstrings); all but
    ``checkout_exposure_loss`` are off by default. The trust layer's tests switch them on to
    show that each is caught by its gate.
    """

    n_users: int | None = None  # None → LIFTLAB_WORLD_USERS, the loaded world's size, or 100,000
    #: Generate and load the world even if the one loaded has the same settings.
    regenerate: bool = False
    seed: int | None = None  # None → LIFTLAB_WORLD_SEED, the loaded world's seed, or the demo seed
    checkout_exposure_loss: float | None = None  # None → LIFTLAB_CHECKOUT_EXPOSURE_LOSS or 3 %
    contamination_share: float = 0.0  # onboarding_adaptive units also exposed to a second arm
    duplicate_day: int | None = None  # experiment day (0-based) whose events are delivered twice
    negative_revenue_rows: int = 0  # payment events with a negated amount
    events_outside_window: int = 0  # exposure rows copied to after the experiment end

    def world_config(self, loaded: dict | None = None):
        """The world to have loaded: fields set here, else the environment, else the size and
        seed of the world already loaded (``loaded``: its recorded config), else the defaults."""
        from liftlab.synth import FaultConfig, WorldConfig

        loaded = loaded or {}
        return WorldConfig(
            seed=self.seed if self.seed is not None else config.world_seed(loaded.get("seed")),
            n_users=self.n_users if self.n_users is not None else config.world_size(loaded.get("n_users")),
            faults=FaultConfig(
                checkout_exposure_loss=self.checkout_exposure_loss
                if self.checkout_exposure_loss is not None
                else config.checkout_exposure_loss(),
                contamination_share=self.contamination_share,
                duplicate_day=self.duplicate_day,
                negative_revenue_rows=self.negative_revenue_rows,
                events_outside_window=self.events_outside_window,
            ),
        )


class LiftlabDbtResource(DbtCliResource):
    """dbt from its own virtualenv (``.venv-dbt``), connected to liftlab's database.

    dbt-core's pins conflict with causalml's, so dbt-core is not importable here; dagster-dbt
    only needs it for optional adapter metadata, which we skip instead of logging a traceback
    on every run.
    """

    def _initialize_dbt_core_adapter(self, args):  # noqa: ANN001 - dagster-dbt private hook
        return None

    def environment_for(self, info: db.ConnInfo) -> None:
        """Export the profile's ``LIFTLAB_PG*`` variables for the dbt subprocess."""
        os.environ.update(info.dbt_env())


def dbt_resource() -> LiftlabDbtResource:
    return LiftlabDbtResource(
        project_dir=os.fspath(config.dbt_project_dir()),
        profiles_dir=os.fspath(config.dbt_project_dir()),
        dbt_executable=config.dbt_executable(),
    )


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "postgres": PostgresResource(),
            "world": SyntheticWorldResource(),
            "dbt": dbt_resource(),
        }
    )
