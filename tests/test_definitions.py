"""The Dagster code location loads fast, validates, and has the layers the platform promises."""

from __future__ import annotations

import subprocess
import sys

import dagster as dg

from liftlab.pipeline import definitions_with

HEAVY = ("sklearn", "causalml", "great_expectations")


def test_loading_definitions_does_not_import_heavy_libraries():
    code = (
        "import sys, liftlab.definitions as d; d.defs(); "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"heavy modules imported at load time: {out.stdout}"


def test_asset_groups_and_keys():
    defs = definitions_with()
    graph = defs.resolve_asset_graph()
    groups = {graph.get(key).group_name for key in graph.get_all_asset_keys() if graph.get(key).is_materializable}
    assert {"ingest", "transform", "units", "gates", "effects", "causal", "decisions"} <= groups
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    for expected in ("raw/events", "marts/fct_user_daily", "units/unit_metrics", "gates/srm", "results/effects",
                     "results/slice_effects", "causal/estimates", "results/decisions"):
        assert expected in keys
    assert "marts/fct_unit_metrics" not in keys  # metrics are the catalogue's, compiled to SQL


def test_srm_check_is_blocking():
    defs = definitions_with()
    spec = defs.resolve_asset_graph().get_check_spec(dg.AssetCheckKey(dg.AssetKey(["gates", "srm"]), "srm_passed"))
    assert spec.blocking
