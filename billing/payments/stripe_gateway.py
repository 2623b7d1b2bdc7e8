"""Cards through Stripe, with the official library (`stripe`).

The same code talks to Stripe (STRIPE_SECRET_KEY, STRIPE_API_BASE of Stripe) and, in test
mode, to the local Stripe-compatible fake (tests/fakes/stripe_fake, which scripts/run.py and
the tests start). Every tenant has one Stripe customer (StripeCustomer, made on first need);
cards are attached to it; invoices are charged off-session with a PaymentIntent whose
idempotency key is the payment's (one per invoice attempt), so a repeated attempt returns
the first PaymentIntent instead of charging again.

Webhook signatures are checked here too (`webhook_event`), so only this module imports the
SDK.
"""
import json
import logging
from functools import lru_cache

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction

from aerolith.errors import Conflict, DomainError, NotFound
from tenants.selectors import tenant_url

from ..models import StripeCustomer
from . import (
    CardDetails,
    ChargeResult,
    GatewayRefused,
    GatewayUnavailable,
    IntentState,
    RefundResult,
    SetupSession,
    UnknownPaymentMethod,
)

logger = logging.getLogger(__name__)

# Declines a retry cannot fix: the bank refused this card for good (Stripe's decline codes,
# https://docs.stripe.com/declines/codes). Everything else is worth retrying.
HARD_DECLINES = frozenset({
    "fraudulent", "stolen_card", "lost_card", "expired_card", "pickup_card", "restricted_card",
    "merchant_blacklist", "invalid_account", "new_account_information_available",
    "card_not_supported", "currency_not_supported", "do_not_honor_permanently",
    "revocation_of_all_authorizations", "revocation_of_authorization", "security_violation",
    "stop_payment_order", "transaction_not_allowed", "incorrect_number", "invalid_number",
})
AUTHENTICATION_REQUIRED = "authentication_required"


class WebhookRejected(DomainError):
    status = 400
    code = "invalid_signature"
    title = "Webhook refused"


class WebhookNotConfigured(DomainError):
    status = 503
    code = "webhooks_not_configured"
    title = "Webhooks not configured"


@lru_cache(maxsize=4)
def _client_for(api_key: str, api_base: str, timeout: float, retries: int) -> stripe.StripeClient:
    return stripe.StripeClient(api_key, base_addresses={"api": api_base},
                               http_client=stripe.RequestsClient(timeout=timeout),
                               max_network_retries=retries)


def _client() -> stripe.StripeClient:
    if not settings.STRIPE_SECRET_KEY:
        raise GatewayUnavailable("Card payments are not configured (STRIPE_SECRET_KEY is not set).",
                                 code="payment_gateway_not_configured")
    return _client_for(settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE.rstrip("/"),
                       settings.STRIPE_TIMEOUT_SECONDS, settings.STRIPE_MAX_NETWORK_RETRIES)


def _plain(obj) -> dict:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj or {})


def _unavailable(error: stripe.StripeError) -> GatewayUnavailable:
    logger.warning("Stripe request failed: %r", error)
    return GatewayUnavailable("The card processor could not be reached or failed to answer; "
                              "nothing was charged twice. Try again in a few minutes.")


def _error_body(error: stripe.StripeError) -> dict:
    body = error.json_body if isinstance(error.json_body, dict) else {}
    return body.get("error") or {}


def _missing_customer(error: stripe.StripeError) -> bool:
    body = _error_body(error)
    return body.get("code") == "resource_missing" and body.get("param") == "customer"


def _decline(error: dict) -> tuple[str, bool, str]:
    """(decline code, hard?, message) of a Stripe error object or last_payment_error."""
    code = error.get("decline_code") or error.get("code") or "card_declined"
    hard = code in HARD_DECLINES or error.get("code") in HARD_DECLINES
    return code, hard, (error.get("message") or "The card was declined.")[:300]


def intent_state_of(intent: dict) -> IntentState:
    """A PaymentIntent (as Stripe sends it, in an API answer or an event) as our states."""
    status = intent.get("status") or ""
    error = intent.get("last_payment_error") or {}
    redirect = ((intent.get("next_action") or {}).get("redirect_to_url") or {}).get("url") or ""
    code, hard, message = _decline(error) if error else ("", False, "")
    if status == "succeeded":
        ours, code, hard, message = "succeeded", "", False, ""
    elif status == "requires_action" or (status == "requires_payment_method"
                                         and error.get("code") == AUTHENTICATION_REQUIRED):
        ours = "requires_action"
    elif status in ("requires_payment_method", "canceled") and (error or status == "canceled"):
        ours = "failed"
    else:  # processing, requires_confirmation, requires_capture, a fresh intent
        ours = "pending"
    return IntentState(reference=intent.get("id") or "", status=ours,
                       amount_cents=int(intent.get("amount") or 0), decline_code=code,
                       message=message, hard_decline=hard, redirect_url=redirect,
                       created=int(intent.get("created") or 0))


