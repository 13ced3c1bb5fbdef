"""Where the database is: DATABASE_URL, or the embedded default.

``DATABASE_URL`` (a libpq URL or keyword/value string) configures every component.
When it is unset, an embedded PostgreSQL is started in the project's data directory
(``PGZEN_DATA_DIR``, default ``.pgzen/`` at the project root). The embedded server is
never used when ``DATABASE_URL`` is set, even if that server is unreachable.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from db.errors import ConfigurationError, ConnectionFailed

ENV_DATABASE_URL = "DATABASE_URL"
ENV_DATA_DIR = "PGZEN_DATA_DIR"
EMBEDDED_DBNAME = "pgzen"

_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def project_root() -> Path:
    """Return the checkout that holds ``migrations/`` and ``procedures/``."""
    return _PACKAGE_ROOT


def data_dir() -> Path:
    """Return the per-project data directory (embedded server, generated secrets)."""
    configured = os.environ.get(ENV_DATA_DIR, "").strip()
    path = Path(configured) if configured else project_root() / ".pgzen"
    return path.expanduser().resolve()


def persistent_secret(name: str, nbytes: int = 48) -> str:
    """Return a random secret kept in the data directory, generated on first use.

    The file is created with mode 0600 and never overwritten, so every process of
    this checkout reads the same value.
    """
    path = data_dir() / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process won the race; read what it wrote
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(nbytes))
    return path.read_text().strip()


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``."""
    if "://" in url:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = quote(parts.username or "", safe="")
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", url)


@dataclass(frozen=True)
class DatabaseTarget:
    """A parsed connection target: what to connect to, and where it came from."""

    url: str
    params: dict[str, Any]
    embedded: bool = False

    @property
    def dbname(self) -> str:
        return str(self.params.get("dbname") or self.params.get("user") or "")

    @property
    def host(self) -> str:
        return str(self.params.get("host") or "localhost")

    @property
    def port(self) -> str:
        return str(self.params.get("port") or "5432")

    def describe(self) -> str:
        """Name the database and host, password masked, for messages."""
        where = "embedded server at" if self.embedded else "host"
        return (
            f'database "{self.dbname}" on {where} "{self.host}" port {self.port} '
            f"({mask_url(self.url)})"
        )

    def conninfo(self, **overrides: Any) -> str:
        """Return a libpq keyword/value string, with ``overrides`` applied."""
        return make_conninfo("", **{**self.params, **overrides})

    def with_dbname(self, dbname: str) -> DatabaseTarget:
        """Return the same server with another database."""
        params = {**self.params, "dbname": dbname}
        return DatabaseTarget(
            url=make_conninfo("", **params), params=params, embedded=self.embedded
        )


def parse_database_url(url: str, *, embedded: bool = False) -> DatabaseTarget:
    """Parse a libpq URL or keyword/value string, or raise ``ConfigurationError``."""
    text = url.strip()
    if not text:
        raise ConfigurationError("DATABASE_URL is empty")
    if "://" in text and not text.startswith(("postgres://", "postgresql://")):
        scheme = text.split("://", 1)[0]
        raise ConfigurationError(
            f"DATABASE_URL has scheme {scheme!r}, expected 'postgresql://' "
            f"({mask_url(text)})"
        )
    try:
        params = conninfo_to_dict(text)
    except psycopg.ProgrammingError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid"
        raise ConfigurationError(
            f"DATABASE_URL is malformed ({mask_url(text)}): {reason}"
        ) from None
    port = str(params.get("port") or "5432")
    if not all(part.isdigit() and 0 < int(part) < 65536 for part in port.split(",")):
        raise ConfigurationError(
            f"DATABASE_URL has an invalid port {port!r} ({mask_url(text)})"
        )
    return DatabaseTarget(url=text, params=params, embedded=embedded)


def configured_target() -> DatabaseTarget | None:
    """Return the target DATABASE_URL names, or None when it is unset."""
    url = os.environ.get(ENV_DATABASE_URL)
    if url is None:
        return None
    return parse_database_url(url)


def check_connection(target: DatabaseTarget, *, timeout: int = 5) -> str:
    """Connect once and return the server version, or raise ``ConnectionFailed``."""
    try:
        with psycopg.connect(target.conninfo(connect_timeout=timeout)) as conn:
            version = conn.execute("show server_version").fetchone()
    except psycopg.OperationalError as exc:
        reason = _first_line(str(exc))
        raise ConnectionFailed(
            f"cannot connect to {target.describe()}: {reason}"
        ) from None
    return str(version[0]) if version else "unknown"


def django_database(target: DatabaseTarget) -> dict[str, Any]:
    """Return a Django ``DATABASES`` entry for ``target``."""
    params = dict(target.params)
    entry: dict[str, Any] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": params.pop("dbname", None) or params.get("user", ""),
        "USER": params.pop("user", ""),
        "PASSWORD": params.pop("password", ""),
        "HOST": params.pop("host", ""),
        "PORT": str(params.pop("port", "")),
        "CONN_MAX_AGE": 0,
        "OPTIONS": params,
    }
    return entry


def _first_line(message: str) -> str:
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if not lines:
        return "unknown error"
    return lines[0].removeprefix("connection failed: ")
