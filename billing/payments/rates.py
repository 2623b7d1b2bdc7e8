"""Exchange rates for crypto quotes (SPEC §6): US dollars per coin, as exact Decimals.

Stablecoins (USDC, USDT) are 1:1. SOL and TRX come from the configured rate source,
AEROLITH_RATE_SOURCE_URL: an HTTP JSON endpoint answering CoinGecko's simple-price shape,
`{"solana": {"usd": 142.17}}` (a `{ids}` in the URL is replaced by the coin id). Numbers
are parsed as Decimal, never float. A source that is slow, down or answers nonsense
raises RateSourceError with what went wrong; the caller then uses staff's fallback rate.
"""
import json
import urllib.error
import urllib.request
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

from django.conf import settings

COIN_IDS = {"sol": "solana", "trx": "tron"}
STABLECOINS = ("usdc", "usdt")
RATE_PLACES = Decimal("0.000000000001")  # the quote's rate column keeps 12 decimals
MAX_RATE = Decimal("1000000000")  # a billion dollars per coin is a broken source
MAX_BODY = 64 * 1024


class RateSourceError(Exception):
    """The rate source could not give a usable rate; the message says why."""


def source_label() -> str:
    url = settings.AEROLITH_RATE_SOURCE_URL
    return urlsplit(url).netloc or url[:60]


def fetch_rate(currency: str) -> Decimal:
    """The source's US-dollar rate of one coin, quantised to 12 decimals."""
    coin = COIN_IDS.get(currency)
    url = settings.AEROLITH_RATE_SOURCE_URL
    if coin is None:
        raise RateSourceError(f"No rate source knows {currency!r}.")
    if not url:
        raise RateSourceError("No rate source is configured (AEROLITH_RATE_SOURCE_URL).")
    url = url.replace("{ids}", coin)
    if urlsplit(url).scheme not in ("https", "http"):  # never file:// or custom schemes
        raise RateSourceError("AEROLITH_RATE_SOURCE_URL must be an http(s) URL.")
    request = urllib.request.Request(url, headers={"Accept": "application/json",
                                                   "User-Agent": "aerolith-billing"})
    try:
        with urllib.request.urlopen(request, timeout=settings.AEROLITH_RATE_SOURCE_TIMEOUT) as response:  # nosec B310 - scheme checked above
            body = response.read(MAX_BODY + 1)
    except urllib.error.HTTPError as exc:
        raise RateSourceError(f"The rate source answered HTTP {exc.code}.") from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RateSourceError(f"The rate source could not be reached: {reason}.") from exc
    if len(body) > MAX_BODY:
        raise RateSourceError("The rate source answered more than 64 KiB.")
    return parse_rate(body, coin)


def parse_rate(body: bytes, coin: str) -> Decimal:
    try:
        data = json.loads(body, parse_float=Decimal, parse_int=Decimal)
        value = data[coin]["usd"]
    except (ValueError, KeyError, TypeError) as exc:
        raise RateSourceError(f'The rate source did not answer {{"{coin}": {{"usd": <number>}}}}.') from exc
    return checked_rate(value)


def checked_rate(value) -> Decimal:
    """A positive, finite, sane rate quantised to 12 decimals; RateSourceError otherwise."""
    if not isinstance(value, Decimal):
        raise RateSourceError(f"The rate {value!r} is not a number.")
    try:
        rate = value.quantize(RATE_PLACES)
    except InvalidOperation as exc:
        raise RateSourceError(f"The rate {value} is not a usable number.") from exc
    if not rate.is_finite() or rate <= 0 or rate > MAX_RATE:
        raise RateSourceError(f"The rate {value} is not a positive price under {MAX_RATE} USD.")
    return rate
