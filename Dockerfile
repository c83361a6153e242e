# liftlab code location image (also runs the webserver and daemon in docker compose).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/home \
    LIFTLAB_DBT_EXECUTABLE=/opt/venv-dbt/bin/dbt

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libpq-dev postgresql-client \
 && rm -rf /var/lib/apt/lists/* \
 && pip install --no-cache-dir uv

WORKDIR /opt/liftlab
COPY requirements.lock requirements-dbt.lock ./
# Two environments: dbt-core's pins conflict with causalml's (see README, "Dependencies").
RUN uv venv /opt/venv && uv pip install --no-cache -p /opt/venv/bin/python -r requirements.lock \
 && uv venv /opt/venv-dbt && uv pip install --no-cache -p /opt/venv-dbt/bin/python -r requirements-dbt.lock
ENV PATH="/opt/venv/bin:${PATH}"

COPY pyproject.toml README.md dagster.yaml ./
COPY platform ./platform
COPY dbt_project ./dbt_project
COPY sql ./sql
COPY experiments ./experiments
# the Celery executor's settings, read by the code location and the workers (LIFTLAB_EXECUTOR=celery)
COPY deploy/celery.yaml ./deploy/celery.yaml
RUN uv pip install --no-cache -p /opt/venv/bin/python --no-deps -e . \
 && cd dbt_project && /opt/venv-dbt/bin/dbt parse --profiles-dir . \
 && mkdir -p "$DAGSTER_HOME" && cp /opt/liftlab/dagster.yaml "$DAGSTER_HOME/dagster.yaml"

EXPOSE 4000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "liftlab.definitions", "--location-name", "liftlab"]
