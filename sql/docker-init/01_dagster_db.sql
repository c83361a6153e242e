-- docker compose: a second database for Dagster's own storage (runs, event logs, schedules).
create database dagster;
