"""Card work beyond a plain charge: adding a card through the gateway's hosted setup page
(Stripe Checkout in setup mode), confirming a charge the bank wants the customer to
authenticate (3-D Secure), refunds, disputes, and applying what the gateway reports about
a charge — from the customer's return to the portal or from a webhook, whichever comes
first; the other finds nothing left to do.

Locks follow the invoice services' order (subscription, then invoice, then payment), so a
webhook about a charge still being recorded waits for that charge's transaction and then
sees its payment.
"""
import logging

from django.db import IntegrityError, transaction

from aerolith import clock
from aerolith.errors import Conflict, NotFound, ValidationFailed
from aerolith.money import cents_to_text
from tenants.models import User
from tenants.selectors import tenant_url
from tenants.services.audit import audit_record

from ..models import Dispute, Invoice, Payment, PaymentMethod, Refund, Subscription
from ..payments import IntentState, card_gateway
from ..selectors import subscription_of
from .collection import invoice_for_number, payment_method_attach
from .dunning import charge_failed
from .invoices import _locked, invoice_receive

logger = logging.getLogger(__name__)
GATEWAY_ACTOR = "stripe"


def _gateway_feature(name: str):
    gateway = card_gateway()
    if not hasattr(gateway, name):
        raise Conflict("The configured card gateway cannot do this.", code="gateway_unsupported")
    return getattr(gateway, name)


# --- adding a card through the hosted page -------------------------------------------------

SETUP_RETURN_PATH = "/billing/cards/added"


def card_setup_start(*, tenant, success_url: str | None = None, cancel_url: str | None = None):
    """A hosted page (Stripe Checkout, setup mode) where the customer saves a card; back at
    `success_url` (by default the portal's return page, with `{CHECKOUT_SESSION_ID}` filled
    in) card_setup_complete attaches it. Raises Conflict when the organisation has no
    subscription to pay with it."""
    success_url = success_url or tenant_url(
        tenant, f"{SETUP_RETURN_PATH}?session_id={{CHECKOUT_SESSION_ID}}")
    cancel_url = cancel_url or tenant_url(tenant, "/billing#payment-methods")
    subscription = subscription_of(tenant)
    if subscription is None:
        raise Conflict("This organisation has no subscription, so it has nothing to pay by card.",
                       code="no_subscription")
    if subscription.status == Subscription.Status.CANCELLED:
        raise Conflict("The subscription has ended; there is nothing to pay by card.",
                       code="subscription_cancelled")
    return _gateway_feature("setup_session")(tenant=tenant, success_url=success_url,
                                             cancel_url=cancel_url)


def card_attach_once(*, tenant, gateway_id: str, actor,
                     unless_removed: bool = False) -> tuple[PaymentMethod, bool]:
    """Attach a card the gateway saved for this tenant, made the default; a card already on
    file is returned as it is. (The return page and the webhook both get here.) With
    `unless_removed` (a webhook arriving late), a card the customer has removed meanwhile
    stays removed."""
    existing = PaymentMethod.objects.filter(tenant=tenant, gateway_id=gateway_id,
                                            detached_at__isnull=True).first()
    if existing is None and unless_removed:
        existing = PaymentMethod.objects.filter(tenant=tenant, gateway_id=gateway_id).first()
    if existing is not None:
        return existing, False
    try:
        return payment_method_attach(tenant=tenant, gateway_id=gateway_id, make_default=True,
                                     actor=actor), True
    except ValidationFailed as error:
        if any(item["code"] == "already_attached" for item in error.field_errors()):
            return PaymentMethod.objects.get(tenant=tenant, gateway_id=gateway_id,
                                             detached_at__isnull=True), False
        raise


def card_setup_complete(*, tenant, session_id: str, actor,
                        unless_removed: bool = False) -> tuple[PaymentMethod, bool]:
    """The customer is back from the setup page: attach the card its session saved.
    Raises NotFound for a session that is not this organisation's, Conflict for one that
    was not completed."""
    gateway_id = _gateway_feature("setup_session_payment_method")(tenant=tenant, session_id=session_id)
    return card_attach_once(tenant=tenant, gateway_id=gateway_id, actor=actor,
                            unless_removed=unless_removed)


# --- 3-D Secure --------------------------------------------------------------------------------

