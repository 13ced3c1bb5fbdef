"""The Python side of pgzen's database: configuration, embedded server, migrations.

Exceptions raised by this package derive from one root::

    DatabaseError                 root of every error raised by ``db``
    ├── ConfigurationError        DATABASE_URL or a pgzen setting is malformed
    ├── ConnectionFailed          the configured server cannot be reached
    ├── EmbeddedServerError       the embedded PostgreSQL cannot be started
    └── MigrationError            a migration or procedure file failed to apply

``db`` imports nothing from ``pyapp`` or ``bridge``.
"""

from db.errors import (
    ConfigurationError,
    ConnectionFailed,
    DatabaseError,
    EmbeddedServerError,
    MigrationError,
)

__all__ = [
    "ConfigurationError",
    "ConnectionFailed",
    "DatabaseError",
    "EmbeddedServerError",
    "MigrationError",
]
