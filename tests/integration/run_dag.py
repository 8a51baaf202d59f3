"""Run DAGs from a folder with dag.test(), one after the other; print each final state and run id.
Used by the integration tests: ``run_dag.py FOLDER DAG_ID [DAG_ID ...]``."""

from __future__ import annotations

import sys

from airflow.dag_processing.dagbag import DagBag


def main() -> None:
    folder, dag_ids = sys.argv[1], sys.argv[2:]
    bag = DagBag(dag_folder=folder)
    if bag.import_errors:
        print(f"IMPORT ERRORS: {bag.import_errors}")
        sys.exit(2)
    for dag_id in dag_ids:
        run = bag.dags[dag_id].test()
        state = getattr(run.state, "value", run.state)
        print(f"ETLOPS_DAG_RUN={dag_id} {state} {run.run_id}", flush=True)
        print(f"ETLOPS_DAG_STATE={state}", flush=True)


if __name__ == "__main__":
    main()
