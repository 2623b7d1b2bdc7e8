"""Solana behind a small interface: which transfers to a recipient carry a Solana Pay
reference key (SPEC §6). Services call `solana_chain().transfers(...)` and never import
the SDK.

How a payment is found, as the Solana Pay spec describes: the wallet adds the quote's
reference key to the transfer instruction as a read-only account, so
`getSignaturesForAddress(reference)` lists the payment's transaction. Every page is
walked (`before=` the last signature, 1,000 a page); failed transactions (`err` set) are
skipped; each other transaction is read with `getTransaction(jsonParsed)` and checked:
no error, the reference among its account keys, and the amount taken from integer
balances — the recipient's lamports (post − pre) for SOL, and for USDC the token balance
of the recipient's associated token account for the USDC mint, owned by the recipient
(a token of another mint never counts). Amounts are Python ints from the RPC's integer
fields (`amount` strings for tokens, never `uiAmount` floats), exact above 2**53.

solana-py 0.41 ships only the asyncio client (`solana.rpc.async_api.AsyncClient`; the
synchronous `solana.rpc.api.Client` was removed), so each look-up runs it in its own
event loop. Every request has a timeout and is retried with exponential backoff on
timeouts, transport errors, HTTP 429 (honouring Retry-After) and 5xx; what still fails
raises ChainUnavailable with a sentence staff can act on.
"""
import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings

from aerolith.errors import DomainError

logger = logging.getLogger(__name__)

PAGE_LIMIT = 1000  # the most getSignaturesForAddress returns per call
TOKEN_PROGRAM_ID = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"  # nosec B105 - a public program address, not a secret
MAX_RETRY_AFTER = 30  # seconds


class ChainUnavailable(DomainError):
    status = 503
    code = "chain_unavailable"
    title = "Blockchain not reachable"


@dataclass(frozen=True)
class ObservedTransfer:
    txid: str
    position: int
    amount_base_units: int
    sender: str
    slot: int | None
    block_time: datetime | None
    finality: str  # "confirmed" | "finalized"


def associated_token_address(owner: str, mint: str) -> str:
    from solders.pubkey import Pubkey
    from solders.token.associated import get_associated_token_address

    return str(get_associated_token_address(Pubkey.from_string(owner), Pubkey.from_string(mint)))


def is_pubkey(text: str) -> bool:
    from solders.pubkey import Pubkey

    try:
        Pubkey.from_string(text)
    except (ValueError, TypeError):
        return False
    return True


def new_reference() -> str:
    """A fresh reference key: the public key of a new, thrown-away keypair."""
    from solders.keypair import Keypair

    return str(Keypair().pubkey())


class SolanaRpcChain:
    """The real chain through a JSON-RPC endpoint (AEROLITH_SOLANA_RPC_URL)."""

    def __init__(self, *, endpoint: str, timeout: float, retries: int, backoff: float):
        self.endpoint, self.timeout, self.retries, self.backoff = endpoint, timeout, retries, backoff

    def transfers(self, *, reference: str, recipient: str, mint: str | None,
                  known_final: frozenset[str] = frozenset()) -> list[ObservedTransfer]:
        """Transfers to `recipient` (SOL when `mint` is None, else that SPL token) in
        successful transactions that carry `reference`, at confirmed commitment or better.
        Signatures in `known_final` (already recorded as finalized) are not read again."""
        return asyncio.run(self._transfers(reference, recipient, mint, known_final))

    async def _transfers(self, reference, recipient, mint, known_final) -> list[ObservedTransfer]:
        from solana.rpc.async_api import AsyncClient
        from solders.pubkey import Pubkey

        target = associated_token_address(recipient, mint) if mint else recipient
        async with AsyncClient(self.endpoint, commitment="confirmed", timeout=self.timeout,
                               http2=False, max_transport_retries=0) as client:
            found: list[ObservedTransfer] = []
            statuses = await self._all_signatures(client, Pubkey.from_string(reference))
            for status in statuses:
                if status.err is not None:
                    continue  # failed transactions are listed too; they moved nothing
                signature = str(status.signature)
                if signature in known_final:
                    continue
                finality = _finality(status.confirmation_status)
                response = await self._call(
                    "getTransaction", client.get_transaction, status.signature, encoding="jsonParsed",
                    commitment=finality, max_supported_transaction_version=0)
                if response.value is None:
                    continue  # not (yet) visible at this commitment
                transfer = _transfer_of(response.value, signature=signature, reference=reference,
                                        recipient=recipient, target=target, mint=mint, finality=finality)
                if transfer is not None:
                    found.append(transfer)
            return found

    async def _all_signatures(self, client, reference) -> list:
        statuses, before = [], None
        while True:
            page = (await self._call("getSignaturesForAddress", client.get_signatures_for_address,
                                     reference, before=before, limit=PAGE_LIMIT)).value
            statuses.extend(page)
            if len(page) < PAGE_LIMIT:
                return statuses
            before = page[-1].signature

    async def _call(self, name: str, method, *args, **kwargs):
        from solana.exceptions import SolanaRpcException
        from solana.rpc.core import RPCException

        attempt = 0
        while True:
            try:
                return await method(*args, **kwargs)
            except SolanaRpcException as exc:
                retry_after, reason = _retryable(exc.__cause__)
                if retry_after is None or attempt >= self.retries:
                    raise ChainUnavailable(
                        f"The Solana RPC at {self.endpoint} did not answer {name}: {reason}. "
                        f"Gave up after {attempt + 1} attempts; payments are looked for again "
                        "on the next pass.") from exc
            except RPCException as exc:
                raise ChainUnavailable(f"The Solana RPC at {self.endpoint} refused {name}: {exc}.") from exc
            delay = max(retry_after, self.backoff * 2 ** attempt)
            attempt += 1
            logger.warning("Solana RPC %s: %s; retry %d in %.2f s", name, reason, attempt, delay)
            await asyncio.sleep(min(delay, MAX_RETRY_AFTER))


