"""Settings of the real HTTP server the browser tests start (tests/browser/conftest.py):
the CLI server's settings (tests/cli_server_settings.py: test settings, Celery tasks sent
into an in-memory broker nobody reads), with the Solana RPC of the LiteSVM fake the tests
start (tests/fakes/solana_rpc.py), passed in AEROLITH_BROWSER_SOLANA_RPC_URL."""
import os

from tests.cli_server_settings import *  # noqa: F401,F403

AEROLITH_SOLANA_RPC_URL = os.environ.get("AEROLITH_BROWSER_SOLANA_RPC_URL", "http://127.0.0.1:9")
AEROLITH_SOLANA_RPC_TIMEOUT = 2.0
AEROLITH_SOLANA_RPC_RETRIES = 1
AEROLITH_SOLANA_RPC_BACKOFF = 0.05
