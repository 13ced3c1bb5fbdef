"""The embedded default server: start, reuse, recovery after a crash, stop."""

import json
import os
import subprocess
import sys
import textwrap

import psycopg
import pytest

from db.embedded import EmbeddedServer, recover_stale_state, stop_server


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A data directory of its own (initialised once for the module)."""
    path = tmp_path_factory.mktemp("embedded")
    yield path
    stop_server(path)


def postmaster_pid(base):
    pidfile = base / "pgdata" / "postmaster.pid"
    return int(pidfile.read_text().splitlines()[0]) if pidfile.exists() else None


def test_start_creates_the_database_and_stop_releases_the_server(base):
    """A fresh data directory gets a server and the pgzen database; stop ends it."""
    server = EmbeddedServer(base)
    target = server.start()
    with psycopg.connect(target.conninfo()) as conn:
        assert conn.execute("select current_database()").fetchone() == ("pgzen",)
        version = conn.execute("show server_version_num").fetchone()[0]
    assert int(version) >= 180000
    assert target.embedded
    server.stop()
    assert postmaster_pid(base) is None


def test_a_live_server_is_reused_by_another_process(base):
    """A second process finds the running server and leaves it running on exit."""
    server = EmbeddedServer(base)
    server.start()
    pid = postmaster_pid(base)
    child = textwrap.dedent(
        f"""
        from pathlib import Path
        from db.embedded import EmbeddedServer
        EmbeddedServer(Path({str(base)!r})).start()
        """
    )
    subprocess.run([sys.executable, "-c", child], check=True, timeout=60)
    assert postmaster_pid(base) == pid, "the child must reuse, not restart"
    server.stop()
    assert postmaster_pid(base) is None


def test_stale_pid_file_from_a_crash_is_recovered(base):
    """A postmaster.pid naming a process that is not our server is removed."""
    crashed = EmbeddedServer(base)
    crashed.start()
    stop_server(base)  # the server is gone, its handle and pid file stay behind
    pidfile = base / "pgdata" / "postmaster.pid"
    # This test's own pid: alive, but not a postgres serving this directory.
    pidfile.write_text(f"{os.getpid()}\n{base / 'pgdata'}\n0\n5432\n\n\n\nready\n")
    os.chmod(pidfile, 0o600)

    server = EmbeddedServer(base)
    target = server.start()
    with psycopg.connect(target.conninfo()) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    assert postmaster_pid(base) != os.getpid()
    server.stop()
    crashed.stop()
    assert postmaster_pid(base) is None


def test_dead_handles_do_not_keep_the_server_alive(base):
    """Handles of killed processes are forgotten, so the last live one stops it."""
    pgdata = base / "pgdata"
    (pgdata / ".handle_pids.json").write_text(json.dumps([2**22 + 12345]))
    removed = recover_stale_state(pgdata)
    assert removed == ["1 dead handle(s)"]

    server = EmbeddedServer(base)
    server.start()
    (pgdata / ".handle_pids.json").write_text(json.dumps([2**22 + 12345, os.getpid()]))
    server.stop()
    assert postmaster_pid(base) is None
