"""What every database benchmark needs: a server, a fresh migrated database.

The server is ``DATABASE_URL``'s when set (its ``postgres`` database is used to create
and drop the benchmark's own), else an embedded PostgreSQL in ``<data dir>/bench``,
apart from the development and test servers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from db.config import DatabaseTarget, data_dir, parse_database_url  # noqa: E402
from db.migrate import migrate  # noqa: E402


def server() -> tuple[DatabaseTarget, Any]:
    """Return the maintenance target and the embedded handle (None when external)."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return parse_database_url(url).with_dbname("postgres"), None
    from db.embedded import EmbeddedServer

    embedded = EmbeddedServer(data_dir() / "bench", dbname="postgres")
    return embedded.start(), embedded


def pgzen_env(target: DatabaseTarget, **extra: str) -> dict[str, str]:
    """Return the environment for a quiet ``pgzen`` subprocess on ``target``."""
    env = {**os.environ, "DATABASE_URL": target.url, **extra}
    env.setdefault("PGZEN_SECRET_KEY", "bench-only-" + "x" * 50)
    env["DJANGO_SETTINGS_MODULE"] = "pyapp.settings"
    env["PGZEN_LOG_LEVEL"] = "WARNING"
    env.pop("PGZEN_EMBEDDED", None)
    return env


def fresh_database(
    maintenance: DatabaseTarget, dbname: str, *, sql_only_fallback: bool = False
) -> DatabaseTarget:
    """Drop and create ``dbname``, then run ``pgzen migrate`` on it.

    With ``sql_only_fallback`` a failing full migrate falls back to the SQL schema
    alone (benchmarks that need no Django table).
    """
    name = sql.Identifier(dbname)
    with psycopg.connect(maintenance.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(name))
        conn.execute(sql.SQL("create database {}").format(name))
    target = maintenance.with_dbname(dbname)
    result = subprocess.run(
        [sys.executable, "-m", "pyapp", "migrate", "--no-input", "-v", "0"],
        env=pgzen_env(target),
        capture_output=True,
        text=True,
    )
    if result.returncode:
        if not sql_only_fallback:
            raise RuntimeError(f"pgzen migrate failed:\n{result.stderr}")
        migrate(target)
    return target
