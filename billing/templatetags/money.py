from django import template

from aerolith.money import cents_to_text

register = template.Library()


@register.filter
def dollars(cents) -> str:
    """{{ plan.price_cents|dollars }} -> "29.00" """
    return cents_to_text(cents or 0)
