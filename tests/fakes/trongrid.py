"""A TronGrid-shaped HTTP fake for Tron payment tests (stdlib ThreadingHTTPServer, port 0).

Transactions are real Tron transactions made offline: `raw_data` is protobuf-encoded here
(tronpy's offline builder needs the optional protobuf package, which is not installed;
the encoder is checked against a real Nile capture in the tests), the txID is the sha256 of
those bytes and the signature is tronpy's secp256k1 signature of the txID with a
throwaway key. TRC20 transfers are TriggerSmartContract calls of `transfer(address,
uint256)` whose transaction info carries the event log a node reports (topic0, indexed
from/to, the value word).

Served, as TronGrid does:
- GET  /v1/accounts/{address}/transactions        (only_to, only_confirmed, only_unconfirmed,
                                                    limit ≤ 200, fingerprint)
- GET  /v1/accounts/{address}/transactions/trc20  (same, plus contract_address)
- POST /wallet/gettransactioninfobyid, /walletsolidity/gettransactioninfobyid ({} until
  the block is solidified)
Faults: `server.faults` is a list consumed one per request: "429" (with Retry-After: 0),
"500", or "timeout" (the answer comes after `timeout_delay` seconds).
"""
import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tronpy.keys import PrivateKey, keccak256, to_base58check_address, to_hex_address

TRANSFER_TOPIC = keccak256(b"Transfer(address,address,uint256)").hex()
APPROVAL_TOPIC = keccak256(b"Approval(address,address,uint256)").hex()
TRANSFER_SELECTOR = keccak256(b"transfer(address,uint256)")[:4].hex()
PAGE_MAX = 200


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


CONTRACT_TYPES = {"TransferContract": 1, "TriggerSmartContract": 31}


def encode_raw_data(raw: dict) -> bytes:
    """protocol.Transaction.raw of a transaction with one Transfer- or TriggerSmartContract."""
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


def _word(address: str) -> str:
    return "0" * 24 + to_hex_address(address)[2:]


@dataclass
class TronTx:
    txid: str
    to: str  # base58
    block: int
    timestamp_ms: int
    row: dict | None = None  # /transactions row (TRX)
    trc20_row: dict | None = None  # /transactions/trc20 row
    info: dict = field(default_factory=dict)
    contract: str = ""
    solid: bool = False