def _retryable(cause) -> tuple[float | None, str]:
    """(seconds to wait at least, reason) for an error worth retrying, (None, reason) else."""
    import httpx2

    if isinstance(cause, httpx2.TimeoutException):
        return 0.0, f"timed out ({cause.__class__.__name__})"
    if isinstance(cause, httpx2.HTTPStatusError):
        status = cause.response.status_code
        if status == 429 or status >= 500:
            return retry_after_seconds(cause.response.headers.get("Retry-After")), f"HTTP {status}"
        return None, f"HTTP {status}"
    if isinstance(cause, httpx2.TransportError):
        return 0.0, f"connection failed ({cause.__class__.__name__})"
    return None, str(cause)


def retry_after_seconds(value: str | None) -> int:
    """A Retry-After header's delay in whole seconds (RFC 9110: an integer; an HTTP date or
    anything else counts as no wait), capped at MAX_RETRY_AFTER."""
    value = (value or "").strip()
    return min(int(value), MAX_RETRY_AFTER) if value.isdigit() else 0


def _finality(status) -> str:
    return "finalized" if status is not None and str(status).lower().endswith("finalized") else "confirmed"


def _transfer_of(value, *, signature: str, reference: str, recipient: str, target: str,
                 mint: str | None, finality: str) -> ObservedTransfer | None:
    """The transfer a transaction makes to `target`, or None when it is not a valid
    payment (failed, no reference, wrong mint or owner, nothing received)."""
    meta = value.transaction.meta
    if meta is None or meta.err is not None:
        return None
    keys = _account_keys(value.transaction.transaction.message, meta)
    if reference not in keys:
        return None
    if mint is None:
        if target not in keys:
            return None
        index = keys.index(target)
        amount = int(meta.post_balances[index]) - int(meta.pre_balances[index])
        sender = keys[0]  # the fee payer signs the transfer
    else:
        amount, sender = _token_delta(meta, keys, target=target, owner=recipient, mint=mint)
    if amount <= 0:
        return None
    block_time = datetime.fromtimestamp(value.block_time, UTC) if value.block_time else None
    return ObservedTransfer(txid=signature, position=0, amount_base_units=amount, sender=sender,
                            slot=value.slot, block_time=block_time, finality=finality)


def _account_keys(message, meta) -> list[str]:
    keys = [str(getattr(key, "pubkey", key)) for key in message.account_keys]
    loaded = getattr(meta, "loaded_addresses", None)
    if loaded is not None:  # v0 transactions: addresses from lookup tables follow
        keys += [str(key) for key in loaded.writable] + [str(key) for key in loaded.readonly]
    return keys


def _token_amounts(balances, keys, *, mint: str) -> dict[str, tuple[int, str]]:
    """Account address -> (amount in base units, owner) for token balances of `mint`."""
    amounts = {}
    for balance in balances or []:
        if str(balance.mint) != mint:
            continue
        program = getattr(balance, "program_id", None)
        if program is not None and str(program) != TOKEN_PROGRAM_ID:
            continue
        address = keys[balance.account_index] if balance.account_index < len(keys) else None
        if address is not None:
            amounts[address] = (int(balance.ui_token_amount.amount), str(balance.owner or ""))
    return amounts


def _token_delta(meta, keys, *, target: str, owner: str, mint: str) -> tuple[int, str]:
    pre = _token_amounts(meta.pre_token_balances, keys, mint=mint)
    post = _token_amounts(meta.post_token_balances, keys, mint=mint)
    after, after_owner = post.get(target, (0, ""))
    if after_owner != owner:
        return 0, ""  # not the recipient's own account for this mint
    before = pre.get(target, (0, owner))[0]  # a new account has no pre balance
    senders = [address for address, (amount, _o) in pre.items()
               if address != target and amount > post.get(address, (0, ""))[0]]
    sender = pre[senders[0]][1] if senders else ""
    return after - before, sender


_chain = None


def solana_chain() -> SolanaRpcChain:
    """The configured chain. Tests point AEROLITH_SOLANA_RPC_URL at a LiteSVM adapter."""
    global _chain
    config = (settings.AEROLITH_SOLANA_RPC_URL, settings.AEROLITH_SOLANA_RPC_TIMEOUT,
              settings.AEROLITH_SOLANA_RPC_RETRIES, settings.AEROLITH_SOLANA_RPC_BACKOFF)
    if _chain is None or (_chain.endpoint, _chain.timeout, _chain.retries, _chain.backoff) != config:
        _chain = SolanaRpcChain(endpoint=config[0], timeout=config[1], retries=config[2], backoff=config[3])
    return _chain
