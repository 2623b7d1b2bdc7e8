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
- POST /wallet/getnowblock, /walletsolidity/getnowblock (head / solidified head)
- POST /wallet/broadcasttransaction: checks raw_data_hex encodes raw_data, txID is its
  sha256, the signature recovers to the owner, the expiration is ahead of the head and
  the owner's TRX balance (what it received minus what it sent and burnt); a known txID
  answers DUP_TRANSACTION_ERROR. A TRC20 transfer burns SWEEP_ENERGY_FEE sun, or fails
  OUT_OF_ENERGY (burning what the owner has) when it holds less. Accepted bytes are kept
  in `server.broadcasts`; `server.refuse_broadcasts` makes the node answer HTTP 500.
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

from tronpy.keys import PrivateKey, Signature, keccak256, to_base58check_address, to_hex_address

from .wallet_page import field as wallet_field
from .wallet_page import form_fields, render, send_html

TRANSFER_TOPIC = keccak256(b"Transfer(address,address,uint256)").hex()
APPROVAL_TOPIC = keccak256(b"Approval(address,address,uint256)").hex()
TRANSFER_SELECTOR = keccak256(b"transfer(address,uint256)")[:4].hex()
PAGE_MAX = 200
SWEEP_ENERGY_FEE = 13_844_850  # SUN a USDT transfer burns without energy
USDT_MAINNET = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"


