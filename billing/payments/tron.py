"""Tron (TRX, USDT-TRC20) for crypto quotes (SPEC §6): deposit addresses and the TronGrid
client that finds payments to them.

Deposit addresses: every quote gets its own address, derived from the merchant's
account-level extended public key (AEROLITH_TRON_XPUB, m/44'/195'/0') on the receive
chain at an index from a database sequence — `Bip44.FromExtendedKey(xpub,
Bip44Coins.TRON).Change(CHAIN_EXT).AddressIndex(i)`, the same address the private side
derives, so no private key is needed to receive.

Payments (TronGrid, AEROLITH_TRONGRID_URL):
- TRX: `/v1/accounts/{address}/transactions?only_to=true`, walked page by page (200 rows,
  `fingerprint` from `meta`), once with `only_confirmed=true` (solidified: final) and
  once with `only_unconfirmed=true` (seen: processing). A row counts when its receipt
  says SUCCESS (`ret[0].contractRet`), it is a single TransferContract to the address
  (addresses compared after normalising `41…` hex and `T…` base58), its txID is the
  sha256 of its `raw_data_hex` when given, and the amount (SUN, an integer) is positive.
- USDT: `/v1/accounts/{address}/transactions/trc20?only_to=true&contract_address=…`
  lists candidate transaction ids; each is then read from the node
  (`/walletsolidity/gettransactioninfobyid` — present once solidified — else
  `/wallet/gettransactioninfobyid`), and only its event logs count: receipt SUCCESS,
  emitted by the configured USDT contract, topic0 = keccak256("Transfer(address,address,
  uint256)"), recipient topic = the address; the value is the 32-byte data word, an exact
  integer (6 decimals). An Approval, a look-alike token called "USDT" or a reverted call
  never counts, whatever the listing says. `position` is the log index.

Every request has a timeout and is retried with exponential backoff on timeouts,
transport errors, HTTP 429 (honouring Retry-After) and 5xx; what still fails raises
ChainUnavailable with a sentence staff can act on.
"""
import hashlib
import logging
import time
from datetime import UTC, datetime

import httpx
from django.conf import settings

from .solana import MAX_RETRY_AFTER, ChainUnavailable, ObservedTransfer, retry_after_seconds

logger = logging.getLogger(__name__)

PAGE_LIMIT = 200  # the most TronGrid's v1 list endpoints return per page
MAX_PAGES = 500
# keccak256("Transfer(address,address,uint256)")
TRANSFER_TOPIC = "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
TRX_DECIMALS = 6
USDT_DECIMALS = 6


# --- addresses ---------------------------------------------------------------------------------

def normalise(address: str) -> str | None:
    """The base58 `T…` form of a Tron address given as base58, `41…` hex or `0x…` hex
    (20 bytes, as in event logs); None when it is not an address."""
    from tronpy.keys import to_base58check_address

    if not isinstance(address, str) or not address:
        return None
    text = address.strip()
    if text.startswith("0x"):
        text = text[2:]
    if len(text) == 40 and all(c in "0123456789abcdefABCDEF" for c in text):
        text = "41" + text
    try:
        return to_base58check_address(text)
    except (ValueError, TypeError):
        return None


def same_address(a: str, b: str) -> bool:
    left = normalise(a)
    return left is not None and left == normalise(b)


def deposit_address(xpub: str, index: int) -> str:
    """The receive address at `index` under the account-level extended public key."""
    from bip_utils import Bip44, Bip44Changes, Bip44Coins

    if not isinstance(index, int) or not 0 <= index < 2 ** 31:
        raise ValueError(f"A derivation index is 0 … 2**31 - 1, not {index!r}.")
    account = Bip44.FromExtendedKey(xpub, Bip44Coins.TRON)
    return account.Change(Bip44Changes.CHAIN_EXT).AddressIndex(index).PublicKey().ToAddress()


def xpub_usable(xpub: str) -> bool:
    """True when `xpub` is an extended public key deriving Tron receive addresses."""
    if not xpub or not isinstance(xpub, str):
        return False
    try:
        deposit_address(xpub, 0)
    except Exception:  # noqa: BLE001 - bip-utils raises several kinds for bad keys
        return False
    return True


# --- TronGrid ----------------------------------------------------------------------------------

