"""Calibration study at CI size: 300 simulated experiments on a 5,000-user synthetic world.

The full-size study (10,000 simulations, 20,000 users) runs on demand:
``LIFTLAB_CALIBRATION_SIMS=10000 LIFTLAB_CALIBRATION_USERS=20000 .venv/bin/python -m pytest tests/calibration``
or ``.venv/bin/python -m liftlab.studies.calibration --sims 10000 --users 20000``; the acceptance
bands tighten with the size (see ``summary_frame``): coverage in [94 %, 96 %] from 1,000
simulations, the A/A false-positive rate within 2·sqrt(α(1−α)/n) of α, sequential ≤ α.
"""

from __future__ import annotations

import json
import os

import dagster as dg
import pytest

from liftlab.studies.calibration import CalibrationConfig, run_calibration, summary_frame, world_panel

SIMS = int(os.environ.get("LIFTLAB_CALIBRATION_SIMS", "300"))
USERS = int(os.environ.get("LIFTLAB_CALIBRATION_USERS", "5000"))


@pytest.fixture(scope="module")
def study():
    cfg = CalibrationConfig(n_sims=SIMS, n_users=USERS)
    return run_calibration(cfg, world_panel(USERS, cfg.world_seed))


def test_every_measure_is_within_its_band(study):
    table = summary_frame(study)
    failed = table.filter(~table["passed"]).drop("details").to_dicts()
    assert not failed, json.dumps(failed, indent=1, default=str)
    assert table.height == 10


def test_naive_daily_looks_inflate_the_error_and_the_sequence_does_not(study):
    naive, seq = study["fpr_naive_by_look"], study["fpr_sequential_by_look"]
    assert naive[-1] > 2.5 * study["config"]["alpha"]  # 28 looks: ~20 %
    assert seq[-1] <= study["config"]["alpha"]
    assert naive[-1] > naive[0] and all(b >= a for a, b in zip(naive, naive[1:], strict=False))


def test_cuped_variance_reduction_tracks_rho_squared(study):
    assert study["cuped_variance_reduction"] >= study["rho2"] - 0.02 - (0.0 if SIMS >= 1000 else 0.03)
    assert abs(study["cuped_variance_reduction_estimated"] - study["rho2"]) < 0.02


def test_calibration_asset_writes_results_calibration(scratch_db, tmp_path, monkeypatch):
    from liftlab import db
    from liftlab.defs.calibration import calibration
    from liftlab.defs.resources import PostgresResource

    monkeypatch.setenv("LIFTLAB_REPORTS_DIR", str(tmp_path))
    result = dg.materialize(
        [calibration],
        resources={"postgres": PostgresResource(database_url=scratch_db.url())},
        run_config={"ops": {"results__calibration": {"config": {"n_sims": 100, "n_users": 2000}}}},
    )
    assert result.success
    assert (tmp_path / "calibration.png").stat().st_size > 10_000
    plot = result.asset_materializations_for_node("results__calibration")[0].metadata["plot"].value
    assert "](data:image/png;base64," in plot and f"`{tmp_path / 'calibration.png'}`" in plot  # inline, path as text
    with db.connect(scratch_db) as conn:
        rows = conn.execute("select measure, method, n_sims from results.calibration").fetchall()
    assert len(rows) == 10 and {r[2] for r in rows} == {100}
