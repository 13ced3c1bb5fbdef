"""DATABASE_URL parsing, masking and the connection check."""

import pytest

from db.config import (
    check_connection,
    django_database,
    mask_url,
    parse_database_url,
)
from db.errors import ConfigurationError, ConnectionFailed


def test_mask_url_hides_the_password_only():
    """The password is replaced by *** and the rest of the URL is kept."""
    masked = mask_url("postgresql://app:s3cr%40t@db.example:6432/pgzen?sslmode=require")
    assert masked == "postgresql://app:***@db.example:6432/pgzen?sslmode=require"
    assert mask_url("postgresql://app@db/pgzen") == "postgresql://app@db/pgzen"


def test_mask_keyword_string():
    """A keyword/value string has its password masked too."""
    assert (
        mask_url("host=db password='x y' dbname=p") == "host=db password=*** dbname=p"
    )


def test_parse_url_fields():
    """Host, port, database and user come from the URL."""
    target = parse_database_url("postgresql://app:pw@db.example:6432/pgzen")
    assert (target.host, target.port, target.dbname) == ("db.example", "6432", "pgzen")
    assert target.params["user"] == "app"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("", "empty"),
        ("mysql://root@db/x", "scheme 'mysql'"),
        ("postgresql://a:b@host:notaport/db", "invalid port 'notaport'"),
        ("postgresql://a@db:99999/x", "invalid port '99999'"),
        ("postgresql://a:pw@db/x?nonsense_option=1", "malformed"),
    ],
)
def test_malformed_urls_are_refused_with_the_reason(url, fragment):
    """A malformed DATABASE_URL raises ConfigurationError naming what is wrong."""
    with pytest.raises(ConfigurationError) as caught:
        parse_database_url(url)
    assert fragment in str(caught.value)
    assert "pw" not in str(caught.value)


def test_unreachable_server_names_host_and_database_with_password_masked():
    """ConnectionFailed names the database and host and never shows the password."""
    target = parse_database_url("postgresql://bob:hunter2@127.0.0.1:1/ledger")
    with pytest.raises(ConnectionFailed) as caught:
        check_connection(target, timeout=2)
    message = str(caught.value)
    assert '"ledger"' in message and '"127.0.0.1"' in message
    assert "hunter2" not in message and "***" in message


def test_reachable_server_reports_its_version(test_server):
    """check_connection returns the server version of a live server."""
    version = check_connection(test_server)
    assert int(version.split(".")[0]) >= 15


def test_django_database_entry():
    """The Django entry carries every connection parameter."""
    entry = django_database(
        parse_database_url("postgresql://app:pw@db:6432/pgzen?sslmode=require")
    )
    assert (
        entry["NAME"] == "pgzen" and entry["HOST"] == "db" and entry["PORT"] == "6432"
    )
    assert entry["USER"] == "app" and entry["PASSWORD"] == "pw"
    assert entry["OPTIONS"] == {"sslmode": "require"}
