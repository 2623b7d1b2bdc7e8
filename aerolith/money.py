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
