"""Stripe's documented test payment methods (https://docs.stripe.com/testing) and what each does.

Every `pm_card_*` id works anywhere a payment method id is accepted: it can be retrieved,
charged, and attached (attaching clones it into a new `pm_…` that behaves the same, as Stripe
does). Cards marked `decline` fail every charge with that decline code; `requires_auth` cards
need 3-D Secure on every charge (off-session charges fail with `authentication_required`);
`dispute` cards succeed and are then disputed as fraudulent.
"""
from dataclasses import dataclass

EXP_MONTH = 12
EXP_YEAR = 2034


@dataclass(frozen=True)
class TestCard:
    __test__ = False

    token: str
    brand: str
    last4: str
    funding: str = "credit"
    decline_code: str = ""  # charges fail with this decline code
    error_code: str = "card_declined"  # the error `code` of a decline
    message: str = "Your card was declined."
    requires_auth: bool = False
    dispute: bool = False
    country: str = "US"

    @property
    def hard_decline(self) -> bool:
        return self.decline_code in HARD_DECLINES

    @property
    def advice_code(self) -> str | None:
        """Stripe's retry advice on issuer declines (https://docs.stripe.com/declines/card)."""
        if self.hard_decline:
            return "do_not_try_again"
        if self.decline_code in ("insufficient_funds", "processing_error"):
            return "try_again_later"
        return None


HARD_DECLINES = {"fraudulent", "stolen_card", "lost_card", "expired_card", "pickup_card",
                 "restricted_card", "merchant_blacklist", "invalid_account",
                 "new_account_information_available"}

CARDS: dict[str, TestCard] = {card.token: card for card in (
    TestCard("pm_card_visa", "visa", "4242"),
    TestCard("pm_card_visa_debit", "visa", "5556", funding="debit"),
    TestCard("pm_card_mastercard", "mastercard", "4444"),
    TestCard("pm_card_amex", "amex", "8431"),
    TestCard("pm_card_chargeDeclined", "visa", "0002", decline_code="generic_decline"),
    TestCard("pm_card_chargeDeclinedInsufficientFunds", "visa", "9995",
             decline_code="insufficient_funds", message="Your card has insufficient funds."),
    TestCard("pm_card_chargeDeclinedFraudulent", "visa", "0019", decline_code="fraudulent"),
    TestCard("pm_card_chargeDeclinedStolenCard", "visa", "9979", decline_code="stolen_card"),
    TestCard("pm_card_chargeDeclinedLostCard", "visa", "9987", decline_code="lost_card"),
    TestCard("pm_card_chargeDeclinedExpiredCard", "visa", "0069", decline_code="expired_card",
             error_code="expired_card", message="Your card has expired."),
    TestCard("pm_card_chargeDeclinedIncorrectCvc", "visa", "0127", decline_code="incorrect_cvc",
             error_code="incorrect_cvc", message="Your card's security code is incorrect."),
    TestCard("pm_card_chargeDeclinedProcessingError", "visa", "0119", decline_code="processing_error",
             error_code="processing_error",
             message="An error occurred while processing your card. Try again in a little bit."),
    TestCard("pm_card_chargeCustomerFail", "visa", "0341", decline_code="generic_decline"),
    TestCard("pm_card_authenticationRequired", "visa", "3184", requires_auth=True),
    TestCard("pm_card_createDispute", "visa", "0259", dispute=True),
)}

AUTH_REQUIRED_MESSAGE = ("Your card was declined. This transaction requires authentication.")