class StripeCardGateway:
    """CardGateway (billing.payments) on Stripe."""

    # --- customers and cards --------------------------------------------------------------

    def customer_id(self, tenant, *, replacing: str = "") -> str:
        """The tenant's Stripe customer, made on first need. Two callers racing make one
        customer: the creation's idempotency key is the tenant's. `replacing` forgets a
        customer Stripe no longer knows (deleted, or a test-mode fake that restarted)."""
        if replacing:
            StripeCustomer.objects.filter(tenant_id=tenant.pk, customer_id=replacing).delete()
        known = (StripeCustomer.objects.filter(tenant_id=tenant.pk)
                 .values_list("customer_id", flat=True).first())
        if known:
            return known
        key = f"aerolith-customer-{tenant.pk}" + (f"-after-{replacing}" if replacing else "")
        try:
            customer = _client().v1.customers.create(
                params={"name": tenant.name[:200], "description": f"Aerolith organisation {tenant.slug}",
                        "metadata": {"tenant": tenant.slug, "tenant_id": str(tenant.pk)}},
                options={"idempotency_key": key[:255]})
        except stripe.StripeError as error:
            raise _unavailable(error) from error
        try:
            with transaction.atomic():
                StripeCustomer.objects.create(tenant_id=tenant.pk, customer_id=customer.id)
        except IntegrityError:
            return StripeCustomer.objects.get(tenant_id=tenant.pk).customer_id
        return customer.id

    def _payment_method(self, gateway_id: str) -> dict:
        try:
            return _plain(_client().v1.payment_methods.retrieve(gateway_id))
        except stripe.InvalidRequestError as error:
            if error.http_status == 404 or error.code == "resource_missing":
                raise self._unknown(gateway_id) from error
            raise GatewayRefused(_error_body(error).get("message") or str(error)) from error
        except stripe.StripeError as error:
            raise _unavailable(error) from error

    @staticmethod
    def _unknown(gateway_id: str) -> UnknownPaymentMethod:
        return UnknownPaymentMethod(
            f"No such payment method: '{gateway_id}'. Add the card through Stripe (Checkout or "
            "Stripe.js) and give its pm_… id; in test mode Stripe's test ids work, e.g. pm_card_visa.",
            field="stripe_payment_method")

    @staticmethod
    def _details(method: dict) -> CardDetails:
        card = method.get("card") or {}
        return CardDetails(method["id"], card.get("brand") or "card", card.get("last4") or "",
                           card.get("exp_month"), card.get("exp_year"))

    def card_details(self, *, tenant, gateway_id: str) -> CardDetails:
        method = self._payment_method(gateway_id)
        owner = method.get("customer")
        if owner and owner != self.customer_id(tenant):
            raise self._unknown(gateway_id)  # someone else's card: as if it did not exist
        return self._details(method)

    def attach(self, *, tenant, gateway_id: str) -> CardDetails:
        method = self._payment_method(gateway_id)
        customer = self.customer_id(tenant)
        owner = method.get("customer")
        if owner == customer:
            return self._details(method)
        if owner:
            raise self._unknown(gateway_id)
        try:
            try:
                attached = _client().v1.payment_methods.attach(gateway_id, params={"customer": customer})
            except stripe.InvalidRequestError as error:
                if not _missing_customer(error):
                    raise
                attached = _client().v1.payment_methods.attach(
                    gateway_id, params={"customer": self.customer_id(tenant, replacing=customer)})
        except stripe.CardError as error:
            raise UnknownPaymentMethod(f"The card could not be saved: {error.user_message or error}",
                                       code="card_not_saved", field="stripe_payment_method") from error
        except stripe.InvalidRequestError as error:
            raise GatewayRefused(_error_body(error).get("message") or str(error)) from error
        except stripe.StripeError as error:
            raise _unavailable(error) from error
        return self._details(_plain(attached))

    def setup_session(self, *, tenant, success_url: str, cancel_url: str) -> SetupSession:
        def create(customer):
            return _client().v1.checkout.sessions.create(params={
                "mode": "setup", "customer": customer, "payment_method_types": ["card"],
                "success_url": success_url, "cancel_url": cancel_url,
                "metadata": {"tenant": tenant.slug, "tenant_id": str(tenant.pk)}})

        customer = self.customer_id(tenant)
        try:
            try:
                session = create(customer)
            except stripe.InvalidRequestError as error:
                if not _missing_customer(error):
                    raise
                session = create(self.customer_id(tenant, replacing=customer))
        except stripe.InvalidRequestError as error:
            raise GatewayRefused(_error_body(error).get("message") or str(error)) from error
        except stripe.StripeError as error:
            raise _unavailable(error) from error
        return SetupSession(session.id, session.url)

    def setup_session_payment_method(self, *, tenant, session_id: str) -> str:
        missing = NotFound(f"No card setup session '{session_id}' for this organisation.",
                           code="setup_session_not_found")
        if not isinstance(session_id, str) or not session_id.startswith("cs_") or len(session_id) > 255:
            raise missing
        try:
            session = _plain(_client().v1.checkout.sessions.retrieve(session_id))
        except stripe.InvalidRequestError as error:
            raise missing from error
        except stripe.StripeError as error:
            raise _unavailable(error) from error
        if session.get("customer") != self.customer_id(tenant) or session.get("mode") != "setup":
            raise missing
        if session.get("status") != "complete" or not session.get("setup_intent"):
            raise Conflict("The card was not saved: the Checkout page was not completed. Add the "
                           "card again.", code="setup_incomplete")
        setup_intent = session["setup_intent"]
        if isinstance(setup_intent, dict):
            setup_intent = setup_intent.get("id")
        return self.setup_intent_payment_method(tenant=tenant, setup_intent_id=setup_intent)

    def setup_intent_payment_method(self, *, tenant, setup_intent_id: str) -> str:
        try:
            intent = _plain(_client().v1.setup_intents.retrieve(setup_intent_id))
        except stripe.InvalidRequestError as error:
            raise NotFound(f"No setup intent '{setup_intent_id}'.", code="setup_intent_not_found") from error
        except stripe.StripeError as error:
            raise _unavailable(error) from error
        if intent.get("customer") not in (None, self.customer_id(tenant)):
            raise NotFound(f"No setup intent '{setup_intent_id}' for this organisation.",
                           code="setup_intent_not_found")
        method = intent.get("payment_method")
        if isinstance(method, dict):
            method = method.get("id")
        if intent.get("status") != "succeeded" or not method:
            raise Conflict("The card was not saved: its setup did not succeed.", code="setup_incomplete")
        return method

    # --- charges --------------------------------------------------------------------------

    def charge(self, *, tenant, gateway_id: str, amount_cents: int, currency: str,
               idempotency_key: str, description: str, metadata: dict | None = None) -> ChargeResult:
        metadata = {key: str(value) for key, value in (metadata or {}).items()}
        params = {
            "amount": amount_cents, "currency": currency.lower(), "customer": self.customer_id(tenant),
            "payment_method": gateway_id, "payment_method_types": ["card"], "off_session": True,
            "confirm": True, "description": description[:300],
            "metadata": {"tenant": tenant.slug, "idempotency_key": idempotency_key, **metadata},
        }
        try:
            intent = _plain(_client().v1.payment_intents.create(
                params=params, options={"idempotency_key": idempotency_key}))
        except stripe.CardError as error:
            return self._declined(tenant, _error_body(error), metadata)
        except stripe.IdempotencyError as error:
            raise Conflict("This charge was already attempted with different details; nothing "
                           "was charged again.", code="idempotency_conflict") from error
        except stripe.InvalidRequestError as error:
            body = _error_body(error)
            missing = body.get("code") == "resource_missing"
            if missing and body.get("param") in ("payment_method", "customer"):
                return ChargeResult("failed", (body.get("payment_intent") or {}).get("id", ""),
                                    "payment_method_missing", "The card on file no longer exists at "
                                    "the card processor. Add a card.", hard_decline=True)
            raise GatewayRefused(body.get("message") or str(error)) from error
        except stripe.StripeError as error:
            raise _unavailable(error) from error
        state = intent_state_of(intent)
        if state.status == "requires_action":
            return ChargeResult("requires_action", state.reference, AUTHENTICATION_REQUIRED,
                                "Your bank asks you to confirm this payment.",
                                action_url=self._action_url(tenant, metadata))
        if state.status == "failed":
            return ChargeResult("failed", state.reference, state.decline_code, state.message,
                                hard_decline=state.hard_decline)
        return ChargeResult(state.status, state.reference)

    def _declined(self, tenant, error: dict, metadata: dict) -> ChargeResult:
        reference = (error.get("payment_intent") or {}).get("id", "")
        if error.get("code") == AUTHENTICATION_REQUIRED:
            return ChargeResult("requires_action", reference, AUTHENTICATION_REQUIRED,
                                "Your bank asks you to confirm this payment.",
                                action_url=self._action_url(tenant, metadata))
        code, hard, message = _decline(error)
        return ChargeResult("failed", reference, code, message, hard_decline=hard)

    @staticmethod
    def _action_url(tenant, metadata: dict) -> str:
        number = metadata.get("invoice_number")
        return tenant_url(tenant, f"/invoices/{number}/confirm" if number else "/invoices")

    def intent_state(self, *, tenant, reference: str) -> IntentState:
        try:
            return intent_state_of(_plain(_client().v1.payment_intents.retrieve(reference)))
        except stripe.InvalidRequestError as error:
            raise NotFound(f"No charge '{reference}' at the card processor.",
                           code="charge_not_found") from error
        except stripe.StripeError as error:
            raise _unavailable(error) from error

    def confirm_on_session(self, *, tenant, reference: str, gateway_id: str,
                           return_url: str) -> IntentState:
        state = self.intent_state(tenant=tenant, reference=reference)
        if state.status in ("succeeded", "pending") or state.redirect_url:
            return state  # done, in flight, or already waiting at the bank's page
        params = {"return_url": return_url, **({"payment_method": gateway_id} if gateway_id else {})}
        try:
            intent = _plain(_client().v1.payment_intents.confirm(reference, params=params))
        except stripe.CardError as error:
            body = _error_body(error)
            code, hard, message = _decline(body)
            return IntentState(reference, "failed", state.amount_cents, code, message, hard)
        except stripe.InvalidRequestError as error:
            raise GatewayRefused(_error_body(error).get("message") or str(error)) from error
        except stripe.StripeError as error:
            raise _unavailable(error) from error
        return intent_state_of(intent)

    def refund(self, *, reference: str, amount_cents: int, idempotency_key: str,
               reason: str = "") -> RefundResult:
        try:
            refund = _client().v1.refunds.create(
                params={"payment_intent": reference, "amount": amount_cents,
                        "metadata": {"reason": reason[:450]} if reason else {}},
                options={"idempotency_key": idempotency_key})
        except stripe.InvalidRequestError as error:
            raise GatewayRefused(_error_body(error).get("message") or str(error)) from error
        except stripe.StripeError as error:
            raise _unavailable(error) from error
        status = refund.status if refund.status in ("succeeded", "pending", "failed") else "pending"
        return RefundResult(refund.id, status, int(refund.amount))


