"""The provider dict must pass Airflow's schema: a bad one breaks every Airflow process."""

from __future__ import annotations

import importlib
import json
from importlib import metadata
from pathlib import Path

import airflow
import jsonschema
import pytest

from etlops_airflow.get_provider_info import get_provider_info

SCHEMA = Path(airflow.__file__).parent / "provider_info.schema.json"


def test_provider_info_passes_airflow_schema() -> None:
    jsonschema.validate(get_provider_info(), json.loads(SCHEMA.read_text()))


def test_package_name_is_the_distribution_name() -> None:
    info = get_provider_info()
    assert info["package-name"] == "etlops-airflow"
    assert metadata.version(info["package-name"]) == info["versions"][0]


def test_entry_points_are_registered() -> None:
    eps = metadata.entry_points()
    provider = [ep for ep in eps.select(group="apache_airflow_provider") if ep.dist.name == "etlops-airflow"]
    assert [ep.value for ep in provider] == ["etlops_airflow.get_provider_info:get_provider_info"]
    plugin = [ep for ep in eps.select(group="airflow.plugins") if ep.name == "etlops"]
    assert [ep.value for ep in plugin] == ["etlops_airflow.plugins:EtlopsPlugin"]


def test_every_declared_class_and_module_exists() -> None:
    info = get_provider_info()
    modules = [
        m for key in ("operators", "sensors", "hooks") for item in info[key] for m in item["python-modules"]
    ]
    for module in modules:
        importlib.import_module(module)
    dotted = [c["hook-class-name"] for c in info["connection-types"]] + info["notifications"] + info["cli"]
    for path in dotted:
        module, _, name = path.rpartition(".")
        assert callable(getattr(importlib.import_module(module), name)), path


def test_config_options_are_fully_documented() -> None:
    from etlops_airflow.config import OPTIONS

    options = get_provider_info()["config"]["etlops"]["options"]
    assert options == OPTIONS  # every option the code reads is declared, and nothing else
    for name, spec in options.items():
        assert set(spec) >= {"description", "version_added", "type", "example", "default"}, name
        assert isinstance(spec["default"], str), name
        assert len(spec["description"]) > 20, name
    assert options["store_url"]["sensitive"] is True


def test_reading_an_undeclared_option_fails_loudly() -> None:
    from etlops_airflow import config

    with pytest.raises(KeyError):
        config.get("store_ulr")


def test_config_section_does_not_clash_with_airflow_or_other_providers() -> None:
    from airflow.configuration import retrieve_configuration_description

    ours = set(get_provider_info()["config"])
    core = set(retrieve_configuration_description(include_airflow=True, include_providers=False))
    assert {"core", "profiling", "callbacks", "state_store"} <= core  # the check sees Airflow's sections
    assert ours.isdisjoint(core)
    providers = retrieve_configuration_description(include_airflow=False, include_providers=True)
    assert providers["etlops"] == get_provider_info()["config"]["etlops"]  # Airflow loaded ours