def payment_awaiting_action(invoice: Invoice) -> Payment | None:
    return (invoice.payments.filter(method=Payment.Method.CARD, status=Payment.Status.REQUIRES_ACTION)
            .select_related("payment_method").order_by("-id").first())


def payment_confirm_start(*, tenant, number: str, return_url: str) -> IntentState:
    """Start confirming, with the customer present, the charge of invoice `number` that the
    bank wants authenticated. The state's redirect_url is the bank's page to send them to;
    a charge that is already settled is applied at once. Raises Conflict when there is
    nothing to confirm."""
    invoice = invoice_for_number(tenant, number)
    payment = payment_awaiting_action(invoice)
    if payment is None or not invoice.is_payable:
        if not invoice.is_payable:
            raise Conflict(f"Invoice {invoice.number} is {invoice.get_status_display().lower()} and owes "
                           "nothing.", code="invoice_not_payable")
        raise Conflict(f"No payment of invoice {invoice.number} is waiting for confirmation. Pay it "
                       "from the invoice page.", code="nothing_to_confirm")
    method = payment.payment_method.gateway_id if payment.payment_method else ""
    state = _gateway_feature("confirm_on_session")(tenant=tenant, reference=payment.gateway_reference,
                                                   gateway_id=method, return_url=return_url)
    if state.status in ("succeeded", "failed"):
        charge_state_apply(state=state, at=None, metadata={"invoice_id": invoice.pk})
    return state


def payment_confirm_return(*, tenant, number: str) -> tuple[Invoice, Payment | None, str]:
    """The customer is back from the bank's page: ask the gateway how the charge stands
    and apply it (the webhook may already have). Returns the invoice, the payment and
    what happened ("succeeded", "failed", "requires_action" or "pending")."""
    invoice = invoice_for_number(tenant, number)
    payment = (invoice.payments.filter(method=Payment.Method.CARD).exclude(gateway_reference="")
               .order_by("-id").first())
    if payment is None:
        raise NotFound(f"Invoice {invoice.number} has no card payment.", code="payment_not_found")
    if payment.status in (Payment.Status.REQUIRES_ACTION, Payment.Status.PENDING):
        state = _gateway_feature("intent_state")(tenant=tenant, reference=payment.gateway_reference)
        charge_state_apply(state=state, at=None, metadata={"invoice_id": invoice.pk})
        payment.refresh_from_db()
    invoice.refresh_from_db()
    return invoice, payment, payment.status


# --- what the gateway says about a charge ------------------------------------------------------

def _int(value) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number < 2**63 else None


def _find_payment(reference: str, metadata: dict) -> Payment | None:
    """The payment of gateway charge `reference`, through the indexed idempotency key or
    invoice the charge's metadata names when it can."""
    key = metadata.get("idempotency_key")
    if isinstance(key, str) and key:
        payment = Payment.objects.filter(idempotency_key=key).first()
        if payment is not None and payment.gateway_reference in ("", reference):
            return payment
    invoice_id = _int(metadata.get("invoice_id"))
    if invoice_id is not None:
        payment = Payment.objects.filter(invoice_id=invoice_id, gateway_reference=reference).first()
        if payment is not None:
            return payment
    return Payment.objects.filter(gateway_reference=reference).order_by("-id").first() if reference else None