# --- webhooks ---------------------------------------------------------------------------------

def webhook_event(payload: bytes, signature: str | None) -> dict:
    """The event a webhook delivers, after checking its signature against
    STRIPE_WEBHOOK_SECRET and that it was signed within the tolerance (300 s): a replay of
    an old delivery is refused. Raises WebhookRejected (invalid_signature, stale_timestamp,
    malformed_event) or WebhookNotConfigured."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        raise WebhookNotConfigured("Stripe webhooks are not configured here (STRIPE_WEBHOOK_SECRET).")
    try:
        stripe.Webhook.construct_event(payload, signature, secret,
                                       tolerance=settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS)
    except stripe.SignatureVerificationError as error:
        if str(error).startswith("Timestamp outside the tolerance zone"):
            raise WebhookRejected("The signature's timestamp is older than "
                                  f"{settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS} s: refused as a "
                                  "possible replay.", code="stale_timestamp") from error
        raise WebhookRejected("The Stripe-Signature header does not match this payload and the "
                              "endpoint's signing secret.", code="invalid_signature") from error
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as error:
        raise WebhookRejected("The payload is not a Stripe event (JSON object).",
                              code="malformed_event") from error
    event = json.loads(payload)
    data = event.get("data") if isinstance(event, dict) else None
    if not (isinstance(event, dict) and isinstance(event.get("id"), str) and event["id"]
            and len(event["id"]) <= 255 and isinstance(event.get("type"), str)
            and len(event["type"]) <= 100 and isinstance(event.get("created"), int)
            and not isinstance(event.get("created"), bool)
            and isinstance(data, dict) and isinstance(data.get("object"), dict)):
        raise WebhookRejected("The payload is not a Stripe event: it needs id, type, created and "
                              "data.object.", code="malformed_event")
    return event
