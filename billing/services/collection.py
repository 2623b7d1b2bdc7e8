"""Collecting money: cards on file, charges (automatic and on request) and payments staff
record by hand. Cards go through the gateway interface (billing.payments)."""
from datetime import date

from django.db import IntegrityError, transaction

from aerolith import clock
from aerolith.errors import Conflict, NotFound, ValidationFailed
from aerolith.money import cents_to_text
from tenants.services.audit import audit_record

from ..decisions import should_retry
from ..models import CryptoQuote, Invoice, Payment, PaymentMethod, Subscription
from ..payments import card_gateway
from .crypto import quote_create
from .dunning import charge_failed
from .invoices import CHARGE_JOB, _locked, invoice_receive
from .subscriptions import locked_subscription

CRYPTO_METHODS = ("sol", "usdc", "trx", "usdt")
__all__ = ["CHARGE_JOB"]  # the job kind, for billing.jobs


def payment_method_attach(*, tenant, gateway_id: str, make_default: bool = True, actor) -> PaymentMethod:
    """Attach a card the gateway knows (`pm_…`). The first card becomes the default.
    Raises ValidationFailed for an unknown id or one already attached."""
    if not isinstance(gateway_id, str) or not gateway_id.startswith("pm_") or len(gateway_id) > 255:
        raise ValidationFailed({"stripe_payment_method": [
            ("invalid", "Give a Stripe payment method id such as pm_card_visa.")]})
    details = card_gateway().attach(tenant=tenant, gateway_id=gateway_id)
    with transaction.atomic():
        subscription = locked_subscription(tenant)
        try:
            with transaction.atomic():
                method = PaymentMethod.objects.create(
                    tenant=tenant, gateway_id=details.gateway_id, brand=details.brand, last4=details.last4,
                    exp_month=details.exp_month, exp_year=details.exp_year, created_at=clock.now(tenant))
        except IntegrityError as exc:
            raise ValidationFailed({"stripe_payment_method": [
                ("already_attached", "This card is already on file.")]}) from exc
        if make_default or subscription.default_payment_method_id is None:
            subscription.default_payment_method = method
            subscription.save(update_fields=["default_payment_method"])
        audit_record(action="payment_method.attached", tenant=tenant, actor=actor, target=method,
                     after={"brand": method.brand, "last4": method.last4,
                            "default": subscription.default_payment_method_id == method.pk})
    return method


def payment_method_detach(*, tenant, method_id: int, actor) -> None:
    with transaction.atomic():
        subscription = locked_subscription(tenant)
        method = PaymentMethod.objects.filter(tenant=tenant, pk=method_id, detached_at__isnull=True).first()
        if method is None:
            raise NotFound("No such card on file.", code="payment_method_not_found")
        method.detached_at = clock.now(tenant)
        method.save(update_fields=["detached_at"])
        if subscription.default_payment_method_id == method.pk:
            subscription.default_payment_method = (
                PaymentMethod.objects.filter(tenant=tenant, detached_at__isnull=True).first())
            subscription.save(update_fields=["default_payment_method"])
        audit_record(action="payment_method.detached", tenant=tenant, actor=actor, target=method)


def payment_method_make_default(*, tenant, method_id: int, actor) -> PaymentMethod:
    """Make a card already on file the one future invoices are charged to. A no-op (nothing
    audited) when it already is. Raises NotFound for a card that is not this tenant's or
    was removed."""
    with transaction.atomic():
        subscription = locked_subscription(tenant)
        method = PaymentMethod.objects.filter(tenant=tenant, pk=method_id, detached_at__isnull=True).first()
        if method is None:
            raise NotFound("No such card on file.", code="payment_method_not_found")
        previous_id = subscription.default_payment_method_id
        if previous_id == method.pk:
            return method
        subscription.default_payment_method = method
        subscription.save(update_fields=["default_payment_method"])
        audit_record(action="payment_method.made_default", tenant=tenant, actor=actor, target=method,
                     before={"default_payment_method": previous_id},
                     after={"default_payment_method": method.pk, "brand": method.brand,
                            "last4": method.last4})
    return method


def _charge(subscription: Subscription, invoice: Invoice, key: str, attempt: int, actor) -> Payment:
    method = subscription.default_payment_method
    existing = Payment.objects.filter(idempotency_key=key).first()
    if existing is not None:
        return existing
    invoice.attempt_count += 1  # saved with the outcome (invoice_receive) or just below
    common = dict(tenant=subscription.tenant, invoice=invoice, method=Payment.Method.CARD,
                  payment_method=method, amount_cents=invoice.amount_due_cents, attempt=attempt,
                  idempotency_key=key, currency=invoice.currency, created_at=clock.now(subscription.tenant))
    if method is None:
        payment = Payment.objects.create(**common, status=Payment.Status.FAILED,
                                         decline_code="no_payment_method",
                                         failure_message="No card on file. Add a card to pay.")
    else:
        result = card_gateway().charge(
            tenant=subscription.tenant, gateway_id=method.gateway_id, amount_cents=invoice.amount_due_cents,
            currency=invoice.currency, idempotency_key=key, description=f"Invoice {invoice.number}",
            metadata={"invoice_id": invoice.pk, "invoice_number": invoice.number, "attempt": attempt})
        payment = Payment.objects.create(
            **common, status=result.status, gateway_reference=result.reference,
            decline_code=result.decline_code, failure_message=result.message[:300],
            hard_decline=result.hard_decline, action_url=result.action_url[:500])
    audit_record(action=f"payment.{payment.status}", tenant=subscription.tenant, actor=actor,
                 target=payment, after={"invoice": invoice.number, "amount_cents": payment.amount_cents,
                                        "decline_code": payment.decline_code})
    if payment.status == Payment.Status.SUCCEEDED:
        invoice_receive(subscription=subscription, invoice=invoice, amount_cents=payment.amount_cents,
                        actor=actor, also_save=["attempt_count"])
        return payment
    invoice.save(update_fields=["attempt_count"])
    # A charge the bank wants the customer to confirm (3-D Secure) is unpaid until they do:
    # dunning runs as for a soft decline, and the notice links to the confirmation page.
    if payment.status in (Payment.Status.FAILED, Payment.Status.REQUIRES_ACTION):
        charge_failed(subscription=subscription, invoice=invoice, payment=payment, attempt=attempt)
    return payment


