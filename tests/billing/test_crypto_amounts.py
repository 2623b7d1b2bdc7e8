"""Crypto amounts and rates (SPEC §4, §6): integer base units from cents with exact
arithmetic, Solana Pay URLs by the spec, and the rate source with its fallback."""
import json
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.models import CryptoRate
from billing.models.crypto import units_text
from billing.payments import rates
from billing.services.crypto import (
    RateUnavailable,
    base_units_for,
    cents_for,
    rate_for,
    solana_pay_url,
)

RATES = st.decimals(min_value=Decimal("0.000000000001"), max_value=Decimal("1000000"), places=12)


@given(cents=st.integers(min_value=1, max_value=10**12), rate=RATES, decimals=st.sampled_from([6, 9]))
def test_base_units_are_the_fewest_worth_the_cents(cents, rate, decimals):
    units = base_units_for(cents, rate, decimals)
    assert cents_for(units, rate, decimals) >= cents  # paying the quote covers the invoice
    assert units == 1 or cents_for(units - 1, rate, decimals) < cents  # and not one unit more


def test_base_units_round_up_and_never_use_float():
    assert base_units_for(2900, Decimal(1), 6) == 29_000_000
    assert base_units_for(1500, Decimal(150), 9) == 100_000_000
    # $29 at 137.123456789012 $/SOL = 0.2114882505… SOL: ceil to the lamport
    assert base_units_for(2900, Decimal("137.123456789012"), 9) == 211_488_251
    assert base_units_for(1, Decimal("3"), 9) == 3_333_334
    with pytest.raises(ValueError):
        base_units_for(100, Decimal("1.0000000000001"), 9)  # more decimals than a rate keeps


def test_units_text_is_exact_without_exponent():
    assert units_text(100_000_000, 9) == "0.1"
    assert units_text(29_000_000, 6) == "29"
    assert units_text(1, 9) == "0.000000001"
    assert units_text(2**64 + 1, 6) == "18446744073709.551617"


def test_solana_pay_url_follows_the_spec():
    url = solana_pay_url(recipient="MERCHANT", units=29_000_001, decimals=6, mint="MINT", reference="REF",
                         number="AER-2026-000042")
    assert url == ("solana:MERCHANT?amount=29.000001&spl-token=MINT&reference=REF&label=Aerolith%20Cloud"
                   "&message=Invoice%20AER-2026-000042&memo=AER-2026-000042")
    sol = solana_pay_url(recipient="M", units=5, decimals=9, mint=None, reference="R", number="N")
    query = parse_qs(urlsplit(sol).query)
    assert query["amount"] == ["0.000000005"] and "spl-token" not in query


# --- the rate source ---------------------------------------------------------------------------

class RateSource:
    def __init__(self):
        self.body, self.status, self.delay, self.paths = b"{}", 200, 0.0, []
        source = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                source.paths.append(self.path)
                time.sleep(source.delay)
                try:
                    self.send_response(source.status)
                    self.send_header("Content-Length", str(len(source.body)))
                    self.end_headers()
                    self.wfile.write(source.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/simple/price?ids={{ids}}&vs_currencies=usd"


@pytest.fixture
def source(settings):
    server = RateSource()
    settings.AEROLITH_RATE_SOURCE_URL = server.url
    settings.AEROLITH_RATE_SOURCE_TIMEOUT = 0.3
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.mark.django_db
def test_stablecoins_are_one_to_one_and_sol_comes_from_the_source(source):
    assert rate_for("usdc") == (Decimal(1), "fixed 1:1")
    source.body = b'{"solana": {"usd": 142.1234567890123456789}}'
    rate, label = rate_for("sol")
    assert rate == Decimal("142.123456789012") and label.startswith("127.0.0.1")
    assert source.paths[-1] == "/simple/price?ids=solana&vs_currencies=usd"
    row = CryptoRate.objects.get(currency="sol")
    assert row.last_usd == rate and row.last_error == ""


@pytest.mark.django_db
@pytest.mark.parametrize("status, body, delay, reason", [
    (503, b"{}", 0, "HTTP 503"),
    (200, b"not json", 0, "did not answer"),
    (200, b'{"solana": {"usd": "abc"}}', 0, "not a number"),
    (200, b'{"solana": {"usd": -3}}', 0, "not a positive price"),
    (200, b'{"solana": {"usd": 1e400}}', 0, "not a usable number"),
    (200, b'{"solana": {"usd": 142}}', 1.0, "could not be reached"),
])
def test_a_failing_source_falls_back_to_the_staff_rate(source, status, body, delay, reason):
    source.status, source.body, source.delay = status, body, delay
    CryptoRate.objects.update_or_create(currency="sol", defaults={"fallback_usd": Decimal("99.5")})
    assert rate_for("sol") == (Decimal("99.5"), "fallback")
    assert reason in CryptoRate.objects.get(currency="sol").last_error


@pytest.mark.django_db
def test_no_source_and_no_fallback_refuses_clearly(settings):
    settings.AEROLITH_SOL_FALLBACK_USD = ""
    with pytest.raises(RateUnavailable) as refused:
        rate_for("sol")
    assert refused.value.status == 503 and "SOL" in refused.value.detail


def test_parse_rate_refuses_what_is_not_a_price():
    assert rates.parse_rate(json.dumps({"tron": {"usd": 0.25}}).encode(), "tron") == Decimal("0.25")
    for body in (b'{"tron": {}}', b"[]", b'{"tron": {"usd": 0}}', b'{"tron": {"usd": NaN}}'):
        with pytest.raises(rates.RateSourceError):
            rates.parse_rate(body, "tron")
