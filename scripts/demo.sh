#!/usr/bin/env bash
# Start Airflow (standalone, embedded SQLite) with etlops-airflow and the bundled DAGs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
VENV="${VENV:-.venv}"
case "$VENV" in /*) VENV_BIN="$VENV/bin" ;; *) VENV_BIN="$ROOT/$VENV/bin" ;; esac
PORT="${ETLOPS_DEMO_PORT:-8080}"
DEMO="${ETLOPS_DEMO_HOME:-$ROOT/.demo}"
export AIRFLOW_HOME="$DEMO/airflow"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$DEMO/passwords.json"
export AIRFLOW__API__PORT="$PORT"
export AIRFLOW__API__BASE_URL="http://localhost:$PORT"
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=30
export AIRFLOW__ETLOPS__ALERT_RULES_FILE="${AIRFLOW__ETLOPS__ALERT_RULES_FILE:-$ROOT/scripts/demo_alert_rules.yaml}"
# The maintenance DAGs clean these demo folders (empty at first) and Airflow's own logs.
export AIRFLOW__ETLOPS__MAINTENANCE_CACHE_PATH="${AIRFLOW__ETLOPS__MAINTENANCE_CACHE_PATH:-$DEMO/cache}"
export AIRFLOW__ETLOPS__MAINTENANCE_CHECKPOINT_PATH="${AIRFLOW__ETLOPS__MAINTENANCE_CHECKPOINT_PATH:-$DEMO/checkpoints}"
# airflow standalone starts its components with the `airflow` command found on PATH.
export PATH="$VENV_BIN:$PATH"
mkdir -p "$AIRFLOW_HOME" "$AIRFLOW__ETLOPS__MAINTENANCE_CACHE_PATH" "$AIRFLOW__ETLOPS__MAINTENANCE_CHECKPOINT_PATH"
[ -f "$DEMO/passwords.json" ] || echo '{"admin": "admin"}' > "$DEMO/passwords.json"

airflow db migrate > "$DEMO/migrate.log" 2>&1 || { cat "$DEMO/migrate.log"; exit 1; }
airflow etlops store-upgrade
# The example migration DAG migrates the orders table of this SQLite file
# (etlops_migration_example_seed creates it). A Connection in the metadata DB, so that
# `airflow etlops migrations ...` in another shell finds it too.
airflow connections get etlops_demo_warehouse > /dev/null 2>&1 ||
    airflow connections add etlops_demo_warehouse \
        --conn-json "{\"conn_type\": \"sqlite\", \"host\": \"$DEMO/warehouse.db\"}" > /dev/null

cat <<MSG

  etlops-airflow demo
  Airflow UI:  http://localhost:$PORT   (login: admin / admin)
  Providers:   Admin -> Providers lists etlops-airflow
  Store:       $AIRFLOW_HOME/etlops.db  (airflow etlops store-status)
  Try:         unpause and trigger the DAG 'etlops_demo_pipeline'
  Alerts:      unpause 'etlops_alerting' (rules: scripts/demo_alert_rules.yaml), then
               airflow etlops alerts list
  Maintenance: the etlops_maintenance_* DAGs (paused); trigger one and see
               airflow etlops store-status
  Migrations:  trigger 'etlops_migration_example_seed', then 'etlops_migration_example'
               (Param target_version; 1.0.0 goes back down), then
               airflow etlops migrations status demo_orders -d dags/etlops_migrations
  Operations:  "Operations" in the UI navigation shows alerts, pipelines, health, metrics,
               profiles, maintenance and migrations once those DAGs ran (README: make demo)
  Stop:        Ctrl-C

MSG
exec airflow standalone
