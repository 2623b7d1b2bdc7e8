"""Readiness: each dependency checked with a short timeout and reported by name."""
import redis
from django.conf import settings
from django.db import connection


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def _redis() -> str:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    client.ping()
    return "ok"


def _celery() -> str:
    from aerolith.celery import app

    replies = app.control.ping(timeout=1.0)
    if not replies:
        raise RuntimeError("no Celery worker answered a ping within 1 s")
    return f"ok ({len(replies)} worker{'s' if len(replies) != 1 else ''})"


CHECKS = {"database": _database, "redis": _redis, "celery": _celery}


def readiness() -> dict:
    checks = {}
    for name, check in CHECKS.items():
        try:
            checks[name] = {"status": "ok", "detail": check()}
        except Exception as exc:  # noqa: BLE001 - a probe reports every failure by name
            checks[name] = {"status": "error", "detail": str(exc) or exc.__class__.__name__}
    status = "ok" if all(c["status"] == "ok" for c in checks.values()) else "error"
    return {"status": status, "checks": checks}
