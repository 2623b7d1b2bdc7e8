"""Invoices: drafting, finalising (gapless numbers, the balance applied), voiding, writing
off, receiving money and refunding it to the balance.

Locks are always taken subscription first, then invoice, so two services never deadlock.
"""
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction

from aerolith import clock
from aerolith.errors import Conflict, ValidationFailed
from aerolith.money import cents_to_text
from tenants.services.audit import audit_entry, audit_record, audit_record_many
from tenants.services.events import event_emit, event_emit_many

from ..decisions import LineDraft, invoice_totals
from ..models import BalanceTransaction, Invoice, InvoiceCounter, InvoiceLine, Subscription
from .notify import billing_email

CHARGE_JOB = "billing.invoice_charge"
BALANCE_CREDIT_DESCRIPTION = "Credit from your balance"


def _actor_label(actor) -> str:
    from tenants.services.audit import actor_label

    return actor_label(actor)


def balance_move(*, subscription: Subscription, kind: str, amount_cents: int, description: str,
                 invoice: Invoice | None = None, actor=None) -> BalanceTransaction:
    """Add (positive) or use (negative) credit. The caller holds the subscription's lock."""
    balance = subscription.balance_cents + amount_cents
    if balance < 0:
        raise Conflict(f"The balance holds {cents_to_text(subscription.balance_cents)} USD; "
                       f"{cents_to_text(-amount_cents)} cannot be used.", code="balance_too_low")
    subscription.balance_cents = balance
    subscription.save(update_fields=["balance_cents"])
    return BalanceTransaction.objects.create(
        tenant_id=subscription.tenant_id, kind=kind, amount_cents=amount_cents,
        balance_after_cents=balance, invoice=invoice, description=description[:300],
        actor_label=_actor_label(actor)[:200], created_at=clock.now(subscription.tenant))


def invoice_draft(*, tenant, subscription: Subscription | None, reason: str, period_start,
                  period_end, lines: list[LineDraft]) -> Invoice:
    """A draft invoice with `lines` (amounts in cents). Nothing is owed until finalised."""
    invoice = Invoice.objects.create(
        tenant=tenant, subscription=subscription, reason=reason, period_start=period_start,
        period_end=period_end, created_at=clock.now(tenant),
        subtotal_cents=sum(line.amount_cents for line in lines),
        total_cents=sum(line.amount_cents for line in lines))
    InvoiceLine.objects.bulk_create([_line(invoice, i, line) for i, line in enumerate(lines)])
    return invoice


def _line(invoice: Invoice, position: int, line: LineDraft) -> InvoiceLine:
    return InvoiceLine(
        invoice=invoice, position=position, kind=line.kind, description=line.description[:300],
        meter_id=line.meter_id, quantity=line.quantity, unit_amount_cents=line.unit_amount_cents,
        amount_cents=line.amount_cents, period_start=line.period_start, period_end=line.period_end)


