"""A Solana JSON-RPC endpoint serving LiteSVM (`solders.litesvm`), for the product's real
RPC client (solana-py) in tests and in a local test-mode run.

LiteSVM executes real transactions — system transfers, a real SPL token mint, associated
token accounts — but has no RPC server and no history by address. This adapter keeps what
an RPC node keeps: every transaction sent through it with its slot, account keys, lamport
and token balances before and after, and its error. It answers, in the documented shapes
(https://solana.com/docs/rpc/http):

- getSignaturesForAddress (newest first, `before`/`until`/`limit` ≤ 1000 pagination,
  failed transactions listed with their `err`, `confirmationStatus` per signature);
- getTransaction with encoding jsonParsed (accountKeys as objects, meta with
  pre/postBalances, pre/postTokenBalances whose `uiTokenAmount.amount` is the exact
  integer string), null when not visible at the commitment asked;
- getLatestBlockhash (lastValidBlockHeight = height + 150), getBlockHeight (block height =
  slot here; at `finalized`, the last finalized slot), getBalance, getSlot, getHealth, getVersion, sendTransaction (a
  signature already executed is not executed again: with preflight it answers the
  "already been processed" error, with skipPreflight the signature, as a node does),
  getFeeForMessage, getSignatureStatuses, getMinimumBalanceForRentExemption,
  requestAirdrop.

Commitment: a transaction is `confirmed` when sent and `finalized` once the test calls
`finalize()` (every slot so far becomes final). Faults for retry tests: `fail_next(kind,
count)` answers the next requests with HTTP 429 (Retry-After: 0), HTTP 500 or a delay
longer than the client's timeout.

Run `python -m tests.fakes.solana_rpc --port 8899` for a local chain in test mode; it
prints a funded payer and mints USDC at the mainnet address, and `--pay` helpers below
let a person pay a quote's solana: URL from the command line.
"""
from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from solders.account import Account
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import Message, from_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import CreateAccountParams, TransferParams, create_account
from solders.system_program import transfer as system_transfer
from solders.token.associated import get_associated_token_address
from solders.transaction import Transaction, VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata
from spl.token import instructions as token_ix
from spl.token import models as token_models
from spl.token.constants import TOKEN_PROGRAM_ID

from .wallet_page import field as wallet_field
from .wallet_page import form_fields, send_html
from .wallet_page import render as wallet_render

USDC_MAINNET_MINT = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
MEMO_PROGRAM_ID = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
MINT_SIZE = 82
TOKEN_ACCOUNT_SIZE = 165
MAX_LIMIT = 1000
LAMPORTS_PER_SIGNATURE = 5000
KNOWN_ERRORS = {"AccountInUse", "AccountNotFound", "InsufficientFundsForFee", "InvalidAccountForFee",
                "AlreadyProcessed", "BlockhashNotFound", "ProgramAccountNotFound", "InvalidAccountIndex",
                "SignatureFailure", "InvalidProgramForExecution", "AccountBorrowOutstanding"}


@dataclass
class TxRecord:
    signature: str
    slot: int
    block_time: int
    keys: list[str]
    writable: list[bool]
    signer: list[bool]
    blockhash: str
    instructions: list[dict]
    pre_balances: list[int]
    post_balances: list[int]
    pre_tokens: list[dict]
    post_tokens: list[dict]
    err: object = None
    fee: int = 5000
    logs: list[str] = field(default_factory=list)


