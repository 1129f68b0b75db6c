"""Alembic migrations: upgrade, downgrade, upgrade again, and the schema matches the models (SQLite, PostgreSQL)."""

from __future__ import annotations

import sqlite3

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from robustlit_service import models  # noqa: F401
from robustlit_service.db import Database, current_revision, downgrade, head_revision, upgrade
from robustlit_service.settings import normalize_database_url
from sqlalchemy import create_engine, inspect
from sqlmodel import SQLModel

TABLES = {"users", "api_keys", "refresh_tokens", "projects", "memberships", "datasets", "models", "recipes",
          "experiment_runs", "idempotency_keys", "metrics", "artifacts", "webhooks", "webhook_deliveries",
          "audit_log"}


def _roundtrip(url: str) -> None:
    upgrade(url)
    engine = create_engine(url)
    assert set(inspect(engine).get_table_names()) >= TABLES
    assert current_revision(url) == head_revision()
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert diff == [], diff
    downgrade(url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    assert current_revision(url) is None
    upgrade(url)
    assert set(inspect(engine).get_table_names()) >= TABLES
    engine.dispose()


def test_sqlite_upgrade_downgrade_upgrade(tmp_path):
    _roundtrip(f"sqlite:///{tmp_path / 'db.sqlite'}")


def test_postgres_upgrade_downgrade_upgrade(fresh_postgres):
    _roundtrip(normalize_database_url(fresh_postgres))


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path):
    path = tmp_path / "db.sqlite"
    upgrade(f"sqlite:///{path}")
    db = Database(f"sqlite:///{path}")
    with db.writer.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    db.dispose()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_sqlite_enforces_foreign_keys(tmp_path):
    from sqlalchemy.exc import IntegrityError

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    db = Database(url)
    with pytest.raises(IntegrityError), db.session() as session:
        session.add(models.Membership(project_id=12345, user_id=67890, role="viewer"))
    db.dispose()
