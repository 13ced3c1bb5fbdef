"""The pgzen command as an operator meets it: errors, status, serve, up."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.support.postgres import pgzen_env, run_pgzen


def pgzen(*args, env_overrides=None, drop=(), timeout=60):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "pyapp.settings"}
    for name in drop:
        env.pop(name, None)
    env.update(env_overrides or {})
    return subprocess.run(
        [sys.executable, "-m", "pyapp", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status, response.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://root:pw@db/x", "scheme 'mysql'"),
        ("postgresql://app:pw@db:port/x", "invalid port"),
        ("postgresql://app:pw@127.0.0.1:1/ledger", 'database "ledger" on host'),
    ],
)
def test_bad_database_url_is_one_clear_line_and_a_nonzero_exit(url, expected, tmp_path):
    """A malformed or unreachable DATABASE_URL prints one line, no traceback."""
    result = pgzen(
        "status", env_overrides={"DATABASE_URL": url, "PGZEN_DATA_DIR": str(tmp_path)}
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pgzen: ") and expected in lines[0]
    assert "pw@" not in lines[0] and "Traceback" not in result.stderr
    # DATABASE_URL set: the embedded server is never started instead.
    assert not (tmp_path / "pgdata").exists()


def test_missing_secret_key_with_database_url_is_a_clear_error(pg_target):
    """With DATABASE_URL set, PGZEN_SECRET_KEY is required and its absence named."""
    result = pgzen(
        "status",
        env_overrides={"DATABASE_URL": pg_target.url},
        drop=("PGZEN_SECRET_KEY", "PGZEN_EMBEDDED"),
    )
    assert result.returncode == 2
    assert "PGZEN_SECRET_KEY must be set" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_names_server_and_migrations(pg_target):
    """`pgzen status` shows the server and every applied SQL migration."""
    result = run_pgzen(pg_target, "status")
    assert "Server: PostgreSQL" in result.stdout
    assert "[x] 0001_people" in result.stdout
    assert "0 pending" in result.stdout


def test_migrate_is_idempotent_from_the_command_line(pg_target):
    """A second `pgzen migrate` applies nothing and succeeds."""
    result = run_pgzen(pg_target, "migrate", "--no-input")
    assert "No SQL migrations to apply." in result.stdout
    assert "No migrations to apply." in result.stdout


def test_deploy_check_flags_only_the_proxy_dependent_https_settings(pg_target):
    """check --deploy passes except the HTTPS settings, which PGZEN_HTTPS turns on.

    With HTTPS on, only HSTS preloading (W021) remains, an opt-in commitment.
    """
    secret = {"PGZEN_SECRET_KEY": "k" + "".join(chr(65 + i % 50) for i in range(60))}
    env = {**pgzen_env(pg_target), **secret}
    plain = subprocess.run(
        [sys.executable, "-m", "pyapp", "check", "--deploy"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    flagged = {
        word.strip("():")
        for word in (plain.stdout + plain.stderr).split()
        if word.strip("():").startswith("security.")
    }
    assert flagged == {
        "security.W004",
        "security.W008",
        "security.W012",
        "security.W016",
    }
    https = subprocess.run(
        [sys.executable, "-m", "pyapp", "check", "--deploy"],
        env={**env, "PGZEN_HTTPS": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "security.W021" in https.stderr
    assert https.stderr.count("(security.") == 1, https.stderr
    preload = subprocess.run(
        [sys.executable, "-m", "pyapp", "check", "--deploy", "--fail-level", "WARNING"],
        env={**env, "PGZEN_HTTPS": "1", "PGZEN_HSTS_PRELOAD": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert preload.returncode == 0, preload.stdout + preload.stderr


def test_serve_runs_gunicorn_with_debug_off(pg_target):
    """`pgzen serve` answers on its port, serves static files, stops on SIGTERM."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pyapp", "serve", f"--bind=127.0.0.1:{port}"],
        env={**pgzen_env(pg_target), "PGZEN_DATA_DIR": str(pg_target_dir(pg_target))},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        status, body = wait_for(f"http://127.0.0.1:{port}/healthz")
        assert status == 200 and b'"ok"' in body
        status, _ = wait_for(f"http://127.0.0.1:{port}/static/pgzen/site.css")
        assert status == 200
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/no-such-page", timeout=5)
        assert missing.value.code == 404
        assert b"Traceback" not in missing.value.read(), "DEBUG must be off"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output


def pg_target_dir(target):
    """A per-database scratch data directory (static files, generated keys)."""
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"pgzen-{target.dbname}")
    os.makedirs(path, exist_ok=True)
    return path


def test_up_runs_web_and_worker_until_interrupted(pg_target):
    """`pgzen up` migrates, serves, runs a worker, and stops both on Ctrl-C."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pyapp", "up", f"--bind=127.0.0.1:{port}"],
        env={**pgzen_env(pg_target), "PGZEN_DATA_DIR": pg_target_dir(pg_target)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        status, _ = wait_for(f"http://127.0.0.1:{port}/healthz")
        assert status == 200
        time.sleep(1)
        assert process.poll() is None, "up must keep running"
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "pgzen stopped." in output


def test_embedded_default_without_database_url(tmp_path):
    """With no DATABASE_URL, pgzen starts the embedded server in PGZEN_DATA_DIR."""
    result = pgzen(
        "status",
        env_overrides={"PGZEN_DATA_DIR": str(tmp_path)},
        drop=("DATABASE_URL", "PGZEN_SECRET_KEY", "PGZEN_EMBEDDED"),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "(embedded)" in result.stdout
    assert str(tmp_path / "pgdata") in result.stdout
    assert not (tmp_path / "pgdata" / "postmaster.pid").exists(), "stopped on exit"


@pytest.mark.parametrize("command", ["seed", "backfill", "worker"])
def test_commands_needing_the_schema_refuse_an_unmigrated_database(empty_db, command):
    """seed, backfill and worker name the pending migrations instead of crashing."""
    result = run_pgzen(empty_db, command, check=False)
    assert result.returncode == 1
    assert "unapplied migration(s)" in result.stderr
    assert "run `pgzen migrate` first" in result.stderr
    assert "Traceback" not in result.stderr