class SolanaLedger:
    """LiteSVM plus the history an RPC node would serve."""

    def __init__(self):
        from solders.litesvm import LiteSVM

        self.svm = LiteSVM()
        self.lock = threading.RLock()
        self.records: list[TxRecord] = []
        self.by_signature: dict[str, TxRecord] = {}
        self.by_address: dict[str, list[TxRecord]] = {}
        self.slot = self.svm.get_clock().slot
        self.finalized_slot = -1
        self.faults: deque = deque()
        self.calls: Counter = Counter()
        self.block_time = int(time.time())
        self.sent_raw: list[bytes] = []  # every sendTransaction payload, as received
        self.wallet_payer: Keypair | None = None  # who pays from the /wallet page

    # --- chain operations used by tests --------------------------------------------------

    def airdrop(self, pubkey: Pubkey, lamports: int) -> None:
        with self.lock:
            self.svm.airdrop(pubkey, lamports)

    def funded_keypair(self, lamports: int = 100 * 10**9) -> Keypair:
        keypair = Keypair()
        self.airdrop(keypair.pubkey(), lamports)
        return keypair

    def set_lamports(self, pubkey: Pubkey, lamports: int) -> None:
        """An account holding `lamports` (values above 2**53 included)."""
        with self.lock:
            self.svm.set_account(pubkey, Account(lamports=lamports, data=b"",
                                                 owner=Pubkey.from_string("11111111111111111111111111111111"),
                                                 executable=False, rent_epoch=0))

    def send(self, instructions: list[Instruction], signers: list[Keypair]) -> TxRecord:
        """Build, sign and execute a transaction; record it like an RPC node."""
        with self.lock:
            blockhash = self.svm.latest_blockhash()
            message = Message.new_with_blockhash(instructions, signers[0].pubkey(), blockhash)
            return self.submit(Transaction(signers, message, blockhash))

    def submit(self, tx: Transaction | VersionedTransaction) -> TxRecord:
        with self.lock:
            message = tx.message
            keys = [str(key) for key in message.account_keys]
            pre = [self.svm.get_balance(Pubkey.from_string(key)) or 0 for key in keys]
            pre_tokens = self._token_balances(keys)
            result = self.svm.send_transaction(tx)
            failed = isinstance(result, FailedTransactionMetadata)
            meta = _call(result.meta) if failed else result
            err = _error_json(_call(result.err)) if failed else None
            if failed and "AlreadyProcessed" in str(err):
                raise ValueError("This transaction was already processed.")
            record = TxRecord(
                signature=str(tx.signatures[0]), slot=self.slot, block_time=self.block_time, keys=keys,
                writable=_writable(message, len(keys)),
                signer=[message.is_signer(i) for i in range(len(keys))],
                blockhash=str(message.recent_blockhash),
                instructions=[{"programId": keys[ix.program_id_index],
                               "accounts": [keys[i] for i in bytes(ix.accounts)],
                               "data": b58encode(bytes(ix.data)), "stackHeight": None}
                              for ix in message.instructions],
                pre_balances=pre, post_balances=[self.svm.get_balance(Pubkey.from_string(k)) or 0 for k in keys],
                pre_tokens=pre_tokens, post_tokens=self._token_balances(keys), err=err,
                fee=_call(meta.fee), logs=list(_call(meta.logs)))
            self._record(record)
            self.slot += 1
            self.block_time += 1
            self.svm.warp_to_slot(self.slot)
            self.svm.expire_blockhash()
            return record

    def _record(self, record: TxRecord) -> None:
        self.records.append(record)
        self.by_signature[record.signature] = record
        for key in dict.fromkeys(record.keys):
            self.by_address.setdefault(key, []).append(record)

    def inject_failed(self, address: str, count: int) -> list[str]:
        """`count` failed transactions mentioning `address`, cheaply: history rows with an
        error, as a node lists failed transactions (nothing moved)."""
        with self.lock:
            signatures = []
            for _ in range(count):
                signature = str(Signature(secrets.token_bytes(64)))
                self._record(TxRecord(
                    signature=signature, slot=self.slot, block_time=self.block_time, keys=[address],
                    writable=[False], signer=[False], blockhash="11111111111111111111111111111111",
                    instructions=[], pre_balances=[0], post_balances=[0], pre_tokens=[], post_tokens=[],
                    err={"InstructionError": [0, {"Custom": 1}]}))
                signatures.append(signature)
            self.slot += 1
            self.svm.warp_to_slot(self.slot)
            return signatures

    def advance_blocks(self, count: int) -> None:
        """`count` empty blocks: the height moves on and the blockhash changes, so a
        transaction signed before may see its lastValidBlockHeight pass (`finalize()` then
        makes that height final)."""
        with self.lock:
            self.slot += count
            self.block_time += count
            self.svm.warp_to_slot(self.slot)
            self.svm.expire_blockhash()

    def finalize(self) -> None:
        """Every slot so far becomes final."""
        with self.lock:
            self.finalized_slot = self.slot - 1  # self.slot is the next transaction's

    def fail_next(self, kind: str, count: int = 1, seconds: float = 0) -> None:
        """The next `count` requests answer HTTP 429, HTTP 500, or (kind "timeout") only
        after `seconds`."""
        with self.lock:
            for _ in range(count):
                self.faults.append((kind, seconds))

    # --- SPL tokens ------------------------------------------------------------------------

    def create_mint(self, authority: Keypair, decimals: int, address: str | None = None) -> Pubkey:
        """A real SPL mint. At a given `address` (mainnet USDC's) the account is placed
        with set_account, then initialised by a real InitializeMint2, which needs no
        signature of the mint."""
        rent = self.svm.minimum_balance_for_rent_exemption(MINT_SIZE)
        if address is not None:
            mint = Pubkey.from_string(address)
            with self.lock:
                self.svm.set_account(mint, Account(lamports=rent, data=bytes(MINT_SIZE), owner=TOKEN_PROGRAM_ID,
                                                   executable=False, rent_epoch=0))
            self._expect_ok(self.send([_init_mint(mint, authority.pubkey(), decimals)], [authority]))
            return mint
        mint_keypair = Keypair()
        self._expect_ok(self.send([
            create_account(CreateAccountParams(from_pubkey=authority.pubkey(), to_pubkey=mint_keypair.pubkey(),
                                               lamports=rent, space=MINT_SIZE, owner=TOKEN_PROGRAM_ID)),
            _init_mint(mint_keypair.pubkey(), authority.pubkey(), decimals)], [authority, mint_keypair]))
        return mint_keypair.pubkey()

    def mint_to(self, authority: Keypair, mint: Pubkey, owner: Pubkey, amount: int) -> Pubkey:
        account = get_associated_token_address(owner, mint)
        self._expect_ok(self.send([
            token_ix.create_idempotent_associated_token_account(authority.pubkey(), owner, mint),
            token_ix.mint_to(token_models.MintToParams(program_id=TOKEN_PROGRAM_ID, mint=mint, dest=account,
                                                       mint_authority=authority.pubkey(), amount=amount))],
            [authority]))
        return account

    # --- Solana Pay payments, as a wallet builds them ---------------------------------------

    def pay_sol(self, payer: Keypair, recipient: str, lamports: int, reference: str | None,
                memo: str | None = None) -> TxRecord:
        ix = system_transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=Pubkey.from_string(recipient),
                                            lamports=lamports))
        return self.send(_memo(memo) + [_with_reference(ix, reference)], [payer])

    def pay_token(self, payer: Keypair, mint: Pubkey, recipient: str, amount: int, decimals: int,
                  reference: str | None, memo: str | None = None) -> TxRecord:
        owner = Pubkey.from_string(recipient)
        ix = token_ix.transfer_checked(token_models.TransferCheckedParams(
            program_id=TOKEN_PROGRAM_ID, source=get_associated_token_address(payer.pubkey(), mint), mint=mint,
            dest=get_associated_token_address(owner, mint), owner=payer.pubkey(), amount=amount,
            decimals=decimals))
        create = token_ix.create_idempotent_associated_token_account(payer.pubkey(), owner, mint)
        return self.send(_memo(memo) + [create, _with_reference(ix, reference)], [payer])

    def pay_url(self, payer: Keypair, url: str) -> TxRecord:
        """Pay a solana: transfer request URL as a wallet would."""
        parts = urlsplit(url)
        recipient = parts.path
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        memo = unquote(query["memo"]) if "memo" in query else None
        if "spl-token" in query:
            mint = Pubkey.from_string(query["spl-token"])
            decimals = self._mint_decimals(mint)
            return self.pay_token(payer, mint, recipient, _units(query["amount"], decimals), decimals,
                                  query.get("reference"), memo)
        return self.pay_sol(payer, recipient, _units(query["amount"], 9), query.get("reference"), memo)

    @staticmethod
    def _expect_ok(record: TxRecord) -> TxRecord:
        if record.err is not None:
            raise RuntimeError(f"transaction failed: {record.err} {record.logs}")
        return record

    def _mint_decimals(self, mint: Pubkey) -> int:
        return bytes(self.svm.get_account(mint).data)[44]

    def _token_balances(self, keys: list[str]) -> list[dict]:
        balances = []
        for index, key in enumerate(keys):
            account = self.svm.get_account(Pubkey.from_string(key))
            if account is None or account.owner != TOKEN_PROGRAM_ID or len(account.data) != TOKEN_ACCOUNT_SIZE:
                continue
            data = bytes(account.data)
            mint = Pubkey.from_bytes(data[:32])
            amount = int.from_bytes(data[64:72], "little")
            decimals = self._mint_decimals(mint)
            text = _ui_text(amount, decimals)
            balances.append({"accountIndex": index, "mint": str(mint), "owner": str(Pubkey.from_bytes(data[32:64])),
                             "programId": str(TOKEN_PROGRAM_ID),
                             "uiTokenAmount": {"amount": str(amount), "decimals": decimals,
                                               "uiAmount": float(text), "uiAmountString": text}})
        return balances

    # --- JSON-RPC ------------------------------------------------------------------------------

    def _visible(self, record: TxRecord, commitment: str) -> bool:
        return commitment != "finalized" or record.slot <= self.finalized_slot

    def _status(self, record: TxRecord) -> str:
        return "finalized" if record.slot <= self.finalized_slot else "confirmed"

    def rpc(self, method: str, params: list):
        self.calls[method] += 1
        handler = getattr(self, f"rpc_{method}", None)
        if handler is None:
            raise RpcError(-32601, "Method not found")
        with self.lock:
            return handler(*params)

    def rpc_getSignaturesForAddress(self, address, config=None):
        config = config or {}
        limit = config.get("limit") or MAX_LIMIT
        if not 1 <= limit <= MAX_LIMIT:
            raise RpcError(-32602, "Invalid limit; max 1000")
        commitment = config.get("commitment") or "finalized"
        rows = [r for r in reversed(self.by_address.get(address, [])) if self._visible(r, commitment)]
        if config.get("before"):
            signatures = [r.signature for r in rows]
            if config["before"] not in signatures:
                return []
            rows = rows[signatures.index(config["before"]) + 1:]
        if config.get("until"):
            signatures = [r.signature for r in rows]
            if config["until"] in signatures:
                rows = rows[:signatures.index(config["until"])]
        return [{"signature": r.signature, "slot": r.slot, "err": r.err, "memo": None, "blockTime": r.block_time,
                 "confirmationStatus": self._status(r)} for r in rows[:limit]]

    def rpc_getTransaction(self, signature, config=None):
        config = config or {}
        if config.get("encoding", "json") != "jsonParsed":
            raise RpcError(-32602, "This fake serves encoding jsonParsed only")
        record = self.by_signature.get(signature)
        if record is None or not self._visible(record, config.get("commitment") or "finalized"):
            return None
        return {
            "slot": record.slot, "blockTime": record.block_time,
            "version": "legacy" if "maxSupportedTransactionVersion" in config else None,
            "transaction": {
                "signatures": [record.signature],
                "message": {
                    "accountKeys": [{"pubkey": key, "writable": w, "signer": s, "source": "transaction"}
                                    for key, w, s in zip(record.keys, record.writable, record.signer, strict=True)],
                    "recentBlockhash": record.blockhash, "instructions": record.instructions,
                },
            },
            "meta": {
                "err": record.err, "status": {"Ok": None} if record.err is None else {"Err": record.err},
                "fee": record.fee, "preBalances": record.pre_balances, "postBalances": record.post_balances,
                "innerInstructions": [], "logMessages": record.logs,
                "preTokenBalances": record.pre_tokens, "postTokenBalances": record.post_tokens,
                "rewards": [], "loadedAddresses": {"writable": [], "readonly": []},
                "computeUnitsConsumed": 0,
            },
        }

    def _context(self, value):
        return {"context": {"slot": self.slot, "apiVersion": "2.1.0"}, "value": value}

    def rpc_getLatestBlockhash(self, config=None):
        return self._context({"blockhash": str(self.svm.latest_blockhash()), "lastValidBlockHeight": self.slot + 150})

    def rpc_getBlockHeight(self, config=None):
        commitment = (config or {}).get("commitment") or "finalized"
        return max(self.finalized_slot, 0) if commitment == "finalized" else self.slot

    def rpc_getBalance(self, address, config=None):
        return self._context(self.svm.get_balance(Pubkey.from_string(address)) or 0)

    def rpc_getSlot(self, config=None):
        return self.slot

    def rpc_getHealth(self):
        return "ok"

    def rpc_getVersion(self):
        return {"solana-core": "2.1.0-litesvm", "feature-set": 0}

    def rpc_sendTransaction(self, encoded, config=None):
        config = config or {}
        encoding = config.get("encoding", "base58")
        raw = base64.b64decode(encoded) if encoding == "base64" else b58decode(encoded)
        tx = VersionedTransaction.from_bytes(raw)
        self.sent_raw.append(bytes(raw))
        known = self.by_signature.get(str(tx.signatures[0]))
        if known is not None:  # a node's status cache: the same signature is never executed twice
            if config.get("skipPreflight"):
                return known.signature
            raise RpcError(-32002, "Transaction simulation failed: This transaction has already been processed",
                           _preflight_data("AlreadyProcessed"))
        record = self.submit(tx)
        if record.err is not None:
            raise RpcError(-32002, f"Transaction simulation failed: {record.err}", _preflight_data(record.err))
        return record.signature

    def rpc_getFeeForMessage(self, encoded, config=None):
        """Fee of a base64 message: LAMPORTS_PER_SIGNATURE per required signature (no
        priority fee), null when its blockhash is not the latest (as a node answers for an
        expired one)."""
        message = from_bytes_versioned(base64.b64decode(encoded))
        if str(message.recent_blockhash) != str(self.svm.latest_blockhash()):
            return self._context(None)
        return self._context(LAMPORTS_PER_SIGNATURE * message.header.num_required_signatures)

    def rpc_getSignatureStatuses(self, signatures, config=None):
        if len(signatures) > 256:
            raise RpcError(-32602, "Too many inputs provided; max 256")
        values = []
        for signature in signatures:
            record = self.by_signature.get(signature)
            if record is None:
                values.append(None)
                continue
            final = record.slot <= self.finalized_slot
            values.append({"slot": record.slot, "confirmations": None if final else 0, "err": record.err,
                           "status": {"Ok": None} if record.err is None else {"Err": record.err},
                           "confirmationStatus": self._status(record)})
        return self._context(values)

    def rpc_getMinimumBalanceForRentExemption(self, size, config=None):
        return self.svm.minimum_balance_for_rent_exemption(int(size))

    def token_balance(self, owner: Pubkey, mint: Pubkey) -> int:
        """The owner's associated token account balance for `mint` (0 when missing)."""
        account = self.svm.get_account(get_associated_token_address(owner, mint))
        return int.from_bytes(bytes(account.data)[64:72], "little") if account is not None else 0

    def rpc_requestAirdrop(self, address, lamports, config=None):
        self.airdrop(Pubkey.from_string(address), int(lamports))
        return str(Signature(secrets.token_bytes(64)))


