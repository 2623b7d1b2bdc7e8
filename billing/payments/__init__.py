"""Payment gateways behind one small interface, so services never import an SDK.

`card_gateway()` returns the configured card gateway (settings.AEROLITH_CARD_GATEWAY).
A gateway attaches payment methods and charges them off-session; every charge carries an
idempotency key, so repeating a call after a crash never charges twice.
"""
from dataclasses import dataclass
from functools import cache
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string

from aerolith.errors import DomainError

GATEWAYS = {"testmode": "billing.payments.testmode.TestModeCardGateway"}


class UnknownPaymentMethod(DomainError):
    status = 400
    code = "unknown_payment_method"
    title = "Unknown payment method"


@dataclass(frozen=True)
class CardDetails:
    gateway_id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True)
class ChargeResult:
    status: str  # "succeeded" | "failed" | "requires_action"
    reference: str = ""
    decline_code: str = ""
    message: str = ""
    hard_decline: bool = False
    action_url: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


class CardGateway(Protocol):
    def card_details(self, *, tenant, gateway_id: str) -> CardDetails:
        """What to show for a payment method id; UnknownPaymentMethod if there is none."""

    def charge(self, *, tenant, gateway_id: str, amount_cents: int, currency: str,
               idempotency_key: str, description: str) -> ChargeResult:
        """Charge off-session. Declines are results, not exceptions."""


@cache
def _load(path: str):
    return import_string(path)()


def card_gateway() -> CardGateway:
    name = settings.AEROLITH_CARD_GATEWAY
    return _load(GATEWAYS.get(name, name))
