"""Sending on Solana behind a small interface (SPEC §6 "Sending"): build and sign a SOL
or USDC transfer from the merchant wallet, broadcast signed bytes, read signature
statuses. Services call `solana_sender()` and never import the SDK.

- The fee is asked of the node before signing (`getFeeForMessage` for the exact message,
  at the blockhash the transaction uses); the merchant wallet pays it.
- SOL: one system transfer. USDC: `create_idempotent` of the payer's associated token
  account (a no-op when it exists; the merchant pays its rent when the payer closed it)
  then `transfer_checked` from the merchant's associated token account, so a wrong mint
  or decimals fails on chain rather than moving something else.
- Broadcast sends the given bytes as they are, with preflight. A node that already
  executed that signature answers "already been processed": that is success here (the
  retry of a transaction that did land), never a reason to sign again.

Transport errors, timeouts, HTTP 429 and 5xx are retried with backoff as for reading
(SolanaRpcChain._call); what still fails raises ChainUnavailable, and a node's refusal
(simulation failed: no funds, expired blockhash...) raises BroadcastRefused.
"""
import asyncio
from dataclasses import dataclass

from django.conf import settings

from .solana import ChainUnavailable, SolanaRpcChain

ALREADY_PROCESSED = "already been processed"


class BroadcastRefused(ChainUnavailable):
    code = "broadcast_refused"
    title = "Transaction refused by the node"


@dataclass(frozen=True)
class SignedTransfer:
    signed_bytes: bytes
    signature: str
    fee_lamports: int
    from_address: str
    last_valid_block_height: int | None = None  # the blockhash is refused once the chain is past it


@dataclass(frozen=True)
class SignatureState:
    confirmation: str | None  # processed | confirmed | finalized
    err: object


def keypair_from_secret(secret: bytes):
    """A solders Keypair from the 64 stored bytes (secret ‖ public); raises ValueError."""
    from solders.keypair import Keypair

    if len(secret) != 64:
        raise ValueError("A Solana secret key is 64 bytes.")
    return Keypair.from_bytes(secret)


def parse_secret_key(text: str) -> bytes:
    """The 64-byte keypair from what `solana-keygen` and wallets export: base58 of 64 bytes
    (or of a 32-byte seed), or the JSON array of a keypair file. Raises ValueError with a
    message that never repeats the input."""
    import json

    from solders.keypair import Keypair

    text = (text or "").strip()
    try:
        if text.startswith("["):
            raw = bytes(json.loads(text))
        else:
            raw = _b58decode(text)
        if len(raw) == 32:
            return bytes(Keypair.from_seed(raw))
        if len(raw) == 64:
            return bytes(Keypair.from_bytes(raw))  # checks the public half matches the secret
    except (ValueError, TypeError, OverflowError):
        pass
    raise ValueError("That is not a Solana secret key: give the base58 secret key (64 bytes) or the "
                     "JSON array of a keypair file.")


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _b58decode(text: str) -> bytes:
    if not text or any(char not in _B58 for char in text):
        raise ValueError("not base58")
    number = 0
    for char in text:
        number = number * 58 + _B58.index(char)
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