class TronLedger:
    """Offline Tron transactions and the blocks they land in."""

    def __init__(self):
        self.txs: list[TronTx] = []
        self.block = 60_000_000
        self.clock_ms = 1_764_300_000_000
        self.lock = threading.Lock()

    def _signed(self, key: PrivateKey, contract: dict, *, fee_limit: int = 0) -> tuple[str, dict, str, str]:
        self.block += 1
        self.clock_ms += 3000
        ref = f"{self.block - 1:016x}" + hashlib.sha256(str(self.block).encode()).hexdigest()[:16]
        raw = {"contract": [contract], "ref_block_bytes": ref[12:16], "ref_block_hash": ref[16:32],
               "expiration": self.clock_ms + 60_000, "timestamp": self.clock_ms}
        if fee_limit:
            raw["fee_limit"] = fee_limit
        raw_hex = encode_raw_data(raw).hex()
        txid = hashlib.sha256(bytes.fromhex(raw_hex)).hexdigest()
        signature = key.sign_msg_hash(bytes.fromhex(txid)).hex()
        return txid, raw, raw_hex, signature

    def pay_trx(self, key: PrivateKey, to: str, amount: int, *, ret: str = "SUCCESS") -> str:
        owner = key.public_key.to_hex_address()
        contract = {"parameter": {"value": {"amount": amount, "owner_address": owner,
                                            "to_address": to_hex_address(to)},
                                  "type_url": "type.googleapis.com/protocol.TransferContract"},
                    "type": "TransferContract"}
        with self.lock:
            txid, raw, raw_hex, signature = self._signed(key, contract)
            row = {"ret": [{"contractRet": ret, "fee": 0}], "signature": [signature], "txID": txid,
                   "net_usage": 268, "raw_data_hex": raw_hex, "net_fee": 0, "energy_usage": 0,
                   "blockNumber": self.block, "block_timestamp": self.clock_ms, "energy_fee": 0,
                   "energy_usage_total": 0, "raw_data": raw, "internal_transactions": []}
            info = {"id": txid, "blockNumber": self.block, "blockTimeStamp": self.clock_ms,
                    "receipt": {"net_usage": 268}}
            self.txs.append(TronTx(txid, to_base58check_address(to), self.block, self.clock_ms, row=row,
                                   info=info))
        return txid

    def pay_trc20(self, key: PrivateKey, contract: str, to: str, amount: int, *, symbol: str = "USDT",
                  event: str = "Transfer", ret: str = "SUCCESS") -> str:
        """A `transfer(to, amount)` call of `contract`; its log says `event` (Transfer, or
        Approval for the negative case) and its receipt `ret` (SUCCESS, REVERT, …)."""
        sender = key.public_key.to_base58check_address()
        data = TRANSFER_SELECTOR + _word(to) + f"{amount:064x}"
        call = {"parameter": {"value": {"data": data, "owner_address": to_hex_address(sender),
                                        "contract_address": to_hex_address(contract)},
                              "type_url": "type.googleapis.com/protocol.TriggerSmartContract"},
                "type": "TriggerSmartContract"}
        with self.lock:
            txid, _raw, _raw_hex, _signature = self._signed(key, call, fee_limit=30_000_000)
            topic = TRANSFER_TOPIC if event == "Transfer" else APPROVAL_TOPIC
            info = {"id": txid, "fee": 13_844_850, "blockNumber": self.block, "blockTimeStamp": self.clock_ms,
                    "contractResult": [""], "contract_address": to_hex_address(contract),
                    "receipt": {"energy_usage_total": 64_285, "net_usage": 345, "result": ret},
                    "log": [{"address": to_hex_address(contract)[2:],
                             "topics": [topic, _word(sender), _word(to)], "data": f"{amount:064x}"}]}
            if ret != "SUCCESS":
                info["result"] = "FAILED"
            trc20_row = {"transaction_id": txid, "token_info": {"symbol": symbol, "address": contract,
                                                                "decimals": 6, "name": "Tether USD"},
                         "block_timestamp": self.clock_ms, "from": sender, "to": to_base58check_address(to),
                         "type": event, "value": str(amount)}
            self.txs.append(TronTx(txid, to_base58check_address(to), self.block, self.clock_ms,
                                   trc20_row=trc20_row, info=info, contract=to_base58check_address(contract)))
        return txid

    def solidify(self) -> None:
        with self.lock:
            for tx in self.txs:
                tx.solid = True


