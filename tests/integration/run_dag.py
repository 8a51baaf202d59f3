"""Run one DAG from a folder with dag.test(); print its final state. Used by the integration tests."""

from __future__ import annotations

import sys

from airflow.dag_processing.dagbag import DagBag


def main() -> None:
    folder, dag_id = sys.argv[1], sys.argv[2]
    bag = DagBag(dag_folder=folder)
    if bag.import_errors:
        print(f"IMPORT ERRORS: {bag.import_errors}")
        sys.exit(2)
    run = bag.dags[dag_id].test()
    state = getattr(run.state, "value", run.state)
    print(f"ETLOPS_DAG_STATE={state}", flush=True)


if __name__ == "__main__":
    main()
