from __future__ import annotations

import os

import pytest

from etlops_airflow import config, runtime
from etlops_airflow.exceptions import ConfigError


def test_default_store_is_sqlite_in_airflow_home() -> None:
    settings = runtime.store_settings()
    assert settings.url == f"sqlite:///{os.path.join(os.environ['AIRFLOW_HOME'], 'etlops.db')}"
    assert settings.connect_timeout == 5 and settings.sqlite_busy_timeout == 30


def test_relative_airflow_home_gives_an_absolute_store_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIRFLOW_HOME", "airflow-home")
    assert runtime.store_settings().url == f"sqlite:///{os.path.join(tmp_path, 'airflow-home', 'etlops.db')}"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_CONNECT_TIMEOUT", "9")
    settings = runtime.store_settings()
    assert settings.url == "postgresql://u@h/db"
    assert (settings.connect_timeout, settings.source) == (9, "store_url")


def test_settings_never_show_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", "postgresql://etl:s3cr3t-pw@db:5432/ops")
    settings = runtime.store_settings()
    assert "s3cr3t-pw" in settings.url  # the engine needs it
    for shown in (repr(settings), str(settings), settings.display_url):
        assert "s3cr3t-pw" not in shown and "etl:***@db" in shown


def test_connection_id_wins_over_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", "sqlite:////nowhere.db")
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_CONN_ID", "etlops_pg")
    monkeypatch.setenv(
        "AIRFLOW_CONN_ETLOPS_PG", "postgresql://etl:s3cret@db.example:5433/ops?sslmode=require"
    )
    settings = runtime.store_settings()
    assert settings.url == "postgresql+psycopg://etl:s3cret@db.example:5433/ops?sslmode=require"
    assert "etlops_pg" in settings.source


def test_settings_and_connection_are_read_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from etlops_airflow.hooks import store as hook_module

    fetched: list[str] = []
    real = hook_module.url_from_connection_id

    def counting(conn_id: str) -> str:
        fetched.append(conn_id)
        return real(conn_id)

    monkeypatch.setattr(hook_module, "url_from_connection_id", counting)
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_CONN_ID", "lite")
    monkeypatch.setenv("AIRFLOW_CONN_LITE", '{"conn_type": "sqlite", "host": "/tmp/etlops-once.db"}')
    first = runtime.get_store()
    assert runtime.get_store() is first and runtime.get_store() is first
    assert fetched == ["lite"]
    runtime.reset()
    assert runtime.get_store() is not first
    assert fetched == ["lite", "lite"]


def test_sqlite_and_etlops_store_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_CONN_ID", "lite")
    monkeypatch.setenv("AIRFLOW_CONN_LITE", '{"conn_type": "sqlite", "host": "/data/etlops.db"}')
    assert runtime.store_settings().url == "sqlite:////data/etlops.db"
    runtime.reset()
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_CONN_ID", "custom")
    monkeypatch.setenv(
        "AIRFLOW_CONN_CUSTOM",
        '{"conn_type": "etlops_store", "extra": {"sqlalchemy_url": "postgresql+psycopg://a:pw1234567@b/c"}}',
    )
    assert runtime.store_settings().url == "postgresql+psycopg://a:pw1234567@b/c"


@pytest.mark.parametrize(
    ("env", "option", "shown"),
    [
        ({"AIRFLOW__ETLOPS__STORE_CONNECT_TIMEOUT": "soon"}, "store_connect_timeout", "'soon'"),
        ({"AIRFLOW__ETLOPS__STORE_CONNECT_TIMEOUT": "0"}, "store_connect_timeout", "at least 1"),
        ({"AIRFLOW__ETLOPS__SQLITE_BUSY_TIMEOUT": "-1"}, "sqlite_busy_timeout", "at least 0"),
        ({"AIRFLOW__ETLOPS__STORE_CONN_ID": "missing_conn"}, "store_conn_id", "'missing_conn'"),
    ],
)
def test_bad_store_settings_name_the_option(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], option: str, shown: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as info:
        runtime.store_settings()
    assert option in str(info.value) and shown in str(info.value)


def test_bad_boolean_names_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__RECORD_TASK_OUTCOMES", "perhaps")
    with pytest.raises(ConfigError, match=r"record_task_outcomes = 'perhaps': expected a boolean"):
        config.get_bool("record_task_outcomes")


def test_connection_of_the_wrong_type_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_CONN_ID", "web")
    monkeypatch.setenv("AIRFLOW_CONN_WEB", "http://example.com")
    with pytest.raises(ConfigError, match="'web'.*connection type 'http'"):
        runtime.store_settings()
