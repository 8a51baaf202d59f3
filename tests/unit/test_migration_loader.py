"""Migration files are checked when the folder is loaded (so at DAG parse time): every problem
is an error naming the file, the step and the field, never a surprise while a run is halfway."""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest

from etlops_airflow.core.migrations.loader import load_migrations
from etlops_airflow.core.migrations.model import ConfigUpdate, CustomScript, SchemaChange
from etlops_airflow.exceptions import MigrationFileError, MigrationFolderError, ValidationError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "migrations"
EXAMPLE = FIXTURES / "orders" / "1.1.0.yaml"

HEAD = """\
pipeline: orders
from_version: 1.0.0
to_version: 1.1.0
target: {conn_id: warehouse}
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A migrations folder holding the example migration and its script."""
    root = tmp_path / "migrations"
    shutil.copytree(FIXTURES, root)
    return root


def _write(root: Path, body: str, name: str = "orders/1.1.0.yaml", head: str = HEAD) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + textwrap.dedent(body))
    return path


def _error(root: Path) -> MigrationFileError:
    with pytest.raises(MigrationFileError) as caught:
        load_migrations(root)
    return caught.value


def _assert_names(error: MigrationFileError, source: str, item: str | None, field: str) -> None:
    """What a user reads: the file, the step and the field, in the message itself."""
    assert (error.source, error.item, error.field) == (source, item, field), str(error)
    message = str(error)
    assert message.startswith(source), message
    if item is not None:
        assert item in message, message
    assert field in message, message


# -- the example of the issue ----------------------------------------------------------------------


def test_the_example_of_the_issue_loads_as_written() -> None:
    loaded = load_migrations(FIXTURES, pipeline="orders")
    (migration,) = loaded.migrations
    assert migration.key == "1.0.0->1.1.0"
    assert migration.conn_id == "warehouse"
    assert [s.kind for s in migration.steps] == [
        "config_update",
        "schema_change",
        "schema_change",
        "schema_change",
        "data_transformation",
        "custom_script",
    ]
    assert migration.steps[0] == ConfigUpdate("transform.batch_size", 500, 1000)
    add = migration.steps[2]
    assert isinstance(add, SchemaChange)
    assert (add.op, add.column, add.type, add.default) == ("add_column", "currency", "varchar(3)", "EUR")
    script = migration.steps[5]
    assert isinstance(script, CustomScript)
    assert script.script == FIXTURES.resolve() / "scripts" / "notify_downstream.sh"
    assert script.timeout_s == 300.0
    assert migration.rollback_written
    assert [v.kind for v in migration.validations] == [
        "record_count",
        "data_integrity",
        "schema_compliance",
        "performance_benchmark",
        "custom_validation",
    ]
    assert migration.tables == ("orders",)
    assert len(migration.checksum) == 64


def test_checksum_ignores_comments_and_layout_but_not_content(folder: Path) -> None:
    path = folder / "orders" / "1.1.0.yaml"
    original = load_migrations(folder).migrations[0].checksum
    path.write_text("# a new comment\n\n" + path.read_text().replace("# an Airflow", "#  an Airflow"))
    assert load_migrations(folder).migrations[0].checksum == original
    path.write_text(path.read_text().replace("backfill it", "backfill it."))
    assert load_migrations(folder).migrations[0].checksum != original


# -- unknown step, missing field, bad type -----------------------------------------------------------


def test_unknown_step_names_file_step_and_kind(folder: Path) -> None:
    _write(
        folder,
        """\
        steps:
          - config_update: {path: a.b, old: 1, new: 2}
          - make_coffee: {table: orders}
        """,
    )
    error = _error(folder)
    _assert_names(error, "orders/1.1.0.yaml", "step 2", "step")
    assert "make_coffee" in str(error)
    assert "schema_change" in str(error)  # says what would be accepted


def test_unknown_schema_change_operation(folder: Path) -> None:
    _write(folder, "steps:\n  - schema_change: {table: orders, truncate: {}}\n")
    error = _error(folder)
    _assert_names(error, "orders/1.1.0.yaml", "step 1 (schema_change)", "schema_change")
    assert "add_column" in str(error)


@pytest.mark.parametrize(
    ("step", "field"),
    [
        ("schema_change: {table: orders, rename_column: {from: cust}}", "schema_change.rename_column.to"),
        ("schema_change: {rename_column: {from: cust, to: customer}}", "schema_change.table"),
        ("schema_change: {table: orders, add_column: {type: text}}", "schema_change.add_column.name"),
        ("schema_change: {table: orders, add_index: {name: ix}}", "schema_change.add_index.columns"),
        ("config_update: {path: a.b, new: 2}", "config_update.old"),
        ("data_transformation: {params: {table: orders}}", "data_transformation.transformer"),
        ("custom_validation_typo: {}", "step"),
    ],
)
def test_missing_field_names_the_field(folder: Path, step: str, field: str) -> None:
    _write(folder, f"steps:\n  - config_update: {{path: x.y, old: 1, new: 2}}\n  - {step}\n")
    error = _error(folder)
    assert error.source == "orders/1.1.0.yaml"
    assert error.item is not None and error.item.startswith("step 2")
    assert error.field == field, str(error)
    assert field in str(error)


