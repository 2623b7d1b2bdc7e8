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

Crypto: in test mode, unless AEROLITH_SOLANA_RPC_URL / AEROLITH_TRONGRID_URL are set, the
local chains run too: the Solana fake (LiteSVM, tests/fakes/solana_rpc.py) on
AEROLITH_SOLANA_FAKE_PORT (8899) and the TronGrid fake on AEROLITH_TRONGRID_FAKE_PORT (8090).
Each serves a test wallet page at /wallet that pays a quote (the portal's quote page links
to it in test mode). Their chains live in memory and start empty each run.
"""
import os
import secrets
import shutil
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


def _wait_for_port(port: int, child: subprocess.Popen, timeout: float = 15.0, name: str = "the Stripe fake") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"{name} exited with code {child.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not listen on port {port} within {timeout:.0f} s")


def _test_mode(env: dict) -> bool:
    return env.get("AEROLITH_TEST_MODE", "").lower() in ("1", "true", "yes", "on")


def chain_fake_commands(env: dict) -> dict[str, tuple[list[str], int, str]]:
    """The chain fakes to run: name -> (command, port, the settings variable pointed at it).
    Only in test mode, and only for a chain whose URL is not set explicitly."""
    if not _test_mode(env):
        return {}
    fakes = {}
    if not env.get("AEROLITH_SOLANA_RPC_URL"):
        port = int(env.get("AEROLITH_SOLANA_FAKE_PORT", "8899"))
        command = [PY, "-m", "tests.fakes.solana_rpc", "--port", str(port), "--no-stdin"]
        if env.get("AEROLITH_SOLANA_MERCHANT"):
            command += ["--merchant", env["AEROLITH_SOLANA_MERCHANT"]]
        fakes["solana-fake"] = (command, port, "AEROLITH_SOLANA_RPC_URL")
    if not env.get("AEROLITH_TRONGRID_URL"):
        port = int(env.get("AEROLITH_TRONGRID_FAKE_PORT", "8090"))
        fakes["trongrid-fake"] = ([PY, "-m", "tests.fakes.trongrid", "--port", str(port), "--no-stdin"],
                                  port, "AEROLITH_TRONGRID_URL")
    return fakes


def start_chain_fakes(env: dict) -> dict[str, subprocess.Popen]:
    """Start the chain fakes of chain_fake_commands; `env` is pointed at them."""
    children = {}
    try:
        for name, (command, port, variable) in chain_fake_commands(env).items():
            child = subprocess.Popen(command, env=env, cwd=ROOT, stdin=subprocess.DEVNULL)
            children[name] = child
            _wait_for_port(port, child, timeout=60.0, name=f"the {name}")
            env[variable] = f"http://127.0.0.1:{port}"
    except BaseException:
        _stop(children)
        raise
    return children


def wallet_banner(env: dict, children: dict) -> str:
    lines = []
    if "solana-fake" in children:
        lines.append(f"  SOL / USDC test wallet: {env['AEROLITH_SOLANA_RPC_URL']}/wallet")
    if "trongrid-fake" in children:
        lines.append(f"  TRX / USDT test wallet: {env['AEROLITH_TRONGRID_URL']}/wallet")
    return "\n".join(["Chain fakes (test mode):"] + lines) if lines else ""


def _stop(children: dict) -> None:
    for child in children.values():
        if child.poll() is None:
            child.terminate()
    for child in children.values():
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()


def start_stripe_fake(env: dict, web_port: str) -> subprocess.Popen | None:
    """The local Stripe fake, in test mode without Stripe keys; `env` is pointed at it."""
    if not _test_mode(env) or env.get("STRIPE_SECRET_KEY"):
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


def prometheus_dir() -> Path:
    """An empty directory for prometheus-client's multiprocess mode: gunicorn's workers and
    Celery's processes each write their metrics there and /metrics adds them up. Emptied at
    every start, or the counts of processes long gone would be served as current."""
    path = ROOT / ".var" / "prometheus"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


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
        fakes = {}
        try:
            stripe_fake = start_stripe_fake(env, port)
            if stripe_fake is not None:
                fakes["stripe-fake"] = stripe_fake
            fakes.update(start_chain_fakes(env))
            return _run(env, port, fakes)
        finally:
            _stop(fakes)


def _run(env: dict, port: str, fakes: dict[str, subprocess.Popen]) -> int:
    """Migrate, load the demo, then run web, worker and beat until Ctrl-C."""
    manage = [PY, str(ROOT / "manage.py")]
    subprocess.run(manage + ["migrate_all", "--verbosity", "0"], env=env, cwd=ROOT, check=True)
    subprocess.run(manage + ["collectstatic", "--noinput", "--verbosity", "0"], env=env,
                   cwd=ROOT, check=True)
    subprocess.run(manage + ["load_demo"], env=env, cwd=ROOT, check=True)
    # Customer databases live on real PostgreSQL servers of the local provider: start them
    # (the regions' shared clusters are created on the first run) and stop them on exit.
    subprocess.run(manage + ["clusters_local", "start"], env=env, cwd=ROOT, check=True)
    try:
        subprocess.run(manage + ["load_demo_provisioning"], env=env, cwd=ROOT, check=True)
        return _serve(env, port, fakes)
    finally:
        subprocess.run(manage + ["clusters_local", "stop"], env=env, cwd=ROOT, check=False)


def _serve(env: dict, port: str, fakes: dict[str, subprocess.Popen]) -> int:
    env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(prometheus_dir())}
    commands = {
        "web": [PY, "-m", "gunicorn", "aerolith.wsgi", "--bind", f"127.0.0.1:{port}",
                "--workers", "2", "--threads", "4", "--access-logfile", "-"],
        "worker": [PY, "-m", "celery", "-A", "aerolith", "worker", "--loglevel", "INFO",
                   "--concurrency", "2", "--hostname", "worker@%h"],
        "beat": [PY, "-m", "celery", "-A", "aerolith", "beat", "--loglevel", "INFO"],
    }
    children = {name: subprocess.Popen(cmd, env=env, cwd=ROOT) for name, cmd in commands.items()}
    children.update(fakes)
    extra = f" and {', '.join(fakes)}" if fakes else ""
    print(f"Started web (port {port}), worker and beat{extra}. Ctrl-C stops everything.", flush=True)
    banner = wallet_banner(env, fakes)
    if banner:
        print(banner, flush=True)
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
    _stop(children)
    print(f"Stopped web, worker and beat{extra}.", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
