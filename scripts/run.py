#!/usr/bin/env python3
"""Set everything up and run Aerolith Cloud: web, Celery worker and beat, with demo data.

    python3 scripts/run.py            # then open the URLs it prints; Ctrl-C stops everything

Uses DATABASE_URL / REDIS_URL when set, otherwise starts embedded PostgreSQL and Redis
with their data under .var/. AEROLITH_PORT (default 8000) sets the web port.

Cards: in test mode (AEROLITH_TEST_MODE=1, the default here) without STRIPE_SECRET_KEY, the
local Stripe fake (tests/fakes/stripe_fake) runs on AEROLITH_STRIPE_FAKE_PORT (default
12111) and the product talks to it through the Stripe gateway exactly as to Stripe; the fake
signs its webhooks and sends them to this app's /webhooks/stripe/. With STRIPE_SECRET_KEY
set, the product talks to Stripe (set STRIPE_WEBHOOK_SECRET and AEROLITH_CARD_GATEWAY=stripe).
The fake keeps its state in memory: cards saved in an earlier run are gone from it (the
product then asks for a card again).
"""
import os
import secrets
import signal
import socket
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


def _wait_for_port(port: int, child: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"the Stripe fake exited with code {child.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the Stripe fake did not listen on port {port} within {timeout:.0f} s")


def start_stripe_fake(env: dict, web_port: str) -> subprocess.Popen | None:
    """The local Stripe fake, in test mode without Stripe keys; `env` is pointed at it."""
    test_mode = env.get("AEROLITH_TEST_MODE", "").lower() in ("1", "true", "yes", "on")
    if not test_mode or env.get("STRIPE_SECRET_KEY"):
        return None
    fake_port = int(env.get("AEROLITH_STRIPE_FAKE_PORT", "12111"))
    secret = env.get("STRIPE_WEBHOOK_SECRET") or f"whsec_test_{secrets.token_hex(16)}"
    child = subprocess.Popen(
        [PY, "-m", "tests.fakes.stripe_fake", "--port", str(fake_port), "--webhook-url",
         f"http://127.0.0.1:{web_port}/webhooks/stripe/", "--webhook-secret", secret],
        env=env, cwd=ROOT)
    _wait_for_port(fake_port, child)
    env.update({"STRIPE_SECRET_KEY": "sk_test_aerolith_fake", "STRIPE_WEBHOOK_SECRET": secret,
                "STRIPE_API_BASE": f"http://127.0.0.1:{fake_port}", "AEROLITH_CARD_GATEWAY": "stripe"})
    print(f"Stripe fake on http://127.0.0.1:{fake_port} (test mode, no keys): cards go through the "
          "Stripe gateway; Checkout and 3-D Secure pages are served by the fake.", flush=True)
    return child


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
        stripe_fake = start_stripe_fake(env, port)
        try:
            return _run(env, port, stripe_fake)
        finally:
            if stripe_fake is not None and stripe_fake.poll() is None:
                stripe_fake.terminate()
                try:
                    stripe_fake.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    stripe_fake.kill()


def _run(env: dict, port: str, stripe_fake: subprocess.Popen | None) -> int:
    """Migrate, load the demo, then run web, worker and beat until Ctrl-C."""
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
    if stripe_fake is not None:
        children["stripe-fake"] = stripe_fake
    print(f"Started web (port {port}), worker and beat{' and the Stripe fake' if stripe_fake else ''}. "
          "Ctrl-C stops everything.", flush=True)
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
    print(f"Stopped web, worker and beat{' and the Stripe fake' if stripe_fake else ''}.", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
