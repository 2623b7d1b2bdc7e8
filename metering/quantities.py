"""Usage quantities as integer micro-units (1 unit = 1,000,000 micro-units): exact, fast
to add up in Python and Redis, and printed back to Decimal text for PostgreSQL."""
import math
from decimal import Decimal, InvalidOperation

MICRO = 1_000_000
MAX_QUANTITY = 10**15  # per event


class QuantityError(ValueError):
    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code
        self.detail = detail


def to_micro(value) -> int:
    """A JSON number (int or float; Decimal from internal callers) as micro-units.
    QuantityError unless it is finite, not negative, at most MAX_QUANTITY and has at most
    six decimals."""
    if type(value) is int:
        if value < 0:
            raise QuantityError("negative_quantity", "quantity must not be negative.")
        if value > MAX_QUANTITY:
            raise QuantityError("quantity_too_large", f"quantity must be at most {MAX_QUANTITY}.")
        return value * MICRO
    if type(value) is float or isinstance(value, Decimal):
        if not math.isfinite(value):
            raise QuantityError("non_finite_quantity", "quantity must be a finite number.")
        if value < 0:
            raise QuantityError("negative_quantity", "quantity must not be negative.")
        if value > MAX_QUANTITY:
            raise QuantityError("quantity_too_large", f"quantity must be at most {MAX_QUANTITY}.")
        try:
            scaled = (value if isinstance(value, Decimal) else Decimal(repr(value))) * MICRO
        except InvalidOperation as exc:  # pragma: no cover - repr of a finite float parses
            raise QuantityError("invalid_quantity", "quantity must be a number.") from exc
        if scaled != scaled.to_integral_value():
            raise QuantityError("quantity_too_precise", "quantity has more than six decimals.")
        return int(scaled)
    raise QuantityError("invalid_quantity", "quantity must be a number, e.g. 1 or 2.5.")


def micro_to_decimal(micro: int) -> Decimal:
    return Decimal(micro).scaleb(-6)


def micro_to_text(micro: int) -> str:
    sign = "-" if micro < 0 else ""
    micro = abs(micro)
    return f"{sign}{micro // MICRO}.{micro % MICRO:06d}"


def decimal_to_micro(value: Decimal | None) -> int:
    return 0 if value is None else int(Decimal(value).scaleb(6).to_integral_value())