class RpcError(Exception):
    def __init__(self, code: int, message: str, data=None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


def _preflight_data(err) -> dict:
    """The `data` of a -32002 preflight failure (a simulation result), as nodes send it."""
    return {"err": err, "logs": [], "accounts": None, "unitsConsumed": 0, "returnData": None}


def _handler_for(ledger: SolanaLedger):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet in tests
            pass

        def do_GET(self):
            parts = urlsplit(self.path)
            if parts.path != "/wallet":
                return self._send(404, {"error": "not found"})
            send_html(self, 200, wallet_page(ledger, form_fields(parts.query).get("url", "")))

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if urlsplit(self.path).path == "/wallet":
                status, page = wallet_post(ledger, form_fields(body))
                return send_html(self, status, page)
            fault = None
            with ledger.lock:
                if ledger.faults:
                    fault = ledger.faults.popleft()
            if fault is not None:
                kind, seconds = fault
                if kind == "timeout":
                    time.sleep(seconds)
                elif kind in ("429", "500"):
                    return self._send(int(kind), {"jsonrpc": "2.0", "error": {"code": 429, "message": "Too many requests"}},
                                      {"Retry-After": "0"})
            try:
                request = json.loads(body)
            except ValueError:
                return self._send(200, {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}})
            if isinstance(request, list):
                return self._send(200, [self._answer(item) for item in request])
            return self._send(200, self._answer(request))

        def _answer(self, request: dict) -> dict:
            try:
                result = ledger.rpc(request["method"], request.get("params") or [])
            except RpcError as error:
                body = {"code": error.code, "message": error.message}
                if error.data is not None:
                    body["data"] = error.data
                return {"jsonrpc": "2.0", "id": request.get("id"), "error": body}
            return {"jsonrpc": "2.0", "id": request.get("id"), "result": result}

        def _send(self, status: int, payload, headers: dict | None = None):
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                pass

    return Handler


