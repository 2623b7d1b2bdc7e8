"""Helpers shared by the benchmarks."""
from urllib.parse import urlsplit, urlunsplit


def percentile(values, pct):
    """The nearest-rank percentile of `values`."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def database_url(url: str, name: str) -> str:
    """`url` pointing at database `name` instead."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def recreate_database(url: str, name: str) -> str:
    """Drop and create database `name` on the server of `url`; returns its URL."""
    import psycopg

    with psycopg.connect(database_url(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return database_url(url, name)
