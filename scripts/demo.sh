#!/usr/bin/env bash
# Start Airflow (standalone, embedded SQLite) with etlops-airflow and the bundled DAGs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
VENV="${VENV:-.venv}"
PORT="${ETLOPS_DEMO_PORT:-8080}"
export AIRFLOW_HOME="$ROOT/.demo/airflow"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$ROOT/.demo/passwords.json"
export AIRFLOW__API__PORT="$PORT"
export AIRFLOW__API__BASE_URL="http://localhost:$PORT"
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=30
# airflow standalone starts its components with the `airflow` command found on PATH.
export PATH="$ROOT/$VENV/bin:$PATH"
mkdir -p "$AIRFLOW_HOME"
[ -f "$ROOT/.demo/passwords.json" ] || echo '{"admin": "admin"}' > "$ROOT/.demo/passwords.json"

airflow db migrate > "$ROOT/.demo/migrate.log" 2>&1 || { cat "$ROOT/.demo/migrate.log"; exit 1; }
airflow etlops store-upgrade

cat <<MSG

  etlops-airflow demo
  Airflow UI:  http://localhost:$PORT   (login: admin / admin)
  Providers:   Admin -> Providers lists etlops-airflow
  Store:       $AIRFLOW_HOME/etlops.db  (airflow etlops store-status)
  Try:         unpause and trigger the DAG 'etlops_demo_pipeline'
  Stop:        Ctrl-C

MSG
exec airflow standalone