class SolanaRpcServer:
    """The adapter on a free loopback port; `url` is the RPC endpoint."""

    def __init__(self, ledger: SolanaLedger | None = None, port: int = 0):
        self.ledger = ledger or SolanaLedger()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self.ledger))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> SolanaRpcServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --- the test wallet page (GET/POST /wallet) ------------------------------------------------

def wallet_page(ledger: SolanaLedger, url: str = "", message: str = "", ok: bool = True) -> bytes:
    payer = ledger.wallet_payer
    intro = (f"Pays a quote's <code>solana:</code> URL exactly (SOL, or USDC when it names an spl-token) from "
             f"the fake's funded payer <code>{payer.pubkey() if payer else 'none'}</code>. The payment is "
             "confirmed at once; press Finalize to make it final, then wait for the portal's next scan.")
    form = ('<form method="post" action="/wallet">' + wallet_field("Solana Pay URL", "url", url)
            + '<button name="action" value="pay">Pay</button>'
            + '<button name="action" value="finalize">Finalize</button></form>')
    return wallet_render("Solana test wallet", intro, form, message, ok)


def wallet_post(ledger: SolanaLedger, fields: dict[str, str]) -> tuple[int, bytes]:
    """Pay the posted URL (action pay) or finalize every slot (action finalize);
    (HTTP status, page). Bad input answers 400 with the reason, never an exception."""
    url = fields.get("url", "")
    if fields.get("action") == "finalize":
        ledger.finalize()
        return 200, wallet_page(ledger, url, "All slots so far are finalized.")
    if ledger.wallet_payer is None:
        return 503, wallet_page(ledger, url, "This chain has no funded test payer.", ok=False)
    problem = _url_problem(ledger, url)
    if problem:
        return 400, wallet_page(ledger, url, problem, ok=False)
    try:
        record = ledger.pay_url(ledger.wallet_payer, url)
    except Exception as error:  # noqa: BLE001 - any bad URL or chain refusal is shown, never raised
        return 400, wallet_page(ledger, url, f"Could not pay this URL: {error}", ok=False)
    if record.err is not None:
        return 400, wallet_page(ledger, url, f"The transaction failed: {record.err}", ok=False)
    return 200, wallet_page(ledger, url, f"Sent {record.signature} (confirmed). Press Finalize to make it final.")