class TronGridChain:
    """The real chain through TronGrid (or any node exposing its v1 and wallet APIs)."""

    network = "tron"

    def __init__(self, *, endpoint: str, api_key: str, timeout: float, retries: int, backoff: float):
        self.endpoint, self.api_key = endpoint.rstrip("/"), api_key
        self.timeout, self.retries, self.backoff = timeout, retries, backoff

    def config(self) -> tuple:
        return (self.endpoint, self.api_key, self.timeout, self.retries, self.backoff)

    def transfers(self, *, address: str, contract: str | None,
                  known_final: frozenset[str] = frozenset()) -> list[ObservedTransfer]:
        """Transfers to `address`: TRX when `contract` is None, else that TRC20 token's
        Transfer events. Transactions in `known_final` (recorded final) are not read again."""
        address = normalise(address)
        if address is None:
            raise ChainUnavailable("The deposit address is not a Tron address.")
        headers = {"Accept": "application/json", "User-Agent": "aerolith-billing"}
        if self.api_key:
            headers["TRON-PRO-API-KEY"] = self.api_key
        with httpx.Client(base_url=self.endpoint, timeout=self.timeout, headers=headers) as client:
            if contract is None:
                return self._trx(client, address, known_final)
            return self._trc20(client, address, normalise(contract), known_final)

    # TRX
    def _trx(self, client, address, known_final) -> list[ObservedTransfer]:
        found: dict[str, ObservedTransfer] = {}
        for finality, flag in (("finalized", "only_confirmed"), ("confirmed", "only_unconfirmed")):
            rows = self._walk(client, f"/v1/accounts/{address}/transactions",
                              {"only_to": "true", flag: "true"})
            for row in rows:
                transfer = _trx_transfer(row, address=address, finality=finality)
                if transfer is None or transfer.txid in known_final or transfer.txid in found:
                    continue
                found[transfer.txid] = transfer
        return list(found.values())

    # TRC20
    def _trc20(self, client, address, contract, known_final) -> list[ObservedTransfer]:
        if contract is None:
            raise ChainUnavailable("The configured token contract is not a Tron address.")
        rows = self._walk(client, f"/v1/accounts/{address}/transactions/trc20",
                          {"only_to": "true", "contract_address": contract})
        txids = []
        for row in rows:
            txid = row.get("transaction_id") if isinstance(row, dict) else None
            if _is_txid(txid) and txid.lower() not in known_final and txid.lower() not in txids:
                txids.append(txid.lower())
        found = []
        for txid in txids:
            info, finality = self._post(client, "/walletsolidity/gettransactioninfobyid", txid), "finalized"
            if not info:
                info, finality = self._post(client, "/wallet/gettransactioninfobyid", txid), "confirmed"
            if info:
                found += _token_transfers(info, txid=txid, address=address, contract=contract,
                                          finality=finality)
        return found

    def _walk(self, client, path: str, params: dict) -> list[dict]:
        rows, fingerprint = [], None
        for _page in range(MAX_PAGES):
            query = {**params, "limit": str(PAGE_LIMIT)}
            if fingerprint:
                query["fingerprint"] = fingerprint
            body = self._request(client, "GET", path, params=query)
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list) or body.get("success") is False:
                raise ChainUnavailable(f"TronGrid at {self.endpoint} answered {path} without a data list.")
            rows.extend(row for row in data if isinstance(row, dict))
            meta = body.get("meta") or {}
            fingerprint = meta.get("fingerprint") if isinstance(meta, dict) else None
            if not fingerprint or not data:
                return rows
        raise ChainUnavailable(f"TronGrid at {self.endpoint} kept paginating {path} past {MAX_PAGES} pages.")

    def _post(self, client, path: str, txid: str) -> dict:
        body = self._request(client, "POST", path, json={"value": txid})
        return body if isinstance(body, dict) and body.get("id") else {}

    def _request(self, client, method: str, path: str, **kwargs):
        attempt = 0
        while True:
            retry_after, reason = None, ""
            try:
                response = client.request(method, path, **kwargs)
            except httpx.TimeoutException as exc:
                retry_after, reason = 0.0, f"timed out ({exc.__class__.__name__})"
            except httpx.TransportError as exc:
                retry_after, reason = 0.0, f"connection failed ({exc.__class__.__name__})"
            else:
                status = response.status_code
                if status == 429 or status >= 500:
                    retry_after, reason = retry_after_seconds(response.headers.get("Retry-After")), f"HTTP {status}"
                elif status >= 400:
                    raise ChainUnavailable(f"TronGrid at {self.endpoint} refused {path}: HTTP {status}.")
                else:
                    try:
                        return response.json()
                    except ValueError as exc:
                        raise ChainUnavailable(f"TronGrid at {self.endpoint} answered {path} with "
                                               "something that is not JSON.") from exc
            if attempt >= self.retries:
                raise ChainUnavailable(
                    f"TronGrid at {self.endpoint} did not answer {path}: {reason}. Gave up after "
                    f"{attempt + 1} attempts; payments are looked for again on the next pass.")
            delay = max(retry_after, self.backoff * 2 ** attempt)
            attempt += 1
            logger.warning("TronGrid %s: %s; retry %d in %.2f s", path, reason, attempt, delay)
            time.sleep(min(delay, MAX_RETRY_AFTER))


