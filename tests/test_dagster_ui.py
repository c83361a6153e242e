"""The Dagster UI stands on its own: plots inline, decisions readable, one check result per
experiment, the decisions' full lineage, and a code location that loads without warnings.

The built-world tests read what the session's pipeline run recorded in its Dagster instance
(``tests.conftest.built``: every experiment partition analysed, one run each).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from dagster._core.event_api import PartitionKeyFilter

from liftlab import db
from liftlab.config import REPO_ROOT
from liftlab.defs.common import INLINE_PNG_MAX_BYTES, inline_png
from liftlab.defs.decisions import decisions_markdown
from liftlab.pipeline import definitions_with

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]*)\)")


def _png(width: int, height: int, noise: bool) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(7)
    pixels = (rng.integers(0, 256, (height, width, 3)) if noise else np.full((height, width, 3), 255)).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _images(markdown: str) -> list[bytes]:
    """The embedded images of a Markdown text, decoded; fails on an image that is not a data URI."""
    out = []
    for _, target in IMAGE.findall(markdown):
        assert target.startswith("data:image/png;base64,"), target[:80]
        out.append(base64.b64decode(target.split(",", 1)[1]))
    return out


# 1. plots inline -------------------------------------------------------------------------------

def test_inline_png_embeds_a_small_png_as_written_and_its_path_as_text(tmp_path):
    path = tmp_path / "plot.png"
    path.write_bytes(png := _png(300, 200, noise=False))
    value = inline_png(path, "Qini [winback] ")
    assert isinstance(value, dg.MarkdownMetadataValue)
    text = value.value
    assert IMAGE.findall(text)[0][0] == "Qini (winback)"  # brackets in the alt text cannot end it
    assert _images(text) == [png]  # byte for byte
    assert text.endswith(f"\n\n`{path}`") and "file://" not in text  # the path as plain text, no link

    from_bytes = inline_png(png, "bytes").value
    assert _images(from_bytes) == [png] and "`" not in from_bytes  # no file, no path line


def test_inline_png_downscales_a_large_png_under_the_limit(tmp_path):
    from PIL import Image

    path = tmp_path / "big.png"
    path.write_bytes(_png(600, 400, noise=True))
    assert path.stat().st_size > INLINE_PNG_MAX_BYTES
    [data] = _images(inline_png(path, "big").value)
    assert data.startswith(PNG_SIGNATURE) and len(data) <= INLINE_PNG_MAX_BYTES
    shown = Image.open(io.BytesIO(data))
    assert shown.width >= 64 and shown.width / shown.height == pytest.approx(600 / 400, rel=0.02)


def _materializations(instance: dg.DagsterInstance):
    for key in instance.get_asset_keys():
        for record in instance.fetch_materializations(key, limit=1000).records:
            yield key, record.asset_materialization


def test_every_plot_of_the_built_world_is_an_inline_image(built):
    seen: dict[str, int] = {}
    with dg.DagsterInstance.from_config(str(built.home)) as instance:
        for key, materialization in _materializations(instance):
            for name, value in materialization.metadata.items():
                where = f"{key.to_user_string()} {materialization.partition or ''} {name}"
                assert "file://" not in str(value.value), where  # the UI renders such links as javascript:void(0)
                if isinstance(value, dg.PathMetadataValue):
                    assert not value.path.endswith(".png"), f"{where}: a plot shown as a path"
                if isinstance(value, dg.MarkdownMetadataValue) and "![" in value.value:
                    images = _images(value.value)
                    assert all(i.startswith(PNG_SIGNATURE) and len(i) <= INLINE_PNG_MAX_BYTES for i in images), where
                    for path in re.findall(r"`([^`]+\.png)`", value.value):  # the file behind it, as text
                        assert Path(path).is_file(), where
                    family = name.split("/")[0]
                    seen[family] = seen.get(family, 0) + len(images)
    # every kind of plot the assets draw, on the reports asset, effects, uplift, causal and the A/A gate
    assert {"forest_plots", "cumulative_effect", "qini_plot", "policy_plot", "plot", "histogram"} <= set(seen), seen
    assert seen["forest_plots"] >= 3


# 2. decisions as readable Markdown --------------------------------------------------------------

def test_decisions_markdown_lists_reasons_as_bullets_with_real_unicode():
    frame = pl.DataFrame([
        {"experiment_id": "a", "decision": "SHIP", "variant": "treatment", "primary_metric": "conversion",
         "reasons": json.dumps(["adjusted p=0.001 < α=0.05", "guardrail latency −0.2 % within tolerance"])},
        {"experiment_id": "b", "decision": "HALTED", "variant": None, "primary_metric": "revenue",
         "reasons": json.dumps(["gate srm failed: χ² p < 0.001"])},
    ])
    text = decisions_markdown(frame)
    assert "| a | **SHIP** | treatment | conversion |" in text and "| b | **HALTED** | – | revenue |" in text
    assert "#### a: SHIP · treatment\n\n- adjusted p=0.001 < α=0.05\n- guardrail latency −0.2 % within tolerance" in text
    assert "#### b: HALTED\n\n- gate srm failed: χ² p < 0.001" in text
    assert "\\u" not in text and '["' not in text


def test_the_decisions_asset_shows_every_reason_as_a_bullet(built):
    with dg.DagsterInstance.from_config(str(built.home)) as instance:
        [record] = instance.fetch_materializations(dg.AssetKey(["results", "decisions"]), limit=1).records
    text = record.asset_materialization.metadata["decisions"].value
    assert "\\u" not in text and '["' not in text  # no JSON, no escaped unicode
    with db.connect(built.info) as conn:
        rows = db.read_frame(conn, "select experiment_id, decision, variant, reasons::text as reasons from results.decisions")
    assert rows.height >= 2
    for r in rows.iter_rows(named=True):
        assert f"#### {r['experiment_id']}: {r['decision']}" in text
        for reason in json.loads(r["reasons"]):
            assert f"\n- {' '.join(reason.split())}" in text, reason
    assert any(ord(c) > 127 for c in text)  # α, −, … as themselves


# 3. one check result per experiment partition -------------------------------------------------

def test_checks_of_experiment_assets_are_partitioned_like_their_asset():
    graph = definitions_with().resolve_asset_graph()
    partitioned = [k for k in graph.asset_check_keys
                   if getattr(graph.get(k.asset_key).partitions_def, "name", None) == "experiment"]
    assert len(partitioned) >= 8  # the six gate checks, the A/A calibration and the daily looks
    for key in partitioned:
        assert graph.get_check_spec(key).partitions_def == graph.get(key.asset_key).partitions_def, key


def test_each_experiment_partition_has_its_own_check_result(built):
    analysed = [e for e in built.result.decisions["experiment_id"] if e in built.result.run_ids]
    assert len(analysed) >= 2
    with db.connect(built.info) as conn:
        status = dict(conn.execute("select experiment_id, status from gates.check_results where \"check\" = 'srm'").fetchall())
    key = dg.AssetCheckKey(dg.AssetKey(["gates", "srm"]), "srm_passed")
    with dg.DagsterInstance.from_config(str(built.home)) as instance:
        storage = instance.event_log_storage
        for experiment_id in analysed:
            record = storage.get_latest_asset_check_execution_by_key(
                [key], partition_filter=PartitionKeyFilter(key=experiment_id)).get(key)
            assert record is not None, experiment_id
            evaluation = record.event.dagster_event.event_specific_data
            assert (record.partition, evaluation.partition) == (experiment_id, experiment_id)
            assert record.run_id == built.result.run_ids[experiment_id]  # the experiment's own analysis run
            assert evaluation.passed == (status[experiment_id] in ("PASS", "N/A")), experiment_id
        infos = storage.get_asset_check_partition_info([key])
        assert {i.partition_key for i in infos} >= set(analysed)
        assert "checkout_redesign" in analysed and status["checkout_redesign"] == "FAIL"  # a failing one among passing ones


# 4. lineage of the decisions ----------------------------------------------------------------------

def test_decisions_depend_on_every_table_they_read():
    graph = definitions_with().resolve_asset_graph()
    parents = {k.to_user_string() for k in graph.get(dg.AssetKey(["results", "decisions"])).parent_keys}
    assert {
        "gates/srm", "gates/contamination", "gates/data_integrity", "gates/balance",  # gates.check_results
        "gates/aa_calibration",  # its informational row in gates.check_results
        "results/effects", "results/power", "causal/estimates",
        "results/uplift_models", "results/targeting_policy",  # the best learner's targeting policy
    } <= parents, parents


# 5. the code location loads under its own name ----------------------------------------------------

def test_liftlab_dev_loads_the_code_location_without_name_warnings(server, monkeypatch):
    """``liftlab dev`` names the code location as the project does, so loading the definitions
    (which Dagster repeats in every run and step process) does not warn that the names differ."""
    import liftlab.cli as cli
    import liftlab.instance

    calls = []
    monkeypatch.setattr(cli, "_info", lambda: None)
    monkeypatch.setattr(liftlab.instance, "prepare_dagster_home", lambda info: None)
    monkeypatch.setattr(os, "execv", lambda path, args: calls.append(args))
    cli.cmd_dev(cli.argparse.Namespace(port=3999))
    [args] = calls
    assert args[1] == "dev" and "-m" not in args  # -m would register the location as "liftlab.definitions"
    workspace = args[args.index("-w") + 1]

    from dagster._core.workspace.load_target import WorkspaceFileTarget

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["dg"]["project"]
    names = [origin.location_name for origin in WorkspaceFileTarget(paths=[workspace]).create_origins()]
    assert names == [project["code_location_name"]] == ["liftlab"]

    # Load it as dagster dev does: a code server registered under the workspace's location name,
    # from the repository root with its dagster.yaml (Dagster's storage in Postgres).
    from liftlab import db

    db.ensure_database(server, db.dagster_db(server.dbname))
    dagster = Path(sys.executable).with_name("dagster")
    out = subprocess.run([str(dagster), "definitions", "validate", "-w", workspace], capture_output=True, text=True,
                         timeout=300, cwd=REPO_ROOT,
                         env={**os.environ, "DAGSTER_PG_URL": db.dagster_storage_url(server)})
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    assert "code location liftlab" in log
    assert not re.search(r"registered under|code location name .* does not match", log, re.IGNORECASE), log[-3000:]