def charge_state_apply(*, state: IntentState, at: int | None, metadata: dict,
                       payment_method_id: str = "") -> str:
    """Apply the gateway's word on a charge: succeeded pays the invoice (and restores
    service once nothing is overdue), failed records the decline. An older word than the
    newest applied (`at` < Payment.gateway_updated, Unix seconds) changes nothing, and a
    succeeded payment is final. `at` None means the state was just read from the gateway,
    which is newer than any event. Returns what happened, for the event log."""
    reference = state.reference
    found = _find_payment(reference, metadata)
    invoice_id = found.invoice_id if found is not None else _int(metadata.get("invoice_id"))
    if invoice_id is None or not Invoice.objects.filter(pk=invoice_id).exists():
        return f"no payment or invoice of ours for {reference}"
    now_unix = int(clock.wall_now().timestamp())
    with transaction.atomic():
        subscription, invoice = _locked(invoice_id)
        payment = Payment.objects.select_for_update().filter(pk=found.pk).first() if found else None
        if payment is None:
            payment = _find_payment(reference, metadata)
            payment = Payment.objects.select_for_update().get(pk=payment.pk) if payment else None
        if payment is None:
            if state.status != "succeeded":
                return f"no payment of ours for {reference} ({state.status}); nothing to record"
            payment = _payment_from_gateway(invoice, state, metadata, payment_method_id)
        if at is not None and payment.gateway_updated is not None and at < payment.gateway_updated:
            return (f"older ({at}) than the newest state applied to payment {payment.pk} "
                    f"({payment.gateway_updated}); ignored")
        stamp = max(at if at is not None else now_unix, payment.gateway_updated or 0)
        before = payment.status
        if before == Payment.Status.SUCCEEDED:
            outcome = f"payment {payment.pk} already succeeded"
        elif state.status == "succeeded":
            outcome = _succeeded(subscription, invoice, payment)
        elif state.status == "failed" and before != Payment.Status.FAILED:
            outcome = _failed(subscription, invoice, payment, state)
        elif state.status == "requires_action" and before == Payment.Status.PENDING:
            payment.status = Payment.Status.REQUIRES_ACTION
            outcome = f"payment {payment.pk} requires action"
        else:
            outcome = f"payment {payment.pk} stays {before}"
        payment.gateway_updated = stamp
        payment.save(update_fields=["status", "decline_code", "failure_message", "hard_decline",
                                    "action_url", "gateway_updated"])
    return outcome


def _payment_from_gateway(invoice: Invoice, state: IntentState, metadata: dict,
                          payment_method_id: str) -> Payment:
    """A charge succeeded at the gateway whose own record was lost (the charging
    transaction failed after the gateway answered): record it now."""
    key = metadata.get("idempotency_key") if isinstance(metadata.get("idempotency_key"), str) else None
    if key and Payment.objects.filter(idempotency_key=key).exists():
        key = None
    method = (PaymentMethod.objects.filter(tenant_id=invoice.tenant_id, gateway_id=payment_method_id).first()
              if payment_method_id else None)
    payment = Payment.objects.create(
        tenant_id=invoice.tenant_id, invoice=invoice, method=Payment.Method.CARD, payment_method=method,
        status=Payment.Status.PENDING, amount_cents=state.amount_cents or invoice.amount_due_cents,
        attempt=_int(metadata.get("attempt")) or 0, idempotency_key=(key or None) and key[:120],
        currency=invoice.currency, gateway_reference=state.reference, created_at=clock.now(invoice.tenant))
    audit_record(action="payment.recovered", tenant=invoice.tenant, actor=GATEWAY_ACTOR, target=payment,
                 after={"invoice": invoice.number, "reference": state.reference,
                        "amount_cents": payment.amount_cents})
    return payment


def _succeeded(subscription, invoice: Invoice, payment: Payment) -> str:
    payment.status = Payment.Status.SUCCEEDED
    payment.decline_code = payment.failure_message = payment.action_url = ""
    payment.hard_decline = False
    audit_record(action="payment.succeeded", tenant=invoice.tenant, actor=GATEWAY_ACTOR, target=payment,
                 after={"invoice": invoice.number, "amount_cents": payment.amount_cents,
                        "reference": payment.gateway_reference})
    applied = min(payment.amount_cents, invoice.amount_due_cents) if invoice.is_payable else 0
    if applied:
        invoice_receive(subscription=subscription, invoice=invoice, amount_cents=applied,
                        actor=GATEWAY_ACTOR)
    if applied < payment.amount_cents:
        # Paid meanwhile another way (a transfer, another card): staff refund the excess.
        audit_record(action="payment.unapplied", tenant=invoice.tenant, actor=GATEWAY_ACTOR, target=payment,
                     after={"invoice": invoice.number, "unapplied_cents": payment.amount_cents - applied})
        logger.warning("Payment %s: %s cents received for invoice %s that owed less", payment.pk,
                       payment.amount_cents - applied, invoice.number)
    return (f"payment {payment.pk} succeeded; invoice {invoice.number} received "
            f"{cents_to_text(applied)} USD")


