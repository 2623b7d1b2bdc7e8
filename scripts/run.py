#!/usr/bin/env python3
"""Set everything up and run Aerolith Cloud: web, Celery worker and beat, with demo data.

    python3 scripts/run.py            # then open the URLs it prints; Ctrl-C stops everything

Uses DATABASE_URL / REDIS_URL when set, otherwise starts embedded PostgreSQL and Redis
with their data under .var/. AEROLITH_PORT (default 8000) sets the web port.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bootstrap  # noqa: E402

_bootstrap.reexec_in_virtualenv(__file__)
sys.path.insert(0, str(_bootstrap.ROOT))

from aerolith.devservices import running_services  # noqa: E402

ROOT = _bootstrap.ROOT
PY = sys.executable


def main() -> int:
    port = os.environ.get("AEROLITH_PORT", "8000")
    with running_services() as service_env:
        env = {
            **os.environ,
            **service_env,
            "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "aerolith.settings.base"),
            "AEROLITH_TEST_MODE": os.environ.get("AEROLITH_TEST_MODE", "1"),
            "AEROLITH_URL_PORT": port,
            "PYTHONUNBUFFERED": "1",
        }
        manage = [PY, str(ROOT / "manage.py")]
        subprocess.run(manage + ["migrate_all", "--verbosity", "0"], env=env, cwd=ROOT, check=True)
        subprocess.run(manage + ["collectstatic", "--noinput", "--verbosity", "0"], env=env,
                       cwd=ROOT, check=True)
        subprocess.run(manage + ["load_demo"], env=env, cwd=ROOT, check=True)
        commands = {
            "web": [PY, "-m", "gunicorn", "aerolith.wsgi", "--bind", f"127.0.0.1:{port}",
                    "--workers", "2", "--threads", "4", "--access-logfile", "-"],
            "worker": [PY, "-m", "celery", "-A", "aerolith", "worker", "--loglevel", "INFO",
                       "--concurrency", "2", "--hostname", "worker@%h"],
            "beat": [PY, "-m", "celery", "-A", "aerolith", "beat", "--loglevel", "INFO"],
        }
        children = {name: subprocess.Popen(cmd, env=env, cwd=ROOT) for name, cmd in commands.items()}
        print(f"Started web (port {port}), worker and beat. Ctrl-C stops everything.", flush=True)
        stop = {"now": False}

        def request_stop(signum, frame):
            stop["now"] = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        exit_code = 0
        while not stop["now"]:
            for name, child in children.items():
                if child.poll() is not None:
                    print(f"{name} exited with code {child.returncode}; stopping.", flush=True)
                    stop["now"], exit_code = True, 1
            time.sleep(0.5)
        for child in children.values():
            if child.poll() is None:
                child.terminate()
        for child in children.values():
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        print("Stopped web, worker and beat.", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
