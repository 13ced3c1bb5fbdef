"""``pgzen worker`` keeps each pool thread's connection from job to job."""

import pytest
from django.db import connections

from pyapp.core.management.commands import worker


@pytest.fixture
def restore_settings():
    saved = {alias: dict(connections.settings[alias]) for alias in connections}
    yield
    for alias, entry in saved.items():
        connections.settings[alias].clear()
        connections.settings[alias].update(entry)


def test_the_worker_keeps_connections_with_health_checks(monkeypatch, restore_settings):
    monkeypatch.delenv("PGZEN_WORKER_CONN_MAX_AGE", raising=False)
    assert worker.keep_connections() == worker.DEFAULT_WORKER_CONN_MAX_AGE
    entry = connections.settings["default"]
    assert entry["CONN_MAX_AGE"] == worker.DEFAULT_WORKER_CONN_MAX_AGE
    assert entry["CONN_HEALTH_CHECKS"] is True

    monkeypatch.setenv("PGZEN_WORKER_CONN_MAX_AGE", "0")
    assert worker.keep_connections() == 0
    assert connections.settings["default"]["CONN_MAX_AGE"] == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [("soon", "whole number of seconds"), ("1.5", "whole number"), ("-3", "negative")],
)
def test_a_bad_connection_age_is_a_clear_error(
    monkeypatch, restore_settings, value, message
):
    monkeypatch.setenv("PGZEN_WORKER_CONN_MAX_AGE", value)
    before = dict(connections.settings["default"])
    with pytest.raises(SystemExit, match=message):
        worker.keep_connections()
    assert dict(connections.settings["default"]) == before