def invoice_collect(*, invoice_id: int, attempt: int) -> Payment | None:
    """The scheduled charge of an invoice (attempt 0) and its dunning retries (1, 2, …).
    A no-op when the invoice is settled or written off; a retry is skipped after a hard
    decline unless the customer has put a different card on file since. Only due jobs call
    it, and their run isolates failures, so it needs no savepoint of its own."""
    with transaction.atomic(savepoint=False):
        subscription, invoice = _locked(invoice_id)
        # Written off (cancellation for non-payment, or staff): no more automatic charges.
        if subscription is None or not invoice.is_payable or invoice.status != Invoice.Status.OPEN:
            return None
        if attempt > 0:
            last = invoice.payments.filter(status=Payment.Status.FAILED).order_by("-id").first()
            if last is not None and not should_retry(
                    last_failure_hard=last.hard_decline, last_method_id=last.payment_method_id,
                    current_method_id=subscription.default_payment_method_id):
                audit_record(action="invoice.retry_skipped", tenant=invoice.tenant, target=invoice,
                             after={"attempt": attempt, "reason": last.decline_code or "no card"})
                return None
        return _charge(subscription, invoice, f"invoice-{invoice.pk}-attempt-{attempt}", attempt, "system")


def invoice_for_number(tenant, number) -> Invoice:
    invoice = (Invoice.objects.filter(tenant=tenant, number=number).exclude(status=Invoice.Status.DRAFT)
               .first() if isinstance(number, str) else None)
    if invoice is None:
        raise NotFound(f"No invoice numbered '{number}' in this organisation.", code="invoice_not_found")
    return invoice


def invoice_pay(*, tenant, number: str, method: str, actor) -> Payment | CryptoQuote:
    """Pay an open invoice now with the default card (SPEC §10 `pay`), or get a crypto
    quote to pay it with SOL, USDC, TRX or USDT (services.crypto.quote_create). Refuses an invoice
    that owes nothing, a missing card, or a method not offered yet."""
    if method in CRYPTO_METHODS:
        return quote_create(tenant=tenant, invoice=invoice_for_number(tenant, number), currency=method,
                            actor=actor)
    if method != "card":
        raise ValidationFailed({"method": [("invalid_choice", "Give 'card'.")]})
    invoice = invoice_for_number(tenant, number)
    with transaction.atomic():
        subscription, invoice = _locked(invoice.pk)
        if not invoice.is_payable:
            raise Conflict(f"Invoice {invoice.number} is {invoice.get_status_display().lower()} and "
                           "owes nothing.", code="invoice_not_payable")
        if subscription is None or subscription.default_payment_method_id is None:
            raise ValidationFailed({"method": [("no_payment_method", "No card on file: add one "
                                                "first (POST /api/v1/payment-methods).")]})
        subscription = (Subscription.objects.select_related("default_payment_method", "tenant", "plan")
                        .get(pk=subscription.pk))
        key = f"invoice-{invoice.pk}-pay-{invoice.attempt_count + 1}"
        return _charge(subscription, invoice, key, invoice.attempt_count + 1, actor)


def payment_record_manual(*, invoice: Invoice, amount_cents: int, reference: str,
                          received_on: date, actor) -> Payment:
    """A bank transfer staff received: the amount is applied, the rest stays due. Refuses
    a non-positive amount, more than is due, a missing reference or a future date."""
    errors = {}
    if not isinstance(amount_cents, int) or amount_cents <= 0:
        errors["amount"] = [("not_positive", "Give a positive amount.")]
    if not (reference or "").strip():
        errors["reference"] = [("required", "Give the transfer's reference from the bank statement.")]
    if not isinstance(received_on, date):
        errors["received_on"] = [("required", "Give the date the money arrived.")]
    elif received_on > clock.now(invoice.tenant).date():
        errors["received_on"] = [("in_future", "The money cannot arrive in the future.")]
    if errors:
        raise ValidationFailed(errors)
    with transaction.atomic():
        subscription, invoice = _locked(invoice.pk)
        if not invoice.is_payable:
            raise Conflict(f"Invoice {invoice} is {invoice.get_status_display().lower()} and owes "
                           "nothing.", code="invoice_not_payable")
        if amount_cents > invoice.amount_due_cents:
            raise ValidationFailed({"amount": [("more_than_due", f"Only {cents_to_text(invoice.amount_due_cents)} "
                                                "USD is due; record at most that.")]})
        payment = Payment.objects.create(
            tenant=invoice.tenant, invoice=invoice, method=Payment.Method.BANK_TRANSFER,
            status=Payment.Status.SUCCEEDED, amount_cents=amount_cents, currency=invoice.currency,
            reference=reference.strip()[:140], received_on=received_on,
            recorded_by=getattr(actor, "pk", None) and actor, created_at=clock.now(invoice.tenant))
        audit_record(action="payment.recorded", tenant=invoice.tenant, actor=actor, target=payment,
                     after={"invoice": invoice.number, "amount_cents": amount_cents,
                            "reference": payment.reference, "received_on": received_on.isoformat()})
        invoice_receive(subscription=subscription, invoice=invoice, amount_cents=amount_cents, actor=actor)
    return payment
