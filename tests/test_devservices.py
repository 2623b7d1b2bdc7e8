"""The embedded path of SPEC §1: with no DATABASE_URL / REDIS_URL, the project starts its
own PostgreSQL and Redis under a folder of its own and stops them afterwards."""
import socket
from urllib.parse import urlparse

import psycopg
import redis

from aerolith.devservices import running_services


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_without_urls_embedded_postgres_and_redis_start_and_stop(tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    with running_services(var_dir=tmp_path, announce=lambda _: None) as env:
        with psycopg.connect(env["DATABASE_URL"]) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            assert int(version.split(".")[0]) >= 16
            assert conn.execute("SELECT current_database()").fetchone()[0] == "aerolith"
        client = redis.Redis.from_url(env["REDIS_URL"])
        assert client.ping()
        redis_port = urlparse(env["REDIS_URL"]).port
        assert (tmp_path / "postgres" / "PG_VERSION").exists()
    assert not _port_open(redis_port)
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()


def test_with_urls_set_the_given_servers_are_used_and_nothing_starts(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://example.invalid/db")
    monkeypatch.setenv("REDIS_URL", "redis://example.invalid:6379/0")
    with running_services(var_dir=tmp_path, announce=lambda _: None) as env:
        assert env == {"DATABASE_URL": "postgresql://example.invalid/db",
                       "REDIS_URL": "redis://example.invalid:6379/0"}
    assert list(tmp_path.iterdir()) == []
