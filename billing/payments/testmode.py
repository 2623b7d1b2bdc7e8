"""The card gateway of test mode: Stripe's documented test payment methods, in process.

https://docs.stripe.com/testing#declined-payments — `pm_card_visa` and friends succeed;
`pm_card_chargeDeclined` and `…InsufficientFunds` are soft declines (worth retrying);
`…Fraudulent`, `…StolenCard`, `…LostCard` are hard declines (never retried). Charges are
remembered by idempotency key, as Stripe does, so a repeated key returns the first result.
The Stripe gateway (stripe_gateway.py) has the same interface; in this one a setup
session completes at once with pm_card_visa and nothing ever requires action.
"""
import hashlib
import secrets
import threading

from aerolith.errors import Conflict, NotFound

from . import (
    CardDetails,
    ChargeResult,
    GatewayRefused,
    IntentState,
    RefundResult,
    SetupSession,
    UnknownPaymentMethod,
)

_CARDS = {
    "pm_card_visa": ("visa", "4242", None),
    "pm_card_visa_debit": ("visa", "5556", None),
    "pm_card_mastercard": ("mastercard", "4444", None),
    "pm_card_amex": ("amex", "8431", None),
    "pm_card_chargeDeclined": ("visa", "0002", ("generic_decline", False)),
    "pm_card_chargeDeclinedInsufficientFunds": ("visa", "9995", ("insufficient_funds", False)),
    "pm_card_chargeDeclinedFraudulent": ("visa", "0019", ("fraudulent", True)),
    "pm_card_chargeDeclinedStolenCard": ("visa", "9979", ("stolen_card", True)),
    "pm_card_chargeDeclinedLostCard": ("visa", "9987", ("lost_card", True)),
    "pm_card_chargeDeclinedExpiredCard": ("visa", "0069", ("expired_card", True)),
}
_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "fraudulent": "Your card was declined.",
    "stolen_card": "Your card was declined.",
    "lost_card": "Your card was declined.",
    "expired_card": "Your card has expired.",
}


class TestModeCardGateway:
    __test__ = False

    def __init__(self):
        self._charges: dict[str, ChargeResult] = {}
        self._amounts: dict[str, int] = {}  # charge reference -> amount
        self._refunded: dict[str, int] = {}
        self._refunds: dict[str, RefundResult] = {}
        self._sessions: dict[str, int] = {}  # setup session -> tenant id
        self._lock = threading.Lock()

    def card_details(self, *, tenant, gateway_id: str) -> CardDetails:
        card = _CARDS.get(gateway_id)
        if card is None:
            raise UnknownPaymentMethod(
                f"No such payment method: '{gateway_id}'. In test mode use one of Stripe's "
                f"test methods, e.g. pm_card_visa.", field="stripe_payment_method")
        brand, last4, _decline = card
        return CardDetails(gateway_id, brand, last4, 12, 2034)

    def attach(self, *, tenant, gateway_id: str) -> CardDetails:
        return self.card_details(tenant=tenant, gateway_id=gateway_id)

    def charge(self, *, tenant, gateway_id: str, amount_cents: int, currency: str,
               idempotency_key: str, description: str, metadata: dict | None = None) -> ChargeResult:
        with self._lock:
            if idempotency_key in self._charges:
                return self._charges[idempotency_key]
            reference = "pi_test_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
            card = _CARDS.get(gateway_id)
            if card is None:
                result = ChargeResult("failed", reference, "payment_method_missing",
                                      "The payment method no longer exists.", hard_decline=True)
            elif card[2] is None:
                result = ChargeResult("succeeded", reference)
            else:
                code, hard = card[2]
                result = ChargeResult("failed", reference, code, _MESSAGES[code], hard_decline=hard)
            self._charges[idempotency_key] = result
            self._amounts[reference] = amount_cents
            return result

    def setup_session(self, *, tenant, success_url: str, cancel_url: str) -> SetupSession:
        session_id = "cs_test_" + secrets.token_hex(12)
        with self._lock:
            self._sessions[session_id] = tenant.pk
        return SetupSession(session_id, success_url.replace("{CHECKOUT_SESSION_ID}", session_id))

    def setup_session_payment_method(self, *, tenant, session_id: str) -> str:
        if self._sessions.get(session_id) != tenant.pk:
            raise NotFound(f"No card setup session '{session_id}' for this organisation.",
                           code="setup_session_not_found")
        return "pm_card_visa"

    def intent_state(self, *, tenant, reference: str) -> IntentState:
        result = next((r for r in self._charges.values() if r.reference == reference), None)
        if result is None:
            raise NotFound(f"No charge '{reference}'.", code="charge_not_found")
        return IntentState(reference, result.status, self._amounts.get(reference, 0),
                           result.decline_code, result.message, result.hard_decline)

    def confirm_on_session(self, *, tenant, reference: str, gateway_id: str,
                           return_url: str) -> IntentState:
        raise Conflict("Test-mode charges never require action.", code="nothing_to_confirm")

    def refund(self, *, reference: str, amount_cents: int, idempotency_key: str,
               reason: str = "") -> RefundResult:
        with self._lock:
            if idempotency_key in self._refunds:
                return self._refunds[idempotency_key]
            left = self._amounts.get(reference, 0) - self._refunded.get(reference, 0)
            if not 0 < amount_cents <= left:
                raise GatewayRefused(f"Refund of {amount_cents} cents is more than the {left} cents "
                                     "left of the charge.", code="amount_too_large")
            self._refunded[reference] = self._refunded.get(reference, 0) + amount_cents
            result = RefundResult("re_test_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24],
                                  "succeeded", amount_cents)
            self._refunds[idempotency_key] = result
            return result
