"""Money helpers: integer cents in, exact text out. Never float."""
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


def cents_to_text(cents: int) -> str:
    """12345 -> "123.45"; -5 -> "-0.05"."""
    sign = "-" if cents < 0 else ""
    cents = abs(int(cents))
    return f"{sign}{cents // 100}.{cents % 100:02d}"


def money(cents: int, currency: str = "USD") -> dict:
    """The API's money shape (SPEC §10)."""
    return {"amount": cents_to_text(cents), "currency": currency}


def to_cents(amount: Decimal) -> int:
    """Round a Decimal amount of cents to whole cents, half up."""
    return int(Decimal(amount).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def usd(cents: int) -> str:
    """Display text: 123456 -> "$1,234.56"; -1497 -> "-$14.97"."""
    sign = "-" if cents < 0 else ""
    cents = abs(int(cents))
    return f"{sign}${cents // 100:,}.{cents % 100:02d}"


def usd_rate(cents: Decimal | int) -> str:
    """A price per unit, which may be a fraction of a cent: Decimal(2900) -> "$29.00",
    Decimal("0.001") -> "$0.00001" (never rounded away)."""
    dollars = Decimal(cents) / 100
    sign = "-" if dollars < 0 else ""
    dollars = abs(dollars)
    if dollars == dollars.quantize(CENT):
        return f"{sign}${dollars.quantize(CENT):,f}"
    return f"{sign}${dollars.normalize():,f}"