def _failed(subscription, invoice: Invoice, payment: Payment, state: IntentState) -> str:
    was_pending = payment.status == Payment.Status.PENDING
    payment.status = Payment.Status.FAILED
    payment.decline_code = state.decline_code[:60]
    payment.failure_message = state.message[:300]
    payment.hard_decline = state.hard_decline
    payment.action_url = ""
    audit_record(action="payment.failed", tenant=invoice.tenant, actor=GATEWAY_ACTOR, target=payment,
                 after={"invoice": invoice.number, "decline_code": payment.decline_code})
    # A payment waiting for the customer already started dunning when it was recorded.
    if was_pending and subscription is not None and invoice.is_payable:
        charge_failed(subscription=subscription, invoice=invoice, payment=payment, attempt=payment.attempt)
    return f"payment {payment.pk} failed ({payment.decline_code})"


# --- refunds -----------------------------------------------------------------------------------

def payment_refundable_cents(payment: Payment, invoice: Invoice | None = None) -> int:
    invoice = invoice or payment.invoice
    return max(0, min(payment.amount_cents - payment.refunded_cents,
                      invoice.amount_paid_cents - invoice.amount_refunded_cents))


def payment_refund(*, payment_id: int, amount_cents: int, reason: str, actor) -> Refund:
    """Give back part or all of a succeeded card payment to the card, through the gateway
    (one idempotency key per refund). The payment's refunded amount and the invoice's
    amount_refunded_cents grow at once (the charge.refunded webhook then finds nothing to
    add). Raises ValidationFailed for an amount above what is left to refund, Conflict for
    a payment that is not a succeeded card charge, GatewayRefused / GatewayUnavailable."""
    if not isinstance(amount_cents, int) or isinstance(amount_cents, bool):
        raise ValidationFailed({"amount": [("invalid", "Give the amount in cents as an integer.")]})
    found = Payment.objects.filter(pk=payment_id).first()
    if found is None:
        raise NotFound("No such payment.", code="payment_not_found")
    with transaction.atomic():
        _subscription, invoice = _locked(found.invoice_id)
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        if (payment.method != Payment.Method.CARD or payment.status != Payment.Status.SUCCEEDED
                or not payment.gateway_reference):
            raise Conflict(f"Payment {payment.pk} is not a succeeded card charge; only those are refunded "
                           "to the card (refund an invoice to the balance instead).", code="not_refundable")
        refundable = payment_refundable_cents(payment, invoice)
        if not 0 < amount_cents <= refundable:
            raise ValidationFailed({"amount": [("out_of_range", f"Refund between 0.01 and "
                                                f"{cents_to_text(refundable)} USD (what was paid by this "
                                                "card and not yet refunded).")]})
        key = f"refund-{payment.pk}-{payment.refunds.count() + 1}"
        refund = Refund.objects.create(
            payment=payment, amount_cents=amount_cents, reason=(reason or "").strip()[:300],
            idempotency_key=key, created_by=actor if isinstance(actor, User) else None,
            created_at=clock.now(invoice.tenant))
        result = _gateway_feature("refund")(reference=payment.gateway_reference, amount_cents=amount_cents,
                                            idempotency_key=key, reason=refund.reason)
        refund.gateway_reference = result.reference[:255]
        refund.status = result.status
        refund.save(update_fields=["gateway_reference", "status"])
        if result.status != Refund.Status.FAILED:
            _refunded(payment, invoice, amount_cents)
        audit_record(action="payment.refunded", tenant=invoice.tenant, actor=actor, target=payment,
                     after={"invoice": invoice.number, "amount_cents": amount_cents, "reason": refund.reason,
                            "reference": refund.gateway_reference, "status": refund.status})
    return refund


def _refunded(payment: Payment, invoice: Invoice, amount_cents: int) -> int:
    """Add up to `amount_cents` refunded to the payment and its invoice (within what the
    invoice has paid); returns what was added."""
    amount = min(amount_cents, invoice.amount_paid_cents - invoice.amount_refunded_cents)
    if amount <= 0:
        return 0
    payment.refunded_cents += amount
    payment.save(update_fields=["refunded_cents"])
    invoice.amount_refunded_cents += amount
    invoice.save(update_fields=["amount_refunded_cents"])
    return amount