def _is_txid(value) -> bool:
    return (isinstance(value, str) and len(value) == 64
            and all(c in "0123456789abcdef" for c in value.lower()))


def _block_time(ms) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if isinstance(ms, int) and ms > 0 else None


def _trx_transfer(row: dict, *, address: str, finality: str) -> ObservedTransfer | None:
    """The TRX a listed transaction moves to `address`, or None when it is not a valid
    payment (failed, not a plain transfer, another recipient, tampered id, nothing)."""
    txid = row.get("txID")
    ret = row.get("ret")
    raw = row.get("raw_data")
    if not _is_txid(txid) or not isinstance(ret, list) or not ret or not isinstance(raw, dict):
        return None
    if not isinstance(ret[0], dict) or ret[0].get("contractRet") != "SUCCESS":
        return None  # failed transactions are listed too (REVERT, OUT_OF_ENERGY, …)
    raw_hex = row.get("raw_data_hex")
    if raw_hex is not None:
        try:
            if hashlib.sha256(bytes.fromhex(raw_hex)).hexdigest() != txid.lower():
                logger.warning("TronGrid row %s: txID is not the hash of raw_data_hex; skipped", txid)
                return None
        except (TypeError, ValueError):
            return None
    contracts = raw.get("contract")
    if not isinstance(contracts, list) or len(contracts) != 1 or not isinstance(contracts[0], dict):
        return None
    contract = contracts[0]
    value = (contract.get("parameter") or {}).get("value") or {}
    if contract.get("type") != "TransferContract" or not isinstance(value, dict):
        return None
    amount = value.get("amount")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        return None
    if not same_address(value.get("to_address", ""), address):
        return None
    return ObservedTransfer(txid=txid.lower(), position=0, amount_base_units=amount,
                            sender=normalise(value.get("owner_address", "")) or "",
                            slot=row.get("blockNumber") if isinstance(row.get("blockNumber"), int) else None,
                            block_time=_block_time(row.get("block_timestamp")), finality=finality)


def _topic_address(topic) -> str | None:
    if not isinstance(topic, str) or len(topic) != 64:
        return None
    if topic[:24].strip("0"):
        return None  # an address topic is 12 zero bytes then 20 address bytes
    return normalise(topic[24:])


def _token_transfers(info: dict, *, txid: str, address: str, contract: str,
                     finality: str) -> list[ObservedTransfer]:
    """Transfer events of `contract` to `address` in a transaction's info (the node's
    gettransactioninfobyid), only when its receipt says SUCCESS."""
    receipt = info.get("receipt") or {}
    if str(info.get("id", "")).lower() != txid or receipt.get("result") != "SUCCESS":
        return []
    if info.get("result") == "FAILED":
        return []
    found = []
    for index, log in enumerate(info.get("log") or []):
        if not isinstance(log, dict) or normalise(log.get("address", "")) != contract:
            continue  # another contract's event: a look-alike token never counts
        topics = log.get("topics") or []
        if len(topics) != 3 or str(topics[0]).lower() != TRANSFER_TOPIC:
            continue  # not Transfer(address,address,uint256): Approval and others
        if _topic_address(topics[2]) != address:
            continue
        data = log.get("data")
        try:
            amount = int(data, 16) if isinstance(data, str) and len(data) == 64 else 0
        except ValueError:
            amount = 0
        if amount <= 0:
            continue
        found.append(ObservedTransfer(
            txid=txid, position=index, amount_base_units=amount, sender=_topic_address(topics[1]) or "",
            slot=info.get("blockNumber") if isinstance(info.get("blockNumber"), int) else None,
            block_time=_block_time(info.get("blockTimeStamp")), finality=finality))
    return found


_chain = None


def trongrid_config() -> dict:
    """The TronGrid client's settings, read each time so a changed setting takes effect."""
    return {"endpoint": settings.AEROLITH_TRONGRID_URL.rstrip("/"),
            "api_key": settings.AEROLITH_TRONGRID_API_KEY,
            "timeout": settings.AEROLITH_TRONGRID_TIMEOUT,
            "retries": settings.AEROLITH_TRONGRID_RETRIES,
            "backoff": settings.AEROLITH_TRONGRID_BACKOFF}


def tron_chain() -> TronGridChain:
    """The configured chain. Tests point AEROLITH_TRONGRID_URL at tests/fakes/trongrid.py."""
    global _chain
    config = trongrid_config()
    if _chain is None or _chain.config() != tuple(config.values()):
        _chain = TronGridChain(**config)
    return _chain