def _url_problem(ledger: SolanaLedger, url: str) -> str:
    """Why `url` is not a payable solana: transfer request on this chain, or ""."""
    if not url.startswith("solana:"):
        return "Paste a solana: URL (it starts with solana:)."
    parts = urlsplit(url)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    try:
        Pubkey.from_string(parts.path)
    except ValueError:
        return "The URL's recipient is not a Solana address."
    amount = query.get("amount", "")
    whole, _, fraction = amount.partition(".")
    if not whole.isdigit() or not (fraction.isdigit() or (not fraction and "." not in amount)):
        return "The URL has no amount=, or it is not a plain decimal number."
    decimals = 9
    if "spl-token" in query:
        try:
            mint = Pubkey.from_string(query["spl-token"])
        except ValueError:
            return "The URL's spl-token is not a Solana address."
        with ledger.lock:
            account = ledger.svm.get_account(mint)
        if account is None or account.owner != TOKEN_PROGRAM_ID or len(account.data) != MINT_SIZE:
            return f"The token {mint} is not a mint on this chain (USDC is {USDC_MAINNET_MINT})."
        decimals = bytes(account.data)[44]
    if len(fraction) > decimals:
        return f"The amount {amount} has more than {decimals} decimals."
    return ""


# --- helpers ----------------------------------------------------------------------------------

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58encode(data: bytes) -> str:
    number, text = int.from_bytes(data, "big"), ""
    while number:
        number, digit = divmod(number, 58)
        text = B58[digit] + text
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + text