def charge_refunds_apply(*, charge: dict, at: int) -> str:
    """charge.refunded: the charge's total refunded (`amount_refunded`) only grows, so
    applying it is safe in any order and twice; refunds made elsewhere (the Stripe
    dashboard) get a Refund row."""
    reference = charge.get("payment_intent") or ""
    if isinstance(reference, dict):
        reference = reference.get("id") or ""
    metadata = charge.get("metadata") if isinstance(charge.get("metadata"), dict) else {}
    found = _find_payment(reference, metadata) if reference else None
    if found is None:
        return f"no payment of ours for charge {charge.get('id')}"
    total = _int(charge.get("amount_refunded")) or 0
    with transaction.atomic():
        _subscription, invoice = _locked(found.invoice_id)
        payment = Payment.objects.select_for_update().get(pk=found.pk)
        known = set(payment.refunds.exclude(gateway_reference="")
                    .values_list("gateway_reference", flat=True))
        refunds = charge.get("refunds")  # not sent by recent API versions; used when present
        listed = (refunds.get("data") or []) if isinstance(refunds, dict) else []
        for item in listed:
            new = isinstance(item, dict) and item.get("id") and item["id"] not in known
            if new and _int(item.get("amount")):
                Refund.objects.create(payment=payment, amount_cents=int(item["amount"]),
                                      reason="Refunded at the card processor", gateway_reference=item["id"],
                                      status=item.get("status") if item.get("status") in Refund.Status.values
                                      else Refund.Status.SUCCEEDED,
                                      idempotency_key=f"stripe-{item['id']}"[:120])
                known.add(item["id"])
        delta = min(total, payment.amount_cents) - payment.refunded_cents
        if delta <= 0:
            return f"payment {payment.pk}: {cents_to_text(payment.refunded_cents)} USD refunded already"
        if not listed:
            Refund.objects.get_or_create(
                idempotency_key=f"stripe-{charge.get('id')}-{total}"[:120],
                defaults={"payment": payment, "amount_cents": delta, "status": Refund.Status.SUCCEEDED,
                          "reason": "Refunded at the card processor"})
        added = _refunded(payment, invoice, delta)
        payment.gateway_updated = max(at, payment.gateway_updated or 0)
        payment.save(update_fields=["gateway_updated"])
        audit_record(action="payment.refund_recorded", tenant=invoice.tenant, actor=GATEWAY_ACTOR,
                     target=payment, after={"invoice": invoice.number, "amount_cents": added,
                                            "refunded_cents": payment.refunded_cents})
    return f"payment {payment.pk}: {cents_to_text(added)} USD more refunded"


# --- disputes ------------------------------------------------------------------------------------

def dispute_apply(*, dispute: dict, at: int) -> str:
    """charge.dispute.*: keep the dispute's newest state; an older event changes nothing."""
    reference = dispute.get("payment_intent") or ""
    if isinstance(reference, dict):
        reference = reference.get("id") or ""
    dispute_id = dispute.get("id")
    if not isinstance(dispute_id, str) or not dispute_id:
        raise ValueError("The dispute has no id.")
    existing = Dispute.objects.filter(gateway_reference=dispute_id).select_related("payment").first()
    payment = existing.payment if existing else (_find_payment(reference, {}) if reference else None)
    if payment is None:
        return f"no payment of ours for dispute {dispute_id}"
    status = str(dispute.get("status") or "")[:40]
    with transaction.atomic():
        _subscription, invoice = _locked(payment.invoice_id)
        row = Dispute.objects.select_for_update().filter(gateway_reference=dispute_id).first()
        if row is not None and at < row.stripe_created:
            return f"dispute {dispute_id}: older than the state kept ({row.status}); ignored"
        before = row.status if row else None
        fields = {"amount_cents": _int(dispute.get("amount")) or payment.amount_cents, "status": status,
                  "reason": str(dispute.get("reason") or "")[:100], "stripe_created": at,
                  "updated_at": clock.now(invoice.tenant)}
        if row is None:
            try:
                with transaction.atomic():
                    row = Dispute.objects.create(payment=payment, gateway_reference=dispute_id,
                                                 created_at=clock.now(invoice.tenant), **fields)
            except IntegrityError:  # a concurrent delivery made it; this one is not newer
                return f"dispute {dispute_id} recorded by another delivery"
        else:
            for name, value in fields.items():
                setattr(row, name, value)
            row.save(update_fields=list(fields))
        audit_record(action="payment.disputed" if before is None else "payment.dispute_updated",
                     tenant=invoice.tenant, actor=GATEWAY_ACTOR, target=payment,
                     before={"status": before} if before else None,
                     after={"dispute": dispute_id, "status": status, "reason": row.reason,
                            "amount_cents": row.amount_cents, "invoice": invoice.number})
    return f"dispute {dispute_id}: {before or 'new'} -> {status}"
