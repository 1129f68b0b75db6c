"""Service test fixtures: servers per test or module, a fresh PostgreSQL database, Redis (skipped when absent)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.service.servicekit import PG_ADMIN, REDIS, ServiceProcess, bootstrap


@pytest.fixture
def service_factory(tmp_path):
    """Start servers (``factory(env=…, home=…)``); all are stopped after the test."""
    started: list[ServiceProcess] = []

    def factory(env: dict[str, str] | None = None, home: Path | None = None, port: int | None = None):
        server = ServiceProcess(home or tmp_path / "home", env, port).start()
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def module_server(tmp_path_factory):
    """One fake-job server shared by a test module."""
    server = ServiceProcess(tmp_path_factory.mktemp("svc") / "home").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def admin(module_server):
    return bootstrap(module_server.url)


@pytest.fixture(scope="session")
def postgres_url():
    """A fresh PostgreSQL database for this test session, dropped afterwards; skips without a server."""
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        pytest.skip(f"PostgreSQL is unreachable at {PG_ADMIN} ({error}); start it or set ROBUSTLIT_TEST_POSTGRES")
    name = f"robustlit_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def fresh_postgres(postgres_url):
    """A fresh database per test (created next to the session one)."""
    import psycopg

    name = f"robustlit_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_url():
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(REDIS, socket_timeout=3).ping()
    except redis.RedisError as error:
        pytest.skip(f"Redis is unreachable at {REDIS} ({error}); start it or set ROBUSTLIT_TEST_REDIS")
    return REDIS
