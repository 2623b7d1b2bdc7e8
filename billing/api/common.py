"""Pieces the billing API modules share: strict input fields, invoice lines as the API
shows them, and the problem responses billing adds to the usual ones."""
from decimal import Decimal

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import NotFound

from aerolith.api.schema import PROBLEM_RESPONSES, Problem

BILLING_PROBLEMS = dict(sorted({
    **PROBLEM_RESPONSES,
    402: OpenApiResponse(Problem, description="The organisation is suspended (account_suspended), "
                                              "or the card was declined (card_declined)"),
}.items()))


def decimal_text(value: Decimal | None) -> str | None:
    """A Decimal as exact text without exponent or trailing zeros: 2900.0000 -> "2900"."""
    return None if value is None else format(value.normalize(), "f")


class StrictCharField(serializers.CharField):
    """A JSON string, nothing else: DRF's CharField would turn 5 into "5"."""

    default_error_messages = {"invalid": "Give a string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """A JSON true or false: DRF's BooleanField would also take "yes", "on" or 1."""

    default_error_messages = {"invalid": "Give true or false (a JSON boolean)."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


@extend_schema_field(OpenApiTypes.STR)
class DecimalText(serializers.Field):
    """A Decimal shown as exact text (see decimal_text); read only."""

    def __init__(self, **kwargs):
        super().__init__(read_only=True, **kwargs)

    def to_representation(self, value):
        return decimal_text(Decimal(value))


class CardOut(serializers.Serializer):
    id = serializers.IntegerField()
    brand = serializers.CharField()
    last4 = serializers.CharField()
    exp_month = serializers.IntegerField(allow_null=True)
    exp_year = serializers.IntegerField(allow_null=True)


class LineOut(serializers.Serializer):
    """An invoice line, or a line a preview will put on the invoice: the same shape for
    both, so that a preview's lines compare equal to the invoice's."""

    kind = serializers.ChoiceField(choices=["plan", "proration", "overage", "credit", "adjustment"])
    description = serializers.CharField()
    meter = serializers.SerializerMethodField(help_text="The meter of an overage line")
    quantity = DecimalText(help_text="Decimal string")
    unit_amount = DecimalText(
        source="unit_amount_cents", allow_null=True,
        help_text="Price of one unit in cents as a decimal string; may be a fraction of a cent, "
                  "or negative for a credit")
    amount_cents = serializers.IntegerField()
    period_start = serializers.DateTimeField(allow_null=True)
    period_end = serializers.DateTimeField(allow_null=True)

    def get_meter(self, line) -> str | None:
        meter = getattr(line, "meter", None)  # a preview's LineDraft has no meter object
        return meter.code if meter is not None else None


def positive_id(raw, what: str) -> int:
    """A path id as an integer a bigint column can hold, or a 404 saying what is missing."""
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = -1
    if not 0 < value < 2**63:
        raise NotFound(f"There is no {what} '{raw}' in this organisation.")
    return value
