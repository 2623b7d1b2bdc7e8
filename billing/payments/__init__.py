"""Payment gateways behind one small interface, so services never import an SDK.

`card_gateway()` returns the configured card gateway (settings.AEROLITH_CARD_GATEWAY):
"testmode" (in process, Stripe's test payment method ids) or "stripe" (the official
library, against Stripe or, in test mode, the local fake). A gateway attaches payment
methods and charges them off-session; every charge carries an idempotency key, so repeating
a call after a crash never charges twice.
"""
from dataclasses import dataclass
from functools import cache
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string

from aerolith.errors import DomainError

GATEWAYS = {
    "testmode": "billing.payments.testmode.TestModeCardGateway",
    "stripe": "billing.payments.stripe_gateway.StripeCardGateway",
}


class UnknownPaymentMethod(DomainError):
    status = 400
    code = "unknown_payment_method"
    title = "Unknown payment method"


class GatewayUnavailable(DomainError):
    """The gateway could not be reached or answered with an error of its own: nothing is
    known to have happened, and repeating the call (same idempotency key) is safe."""

    status = 503
    code = "payment_gateway_unavailable"
    title = "Payment gateway unavailable"


class GatewayRefused(DomainError):
    """The gateway refused the request itself (not a card decline), e.g. a refund larger
    than what is left of the charge."""

    status = 400
    code = "payment_gateway_refused"
    title = "Refused by the payment gateway"


@dataclass(frozen=True)
class CardDetails:
    gateway_id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True)
class ChargeResult:
    status: str  # "succeeded" | "failed" | "requires_action" | "pending"
    reference: str = ""
    decline_code: str = ""
    message: str = ""
    hard_decline: bool = False
    action_url: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


@dataclass(frozen=True)
class IntentState:
    """Where a charge stands at the gateway (a PaymentIntent), for the confirmation pages."""

    reference: str
    status: str  # "succeeded" | "failed" | "requires_action" | "pending"
    amount_cents: int = 0
    decline_code: str = ""
    message: str = ""
    hard_decline: bool = False
    redirect_url: str = ""  # where the customer authenticates (requires_action)
    created: int = 0


@dataclass(frozen=True)
class SetupSession:
    id: str
    url: str


@dataclass(frozen=True)
class RefundResult:
    reference: str
    status: str  # "succeeded" | "pending" | "failed"
    amount_cents: int


class CardGateway(Protocol):
    def card_details(self, *, tenant, gateway_id: str) -> CardDetails:
        """What to show for a payment method id; UnknownPaymentMethod if there is none."""

    def attach(self, *, tenant, gateway_id: str) -> CardDetails:
        """Make the payment method chargeable for this tenant (Stripe: attach it to the
        tenant's customer). The details name the id to keep, which may differ from the one
        given. UnknownPaymentMethod if there is none or it belongs to someone else."""

    def charge(self, *, tenant, gateway_id: str, amount_cents: int, currency: str,
               idempotency_key: str, description: str, metadata: dict | None = None) -> ChargeResult:
        """Charge off-session. Declines are results, not exceptions; GatewayUnavailable
        when the outcome is unknown (repeat with the same key)."""

    def setup_session(self, *, tenant, success_url: str, cancel_url: str) -> SetupSession:
        """A hosted page where the customer adds a card (Stripe Checkout, setup mode)."""

    def setup_session_payment_method(self, *, tenant, session_id: str) -> str:
        """The payment method a completed setup session saved, for this tenant only."""

    def intent_state(self, *, tenant, reference: str) -> IntentState:
        """Where the charge `reference` stands."""

    def confirm_on_session(self, *, tenant, reference: str, gateway_id: str,
                           return_url: str) -> IntentState:
        """Confirm a charge that needs the customer (3-D Secure) while they are here; when
        it still requires action, `redirect_url` is where to send them."""

    def refund(self, *, reference: str, amount_cents: int, idempotency_key: str,
               reason: str = "") -> RefundResult:
        """Give back part or all of a succeeded charge; GatewayRefused when it cannot."""


@cache
def _load(path: str):
    return import_string(path)()


def card_gateway() -> CardGateway:
    name = settings.AEROLITH_CARD_GATEWAY
    return _load(GATEWAYS.get(name, name))