def _next_numbers(year: int, count: int) -> int:
    """Reserve `count` numbers of `year`; returns the last. The upsert holds the counter's
    row lock until commit, so a rolled-back finalisation gives its numbers back."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {InvoiceCounter._meta.db_table} (year, last_number) VALUES (%s, %s) "  # nosec B608 - the table name is the model's; values are parameters
            "ON CONFLICT (year) DO UPDATE SET last_number = "
            f"{InvoiceCounter._meta.db_table}.last_number + EXCLUDED.last_number "
            "RETURNING last_number", [year, count])
        return cursor.fetchone()[0]


def invoice_finalize(*, invoice: Invoice, actor=None, collect: bool = True) -> Invoice:
    """draft → open with the next gapless number; the tenant's balance is applied first and
    a negative total (a downgrade's credit) goes to the balance. An invoice owing nothing is
    paid at once. With `collect`, the default card is charged right after (a due job);
    a manual invoice of a tenant without a card waits to be paid (bank transfer, portal).
    Raises Conflict unless the invoice is a draft."""
    with transaction.atomic():
        subscription = (Subscription.objects.select_for_update().select_related("tenant")
                        .get(pk=invoice.subscription_id) if invoice.subscription_id else None)
        invoice = Invoice.objects.select_for_update().select_related("tenant").get(pk=invoice.pk)
        if invoice.status != Invoice.Status.DRAFT:
            raise Conflict(f"Invoice {invoice} is {invoice.status}; only drafts are finalised.",
                           code="invoice_not_draft")
        amounts = list(invoice.lines.exclude(kind=InvoiceLine.Kind.CREDIT)
                       .values_list("amount_cents", flat=True))
        return _finalize_locked(subscription, invoice, amounts, actor=actor, collect=collect)


def invoice_issue(*, subscription: Subscription, reason: str, period_start, period_end,
                  lines: list[LineDraft], actor=None) -> Invoice:
    """Draft and finalise a subscription's invoice in one step, charging it right after.
    The caller holds the subscription's lock (renewal, trial end, plan change)."""
    return invoices_issue([IssueRequest(subscription, reason, period_start, period_end, lines)],
                          actor=actor)[0]


@dataclass(frozen=True)
class IssueRequest:
    subscription: Subscription
    reason: str
    period_start: datetime
    period_end: datetime
    lines: list[LineDraft]


def invoices_issue(requests: list[IssueRequest], *, actor=None) -> list[Invoice]:
    """invoice_issue for many subscriptions at once (renewal of a chunk of tenants): the
    invoices, lines, numbers, audit entries, events and charges are written with a few
    statements for the whole batch. The caller holds the subscriptions' locks."""
    invoices = Invoice.objects.bulk_create([
        Invoice(tenant=r.subscription.tenant, subscription=r.subscription, reason=r.reason,
                period_start=r.period_start, period_end=r.period_end,
                created_at=clock.now(r.subscription.tenant),
                subtotal_cents=sum(line.amount_cents for line in r.lines),
                total_cents=sum(line.amount_cents for line in r.lines))
        for r in requests])
    InvoiceLine.objects.bulk_create([_line(invoice, i, line) for invoice, r in zip(invoices, requests, strict=True)
                                     for i, line in enumerate(r.lines)])
    return _finalize_many([(r.subscription, invoice, [line.amount_cents for line in r.lines])
                           for invoice, r in zip(invoices, requests, strict=True)],
                          actor=actor, collect=True)


def _finalize_locked(subscription: Subscription | None, invoice: Invoice, amounts: list[int], *,
                     actor, collect: bool) -> Invoice:
    return _finalize_many([(subscription, invoice, amounts)], actor=actor, collect=collect)[0]


_FINAL_FIELDS = ["number", "status", "subtotal_cents", "credit_applied_cents", "total_cents",
                 "amount_due_cents", "finalized_at", "due_at", "paid_at"]


def _finalize_many(items: list[tuple[Subscription | None, Invoice, list[int]]], *, actor,
                   collect: bool) -> list[Invoice]:
    audits, events, charges, invoices = [], [], [], []
    for subscription, invoice, amounts in items:
        tenant = invoice.tenant
        now = clock.now(tenant)
        totals = invoice_totals(amounts, subscription.balance_cents if subscription else 0)
        if totals.credit_applied_cents:
            InvoiceLine.objects.create(
                invoice=invoice, position=len(amounts), kind=InvoiceLine.Kind.CREDIT,
                description=BALANCE_CREDIT_DESCRIPTION, amount_cents=-totals.credit_applied_cents)
            balance_move(subscription=subscription, kind=BalanceTransaction.Kind.APPLIED,
                         amount_cents=-totals.credit_applied_cents, invoice=invoice, actor=actor,
                         description=f"Applied to invoice {invoice.pk}")
        invoice.subtotal_cents = totals.subtotal_cents
        invoice.credit_applied_cents = totals.credit_applied_cents
        invoice.total_cents = totals.total_cents
        invoice.amount_due_cents = totals.amount_due_cents
        invoice.finalized_at = invoice.due_at = now
        invoice.status = Invoice.Status.OPEN
        if totals.amount_due_cents == 0:
            invoice.status, invoice.paid_at = Invoice.Status.PAID, now
        invoices.append((subscription, invoice, totals))
    _number(invoices)
    Invoice.objects.bulk_update([invoice for _s, invoice, _t in invoices], _FINAL_FIELDS)
    for subscription, invoice, totals in invoices:
        tenant = invoice.tenant
        if totals.balance_credit_cents:
            balance_move(subscription=subscription, kind=BalanceTransaction.Kind.DOWNGRADE_CREDIT,
                         amount_cents=totals.balance_credit_cents, invoice=invoice, actor=actor,
                         description=f"Credit from invoice {invoice.number}")
        audits.append(audit_entry(action="invoice.finalized", tenant=tenant, actor=actor, target=invoice,
                                  after={"number": invoice.number, "total_cents": invoice.total_cents,
                                         "amount_due_cents": invoice.amount_due_cents}))
        events.append((tenant, "invoice.finalized", invoice_event(invoice)))
        has_card = subscription is not None and subscription.default_payment_method_id is not None
        charge = (collect and invoice.amount_due_cents > 0 and subscription is not None
                  and (has_card or invoice.reason != Invoice.Reason.MANUAL))
        if charge:
            charges.append(_charge_job(invoice, 0, invoice.finalized_at))
        if not (charge and has_card):
            # An invoice charged to the card on file is announced by its receipt (or by
            # the failure notice), as Stripe does for automatic collection; others now.
            billing_email(tenant=tenant, template="invoice", subject=f"Invoice {invoice.number}",
                          context={"invoice": invoice})
    audit_record_many(audits)
    event_emit_many(events)
    if charges:
        from tenants.services.scheduling import job_schedule_many

        job_schedule_many(charges)
    return [invoice for _s, invoice, _t in invoices]


def _number(invoices: list[tuple]) -> None:
    """Gapless numbers, in order, for invoices finalised together (one counter update a year)."""
    by_year: dict[int, list[Invoice]] = {}
    for _subscription, invoice, _totals in invoices:
        by_year.setdefault(invoice.finalized_at.year, []).append(invoice)
    for year, group in by_year.items():
        last = _next_numbers(year, len(group))
        for offset, invoice in enumerate(group):
            invoice.number = f"AER-{year}-{last - len(group) + 1 + offset:06d}"


def _charge_job(invoice: Invoice, attempt: int, due_at) -> tuple:
    return (invoice.tenant, CHARGE_JOB, f"{invoice.pk}:{attempt}", due_at,
            {"invoice_id": invoice.pk, "attempt": attempt})


def schedule_charge(*, invoice: Invoice, attempt: int, due_at) -> None:
    from tenants.services.scheduling import job_schedule_many

    job_schedule_many([_charge_job(invoice, attempt, due_at)])


def invoice_event(invoice: Invoice) -> dict:
    return {"number": invoice.number, "status": invoice.status, "total_cents": invoice.total_cents,
            "amount_due_cents": invoice.amount_due_cents, "currency": invoice.currency}


def _locked(invoice_id: int) -> tuple[Subscription | None, Invoice]:
    """The invoice and its subscription, locked subscription first. An invoice never
    changes subscription, so locking through the join is safe."""
    subscription = (Subscription.objects.select_for_update(of=("self",)).select_related("tenant")
                    .filter(invoices__pk=invoice_id).first())
    invoice = Invoice.objects.select_for_update(of=("self",)).select_related("tenant").get(pk=invoice_id)
    if subscription is not None:
        invoice.tenant = subscription.tenant
    return subscription, invoice


def invoice_void(*, invoice: Invoice, actor) -> Invoice:
    """open → void: nothing is owed any more; credit the invoice used returns to the
    balance. Refused when money was received (refund it first) or the invoice is closed."""
    with transaction.atomic():
        subscription, invoice = _locked(invoice.pk)
        if invoice.status != Invoice.Status.OPEN:
            raise Conflict(f"Invoice {invoice} is {invoice.get_status_display().lower()}; only "
                           "open invoices can be voided.", code="invoice_not_open")
        if invoice.amount_paid_cents:
            raise Conflict(f"Invoice {invoice} has {cents_to_text(invoice.amount_paid_cents)} USD "
                           "paid; refund it to the balance before voiding.", code="invoice_has_payments")
        if invoice.credit_applied_cents and subscription is not None:
            balance_move(subscription=subscription, kind=BalanceTransaction.Kind.REFUND_TO_BALANCE,
                         amount_cents=invoice.credit_applied_cents, invoice=invoice, actor=actor,
                         description=f"Credit returned by voided invoice {invoice.number}")
        _close(invoice, Invoice.Status.VOID, actor)
    return invoice


def invoice_mark_uncollectible(*, invoice: Invoice, actor) -> Invoice:
    """open → uncollectible (written off; it can still be paid later)."""
    with transaction.atomic():
        _subscription, invoice = _locked(invoice.pk)
        if invoice.status != Invoice.Status.OPEN:
            raise Conflict(f"Invoice {invoice} is {invoice.get_status_display().lower()}; only "
                           "open invoices can be written off.", code="invoice_not_open")
        _close(invoice, Invoice.Status.UNCOLLECTIBLE, actor)
    return invoice


def _close(invoice: Invoice, status: str, actor) -> None:
    before = invoice.status
    invoice.status = status
    invoice.closed_at = clock.now(invoice.tenant)
    if status == Invoice.Status.VOID:
        invoice.amount_due_cents = 0
    invoice.save(update_fields=["status", "closed_at", "amount_due_cents"])
    audit_record(action=f"invoice.{status}", tenant=invoice.tenant, actor=actor, target=invoice,
                 before={"status": before}, after={"status": status})


def invoice_receive(*, subscription: Subscription | None, invoice: Invoice, amount_cents: int,
                    actor=None, also_save: list[str] | None = None) -> Invoice:
    """Money received for a locked, payable invoice: the rest stays due; when nothing is
    due it is paid, and a tenant whose overdue invoices are all paid gets full service
    back at once. The caller holds both locks."""
    if amount_cents <= 0 or amount_cents > invoice.amount_due_cents:
        raise ValidationFailed({"amount": [("out_of_range", "Give an amount between 0.01 and "
                                            f"{cents_to_text(invoice.amount_due_cents)} USD.")]})
    now = clock.now(invoice.tenant)
    invoice.amount_paid_cents += amount_cents
    invoice.amount_due_cents -= amount_cents
    fields = ["amount_paid_cents", "amount_due_cents", *(also_save or [])]
    if invoice.amount_due_cents == 0:
        invoice.status, invoice.paid_at = Invoice.Status.PAID, now
        fields += ["status", "paid_at"]
    invoice.save(update_fields=fields)
    if invoice.status == Invoice.Status.PAID:
        audit_record(action="invoice.paid", tenant=invoice.tenant, actor=actor, target=invoice,
                     after={"amount_paid_cents": invoice.amount_paid_cents})
        event_emit(tenant=invoice.tenant, type="invoice.paid", payload=invoice_event(invoice))
        billing_email(tenant=invoice.tenant, template="invoice_paid",
                      subject=f"Receipt for invoice {invoice.number}", context={"invoice": invoice})
        if subscription is not None:
            from .dunning import service_restore_if_settled

            service_restore_if_settled(subscription=subscription, actor=actor)
    return invoice


def invoice_refund_to_balance(*, invoice: Invoice, amount_cents: int, actor, reason: str = "") -> Invoice:
    """Give paid money back as credit on the tenant's balance (staff action)."""
    with transaction.atomic():
        subscription, invoice = _locked(invoice.pk)
        refundable = invoice.amount_paid_cents - invoice.amount_refunded_cents
        if subscription is None:
            raise Conflict("This invoice has no subscription to hold a balance.", code="no_subscription")
        if not 0 < amount_cents <= refundable:
            raise ValidationFailed({"amount": [("out_of_range", f"Refund between 0.01 and "
                                                f"{cents_to_text(refundable)} USD (what was paid "
                                                "and not yet refunded).")]})
        invoice.amount_refunded_cents += amount_cents
        invoice.save(update_fields=["amount_refunded_cents"])
        balance_move(subscription=subscription, kind=BalanceTransaction.Kind.REFUND_TO_BALANCE,
                     amount_cents=amount_cents, invoice=invoice, actor=actor,
                     description=f"Refund of invoice {invoice.number}" + (f": {reason}" if reason else ""))
        audit_record(action="invoice.refunded_to_balance", tenant=invoice.tenant, actor=actor,
                     target=invoice, after={"amount_cents": amount_cents, "reason": reason})
    return invoice


def invoice_pay_from_balance(*, invoice: Invoice, actor) -> Invoice:
    """Use the tenant's balance for what an open invoice still owes (staff resolving a late
    or partial crypto payment, or a credit granted after the invoice was issued). Pays as
    much as the balance holds; the rest stays due. Refused when the invoice owes nothing or
    the balance is empty."""
    with transaction.atomic():
        subscription, invoice = _locked(invoice.pk)
        if not invoice.is_payable:
            raise Conflict(f"Invoice {invoice} is {invoice.get_status_display().lower()} and owes "
                           "nothing.", code="invoice_not_payable")
        if subscription is None or subscription.balance_cents <= 0:
            raise Conflict("The tenant's balance is empty: there is no credit to apply.",
                           code="balance_empty")
        amount = min(subscription.balance_cents, invoice.amount_due_cents)
        balance_move(subscription=subscription, kind=BalanceTransaction.Kind.APPLIED,
                     amount_cents=-amount, invoice=invoice, actor=actor,
                     description=f"Applied to invoice {invoice.number}")
        audit_record(action="invoice.paid_from_balance", tenant=invoice.tenant, actor=actor,
                     target=invoice, after={"amount_cents": amount})
        invoice_receive(subscription=subscription, invoice=invoice, amount_cents=amount, actor=actor)
    return invoice


def _adjustments_checked(adjustments: list[LineDraft]) -> list[LineDraft]:
    errors = []
    for line in adjustments:
        if line.kind != InvoiceLine.Kind.ADJUSTMENT:
            errors.append(("not_adjustment", "Staff add adjustment lines only."))
        if not isinstance(line.amount_cents, int) or line.amount_cents == 0:
            errors.append(("zero_amount", "Each adjustment needs a non-zero amount."))
        if not line.description.strip():
            errors.append(("required", "Each adjustment needs a description."))
    if errors:
        raise ValidationFailed({"lines": errors})
    return adjustments


def invoice_manual_draft(*, tenant, period_start, period_end, adjustments: list[LineDraft],
                         actor) -> Invoice:
    """A staff-made draft (reason manual) of adjustment lines for `tenant`, against its
    subscription when it has one (so its balance applies at finalisation)."""
    _adjustments_checked(adjustments)
    if period_end < period_start:
        raise ValidationFailed({"period_end": [("before_start", "The period ends before it starts.")]})
    with transaction.atomic():
        subscription = Subscription.objects.filter(tenant_id=tenant.pk).first()
        invoice = invoice_draft(tenant=tenant, subscription=subscription, reason=Invoice.Reason.MANUAL,
                                period_start=period_start, period_end=period_end, lines=adjustments)
        audit_record(action="invoice.draft_created", tenant=tenant, actor=actor, target=invoice,
                     after={"lines": [[line.description, line.amount_cents] for line in adjustments]})
    return invoice


def invoice_adjustments_set(*, invoice: Invoice, adjustments: list[LineDraft], actor) -> Invoice:
    """Replace a draft's adjustment lines (its other lines stay) and recompute its totals
    from all its lines. Raises Conflict unless the invoice is still a draft."""
    _adjustments_checked(adjustments)
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().select_related("tenant").get(pk=invoice.pk)
        if invoice.status != Invoice.Status.DRAFT:
            raise Conflict(f"Invoice {invoice} is {invoice.get_status_display().lower()}; only "
                           "drafts can be adjusted.", code="invoice_not_draft")
        old = invoice.lines.filter(kind=InvoiceLine.Kind.ADJUSTMENT)
        before = [[d, a] for d, a in old.values_list("description", "amount_cents")]
        old.delete()
        kept = list(invoice.lines.values_list("position", "amount_cents"))
        start = max((position for position, _ in kept), default=-1) + 1
        InvoiceLine.objects.bulk_create([_line(invoice, start + i, line) for i, line in enumerate(adjustments)])
        invoice.subtotal_cents = invoice.total_cents = (
            sum(amount for _, amount in kept) + sum(line.amount_cents for line in adjustments))
        invoice.credit_applied_cents = 0
        invoice.save(update_fields=["subtotal_cents", "total_cents", "credit_applied_cents"])
        audit_record(action="invoice.draft_adjusted", tenant=invoice.tenant, actor=actor, target=invoice,
                     before={"adjustments": before},
                     after={"adjustments": [[line.description, line.amount_cents] for line in adjustments]})
    return invoice
