"""Sending on Tron (SPEC §6 "Sending"): build TRX and USDT-TRC20 transfers offline, sign
them with a key derived from the sealed account xprv, broadcast the signed JSON, read
their fate. Services call `tron_sender()`; nothing here logs or returns a private key.

Encoding: a Tron transaction's id is sha256 over `Transaction.raw` (protobuf). tronpy's
offline builder needs the optional `protobuf` package, which is not installed, so
`encode_raw_data` hand-encodes just what a TransferContract or TriggerSmartContract needs
(checked against a real Nile transaction in tests/billing/test_crypto_tron.py; the
TronGrid fake uses this same encoder).

- Reference block: the node's head block (`/wallet/getnowblock`): ref_block_bytes are
  bytes 6..8 of its number, ref_block_hash bytes 8..16 of its id. A transaction expires
  EXPIRATION_MS after the head block's time; after that it can never land.
- Signing: `tronpy.keys.PrivateKey.sign_msg_hash` over the txid (65-byte r‖s‖v).
- What is persisted and broadcast is the JSON `/wallet/broadcasttransaction` takes
  (`raw_data`, `raw_data_hex`, `signature`, `txID`, `visible: false`), serialised once;
  a retry sends those very bytes. A node that already has the transaction answers
  DUP_TRANSACTION_ERROR: that is success here, never a reason to sign again.
- Fate: `/walletsolidity/gettransactioninfobyid` ({} until solidified). A transaction
  that is not there once the solidified head is past its expiration never landed.

Fees: a TRX transfer only spends bandwidth (~270 bytes), which every activated account
gets free up to a daily allowance (600 points), so a TRX sweep moves the whole received
amount. A TRC20 transfer also burns energy (~65 000, or ~130 000 to an address holding no
USDT); a deposit address has none, so it is funded with TRX first (see the sweep
service), up to `fee_limit` sun of which may be burnt.
"""
import hashlib
import json
from dataclasses import dataclass

from .solana import ChainUnavailable
from .tron import TronGridChain, normalise, trongrid_config

EXPIRATION_MS = 60_000
DUP_TRANSACTION = "DUP_TRANSACTION_ERROR"
# keccak256("transfer(address,uint256)")[:4]
TRANSFER_SELECTOR = "a9059cbb"
TRANSFER_TYPE_URL = "type.googleapis.com/protocol.TransferContract"
TRIGGER_TYPE_URL = "type.googleapis.com/protocol.TriggerSmartContract"
CONTRACT_TYPES = {"TransferContract": 1, "TriggerSmartContract": 31}


class TronBroadcastRefused(ChainUnavailable):
    code = "broadcast_refused"
    title = "Transaction refused by the node"


# --- protobuf, just what Transaction.raw needs ---------------------------------------------------

def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value) if value else b""


def _bytes_field(number: int, value: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(value)) + value if value else b""


def encode_raw_data(raw: dict) -> bytes:
    """protocol.Transaction.raw of a transaction with one Transfer- or TriggerSmartContract
    (addresses as 41… hex)."""
    (contract,) = raw["contract"]
    value = contract["parameter"]["value"]
    if contract["type"] == "TransferContract":
        body = (_bytes_field(1, bytes.fromhex(value["owner_address"]))
                + _bytes_field(2, bytes.fromhex(value["to_address"])) + _int_field(3, value["amount"]))
    else:
        body = (_bytes_field(1, bytes.fromhex(value["owner_address"]))
                + _bytes_field(2, bytes.fromhex(value["contract_address"]))
                + _int_field(3, value.get("call_value", 0)) + _bytes_field(4, bytes.fromhex(value["data"])))
    any_ = _bytes_field(1, contract["parameter"]["type_url"].encode()) + _bytes_field(2, body)
    contract_bytes = _int_field(1, CONTRACT_TYPES[contract["type"]]) + _bytes_field(2, any_)
    return (_bytes_field(1, bytes.fromhex(raw["ref_block_bytes"]))
            + _bytes_field(4, bytes.fromhex(raw["ref_block_hash"]))
            + _int_field(8, raw["expiration"]) + _bytes_field(10, bytes.fromhex(raw.get("data", "")))
            + _bytes_field(11, contract_bytes) + _int_field(14, raw["timestamp"])
            + _int_field(18, raw.get("fee_limit", 0)))


