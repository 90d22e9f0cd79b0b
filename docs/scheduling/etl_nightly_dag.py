"""The nightly build of the shop project, as an Airflow DAG.

One task per step: the bronze freshness check, then the build. etl runs the
model DAG itself (in parallel, skipping what is up to date), so there is no
need for a task per model. A non-zero exit code fails the task: 1 when a
model or an error-severity test failed, 2 when etl could not run (a broken
project, or another build holds the lake: the retry covers that).
"""

from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator

PROJECT = "/srv/shop"
ETL = "/usr/local/bin/etl"

with DAG(
    dag_id="etl_shop_nightly",
    schedule="30 2 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
    tags=["etl", "shop"],
) as dag:
    freshness = BashOperator(
        task_id="source_freshness",
        bash_command=f"{ETL} --project-dir {PROJECT} source freshness",
    )
    build = BashOperator(
        task_id="build",
        bash_command=f"{ETL} --project-dir {PROJECT} build --log-format json",
        execution_timeout=timedelta(hours=4),
    )
    freshness >> build
