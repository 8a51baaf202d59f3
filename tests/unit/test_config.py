from __future__ import annotations

import os

import pytest

from etlops_airflow import config
from etlops_airflow.exceptions import ConfigError


def test_default_store_is_sqlite_in_airflow_home() -> None:
    settings = config.store_settings()
    assert settings.url == f"sqlite:///{os.path.join(os.environ['AIRFLOW_HOME'], 'etlops.db')}"
    assert settings.connect_timeout == 5 and settings.sqlite_busy_timeout == 30


def test_relative_airflow_home_gives_an_absolute_store_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIRFLOW_HOME", "airflow-home")
    assert config.store_settings().url == f"sqlite:///{os.path.join(tmp_path, 'airflow-home', 'etlops.db')}"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_CONNECT_TIMEOUT", "9")
    settings = config.store_settings()
    assert (settings.url, settings.connect_timeout, settings.source) == (
        "postgresql://u@h/db",
        9,
        "store_url",
    )


def test_connection_id_wins_over_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", "sqlite:////nowhere.db")
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_CONN_ID", "etlops_pg")
    monkeypatch.setenv(
        "AIRFLOW_CONN_ETLOPS_PG", "postgresql://etl:s3cret@db.example:5433/ops?sslmode=require"
    )
    settings = config.store_settings()
    assert settings.url == "postgresql+psycopg://etl:s3cret@db.example:5433/ops?sslmode=require"
    assert "etlops_pg" in settings.source


def test_sqlite_and_etlops_store_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_CONN_ID", "lite")
    monkeypatch.setenv("AIRFLOW_CONN_LITE", '{"conn_type": "sqlite", "host": "/data/etlops.db"}')
    assert config.store_settings().url == "sqlite:////data/etlops.db"
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_CONN_ID", "custom")
    monkeypatch.setenv(
        "AIRFLOW_CONN_CUSTOM",
        '{"conn_type": "etlops_store", "extra": {"sqlalchemy_url": "postgresql+psycopg://a@b/c"}}',
    )
    assert config.store_settings().url == "postgresql+psycopg://a@b/c"


@pytest.mark.parametrize(
    ("env", "option", "shown"),
    [
        ({"AIRFLOW__ETLOPS__STORE_CONNECT_TIMEOUT": "soon"}, "store_connect_timeout", "'soon'"),
        ({"AIRFLOW__ETLOPS__STORE_CONNECT_TIMEOUT": "0"}, "store_connect_timeout", "at least 1"),
        ({"AIRFLOW__ETLOPS__RECORD_TASK_OUTCOMES": "perhaps"}, "record_task_outcomes", "'perhaps'"),
        ({"AIRFLOW__ETLOPS__STORE_CONN_ID": "missing_conn"}, "store_conn_id", "'missing_conn'"),
    ],
)
def test_bad_values_name_the_option(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], option: str, shown: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as info:
        config.store_settings()
        config.get_bool("record_task_outcomes")
    assert option in str(info.value) and shown in str(info.value)


def test_connection_of_the_wrong_type_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_CONN_ID", "web")
    monkeypatch.setenv("AIRFLOW_CONN_WEB", "http://example.com")
    with pytest.raises(ConfigError, match="'web'.*connection type 'http'"):
        config.store_settings()