def hex41(address: str) -> str:
    """41… hex of a base58 or hex Tron address; ValueError when it is not one."""
    from tronpy.keys import to_hex_address

    base58 = normalise(address)
    if base58 is None:
        raise ValueError("Not a Tron address.")
    return to_hex_address(base58)


def trx_contract(owner: str, to: str, amount: int) -> dict:
    return {"parameter": {"value": {"amount": int(amount), "owner_address": hex41(owner),
                                    "to_address": hex41(to)}, "type_url": TRANSFER_TYPE_URL},
            "type": "TransferContract"}


def trc20_transfer_contract(owner: str, token: str, to: str, amount: int) -> dict:
    data = TRANSFER_SELECTOR + "0" * 24 + hex41(to)[2:] + f"{int(amount):064x}"
    return {"parameter": {"value": {"data": data, "owner_address": hex41(owner),
                                    "contract_address": hex41(token)}, "type_url": TRIGGER_TYPE_URL},
            "type": "TriggerSmartContract"}


@dataclass(frozen=True)
class HeadBlock:
    number: int
    block_id: str
    timestamp_ms: int


@dataclass(frozen=True)
class SignedTronTransaction:
    signed_bytes: bytes  # the broadcasttransaction JSON, serialised once
    txid: str
    expiration_ms: int
    owner: str  # base58


def raw_for(contract: dict, head: HeadBlock, *, fee_limit: int = 0) -> dict:
    raw = {"contract": [contract], "ref_block_bytes": f"{head.number:016x}"[12:16],
           "ref_block_hash": head.block_id[16:32], "expiration": head.timestamp_ms + EXPIRATION_MS,
           "timestamp": head.timestamp_ms}
    if fee_limit:
        raw["fee_limit"] = int(fee_limit)
    return raw


def sign_raw(raw: dict, private_key: bytes) -> SignedTronTransaction:
    """Sign `raw` with a 32-byte secp256k1 key, which must own the contract's owner address."""
    from tronpy.keys import PrivateKey

    key = PrivateKey(bytes(private_key))
    owner = raw["contract"][0]["parameter"]["value"]["owner_address"]
    if key.public_key.to_hex_address() != owner:
        raise ValueError("The derived key does not own the address it is asked to send from.")
    raw_hex = encode_raw_data(raw).hex()
    txid = hashlib.sha256(bytes.fromhex(raw_hex)).hexdigest()
    signature = key.sign_msg_hash(bytes.fromhex(txid)).hex()
    body = {"visible": False, "txID": txid, "raw_data": raw, "raw_data_hex": raw_hex, "signature": [signature]}
    return SignedTronTransaction(signed_bytes=json.dumps(body, sort_keys=True, separators=(",", ":")).encode(),
                                 txid=txid, expiration_ms=raw["expiration"],
                                 owner=key.public_key.to_base58check_address())


def txid_of(signed_bytes: bytes) -> str:
    return json.loads(bytes(signed_bytes))["txID"]


# --- keys ----------------------------------------------------------------------------------------

