"""Secrets: connection settings come only from the environment (or ``.env`` for docker
compose); no password is committed, and none is printed — not by the CLI, not in an exception,
not in Dagster's event log of runs whose DATABASE_URL carries one.

The test servers use trust authentication, so a password in the URL is sent and ignored: every
run here really carries ``SECRET`` and must never show it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from liftlab import db
from liftlab.config import REPO_ROOT
from tests.reliability.helpers import SECRET, with_secret

# --------------------------------------------------------------------------- redaction
REDACTIONS = [
    ("postgresql://alice:hunter2@db:5432/liftlab", "postgresql://alice:***@db:5432/liftlab"),
    ("postgresql+psycopg2://alice:hunter2@db/dagster", "postgresql+psycopg2://alice:***@db/dagster"),
    ("postgresql://alice:p@ss@db/liftlab", "postgresql://alice:***@db/liftlab"),  # an unencoded '@' in it
    ("postgresql://alice:p%40ss@db/liftlab", "postgresql://alice:***@db/liftlab"),
    ("postgresql://alice@db/liftlab?sslmode=require&password=hunter2", "postgresql://alice@db/liftlab?sslmode=require&password=***"),
    ("host=db user=alice password=hunter2 dbname=liftlab", "host=db user=alice password=*** dbname=liftlab"),
    ("host=db password='a b\\' c' dbname=liftlab", "host=db password=*** dbname=liftlab"),  # fake-secret
    ("postgresql://alice:pw@/liftlab?host=/run/pg&port=5433", "postgresql://alice:***@/liftlab?host=/run/pg&port=5433"),
    ("two: postgresql://a:hunter2@h/d and postgresql://b:hunter2@h/d", "two: postgresql://a:***@h/d and postgresql://b:***@h/d"),
]


@pytest.mark.parametrize(("text", "expected"), REDACTIONS)
def test_redact_hides_every_form_of_password(text, expected):
    redacted = db.redact(text)
    assert "hunter2" not in redacted and "ss@" not in redacted
    assert redacted == expected


def test_connection_errors_name_the_database_but_not_the_password():
    info = db.ConnInfo("alice", SECRET, "127.0.0.1", 1, "liftlab")
    with pytest.raises(db.DatabaseUnavailable) as err:
        db.connect(info)
    assert "liftlab on 127.0.0.1:1 as alice" in str(err.value) and SECRET not in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__  # no chained exception carrying the URL


@pytest.mark.parametrize("url", [f"host=db password={SECRET}", f"postgresql://alice:{SECRET}@db:notaport/x",
                                 f"mysql://alice:{SECRET}@db/x"])
def test_an_unusable_database_url_is_one_redacted_error(monkeypatch, url):
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(db.DatabaseUnavailable) as err:
        db.resolve()
    assert "DATABASE_URL is not a usable postgresql:// URL" in str(err.value) and SECRET not in str(err.value)


# --------------------------------------------------------------------------- CLI output
def _cli(*args: str, url: str, cwd: Path) -> subprocess.CompletedProcess:
    liftlab = Path(sys.executable).with_name("liftlab")
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.run([str(liftlab), *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def test_cli_output_never_shows_the_password(built, tmp_path):
    url = with_secret(built.info).url()
    assert SECRET in url
    outputs = []
    for args in (["db", "url"], ["db", "start"], ["migrate"], ["decisions"], ["scorecard", "aa_check"]):
        done = _cli(*args, url=url, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout + done.stderr)
    assert all(SECRET not in out for out in outputs)
    assert "***" in outputs[0] and "aa_check" in outputs[4]


# --------------------------------------------------------------------------- Dagster runs
def test_no_event_of_runs_with_a_password_in_database_url_shows_it(asset_by_asset):
    """Every asset (ingest, dbt, great-expectations, gates, studies, decisions, reports) ran with
    DATABASE_URL carrying the password: none of the events, messages, metadata or errors of those
    runs contains it — nor do the dbt artifacts and reports they wrote."""
    from dagster._serdes import serialize_value

    assert SECRET in asset_by_asset["secret_url"]
    assert asset_by_asset["dbt_password"] == SECRET  # dbt really got the password
    instance = asset_by_asset["instance"]
    runs = {p.run_id for p in asset_by_asset["passes"]}
    events = [serialize_value(record) for run_id in runs for record in instance.all_logs(run_id)]
    assert len(runs) > 20 and len(events) > 500
    assert not [e[:300] for e in events if SECRET in e]
    written = [p for folder in (REPO_ROOT / "dbt_project" / "target", REPO_ROOT / "dbt_project" / "logs",
                                Path(os.environ["LIFTLAB_REPORTS_DIR"]))
               if folder.exists() for p in folder.rglob("*") if p.is_file()]
    assert written
    assert not [str(p) for p in written if SECRET.encode() in p.read_bytes()]


# --------------------------------------------------------------------------- the repository
#: Values that stand for a password without being one.
PLACEHOLDERS = {"", "password", "***", "…", "'…'", "hunter2", "pw", "p", "p%40ss", "{SECRET}"}


def _secret_like(line: str, path: str) -> list[str]:
    found = [m.group(1) for m in re.finditer(r"[a-z0-9+.-]+://[^:@/\s'\"]+:([^@\s'\"]+)@", line)
             if "${" not in m.group(0)]  # docker compose interpolation: the value comes from the environment
    if not path.endswith(".py"):  # configuration files: KEY=value, key: value
        found += [m.group(1) for m in re.finditer(r"(?i)password\w*\s*[:=]\s*['\"]?([^\s'\"&,]*)", line)
                  if line[:m.start()].count("${") <= line[:m.start()].count("}")]  # not inside ${VAR:?…}
    else:  # Python: only string literals assigned to a password
        found += [m.group(1) for m in re.finditer(r"(?i)password\s*=\s*['\"]([^'\"]*)['\"]", line)]
    found += re.findall(r"-----BEGIN [A-Z ]*PRIVATE KEY-----|AKIA[0-9A-Z]{16}", line)
    found = [v.strip("`'\");,. ") for v in found]  # prose and Markdown quote values: `password=***`
    # a boolean is a setting about a password (e.g. the Helm chart's generatePostgresqlPasswordSecret), not one
    return [v for v in found if v not in PLACEHOLDERS and v.lower() not in ("true", "false")
            and not v.startswith(("${", "{{", "{", "<", "…"))]


def test_no_secret_is_committed():
    listing = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=REPO_ROOT, check=True).stdout.split()
    assert ".env" not in listing
    suspicious = []
    for path in listing:
        file = REPO_ROOT / path
        if not file.is_file() or file.suffix in {".png", ".parquet", ".lock"} or file.stat().st_size > 2_000_000:
            continue
        for number, line in enumerate(file.read_text(errors="replace").splitlines(), 1):
            if path.startswith("tests/") and (SECRET in line or line.endswith("# fake-secret")):
                continue  # the tests' own fake passwords, marked
            suspicious += [f"{path}:{number}: {value}" for value in _secret_like(line, path)]
    assert suspicious == []


def test_the_scanner_finds_what_it_looks_for():
    assert _secret_like("DATABASE_URL=postgresql://liftlab:s3cr3t@db:5432/liftlab", ".env") == ["s3cr3t"]  # fake-secret
    assert _secret_like("POSTGRES_PASSWORD=s3cr3t", ".env") == ["s3cr3t"]
    assert _secret_like('conn = connect(password="s3cr3t")', "x.py") == ["s3cr3t"]  # fake-secret
    assert _secret_like("POSTGRES_PASSWORD=", ".env.example") == []
    assert _secret_like("prints `password=***`, or `?password=` in a URL", "docs/x.md") == []  # fake-secret


def test_compose_and_env_example_read_secrets_from_the_environment():
    ignored = (REPO_ROOT / ".gitignore").read_text().split()
    assert ".env" in ignored
    example = dict(line.split("=", 1) for line in (REPO_ROOT / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert example["POSTGRES_PASSWORD"] == ""
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    env = compose["x-liftlab-env"]
    for value in (env["DATABASE_URL"], env["DAGSTER_PG_URL"], compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]):
        assert "${POSTGRES_PASSWORD:?" in value  # from the environment / .env, and required
    profiles = (REPO_ROOT / "dbt_project" / "profiles.yml").read_text()
    assert "env_var('LIFTLAB_PGPASSWORD'" in profiles
