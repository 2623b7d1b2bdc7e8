"""scripts/run.py starts the chain fakes (with their test wallet pages) in test mode only,
and only for a chain whose URL is not set explicitly."""
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(name="run", scope="module")
def run_module():
    sys.path.insert(0, str(ROOT / "scripts"))
    spec = importlib.util.spec_from_file_location("aerolith_run_script", ROOT / "scripts" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_test_mode_runs_both_chain_fakes_on_their_default_ports(run):
    fakes = run.chain_fake_commands({"AEROLITH_TEST_MODE": "1"})
    assert {name: (cmd[1:], port, variable) for name, (cmd, port, variable) in fakes.items()} == {
        "solana-fake": (["-m", "tests.fakes.solana_rpc", "--port", "8899", "--no-stdin"], 8899,
                        "AEROLITH_SOLANA_RPC_URL"),
        "trongrid-fake": (["-m", "tests.fakes.trongrid", "--port", "8090", "--no-stdin"], 8090,
                          "AEROLITH_TRONGRID_URL")}


def test_ports_merchant_and_explicit_urls_are_honoured(run):
    fakes = run.chain_fake_commands({"AEROLITH_TEST_MODE": "true", "AEROLITH_SOLANA_FAKE_PORT": "18899",
                                     "AEROLITH_TRONGRID_FAKE_PORT": "18090", "AEROLITH_SOLANA_MERCHANT": "M1"})
    assert fakes["solana-fake"][0][-4:] == ["18899", "--no-stdin", "--merchant", "M1"]
    assert fakes["trongrid-fake"][1] == 18090
    only_tron = run.chain_fake_commands({"AEROLITH_TEST_MODE": "1", "AEROLITH_SOLANA_RPC_URL": "http://x"})
    assert list(only_tron) == ["trongrid-fake"]
    assert run.chain_fake_commands({"AEROLITH_TEST_MODE": "0"}) == {}
    assert run.chain_fake_commands({}) == {}


def test_the_banner_names_the_wallet_pages(run):
    env = {"AEROLITH_SOLANA_RPC_URL": "http://127.0.0.1:8899", "AEROLITH_TRONGRID_URL": "http://127.0.0.1:8090"}
    banner = run.wallet_banner(env, {"solana-fake": object(), "trongrid-fake": object()})
    assert "http://127.0.0.1:8899/wallet" in banner and "http://127.0.0.1:8090/wallet" in banner
    assert run.wallet_banner(env, {}) == ""
