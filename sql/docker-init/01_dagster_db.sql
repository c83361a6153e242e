-- docker compose: a second database (liftlab_dagster) for Dagster's own storage (runs, event logs, schedules).
create database liftlab_dagster;
