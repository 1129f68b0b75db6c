"""Alembic environment: runs the packaged migrations on the URL or connection passed in the config."""

from __future__ import annotations

from alembic import context
from robustlit_service import models  # noqa: F401  (registers the tables on SQLModel.metadata)
from sqlalchemy import create_engine
from sqlmodel import SQLModel

target_metadata = SQLModel.metadata


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    """Migrate the connection handed over by :func:`robustlit_service.db.upgrade`, or the configured URL."""
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(config.attributes["url"])
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


if hasattr(context, "config"):  # run by alembic; a plain import (doctest collection) does nothing
    main()