# protobuf encoding lives in product code now (billing/payments/tron_tx.py); re-exported here
from billing.payments.tron_tx import encode_raw_data  # noqa: E402,F401


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
    sender: str = ""  # base58
    amount: int = 0  # SUN (TRX) or token units
    fee: int = 0  # SUN burnt
    ok: bool = True


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
                                   info=info, sender=key.public_key.to_base58check_address(), amount=amount,
                                   ok=ret == "SUCCESS"))
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
                                   trc20_row=trc20_row, info=info, contract=to_base58check_address(contract),
                                   sender=sender, amount=amount, ok=ret == "SUCCESS"))
        return txid

    def trx_balance(self, address: str) -> int:
        address = to_base58check_address(address)
        total = 0
        for tx in self.txs:
            if tx.sender == address:
                total -= tx.fee
            if not tx.ok or tx.contract:
                continue
            total += tx.amount * ((tx.to == address) - (tx.sender == address))
        return total

    def token_balance(self, contract: str, address: str) -> int:
        address, contract = to_base58check_address(address), to_base58check_address(contract)
        return sum(tx.amount * ((tx.to == address) - (tx.sender == address))
                   for tx in self.txs if tx.ok and tx.contract == contract)

    def head(self) -> dict:
        return {"blockID": f"{self.block:016x}" + hashlib.sha256(str(self.block).encode()).hexdigest()[:48],
                "block_header": {"raw_data": {"number": self.block, "timestamp": self.clock_ms}}}

    def accept(self, body: dict) -> dict:
        """/wallet/broadcasttransaction of a signed transaction (see the module docstring)."""
        def refuse(code, message):
            return {"result": False, "code": code, "txid": body.get("txID"), "message": message.encode().hex()}

        raw, raw_hex, txid = body.get("raw_data") or {}, body.get("raw_data_hex", ""), body.get("txID", "")
        with self.lock:
            if encode_raw_data(raw).hex() != raw_hex or hashlib.sha256(bytes.fromhex(raw_hex)).hexdigest() != txid:
                return refuse("SIGERROR", "raw_data_hex or txID does not match raw_data")
            if any(t.txid == txid for t in self.txs):
                return {"code": "DUP_TRANSACTION_ERROR", "txid": txid, "message": b"dup transaction".hex()}
            if raw["expiration"] <= self.clock_ms:
                return refuse("TRANSACTION_EXPIRATION_ERROR", "Transaction expired")
            (contract,) = raw["contract"]
            value = contract["parameter"]["value"]
            owner = to_base58check_address(value["owner_address"])
            signer = Signature.fromhex(body["signature"][0]).recover_public_key_from_msg_hash(bytes.fromhex(txid))
            if signer.to_base58check_address() != owner:
                return refuse("SIGERROR", "Validate signature error: not the owner")
            balance = self.trx_balance(owner)
            self.block += 1
            self.clock_ms += 3000
            if contract["type"] == "TransferContract":
                if balance < value["amount"]:
                    return refuse("CONTRACT_VALIDATE_ERROR", "Validate TransferContract error, balance is "
                                                             "not sufficient.")
                to = to_base58check_address(value["to_address"])
                row = {"ret": [{"contractRet": "SUCCESS", "fee": 0}], "signature": body["signature"],
                       "txID": txid, "raw_data_hex": raw_hex, "raw_data": raw, "blockNumber": self.block,
                       "block_timestamp": self.clock_ms}
                info = {"id": txid, "blockNumber": self.block, "blockTimeStamp": self.clock_ms,
                        "receipt": {"net_usage": 268}}
                self.txs.append(TronTx(txid, to, self.block, self.clock_ms, row=row, info=info, sender=owner,
                                       amount=value["amount"]))
                return {"result": True, "txid": txid}
            data = value["data"]
            to = to_base58check_address("41" + data[8 + 24:8 + 64])
            amount = int(data[8 + 64:], 16)
            token = to_base58check_address(value["contract_address"])
            ok, result = True, "SUCCESS"
            if balance < SWEEP_ENERGY_FEE:
                ok, result, fee = False, "OUT_OF_ENERGY", max(balance, 0)
            else:
                fee = SWEEP_ENERGY_FEE
                if self.token_balance(token, owner) < amount:
                    ok, result = False, "REVERT"
            info = {"id": txid, "fee": fee, "blockNumber": self.block, "blockTimeStamp": self.clock_ms,
                    "contract_address": value["contract_address"],
                    "receipt": {"energy_usage_total": 64_285, "net_usage": 345, "result": result},
                    "log": [{"address": value["contract_address"][2:],
                             "topics": [TRANSFER_TOPIC, _word(owner), _word(to)], "data": f"{amount:064x}"}]
                    if ok else []}
            if not ok:
                info["result"] = "FAILED"
            self.txs.append(TronTx(txid, to, self.block, self.clock_ms, info=info, contract=token, sender=owner,
                                   amount=amount, fee=fee, ok=ok))
            return {"result": True, "txid": txid}

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
        self.broadcasts: list[bytes] = []
        self.refuse_broadcasts = 0  # answer this many broadcasts with HTTP 500
        self.solid_lag_ms = 0  # how far the solidified head trails the head
        self.wallet_payer = PrivateKey.random()  # the /wallet page's sender (pays straight into the ledger)
        self.usdt_contract = USDT_MAINNET
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
                parts = urlsplit(self.path)
                if parts.path == "/wallet":
                    fields = form_fields(parts.query)
                    return send_html(self, 200, server.wallet_page(
                        fields.get("address", ""), fields.get("amount", ""), fields.get("currency", "usdt")))
                if self._fault():
                    return
                parts = urlsplit(self.path)
                query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
                segments = parts.path.strip("/").split("/")
                if segments[:2] != ["v1", "accounts"] or len(segments) not in (4, 5):
                    return self._answer(404, {"Error": "not found"})
                self._answer(200, server.listing(segments[2], trc20=len(segments) == 5, query=query))

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                if urlsplit(self.path).path == "/wallet":
                    return send_html(self, *server.wallet_post(form_fields(self.rfile.read(length))))
                if self._fault():
                    return
                payload = self.rfile.read(length)
                body = json.loads(payload or b"{}")
                path = urlsplit(self.path).path
                if path in ("/wallet/getnowblock", "/walletsolidity/getnowblock"):
                    head = server.ledger.head()
                    if path.startswith("/walletsolidity"):
                        head["block_header"]["raw_data"]["timestamp"] -= server.solid_lag_ms
                    return self._answer(200, head)
                if path == "/wallet/broadcasttransaction":
                    if server.refuse_broadcasts:
                        server.refuse_broadcasts -= 1
                        return self._answer(500, {"Error": "internal"})
                    server.broadcasts.append(payload)
                    return self._answer(200, server.ledger.accept(body))
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

    # --- the test wallet page (GET/POST /wallet) ---------------------------------------------

    def wallet_page(self, address: str = "", amount: str = "", currency: str = "usdt", message: str = "",
                    ok: bool = True) -> bytes:
        intro = (f"Sends TRX or USDT (TRC-20, contract <code>{self.usdt_contract}</code>) from the test sender "
                 f"<code>{self.wallet_payer.public_key.to_base58check_address()}</code>. The transfer is "
                 "unconfirmed at once; press Solidify to confirm it, then wait for the portal's next scan.")
        form = ('<form method="post" action="/wallet">' + wallet_field("Deposit address", "address", address)
                + wallet_field("Amount", "amount", amount) + wallet_field("Currency", "currency", currency.lower(),
                                                            choices=("usdt", "trx"))
                + '<button name="action" value="pay">Send</button>'
                + '<button name="action" value="solidify">Solidify</button></form>')
        return render("Tron test wallet", intro, form, message, ok)

    def wallet_post(self, fields: dict[str, str]) -> tuple[int, bytes]:
        """Send the posted transfer (action pay) or solidify every block (action solidify);
        (HTTP status, page). Bad input answers 400 with the reason, never an exception."""
        address, amount = fields.get("address", ""), fields.get("amount", "")
        currency = fields.get("currency", "usdt").lower()

        def page(status, message, ok=True):
            return status, self.wallet_page(address, amount, currency, message, ok)

        if fields.get("action") == "solidify":
            self.ledger.solidify()
            return page(200, "Every transaction so far is solidified (confirmed).")
        if currency not in ("usdt", "trx"):
            return page(400, f"Unknown currency {currency!r}: choose USDT or TRX.", ok=False)
        try:
            to = to_base58check_address(address)
        except Exception:  # noqa: BLE001 - tronpy raises several kinds for garbage
            return page(400, "The deposit address is not a Tron address.", ok=False)
        try:
            units = units_of(amount)
        except ValueError as error:
            return page(400, str(error), ok=False)
        if currency == "trx":
            txid = self.ledger.pay_trx(self.wallet_payer, to, units)
        else:
            txid = self.ledger.pay_trc20(self.wallet_payer, self.usdt_contract, to, units)
        return page(200, f"Sent {txid} (unconfirmed). Press Solidify to confirm it.")

    def start(self) -> "TronGridServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def units_of(amount: str) -> int:
    """Base units (6 decimals, TRX's sun and USDT's) of a plain decimal amount; ValueError
    saying why for anything else."""
    text = amount.strip()
    whole, dot, fraction = text.partition(".")
    if not whole.isdigit() or (dot and not fraction.isdigit()):
        raise ValueError(f"The amount {amount!r} is not a plain decimal number.")
    if len(fraction) > 6:
        raise ValueError(f"The amount {amount} has more than 6 decimals.")
    units = int(whole) * 10**6 + int(fraction.ljust(6, "0") or 0)
    if units <= 0:
        raise ValueError("The amount must be more than zero.")
    return units


