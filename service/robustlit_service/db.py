"""Database engines, sessions and migrations (SQLite in WAL mode by default, PostgreSQL by URL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def make_engine(url: str, *, immediate: bool = False) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout, foreign keys and (``immediate``) write locks.

    SQLite upgrades a read transaction to a write lock lazily and fails at once if another writer got there
    first; ``immediate=True`` takes the write lock at ``BEGIN``, so writers queue on the busy timeout instead.

    Example:
        >>> engine = make_engine("sqlite://")
        >>> with engine.connect() as connection:
        ...     connection.exec_driver_sql("select 1").scalar()
        1
    """
    if url.startswith("sqlite"):
        pool = {} if url in ("sqlite://", "sqlite:///:memory:") else {"pool_size": 10, "max_overflow": 40}
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **pool)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            dbapi_connection.isolation_level = None  # let SQLAlchemy's BEGIN below manage transactions
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(connection) -> None:  # type: ignore[no-untyped-def]
            connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return create_engine(url, pool_size=10, max_overflow=40, pool_pre_ping=True, pool_recycle=1800)


class Database:
    """A reader and a writer engine over one URL, and sessions from them.

    Example:
        >>> db = Database("sqlite://")
        >>> with db.session() as session:
        ...     session.exec(text("select 2")).scalar()  # doctest: +SKIP
        2
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.writer = make_engine(url, immediate=True)
        self.reader = make_engine(url) if url.startswith("sqlite") else self.writer

    @contextmanager
    def session(self, *, write: bool = True) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        with Session(self.writer if write else self.reader, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with self.reader.connect() as connection:
            connection.execute(text("select 1"))

    def dispose(self) -> None:
        """Close all pooled connections."""
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()


def alembic_config(url: str):  # type: ignore[no-untyped-def]
    """Alembic's config for ``url`` with the packaged migration scripts.

    Example:
        >>> alembic_config("sqlite://").get_main_option("script_location").endswith("migrations")
        True
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision``; on PostgreSQL under an advisory lock (many replicas)."""
    from alembic import command

    config = alembic_config(url)
    if url.startswith("postgresql"):
        engine = create_engine(url)
        with engine.connect() as connection:
            connection.execute(text("select pg_advisory_lock(72631)"))
            try:
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                connection.commit()
            finally:
                connection.execute(text("select pg_advisory_unlock(72631)"))
                connection.commit()
        engine.dispose()
        return
    command.upgrade(config, revision)


def downgrade(url: str, revision: str = "base") -> None:
    """Migrate the database at ``url`` down to ``revision``."""
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at (``None`` before the first migration)."""
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str:
    """The newest revision among the packaged migrations."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head() or ""
