"""The exception tree of the ``db`` package (drawn in ``db/__init__.py``)."""


class DatabaseError(Exception):
    """Root of every error raised by the ``db`` package."""


class ConfigurationError(DatabaseError):
    """DATABASE_URL or another pgzen setting is malformed."""


class ConnectionFailed(DatabaseError):
    """The configured PostgreSQL server cannot be reached."""


class EmbeddedServerError(DatabaseError):
    """The embedded PostgreSQL server cannot be initialised or started."""


class MigrationError(DatabaseError):
    """A migration or a procedure file failed; its transaction was rolled back."""
