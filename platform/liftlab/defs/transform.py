"""Transform layer: the dbt project (staging views and marts) as Dagster assets.

dbt runs from its own virtualenv (see ``LiftlabDbtResource``); its tests appear as asset
checks. Models are keyed ``[schema, model]`` so that ``marts/fct_unit_metrics`` reads like
the table it is; sources map to the ingest assets through their ``meta.dagster.asset_key``.
"""


from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, dbt_assets

from liftlab import config
from liftlab.defs.common import DAILY_FRESHNESS, OWNER, io_retry
from liftlab.defs.resources import LiftlabDbtResource, PostgresResource

MANIFEST = config.dbt_project_dir() / "target" / "manifest.json"


class LiftlabDbtTranslator(DagsterDbtTranslator):
    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return super().get_asset_key(dbt_resource_props)
        return dg.AssetKey([dbt_resource_props["config"].get("schema") or "public", dbt_resource_props["name"]])

    def get_asset_spec(self, manifest, unique_id, project):
        spec = super().get_asset_spec(manifest, unique_id, project)
        if spec.key.path[0] == "marts":
            return spec.replace_attributes(freshness_policy=DAILY_FRESHNESS)
        return spec

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "transform"

    def get_owners(self, dbt_resource_props: Mapping[str, Any]):
        return [OWNER]


def _manifest() -> Path:
    if not MANIFEST.exists():
        raise FileNotFoundError(
            f"{MANIFEST} is missing: run `make setup` (it runs `dbt parse`) before loading the definitions"
        )
    return MANIFEST


@dbt_assets(
    manifest=_manifest(),
    dagster_dbt_translator=LiftlabDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True)),
    name="dbt_models",
    retry_policy=io_retry,  # dbt rebuilds every model in its own transaction: a retry is safe
)
def dbt_models(context: dg.AssetExecutionContext, dbt: LiftlabDbtResource, postgres: PostgresResource):
    """``dbt build``: staging views, marts tables and their tests."""
    dbt.environment_for(postgres.conn_info())
    yield from dbt.cli(["build"], context=context).stream()