class SolanaSender(SolanaRpcChain):
    def transfer_signed(self, *, secret: bytes, to_owner: str, amount: int, mint: str | None,
                        decimals: int) -> SignedTransfer:
        """Build and sign a transfer of `amount` base units to `to_owner` (its associated
        token account for `mint`). Nothing is sent."""
        return asyncio.run(self._transfer_signed(secret, to_owner, amount, mint, decimals))

    async def _transfer_signed(self, secret, to_owner, amount, mint, decimals) -> SignedTransfer:
        from solana.rpc.async_api import AsyncClient
        from solders.message import Message
        from solders.pubkey import Pubkey
        from solders.transaction import Transaction

        keypair = keypair_from_secret(secret)
        owner = keypair.pubkey()
        instructions = _instructions(owner, Pubkey.from_string(to_owner), amount, mint, decimals)
        async with AsyncClient(self.endpoint, commitment="confirmed", timeout=self.timeout,
                               http2=False, max_transport_retries=0) as client:
            latest = (await self._call("getLatestBlockhash", client.get_latest_blockhash)).value
            message = Message.new_with_blockhash(instructions, owner, latest.blockhash)
            fee = (await self._call("getFeeForMessage", client.get_fee_for_message, message)).value
        if fee is None:
            raise ChainUnavailable("The Solana node did not price the transaction (its blockhash expired "
                                   "at once); try again.")
        transaction = Transaction([keypair], message, latest.blockhash)
        return SignedTransfer(signed_bytes=bytes(transaction), signature=str(transaction.signatures[0]),
                              fee_lamports=int(fee), from_address=str(owner),
                              last_valid_block_height=int(latest.last_valid_block_height))

    def broadcast(self, signed_bytes: bytes) -> str:
        """Send the signed bytes as they are; returns the signature. Raises
        BroadcastRefused or ChainUnavailable."""
        return asyncio.run(self._broadcast(bytes(signed_bytes)))

    async def _broadcast(self, signed_bytes: bytes) -> str:
        from solana.rpc.async_api import AsyncClient
        from solana.rpc.models import TxOpts
        from solders.transaction import VersionedTransaction

        signature = str(VersionedTransaction.from_bytes(signed_bytes).signatures[0])
        async with AsyncClient(self.endpoint, commitment="confirmed", timeout=self.timeout,
                               http2=False, max_transport_retries=0) as client:
            opts = TxOpts(skip_confirmation=True, preflight_commitment="confirmed")
            try:
                sent = await self._call("sendTransaction", self._send_raw, client, signed_bytes, opts)
            except BroadcastRefused as refused:
                if ALREADY_PROCESSED in refused.detail:
                    return signature
                raise
        if str(sent.value) != signature:  # cannot happen with honest nodes: report, do not trust
            raise ChainUnavailable(f"The node answered signature {sent.value} for {signature}.")
        return signature

    @staticmethod
    async def _send_raw(client, signed_bytes, opts):
        from solana.rpc.core import RPCException

        try:
            return await client.send_raw_transaction(signed_bytes, opts=opts)
        except RPCException as exc:
            message = getattr(exc.args[0], "message", None) if exc.args else None
            raise BroadcastRefused(f"The Solana node refused the transaction: {message or exc}") from exc

    def block_height(self) -> int:
        """The finalized block height: a transaction whose blockhash's lastValidBlockHeight
        is below it, and that is not known by then, can never land."""
        return asyncio.run(self._block_height())

    async def _block_height(self) -> int:
        from solana.rpc.async_api import AsyncClient

        async with AsyncClient(self.endpoint, commitment="finalized", timeout=self.timeout,
                               http2=False, max_transport_retries=0) as client:
            return int((await self._call("getBlockHeight", client.get_block_height, "finalized")).value)

    def statuses(self, signatures: list[str]) -> dict[str, SignatureState | None]:
        """Each signature's status (None when the node does not know it)."""
        return asyncio.run(self._statuses(signatures))

    async def _statuses(self, signatures):
        from solana.rpc.async_api import AsyncClient
        from solders.signature import Signature

        found = {}
        async with AsyncClient(self.endpoint, commitment="confirmed", timeout=self.timeout,
                               http2=False, max_transport_retries=0) as client:
            for start in range(0, len(signatures), 256):
                chunk = signatures[start:start + 256]
                values = (await self._call("getSignatureStatuses", client.get_signature_statuses,
                                           [Signature.from_string(s) for s in chunk],
                                           search_transaction_history=True)).value
                for signature, value in zip(chunk, values, strict=True):
                    found[signature] = None if value is None else SignatureState(
                        confirmation=_confirmation(value.confirmation_status), err=value.err)
        return found


def _confirmation(status) -> str | None:
    if status is None:
        return None
    text = str(status).lower()
    return next((name for name in ("finalized", "confirmed", "processed") if text.endswith(name)), None)


def _instructions(owner, to_owner, amount: int, mint: str | None, decimals: int) -> list:
    from solders.pubkey import Pubkey
    from solders.system_program import TransferParams, transfer
    from solders.token.associated import get_associated_token_address
    from spl.token import instructions as token_ix
    from spl.token import models as token_models
    from spl.token.constants import TOKEN_PROGRAM_ID

    if mint is None:
        return [transfer(TransferParams(from_pubkey=owner, to_pubkey=to_owner, lamports=amount))]
    mint_key = Pubkey.from_string(mint)
    return [
        token_ix.create_idempotent_associated_token_account(owner, to_owner, mint_key),
        token_ix.transfer_checked(token_models.TransferCheckedParams(
            program_id=TOKEN_PROGRAM_ID, source=get_associated_token_address(owner, mint_key), mint=mint_key,
            dest=get_associated_token_address(to_owner, mint_key), owner=owner, amount=amount,
            decimals=decimals)),
    ]


_sender = None


def solana_sender() -> SolanaSender:
    global _sender
    config = (settings.AEROLITH_SOLANA_RPC_URL, settings.AEROLITH_SOLANA_RPC_TIMEOUT,
              settings.AEROLITH_SOLANA_RPC_RETRIES, settings.AEROLITH_SOLANA_RPC_BACKOFF)
    if _sender is None or (_sender.endpoint, _sender.timeout, _sender.retries, _sender.backoff) != config:
        _sender = SolanaSender(endpoint=config[0], timeout=config[1], retries=config[2], backoff=config[3])
    return _sender
