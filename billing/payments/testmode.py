"""The card gateway of test mode: Stripe's documented test payment methods, in process.

https://docs.stripe.com/testing#declined-payments — `pm_card_visa` and friends succeed;
`pm_card_chargeDeclined` and `…InsufficientFunds` are soft declines (worth retrying);
`…Fraudulent`, `…StolenCard`, `…LostCard` are hard declines (never retried). Charges are
remembered by idempotency key, as Stripe does, so a repeated key returns the first result.
The Stripe gateway (payments issue) replaces this one with the same interface.
"""
import hashlib
import threading

from . import CardDetails, ChargeResult, UnknownPaymentMethod

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
        self._lock = threading.Lock()

    def card_details(self, *, tenant, gateway_id: str) -> CardDetails:
        card = _CARDS.get(gateway_id)
        if card is None:
            raise UnknownPaymentMethod(
                f"No such payment method: '{gateway_id}'. In test mode use one of Stripe's "
                f"test methods, e.g. pm_card_visa.", field="stripe_payment_method")
        brand, last4, _decline = card
        return CardDetails(gateway_id, brand, last4, 12, 2034)

    def charge(self, *, tenant, gateway_id: str, amount_cents: int, currency: str,
               idempotency_key: str, description: str) -> ChargeResult:
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
            return result
