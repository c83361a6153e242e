"""`liftlab metrics list|show|check` and `liftlab validate` on a team's catalogue and database."""

from __future__ import annotations

import pytest

from liftlab.cli import main
from tests.conftest import create_scratch_database, drop_database
from tests.own_data.helpers import CATALOGUE, KEY, SPEC, create_team_database, draw


@pytest.fixture(scope="module")
def team_db(server):
    info = create_team_database(server, draw(n_users=500))
    yield info
    drop_database(info)


@pytest.fixture()
def folders(tmp_path, monkeypatch, team_db, server):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "metrics").mkdir()
    (tmp_path / "experiments" / f"{KEY}.yaml").write_text(SPEC)
    (tmp_path / "metrics" / "shop.yaml").write_text(CATALOGUE)
    monkeypatch.setenv("LIFTLAB_EXPERIMENTS_DIR", str(tmp_path / "experiments"))
    monkeypatch.setenv("LIFTLAB_METRICS_DIR", str(tmp_path / "metrics"))
    monkeypatch.setenv("TEAM_DATABASE_URL", team_db.url())
    liftlab = create_scratch_database(server, prefix="liftlab_cli_metrics")
    monkeypatch.setenv("DATABASE_URL", liftlab.url())
    yield tmp_path
    drop_database(liftlab)


def test_list_shows_every_metric_and_who_uses_it(folders, capsys):
    assert main(["metrics", "list"]) == 0
    out = capsys.readouterr().out
    for line in ("orders_7d", "count(*) of orders where status=paid", "7 d", KEY, "ratio revenue_7d / orders_7d",
                 "quantile(amount) of orders q=0.9"):
        assert line in out, line


def test_show_prints_the_compiled_sql_with_its_parameters(folders, capsys):
    assert main(["metrics", "show", "revenue_7d"]) == 0
    out = capsys.readouterr().out
    assert "-- ===== experiment checkout_v2" in out
    assert 'coalesce(sum("f"."amount"::numeric) filter (where "f"."user_id" is not null and "f"."created_at" >= u.first_exposed_at' in out
    assert "make_interval(days => %s::integer)" in out and "'paid'" in out and "'checkout_v2'" in out  # parameters, listed
    assert main(["metrics", "show", "nope"]) == 1
    assert "unknown metric 'nope'" in capsys.readouterr().err


def test_check_plans_every_statement_and_names_what_is_wrong(folders, capsys):
    assert main(["metrics", "check"]) == 0
    assert f"ok      {KEY}" in capsys.readouterr().out
    (folders / "metrics" / "shop.yaml").write_text(CATALOGUE.replace("column: amount, where: {status: paid}",
                                                                     "column: amount_eur, where: {status: paid}"))
    assert main(["metrics", "check"]) == 1
    out = capsys.readouterr().out
    assert f"FAILED  {KEY}" in out and "metrics.revenue_7d.column: column 'amount_eur' not in shop.orders" in out


def test_validate_covers_the_catalogue(folders, capsys):
    assert main(["validate"]) == 0
    assert f"ok  {KEY}" in capsys.readouterr().out
    (folders / "metrics" / "shop.yaml").write_text(CATALOGUE + "  broken: {ratio: [orders_7d, broken]}\n")
    assert main(["validate"]) == 1
    assert "metrics.broken.ratio" in capsys.readouterr().err
    assert main(["validate", str(folders / "nowhere")]) == 1
    assert "no such folder" in capsys.readouterr().err
