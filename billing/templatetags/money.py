from decimal import Decimal

from django import template

from aerolith.money import cents_to_text, usd, usd_rate

register = template.Library()


@register.filter
def dollars(cents) -> str:
    """{{ plan.price_cents|dollars }} -> "29.00" """
    return cents_to_text(cents or 0)


@register.filter(name="usd")
def usd_filter(cents) -> str:
    """{{ invoice.total_cents|usd }} -> "$1,234.56" (sign before the dollar)."""
    return usd(cents or 0)


@register.filter(name="usd_rate")
def usd_rate_filter(cents) -> str:
    """A per-unit price in cents, possibly a fraction of a cent."""
    return "" if cents is None else usd_rate(cents)


@register.filter
def qty(value) -> str:
    """A Decimal quantity without trailing zeros or exponent: 12345600.000000 -> "12,345,600"."""
    return "" if value is None else f"{Decimal(value).normalize():,f}"