def test_missing_top_level_field(folder: Path) -> None:
    _write(folder, "steps: [{config_update: {path: a, old: 1, new: 2}}]\n", head="pipeline: orders\n")
    error = _error(folder)
    _assert_names(error, "orders/1.1.0.yaml", None, "from_version")


@pytest.mark.parametrize("bad", ["money", "varchar", "text; DROP TABLE orders", "numeric(2,5)", "int[]"])
def test_type_outside_the_allowlist(folder: Path, bad: str) -> None:
    _write(folder, f'steps:\n  - schema_change: {{table: orders, add_column: {{name: c, type: "{bad}"}}}}\n')
    error = _error(folder)
    _assert_names(error, "orders/1.1.0.yaml", "step 1 (schema_change)", "schema_change.add_column.type")
    assert "allowed" in str(error)


def test_bad_type_in_a_validation(folder: Path) -> None:
    _write(
        folder,
        """\
        steps: [{config_update: {path: a, old: 1, new: 2}}]
        validations:
          - record_count: {table: orders}
          - schema_compliance: {table: orders, columns: {id: integer, blob: bytea}}
        """,
    )
    error = _error(folder)
    _assert_names(
        error, "orders/1.1.0.yaml", "validation 2 (schema_compliance)", "schema_compliance.columns.blob"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("batch_size", "lots"), ("batch_size", 0), ("batch_size", True), ("params", "[1, 2]")],
)
def test_bad_transformation_fields(folder: Path, field: str, value: object) -> None:
    body = {"transformer": "fill_currency", "params": "{table: orders}", field: value}
    inline = ", ".join(f"{k}: {v if not isinstance(v, bool) else str(v).lower()}" for k, v in body.items())
    _write(folder, f"steps:\n  - data_transformation: {{{inline}}}\n")
    error = _error(folder)
    _assert_names(error, "orders/1.1.0.yaml", "step 1 (data_transformation)", f"data_transformation.{field}")


def test_unknown_field_in_a_step(folder: Path) -> None:
    _write(folder, "steps:\n  - config_update: {path: a.b, old: 1, new: 2, when: always}\n")
    error = _error(folder)
    _assert_names(error, "orders/1.1.0.yaml", "step 1 (config_update)", "config_update.when")


# -- versions --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("from_version", "1.0"),
        ("from_version", "v1.0.0"),
        ("from_version", "1.0.0.0"),
        ("to_version", "one"),
        ("to_version", "1.1"),  # YAML reads it as a number
        ("to_version", "'1.1'"),  # a quoted string, still not semver
        ("to_version", "01.1.0"),
    ],
)
def test_bad_semver_names_file_and_field(folder: Path, field: str, value: str) -> None:
    head = HEAD.replace(f"{field}: {'1.0.0' if field == 'from_version' else '1.1.0'}", f"{field}: {value}")
    assert head != HEAD
    _write(folder, "steps: [{config_update: {path: a, old: 1, new: 2}}]\n", head=head)
    error = _error(folder)
    _assert_names(error, "orders/1.1.0.yaml", None, field)
    assert "semver" in str(error)


def test_to_version_must_be_above_from_version(folder: Path) -> None:
    head = HEAD.replace("to_version: 1.1.0", "to_version: 0.9.0")
    _write(folder, "steps: [{config_update: {path: a, old: 1, new: 2}}]\n", head=head)
    _assert_names(_error(folder), "orders/1.1.0.yaml", None, "to_version")


# -- rollbacks -------------------------------------------------------------------------------------


def test_drop_column_without_a_rollback_is_refused(folder: Path) -> None:
    _write(
        folder,
        """\
        steps:
          - config_update: {path: a.b, old: 1, new: 2}
          - schema_change: {table: orders, drop_column: {name: amount}}
        """,
    )
    error = _error(folder)
    _assert_names(error, "orders/1.1.0.yaml", "step 2 (schema_change)", "rollback")
    assert "drop_column" in str(error) and "no automatic inverse" in str(error)


def test_drop_column_whose_written_rollback_does_not_recreate_it(folder: Path) -> None:
    _write(
        folder,
        """\
        steps:
          - schema_change: {table: orders, add_column: {name: note, type: text}}
          - schema_change: {table: orders, drop_column: {name: amount}}
        rollback:
          - schema_change: {table: orders, add_column: {name: amounts, type: numeric}}
          - schema_change: {table: orders, drop_column: {name: note}}
        """,
    )
    error = _error(folder)
    _assert_names(error, "orders/1.1.0.yaml", "step 2 (schema_change)", "rollback")
    assert "add_column amount on orders" in str(error)


def test_drop_column_with_a_rollback_that_recreates_it_loads(folder: Path) -> None:
    _write(
        folder,
        """\
        steps:
          - schema_change: {table: orders, drop_column: {name: amount}}
        rollback:
          - schema_change: {table: orders, add_column: {name: amount, type: numeric}}
        """,
    )
    (migration,) = load_migrations(folder).migrations
    assert [s.op for s in migration.rollback if isinstance(s, SchemaChange)] == ["add_column"]


