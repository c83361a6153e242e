"""Gates that do not apply say N/A (never a PASS that checked nothing), N/A never halts nor
warns, WARN gates head the report and the decision, and every interval is labelled with its
own level 1 − α (issue #17).

The end-to-end test runs the pipeline on a user's file with ``alpha: 0.10``, no covariates and
an arm split whose SRM p-value is 0.005 (a WARN, not a FAIL): contamination, balance, the
exposure window and the A/A calibration cannot apply to it."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import matplotlib
import numpy as np
import polars as pl
import pytest
import yaml

from liftlab import db
from liftlab.config import REPO_ROOT
from liftlab.decide import decide, warnings_of
from liftlab.gates.balance import balance_check, smd_table
from liftlab.gates.contamination import contamination_test
from liftlab.specs import parse_spec
from tests.conftest import create_scratch_database, drop_database

#: "95 %" as a level, not the tail of a number such as "+4.95 %".
NINETY_FIVE = re.compile(r"(?<![\d.])95 ?%")


def _spec(tmp_path: Path, **changes):
    data = {"id": "na_file", "hypothesis": "h", "baseline": "A", "primary_metric": "y", "alpha": 0.10,
            "variants": [{"name": "A", "allocation": 0.5}, {"name": "B", "allocation": 0.5}],
            "source": {"kind": "file", "path": "data.csv", "variant_column": "arm", "outcomes": ["y"],
                       "columns": {"arm": "string", "y": "float"}}, **changes}
    path = tmp_path / "na_file.yaml"
    path.write_text(yaml.safe_dump(data))
    return parse_spec(path.read_text(), path)


# --------------------------------------------------------------------------------- pure gates

def test_balance_without_covariates_is_not_applicable_and_with_them_is_checked():
    empty = balance_check(smd_table(pl.DataFrame({"variant": ["a", "b"]}), baseline="a", covariates=[]))
    assert empty.status == "N/A" and empty.reason.startswith("not applicable:") and "covariates" in empty.reason
    frame = pl.DataFrame({"variant": ["a", "a", "b", "b"], "x": [1.0, 2.0, 1.0, 2.0]})
    assert balance_check(smd_table(frame, baseline="a", covariates=["x"])).status == "PASS"


def test_contamination_with_no_exposed_unit_is_not_applicable():
    none = contamination_test(0, 0)
    assert none.status == "N/A" and "no exposed unit" in none.reason
    assert contamination_test(1_000, 0).status == "PASS"  # units were checked: a real PASS


def test_a_file_without_a_recorded_load_has_no_quarantine_to_check(tmp_path, conn):
    from liftlab.gates.integrity import file_quarantine_gate

    spec = _spec(tmp_path)
    gate = file_quarantine_gate(conn, spec)
    assert gate.status == "N/A" and "raw.load_log" in gate.reason
    conn.execute("insert into raw.load_log (source, experiment_id, received, accepted, quarantined, file) "
                 "values ('file:na_file', 'na_file', 10, 10, 0, 'data.csv')")
    assert file_quarantine_gate(conn, spec).status == "PASS"  # a load was checked
    conn.rollback()


def test_not_applicable_never_halts_nor_warns(tmp_path):
    spec = _spec(tmp_path)
    row = {"metric": "y", "variant": "B", "method": "welch_t", "abs_effect": 1.0, "rel_effect": 0.1,
           "rel_ci_low": 0.05, "rel_ci_high": 0.15, "abs_ci_low": 0.5, "abs_ci_high": 1.5, "p_value": 1e-6,
           "p_value_adj": 1e-6, "alpha": 0.10, "is_decision_estimate": True, "metric_role": "primary"}
    gates = [{"check": c, "status": "N/A", "reason": f"not applicable: {c}"}
             for c in ("contamination", "balance", "exposure_window", "quarantine", "data_quality", "aa_calibration")]
    only_na = decide(spec, gates, [row])
    assert only_na.decision != "HALTED" and not any("not applicable" in r for r in only_na.reasons)
    with_srm = decide(spec, [*gates, {"check": "srm", "status": "PASS", "reason": "ok"}], [row])
    assert with_srm.decision == only_na.decision == "SHIP", with_srm
    warn = {"check": "srm", "status": "WARN", "reason": "possible sample ratio mismatch (p < 0.01)"}
    warned = decide(spec, [*gates, warn], [row])
    assert warned.decision == "SHIP" and warnings_of([warn])[0] in warned.reasons
    assert decide(spec, [*gates, {**warn, "status": "FAIL"}], [row]).decision == "HALTED"  # the only halt


# ------------------------------------------------------------------------- migration 013 and views

def test_migration_013_turns_stale_passes_into_not_applicable_and_views_ignore_them(conn):
    conn.execute("insert into raw.experiment_specs (experiment_id, design, baseline, source_kind, spec, spec_file, "
                 "spec_sha256) values ('old_file', 'randomized', 'A', 'file', '{}', 'f.yaml', 'x'), "
                 "('old_demo', 'randomized', 'A', 'demo', '{}', 'd.yaml', 'y')")
    stale = [("old_file", "contamination", "PASS", "no unit was exposed to more than one variant"),
             ("old_file", "balance", "PASS", "no pre-period covariates declared: balance not checked"),
             ("old_file", "quarantine", "PASS", "no load recorded for this experiment's source"),
             ("old_file", "aa_calibration", "PASS", "no pre-period covariates to re-randomize"),
             ("old_file", "srm", "WARN", "possible sample ratio mismatch"),
             ("old_demo", "contamination", "PASS", "no unit was exposed to more than one variant"),
             ("old_demo", "balance", "PASS", "covariates balanced: max |SMD| = 0.010 ≤ 0.1"),
             ("old_demo", "quarantine", "FAIL", "3 rows quarantined")]
    for e, check, status, reason in stale:
        conn.execute("insert into gates.check_results (experiment_id, \"check\", status, details) "
                     "values (%s, %s, %s, jsonb_build_object('reason', %s::text))", (e, check, status, reason))
    conn.execute((REPO_ROOT / "sql" / "migrations" / "013_gates_not_applicable.sql").read_text())
    status = {(e, c): s for e, c, s in conn.execute("select experiment_id, \"check\", status from gates.check_results "
                                                    "where experiment_id like 'old\\_%'")}
    assert {k for k, s in status.items() if s == "N/A"} == {
        ("old_file", "contamination"), ("old_file", "balance"), ("old_file", "quarantine"), ("old_file", "aa_calibration")}
    assert status[("old_demo", "contamination")] == status[("old_demo", "balance")] == "PASS"  # they were checked
    reasons = dict(conn.execute("select \"check\", details->>'reason' from gates.check_results "
                                "where experiment_id = 'old_file' and status = 'N/A'").fetchall())
    assert all(r.startswith("not applicable:") for r in reasons.values()), reasons
    assert "file source has one row" in reasons["contamination"]
    failing = conn.execute("select experiment_id, \"check\", status from gates.v_failing_checks "
                           "where experiment_id like 'old\\_%' order by 1, 2").fetchall()
    assert failing == [("old_demo", "quarantine", "FAIL"), ("old_file", "srm", "WARN")]
    trust = {r[0]: r[1:] for r in conn.execute(
        "select experiment_id, status, halted, failed, warned, not_applicable from gates.v_experiment_trust "
        "where experiment_id like 'old\\_%'")}
    assert trust["old_file"] == ("WARN", False, [], ["srm"], ["aa_calibration", "balance", "contamination", "quarantine"])
    assert trust["old_demo"][:4] == ("FAIL", True, ["quarantine"], [])
    conn.execute("set role liftlab_reader")  # analysts read the trust view
    assert conn.execute("select count(*) from gates.v_experiment_trust").fetchone()[0] >= 2
    conn.rollback()


# ---------------------------------------------------------------------------------- plot labels

def _texts(monkeypatch):
    """Every text matplotlib draws in the figures made while the patch is active."""
    from liftlab.reports import plots

    seen: list[str] = []
    original = plots._png

    def capture(plt, fig):
        seen.extend(t.get_text() for t in fig.findobj(matplotlib.text.Text))
        return original(plt, fig)

    monkeypatch.setattr(plots, "_png", capture)
    return seen


def _looks(**extra) -> pl.DataFrame:
    days = [dt.date(2026, 10, 1) + dt.timedelta(days=i) for i in range(5)]
    n = len(days)
    return pl.DataFrame({"look_date": days, "metric": ["y"] * n, "variant": ["B"] * n, "rel_effect": [0.02] * n,
                         "rel_ci_low": [-0.01] * n, "rel_ci_high": [0.05] * n, "rel_cs_low": [-0.05] * n,
                         "rel_cs_high": [0.09] * n, **extra})


def test_every_plotted_interval_names_its_own_level(monkeypatch):
    from liftlab.reports import plots

    seen = _texts(monkeypatch)
    plots.cumulative_effect_plot(_looks(), "y", "t", alpha=0.10)
    text = " ".join(seen)
    assert "90 % CI" in text and "always-valid 90 % bound" in text and not NINETY_FIVE.search(text), text
    seen.clear()  # three arms: the sequence the decision reads is at the family level 1 − 0.10/2
    plots.cumulative_effect_plot(_looks(alpha_adj=[0.05] * 5, rel_cs_low_adj=[-0.06] * 5,
                                        rel_cs_high_adj=[0.1] * 5), "y", "t", alpha=0.10)
    text = " ".join(seen)
    assert "90 % CI" in text and "always-valid 95 % bound" in text, text
    seen.clear()
    slices = pl.DataFrame({"dimension": ["plan"] * 2, "slice": ["free", "pro"], "metric": ["y"] * 2, "variant": ["B"] * 2,
                           "estimated": [True, True], "n_baseline": [50, 50], "n_variant": [50, 50],
                           "rel_effect": [0.1, 0.2], "rel_ci_low": [0.0, 0.1], "rel_ci_high": [0.2, 0.3],
                           "p_value_adj": [0.2, 0.01], "alpha": [0.10, 0.10]})
    plots.slice_forest_plot(slices, "y", "t")
    text = " ".join(seen)
    assert "90 % CI" in text and not NINETY_FIVE.search(text), text
    seen.clear()  # rows at different levels (a causal estimate at its own level): each row says its own
    forest = pl.DataFrame({"metric": ["y", "z"], "metric_role": ["primary", "secondary"], "variant": ["B", "B"],
                           "method": ["welch_t", "aipw ATE"], "rel_effect": [0.1, 0.2], "rel_ci_low": [0.0, 0.1],
                           "rel_ci_high": [0.2, 0.3], "p_value": [0.04, None], "p_value_adj": [0.04, None],
                           "alpha": [0.10, 0.01]})
    plots.forest_plot(forest, "t")
    text = " ".join(seen)
    assert "90 % CI" in text and "99 % CI" in text and "each row's level" in text, text
    assert plots.level_label(0.05 / 3) == "98.33 %"


# ----------------------------------------------------------------------------- end to end on a file

@pytest.fixture(scope="module")
def file_run(server, tmp_path_factory):
    """The pipeline on one file experiment (α = 0.10, no covariates, SRM p ≈ 0.005)."""
    import dagster as dg

    from liftlab.defs.resources import PostgresResource
    from liftlab.pipeline import run_pipeline

    folder = tmp_path_factory.mktemp("na_file")
    rng = np.random.default_rng(17)
    arm = np.array(["A"] * 1_063 + ["B"] * 937)  # chi2 = 7.94, p = 0.0048: WARN (0.001 ≤ p < 0.01)
    y = rng.normal(10.0, 2.0, arm.size) + np.where(arm == "B", 1.0, 0.0)
    pl.DataFrame({"arm": arm, "y": y}).write_csv(folder / "data.csv")
    _spec(folder)
    info = create_scratch_database(server, prefix="liftlab_na")
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("LIFTLAB_EXPERIMENTS_DIR", str(folder))
            result = run_pipeline(dg.DagsterInstance.ephemeral(), {"postgres": PostgresResource(database_url=info.url())},
                                  log=lambda *_: None, studies=False)
            yield info, result, mp
    finally:
        drop_database(info)


def test_a_file_experiment_records_not_applicable_gates_and_is_not_halted(file_run):
    info, result, _ = file_run
    assert result.halted == [] and not result.failed
    with db.connect(info) as conn:
        status = dict(conn.execute("select \"check\", status from gates.check_results where experiment_id = 'na_file'"))
        reasons = dict(conn.execute("select \"check\", details->>'reason' from gates.check_results "
                                    "where experiment_id = 'na_file'"))
        failing = conn.execute("select \"check\", status from gates.v_failing_checks where experiment_id = 'na_file'").fetchall()
        trust = conn.execute("select status, halted, warned, not_applicable from gates.v_experiment_trust "
                             "where experiment_id = 'na_file'").fetchone()
        decision, decided_reasons = conn.execute("select decision, reasons from results.decisions "
                                                 "where experiment_id = 'na_file'").fetchone()
    assert status["contamination"] == "N/A" and "one row (one variant) per unit" in reasons["contamination"]
    assert status["balance"] == status["exposure_window"] == status["aa_calibration"] == "N/A", status
    assert all(reasons[c].startswith("not applicable:") for c, s in status.items() if s == "N/A"), reasons
    assert status["srm"] == "WARN" and "PASS" not in {status["contamination"], status["balance"]}
    assert failing == [("srm", "WARN")]  # N/A is not shown as a failure or a warning
    assert trust[:3] == ("WARN", False, ["srm"]) and {"contamination", "balance"} <= set(trust[3])
    assert decision == "SHIP", decided_reasons
    assert any(r.startswith("warning — gate srm: possible sample ratio mismatch") for r in decided_reasons)
    assert not any("not applicable" in r for r in decided_reasons)


def test_the_report_heads_with_the_warnings_and_labels_every_interval_90(file_run, monkeypatch, tmp_path):
    from liftlab.reports.render import collect, to_html, to_markdown, write_report

    info, _, _ = file_run
    seen = _texts(monkeypatch)
    with db.connect(info) as conn:
        data = collect(conn, "na_file")
        paths = write_report(conn, "na_file", tmp_path)
    html_text, md_text = to_html(data), to_markdown(data, "na_file")
    assert paths["html"].read_text() == html_text
    forest = next(f for f in data.figures if f.name == "forest")
    assert "90 % confidence intervals" in forest.title
    plotted = " ".join(seen)
    assert "90 % CI" in plotted and not NINETY_FIVE.search(plotted), plotted
    for text in (html_text, md_text):
        assert "90 %" in text and not NINETY_FIVE.search(text), NINETY_FIVE.findall(text)
        assert "α = 0.1" in text
    # the WARN gate heads the report, above the decision's reasons and the gate table, shown once
    warning = "warning — gate srm: possible sample ratio mismatch (p &lt; 0.01)"
    assert html_text.count(warning) == 1
    assert html_text.index("Gate warnings") < html_text.index(warning) < html_text.index("improves y")
    assert html_text.index(warning) < html_text.index("<h2>Trust gates</h2>")
    md_warning = warning.replace("&lt;", "<")
    assert md_text.count(md_warning) == 1 and md_text.index(md_warning) < md_text.index("## Trust gates")
    assert md_text.index("**Decision: SHIP**") < md_text.index(md_warning)
    # N/A rows are in the gate table with their reason, said not to have checked anything
    gates = {r["check"]: r for r in data.gates.iter_rows(named=True)}
    assert gates["contamination"]["status"] == "N/A" and "| contamination | N/A |" in md_text
    assert "N/A: the gate does not apply" in md_text


def test_the_scorecard_names_the_level_of_its_intervals(file_run, monkeypatch, capsys):
    from liftlab.cli import main

    info, _, _ = file_run
    monkeypatch.setenv("DATABASE_URL", info.url())
    assert main(["scorecard", "na_file"]) == 0
    out = capsys.readouterr().out
    header, _, *rows = out.splitlines()
    assert "ci_level" in header.split() and rows and all("90 %" in r for r in rows), out
