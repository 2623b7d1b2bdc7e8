"""Pieces the billing console shares: money as staff read and type it, and per-object
action reports. (Read-only admins and the capped paginator are in aerolith/admin.py.)"""
import re

from django import forms
from django.contrib import messages
from django.urls import reverse
from django.utils.html import format_html

from aerolith.errors import DomainError
from aerolith.money import cents_to_text

MAX_DIGITS = 10  # whole dollars: under ten billion, far inside a bigint of cents
_AMOUNT = re.compile(rf"^(?P<sign>-?)\$?(?P<whole>[0-9]{{1,{MAX_DIGITS}}})(?:\.(?P<cents>[0-9]{{1,2}}))?$")


def usd(cents: int | None) -> str:
    return "—" if cents is None else f"{cents_to_text(cents)} USD"


def short_time(value) -> str:
    """A compact UTC time for list columns."""
    return f"{value:%Y-%m-%d %H:%M}" if value else "—"


def dollars_to_cents(text: str, *, allow_negative: bool = False) -> int:
    """Exact cents from dollars as staff type them: "12", "12.3", "12.34", "$12.34" (and
    "-5.00" with `allow_negative`). Refuses more than two decimals, thousands separators,
    exponents and anything that is not a number; raises forms.ValidationError."""
    match = _AMOUNT.match((text or "").strip())
    if match is None:
        raise forms.ValidationError(
            "Give an amount in dollars with at most two decimals, for example 120.50.", code="invalid")
    if match["sign"] and not allow_negative:
        raise forms.ValidationError("Give a positive amount.", code="not_positive")
    cents = int(match["whole"]) * 100 + int((match["cents"] or "").ljust(2, "0"))
    return -cents if match["sign"] else cents


class DollarsField(forms.CharField):
    """A money amount typed in dollars, cleaned to integer cents."""

    def __init__(self, *, allow_negative: bool = False, allow_zero: bool = False, **kwargs):
        self.allow_negative, self.allow_zero = allow_negative, allow_zero
        kwargs.setdefault("help_text", "In US dollars, e.g. 120.50.")
        super().__init__(**kwargs)  # no max_length: its validator would measure the cents
        self.widget.attrs.update(maxlength=MAX_DIGITS + 5, inputmode="decimal")

    def to_python(self, value):
        value = super().to_python(value)
        if value in self.empty_values:
            return None
        cents = dollars_to_cents(value, allow_negative=self.allow_negative)
        if cents == 0 and not self.allow_zero:
            raise forms.ValidationError("Give a non-zero amount.", code="zero")
        return cents

    def prepare_value(self, value):
        return cents_to_text(value) if isinstance(value, int) else value


def admin_link(obj, label=None) -> str:
    if obj is None:
        return "—"
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, label if label is not None else str(obj))


def report_each(model_admin, request, objects, operation) -> int:
    """Run `operation(obj) -> str` for each object and tell staff, one message each, what
    was done or why it was refused (DomainError.explain()). Returns how many succeeded."""
    done = 0
    for obj in objects:
        try:
            text = operation(obj)
        except DomainError as error:
            model_admin.message_user(request, f"{obj}: {error.explain()}", messages.ERROR)
        else:
            done += 1
            model_admin.message_user(request, f"{obj}: {text}", messages.SUCCESS)
    return done
