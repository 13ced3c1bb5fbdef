"""Django settings for the test suite: pgzen's own, on the session's test server."""

from tests.support.postgres import ensure_session_server

ensure_session_server()

from db.config import data_dir  # noqa: E402
from pyapp.settings import *  # noqa: E402,F403

# Plain storage: tests render pages without running collectstatic first.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# WhiteNoise warns about a missing STATIC_ROOT; tests serve from the finders.
STATIC_ROOT = data_dir() / "test" / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