def account_from_xprv(xprv: str):
    """The bip-utils BIP44 account (m/44'/195'/0') of an account-level extended private
    key; ValueError (never repeating the input) when it is not one."""
    from bip_utils import Bip44, Bip44Coins, Bip44Levels

    text = (xprv or "").strip()
    if text[1:4] != "prv":
        raise ValueError("That is not an extended private key (xprv…).")
    try:
        account = Bip44.FromExtendedKey(text, Bip44Coins.TRON)
    except Exception:  # noqa: BLE001 - bip-utils raises several kinds for bad keys
        raise ValueError("That is not a valid BIP32 extended private key.") from None
    if account.Level() != Bip44Levels.ACCOUNT or account.IsPublicOnly():
        raise ValueError("Give the ACCOUNT-level extended private key (m/44'/195'/0').")
    return account


def derived_private_key(xprv: str, change: int, index: int) -> bytes:
    from bip_utils import Bip44Changes

    chain = Bip44Changes.CHAIN_EXT if change == 0 else Bip44Changes.CHAIN_INT
    return account_from_xprv(xprv).Change(chain).AddressIndex(index).PrivateKey().Raw().ToBytes()


def internal_address(xpub: str, index: int) -> str:
    """The address at 1/index (the internal chain) of the account xpub."""
    from bip_utils import Bip44, Bip44Changes, Bip44Coins

    return Bip44.FromExtendedKey(xpub, Bip44Coins.TRON).Change(Bip44Changes.CHAIN_INT) \
        .AddressIndex(index).PublicKey().ToAddress()


# --- the node ------------------------------------------------------------------------------------

class TronSender(TronGridChain):
    def _client(self):
        import httpx

        headers = {"Accept": "application/json", "User-Agent": "aerolith-billing"}
        if self.api_key:
            headers["TRON-PRO-API-KEY"] = self.api_key
        return httpx.Client(base_url=self.endpoint, timeout=self.timeout, headers=headers)

    def head(self, *, solid: bool = False) -> HeadBlock:
        path = "/walletsolidity/getnowblock" if solid else "/wallet/getnowblock"
        with self._client() as client:
            body = self._request(client, "POST", path, json={})
        try:
            raw = body["block_header"]["raw_data"]
            return HeadBlock(number=int(raw["number"]), block_id=str(body["blockID"]),
                             timestamp_ms=int(raw["timestamp"]))
        except (KeyError, TypeError, ValueError):
            raise ChainUnavailable(f"TronGrid at {self.endpoint} answered {path} without a block.") from None

    def broadcast(self, signed_bytes: bytes) -> str:
        """Send the persisted JSON as it is; returns the txid. DUP_TRANSACTION_ERROR is
        success. Raises TronBroadcastRefused or ChainUnavailable."""
        txid = txid_of(signed_bytes)
        with self._client() as client:
            body = self._request(client, "POST", "/wallet/broadcasttransaction", content=bytes(signed_bytes),
                                 headers={"Content-Type": "application/json"})
        if not isinstance(body, dict):
            raise ChainUnavailable("TronGrid answered the broadcast with something that is not an object.")
        if body.get("result") is True or body.get("code") == DUP_TRANSACTION:
            return txid
        message = body.get("message", "")
        try:
            message = bytes.fromhex(message).decode("utf-8", "replace")
        except (TypeError, ValueError):
            pass
        raise TronBroadcastRefused(f"The Tron node refused transaction {txid}: {body.get('code', '?')} "
                                   f"{message}".strip())

    def solid_info(self, txid: str) -> dict:
        """The solidified transaction info ({} when not solidified or unknown)."""
        with self._client() as client:
            return self._post(client, "/walletsolidity/gettransactioninfobyid", txid)


def outcome(info: dict) -> tuple[bool, str]:
    """(succeeded, error) of a solidified transaction's info."""
    receipt = info.get("receipt") or {}
    result = receipt.get("result")
    if info.get("result") == "FAILED" or (result not in (None, "SUCCESS")):
        return False, str(result or info.get("resMessage") or "FAILED")
    return True, ""


_sender = None


def tron_sender() -> TronSender:
    global _sender
    config = trongrid_config()
    if _sender is None or _sender.config() != tuple(config.values()):
        _sender = TronSender(**config)
    return _sender