def test_written_rollback_must_undo_every_forward_change(folder: Path) -> None:
    _write(
        folder,
        """\
        steps:
          - config_update: {path: a.b, old: 1, new: 2}
          - schema_change: {table: orders, rename_column: {from: cust, to: customer}}
        rollback:
          - config_update: {path: a.b, old: 2, new: 1}
        """,
    )
    error = _error(folder)
    _assert_names(error, "orders/1.1.0.yaml", "step 2 (schema_change)", "rollback")
    assert "rename column customer to cust" in str(error)


def test_automatic_rollback_is_the_inverse_in_reverse_order(folder: Path) -> None:
    _write(
        folder,
        """\
        steps:
          - config_update: {path: a.b, old: 1, new: 2}
          - schema_change: {table: orders, rename_column: {from: cust, to: customer}}
          - schema_change: {table: orders, add_index: {name: ix, columns: [customer]}}
        """,
    )
    (migration,) = load_migrations(folder).migrations
    assert not migration.rollback_written
    assert migration.rollback == (
        SchemaChange("orders", "drop_index", index="ix"),
        SchemaChange("orders", "rename_column", column="customer", new_name="cust"),
        ConfigUpdate("a.b", 2, 1),
    )


# -- custom scripts stay in the folder -------------------------------------------------------------


@pytest.mark.parametrize(
    "program",
    ["../outside.sh", "scripts/../../outside.sh", "/bin/sh", "scripts/link_out.sh"],
)
def test_custom_script_leaving_the_folder_is_refused(folder: Path, program: str) -> None:
    outside = folder.parent / "outside.sh"
    outside.write_text("#!/bin/sh\necho escaped\n")
    outside.chmod(0o755)
    os.symlink(outside, folder / "scripts" / "link_out.sh")
    _write(folder, f'steps:\n  - custom_script: {{argv: ["{program}", "x"]}}\n')
    error = _error(folder)
    _assert_names(error, "orders/1.1.0.yaml", "step 1 (custom_script)", "custom_script.argv")
    assert "relative to the migrations folder" in str(error) or "leaves the migrations folder" in str(error)


def test_custom_script_missing_or_not_executable(folder: Path) -> None:
    _write(folder, 'steps:\n  - custom_script: {argv: ["scripts/nope.sh"]}\n')
    _assert_names(_error(folder), "orders/1.1.0.yaml", "step 1 (custom_script)", "custom_script.argv")
    plain = folder / "scripts" / "plain.sh"
    plain.write_text("#!/bin/sh\n")
    plain.chmod(0o644)
    _write(folder, 'steps:\n  - custom_script: {argv: ["scripts/plain.sh"]}\n')
    error = _error(folder)
    assert error.field == "custom_script.argv" and "executable" in str(error)


def test_custom_script_bad_timeout(folder: Path) -> None:
    _write(folder, 'steps:\n  - custom_script: {argv: ["scripts/notify_downstream.sh"], timeout: soon}\n')
    _assert_names(_error(folder), "orders/1.1.0.yaml", "step 1 (custom_script)", "custom_script.timeout")


def test_custom_script_argv_must_be_a_list(folder: Path) -> None:
    _write(folder, 'steps:\n  - custom_script: {argv: "scripts/notify_downstream.sh; rm -rf /"}\n')
    _assert_names(_error(folder), "orders/1.1.0.yaml", "step 1 (custom_script)", "custom_script.argv")


# -- the folder ------------------------------------------------------------------------------------


def test_every_bad_file_of_the_folder_is_reported_at_once(folder: Path) -> None:
    _write(
        folder, "steps:\n  - make_coffee: {}\n", name="orders/1.2.0.yaml", head=HEAD.replace("1.1.0", "1.2.0")
    )
    _write(folder, "steps: []\n", name="billing/2.0.0.yaml", head=HEAD.replace("orders", "billing"))
    with pytest.raises(MigrationFolderError) as caught:
        load_migrations(folder)
    problems = sorted((e.source, e.field) for e in caught.value.errors)
    assert problems == [("billing/2.0.0.yaml", "steps"), ("orders/1.2.0.yaml", "step")]
    assert "billing/2.0.0.yaml" in str(caught.value) and "orders/1.2.0.yaml" in str(caught.value)


def test_two_files_defining_the_same_migration(folder: Path) -> None:
    _write(folder, "steps: [{config_update: {path: a, old: 1, new: 2}}]\n", name="orders/copy.yaml")
    error = _error(folder)
    assert error.field == "to_version"
    assert "orders/1.1.0.yaml" in str(error) and "orders/copy.yaml" in str(error)


def test_invalid_yaml_names_the_line(folder: Path) -> None:
    (folder / "orders" / "1.1.0.yaml").write_text(HEAD + "steps:\n  - config_update: {path: a, old: 1\n")
    error = _error(folder)
    assert error.source == "orders/1.1.0.yaml" and "line" in str(error)


def test_unknown_pipeline_is_a_clear_error(folder: Path) -> None:
    with pytest.raises(ValidationError, match="billing"):
        load_migrations(folder, pipeline="billing")
