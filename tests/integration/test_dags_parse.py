"""Bundled DAGs must import without errors (what Airflow's DAG processor would report)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("folder", [REPO / "dags", REPO / "tests" / "integration" / "dags"])
def test_dag_folder_imports_without_errors(folder: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(folder))
    assert bag.import_errors == {}
    assert bag.dags, f"no DAG found in {folder}"


def test_demo_dag_shape() -> None:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO / "dags")).dags["etlops_demo_pipeline"]
    assert {t.task_id for t in dag.tasks} == {"extract", "transform", "load", "enough_rows", "publish"}


def _bag(monkeypatch: pytest.MonkeyPatch, **options: str) -> object:
    from airflow.dag_processing.dagbag import DagBag

    for name, value in options.items():
        monkeypatch.setenv(f"AIRFLOW__ETLOPS__{name.upper()}", value)
    return DagBag(dag_folder=str(REPO / "dags" / "etlops_alerting.py"))


def test_alerting_dag_evaluates_every_minute_within_hourly_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    rules = str(REPO / "tests" / "fixtures" / "alert_rules_example.yaml")
    bag = _bag(monkeypatch, alert_rules_file=rules)
    assert bag.import_errors == {}  # type: ignore[attr-defined]
    dag = bag.dags["etlops_alerting"]  # type: ignore[attr-defined]
    task = dag.get_task("evaluate")
    assert task.rules_file == rules
    assert (task.interval, task.evaluate_for) == (60.0, 3540.0)  # one run an hour, evaluating each minute
    assert "0 * * * *" in str(dag.timetable) and dag.max_active_runs == 1
    assert dag.is_paused_upon_creation is True
    faster = _bag(
        monkeypatch,
        alert_rules_file=rules,
        alert_evaluation_schedule="*/30 * * * *",
        alert_evaluation_interval="30s",
    )
    task = faster.dags["etlops_alerting"].get_task("evaluate")  # type: ignore[attr-defined]
    assert (task.interval, task.evaluate_for) == (30.0, 1770.0)


def test_alerting_dag_without_a_rule_file_parses_and_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bag = _bag(monkeypatch, alert_rules_file="")
    assert bag.import_errors == {}  # type: ignore[attr-defined]
    assert bag.dags["etlops_alerting"].get_task("evaluate").rules_file is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("options", "shown"),
    [
        ({"alert_evaluation_interval": "soon"}, "alert_evaluation_interval = 'soon'"),
        ({"alert_evaluation_schedule": "every hour"}, "alert_evaluation_schedule = 'every hour'"),
        ({"alert_max_delivery_attempts": "0"}, "alert_max_delivery_attempts = '0'"),
        (
            {"alert_rules_file": "/nonexistent/rules.yaml"},
            "rules_file '/nonexistent/rules.yaml': cannot be read",
        ),
    ],
)
def test_bad_alerting_options_are_import_errors_naming_them(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, str], shown: str
) -> None:
    errors = _bag(monkeypatch, **options).import_errors  # type: ignore[attr-defined]
    (message,) = errors.values()
    assert shown in message, message


def test_a_bad_rule_file_is_an_import_error_naming_file_rule_field_and_value(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - {id: slow, condition: {type: metric_threshold, metric: m, window: 1h,\n"
        "                                  op: '=>', threshold: 1}}\n"
    )
    (message,) = _bag(monkeypatch, alert_rules_file=str(rules)).import_errors.values()  # type: ignore[attr-defined]
    assert f"{rules}: rule 'slow': condition.op '=>': expected one of" in message


def test_profiling_example_dag_shape_and_determinism() -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    path = str(REPO / "dags" / "etlops_profiling_example.py")
    first, second = (DagBag(dag_folder=path).dags["etlops_profiling_example"] for _ in range(2))
    assert {t.task_id for t in first.tasks} == {"orders_etl"}
    assert first.is_paused_upon_creation is True and type(first.timetable).__name__ == "NullTimetable"
    # the same DAG at every parse (Airflow's dag_version_inflation_check)
    assert DagSerialization.to_dict(first) == DagSerialization.to_dict(second)


@pytest.mark.parametrize(
    ("options", "shown"),
    [
        ({"maintenance_cache_schedule": "at two"}, "maintenance_cache_schedule = 'at two'"),
        ({"maintenance_log_max_files": "0"}, "maintenance_log_max_files = '0'"),
        ({"maintenance_cache_max_age_hours": "a day"}, "maintenance_cache_max_age_hours = 'a day'"),
        ({"maintenance_cache_path": "relative/cache"}, "path 'relative/cache'"),
        ({"maintenance_health_components": "database,teapot"}, "'teapot'"),
    ],
)
def test_bad_maintenance_options_are_import_errors_naming_them(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, str], shown: str
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    for name, value in options.items():
        monkeypatch.setenv(f"AIRFLOW__ETLOPS__{name.upper()}", value)
    errors = DagBag(dag_folder=str(REPO / "dags" / "etlops_maintenance.py")).import_errors
    (message,) = errors.values()
    assert shown in message, message


def test_maintenance_dags_parse_the_same_twice_and_start_paused() -> None:
    from airflow.dag_processing.dagbag import DagBag

    first = DagBag(dag_folder=str(REPO / "dags" / "etlops_maintenance.py"))
    second = DagBag(dag_folder=str(REPO / "dags" / "etlops_maintenance.py"))
    assert first.import_errors == {} and len(first.dags) == 7
    for dag_id, dag in first.dags.items():
        assert dag.is_paused_upon_creation is True and dag.max_active_runs == 1, dag_id
        assert str(dag.timetable) == str(second.dags[dag_id].timetable)
        assert [t.task_id for t in dag.tasks] == [t.task_id for t in second.dags[dag_id].tasks]
