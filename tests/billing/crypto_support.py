"""A Solana chain for crypto payment tests: LiteSVM served over JSON-RPC to the product's
real client (tests/fakes/solana_rpc.py), with a merchant wallet, a funded payer and a real
SPL mint at mainnet USDC's address."""
from dataclasses import dataclass

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from billing.models import CryptoQuote
from billing.services.crypto import quote_create, quote_refresh
from tests.fakes.solana_rpc import USDC_MAINNET_MINT, SolanaLedger, SolanaRpcServer

SOL = 10**9
USDC = 10**6


@dataclass
class Chain:
    server: SolanaRpcServer
    ledger: SolanaLedger
    merchant: Keypair
    payer: Keypair
    usdc: Pubkey

    def pay(self, quote: CryptoQuote, units: int | None = None, *, reference: str | None = "quote",
            payer: Keypair | None = None):
        """Pay `quote` (its exact amount unless `units`) with its reference, as a wallet
        reading its solana: URL would."""
        units = int(quote.amount_base_units) if units is None else units
        reference = quote.reference if reference == "quote" else reference
        payer = payer or self.payer
        if quote.currency == "usdc":
            return self.ledger.pay_token(payer, self.usdc, quote.address, units, 6, reference, memo=quote.memo)
        return self.ledger.pay_sol(payer, quote.address, units, reference, memo=quote.memo)

    def scan(self, quote: CryptoQuote) -> CryptoQuote:
        quote_refresh(quote_id=quote.pk)
        quote.refresh_from_db()
        return quote

    def finalize(self) -> None:
        self.ledger.finalize()


@pytest.fixture(name="chain")
def chain_fixture(settings):
    server = SolanaRpcServer().start()
    ledger = server.ledger
    merchant = Keypair()
    ledger.airdrop(merchant.pubkey(), 1 * SOL)  # rent-exempt, as a real wallet is
    payer = ledger.funded_keypair(1_000 * SOL)
    usdc = ledger.create_mint(payer, 6, USDC_MAINNET_MINT)
    ledger.mint_to(payer, usdc, payer.pubkey(), 1_000_000 * USDC)
    settings.AEROLITH_SOLANA_RPC_URL = server.url
    settings.AEROLITH_SOLANA_MERCHANT = str(merchant.pubkey())
    settings.AEROLITH_USDC_MINT = USDC_MAINNET_MINT
    settings.AEROLITH_SOLANA_RPC_TIMEOUT = 0.5
    settings.AEROLITH_SOLANA_RPC_RETRIES = 3
    settings.AEROLITH_SOLANA_RPC_BACKOFF = 0.01
    try:
        yield Chain(server, ledger, merchant, payer, usdc)
    finally:
        server.stop()


def quote_for_invoice(tenant, invoice, currency="usdc") -> CryptoQuote:
    return quote_create(tenant=tenant, invoice=invoice, currency=currency, actor="test")