class TronGridServer:
    def __init__(self):
        self.ledger = TronLedger()
        self.faults: list[str] = []
        self.timeout_delay = 0.6
        self.requests: list[str] = []
        self.ignore_contract_filter = False
        self.base58_in_raw_data = False
        self.api_keys: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status: int, body, headers=None):
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _fault(self) -> bool:
                server.requests.append(self.path)
                server.api_keys.append(self.headers.get("TRON-PRO-API-KEY"))
                fault = server.faults.pop(0) if server.faults else None
                if fault == "429":
                    self._answer(429, {"Error": "rate limited"}, {"Retry-After": "0"})
                elif fault == "500":
                    self._answer(500, {"Error": "internal"})
                elif fault == "timeout":
                    time.sleep(server.timeout_delay)
                    self._answer(200, {"data": [], "success": True, "meta": {}})
                return fault is not None

            def do_GET(self):
                if self._fault():
                    return
                parts = urlsplit(self.path)
                query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
                segments = parts.path.strip("/").split("/")
                if segments[:2] != ["v1", "accounts"] or len(segments) not in (4, 5):
                    return self._answer(404, {"Error": "not found"})
                self._answer(200, server.listing(segments[2], trc20=len(segments) == 5, query=query))

            def do_POST(self):
                if self._fault():
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                path = urlsplit(self.path).path
                if path not in ("/wallet/gettransactioninfobyid", "/walletsolidity/gettransactioninfobyid"):
                    return self._answer(404, {"Error": "not found"})
                tx = next((t for t in server.ledger.txs if t.txid == body.get("value")), None)
                if tx is None or (path.startswith("/walletsolidity") and not tx.solid):
                    return self._answer(200, {})
                self._answer(200, tx.info)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def listing(self, address: str, *, trc20: bool, query: dict) -> dict:
        try:
            address = to_base58check_address(address)
        except ValueError:
            return {"success": False, "error": "invalid address", "data": []}
        limit = min(int(query.get("limit", 20)), PAGE_MAX)
        contract = query.get("contract_address")
        rows = []
        for tx in sorted(self.ledger.txs, key=lambda t: (-t.timestamp_ms, t.txid)):
            row = tx.trc20_row if trc20 else tx.row
            if row is None or (query.get("only_to") == "true" and tx.to != address):
                continue
            if query.get("only_confirmed") == "true" and not tx.solid:
                continue
            if query.get("only_unconfirmed") == "true" and tx.solid:
                continue
            if trc20 and contract and not self.ignore_contract_filter and tx.contract != \
                    to_base58check_address(contract):
                continue
            if not trc20 and self.base58_in_raw_data:
                row = json.loads(json.dumps(row))
                value = row["raw_data"]["contract"][0]["parameter"]["value"]
                value["to_address"] = to_base58check_address(value["to_address"])
                value["owner_address"] = to_base58check_address(value["owner_address"])
            rows.append(row)
        fingerprint = query.get("fingerprint")
        start = int(base64.urlsafe_b64decode(fingerprint).decode()) if fingerprint else 0
        page = rows[start:start + limit]
        meta = {"at": self.ledger.clock_ms, "page_size": len(page)}
        if start + limit < len(rows):
            meta["fingerprint"] = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
            meta["links"] = {"next": f"{self.url}/v1/accounts/{address}/transactions?fingerprint="
                                     f"{meta['fingerprint']}"}
        return {"data": page, "success": True, "meta": meta}

    def start(self) -> "TronGridServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def main() -> None:  # pragma: no cover - for trying Tron payments by hand in test mode
    """Serve the fake on 127.0.0.1:8090 (test mode's AEROLITH_TRONGRID_URL) and pay what is
    typed: `<deposit address> <amount in coins> [trx|usdt]`; `solid` solidifies everything."""
    import sys
    from decimal import Decimal
    from http.server import ThreadingHTTPServer as Server

    server = TronGridServer()
    server.httpd.server_close()
    server.httpd = Server(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 8090),
                          server.httpd.RequestHandlerClass)
    server.httpd.daemon_threads = True
    server.url = f"http://127.0.0.1:{server.httpd.server_address[1]}"
    server.thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    server.start()
    payer = PrivateKey.random()
    usdt = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
    print(f"TronGrid fake on {server.url}; payer {payer.public_key.to_base58check_address()}")
    print("Type '<address> <amount> [trx|usdt]' to pay, 'solid' to solidify, Ctrl-D to stop.")
    for line in sys.stdin:
        words = line.split()
        try:
            if words == ["solid"]:
                server.ledger.solidify()
                print("solidified")
            elif len(words) in (2, 3):
                units = int(Decimal(words[1]) * 10**6)
                if (words[2] if len(words) == 3 else "usdt").lower() == "trx":
                    print("txid", server.ledger.pay_trx(payer, words[0], units))
                else:
                    print("txid", server.ledger.pay_trc20(payer, usdt, words[0], units))
        except (ValueError, ArithmeticError) as exc:
            print("error:", exc)
    server.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