def b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        number = number * 58 + B58.index(char)
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


def _writable(message, count: int) -> list[bool]:
    header = message.header
    signed = header.num_required_signatures
    return [i < signed - header.num_readonly_signed_accounts if i < signed
            else i < count - header.num_readonly_unsigned_accounts for i in range(count)]


def _call(value):
    """solders exposes some metadata as methods, some as properties."""
    return value() if callable(value) else value


def _init_mint(mint: Pubkey, authority: Pubkey, decimals: int) -> Instruction:
    return token_ix.initialize_mint2(token_models.InitializeMint2Params(
        program_id=TOKEN_PROGRAM_ID, mint=mint, decimals=decimals, mint_authority=authority, freeze_authority=None))


def _with_reference(ix: Instruction, reference: str | None) -> Instruction:
    """Solana Pay: the reference key as a read-only, non-signer account of the transfer."""
    if reference is None:
        return ix
    return Instruction(ix.program_id, ix.data,
                       list(ix.accounts) + [AccountMeta(Pubkey.from_string(reference), False, False)])


def _memo(memo: str | None) -> list[Instruction]:
    return [Instruction(MEMO_PROGRAM_ID, memo.encode(), [])] if memo else []


def _ui_text(amount: int, decimals: int) -> str:
    whole, fraction = divmod(amount, 10 ** decimals)
    return f"{whole}.{fraction:0{decimals}d}".rstrip("0").rstrip(".") if decimals else str(whole)