def main(argv=None) -> None:  # pragma: no cover - for trying Tron payments by hand in test mode
    """Serve the fake on 127.0.0.1:8090 (test mode's AEROLITH_TRONGRID_URL) and pay what is
    typed: `<deposit address> <amount in coins> [trx|usdt]`; `solid` solidifies everything.
    `--no-stdin` serves until terminated without reading stdin (scripts/run.py)."""
    import argparse
    import sys
    from http.server import ThreadingHTTPServer as Server

    parser = argparse.ArgumentParser(description="A TronGrid fake for test mode.")
    parser.add_argument("port_arg", nargs="?", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--no-stdin", action="store_true")
    args = parser.parse_args(argv)
    server = TronGridServer()
    server.httpd.server_close()
    server.httpd = Server(("127.0.0.1", args.port_arg or args.port), server.httpd.RequestHandlerClass)
    server.httpd.daemon_threads = True
    server.url = f"http://127.0.0.1:{server.httpd.server_address[1]}"
    server.thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    server.start()
    payer = server.wallet_payer
    print(f"TronGrid fake on {server.url}; payer {payer.public_key.to_base58check_address()}")
    print(f"Test wallet page: {server.url}/wallet", flush=True)
    if args.no_stdin:
        import signal

        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        stop.wait()
        server.stop()
        return
    print("Type '<address> <amount> [trx|usdt]' to pay, 'solid' to solidify, Ctrl-D to stop.", flush=True)
    for line in sys.stdin:
        words = line.split()
        try:
            if words == ["solid"]:
                server.ledger.solidify()
                print("solidified", flush=True)
            elif len(words) in (2, 3):
                units = units_of(words[1])
                if (words[2] if len(words) == 3 else "usdt").lower() == "trx":
                    print("txid", server.ledger.pay_trx(payer, words[0], units), flush=True)
                else:
                    print("txid", server.ledger.pay_trc20(payer, server.usdt_contract, words[0], units), flush=True)
        except (ValueError, ArithmeticError) as exc:
            print("error:", exc, flush=True)
    server.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