def _units(amount: str, decimals: int) -> int:
    whole, _, fraction = amount.partition(".")
    if len(fraction) > decimals:
        raise ValueError(f"{amount} has more than {decimals} decimals")
    return int(whole) * 10 ** decimals + int(fraction.ljust(decimals, "0") or 0)


def _error_json(err) -> object:
    """LiteSVM's error in the RPC's JSON shape (instruction errors as Custom codes)."""
    text = str(err)
    if "InstructionError" in text:
        index = int(text.split("((", 1)[1].split(",", 1)[0]) if "((" in text else 0
        return {"InstructionError": [index, {"Custom": 1}]}
    name = text.split("(", 1)[0].removeprefix("TransactionError")
    return name if name in KNOWN_ERRORS else "InvalidAccountForFee"


def fund_test_wallet(ledger: SolanaLedger, merchant: str | None = None) -> Keypair:
    """The local chain of test mode: a payer holding 10,000 SOL and 1,000,000 USDC (a real
    mint at mainnet USDC's address), who pays from the /wallet page; `merchant` gets rent."""
    payer = ledger.funded_keypair(10_000 * 10**9)
    if merchant:
        ledger.airdrop(Pubkey.from_string(merchant), 10**9)
    usdc = ledger.create_mint(payer, 6, USDC_MAINNET_MINT)
    ledger.mint_to(payer, usdc, payer.pubkey(), 10**6 * 10**6)
    ledger.wallet_payer = payer
    return payer


def main(argv=None):  # pragma: no cover - a local chain for trying test mode by hand
    import argparse

    parser = argparse.ArgumentParser(description="A LiteSVM-backed Solana RPC for test mode.")
    parser.add_argument("--port", type=int, default=8899)
    parser.add_argument("--merchant", default="8yyxXhu2CJFGGHViFZqDqKkJk4rvM3PvoHqiWU1fvBWN")
    parser.add_argument("--no-stdin", action="store_true",
                        help="do not read commands from stdin; serve until terminated (scripts/run.py)")
    args = parser.parse_args(argv)
    server = SolanaRpcServer(port=args.port)
    ledger = server.ledger
    payer = fund_test_wallet(ledger, args.merchant)
    server.start()
    print(f"Solana RPC (LiteSVM) on {server.url}; payer {payer.pubkey()} holds 10,000 SOL and 1,000,000 USDC.")
    print(f"Test wallet page: {server.url}/wallet", flush=True)
    if args.no_stdin:
        _serve_until_signal(server)
        return
    print("Paste a quote's solana: URL and press Enter to pay it; type 'final' to finalize.", flush=True)
    try:
        while True:
            line = input().strip()
            if line == "final":
                ledger.finalize()
                print("All slots finalized.", flush=True)
            elif line.startswith("solana:"):
                try:
                    record = ledger.pay_url(payer, line)
                except Exception as error:  # noqa: BLE001 - a typo must not stop the chain
                    print(f"error: {error}", flush=True)
                    continue
                print(f"Sent {record.signature} (err: {record.err}); 'final' to finalize.", flush=True)
    except (EOFError, KeyboardInterrupt):
        server.stop()


def _serve_until_signal(server) -> None:  # pragma: no cover
    """Block until SIGTERM or SIGINT, then stop the server."""
    import signal

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
