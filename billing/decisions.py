"""Billing's decisions as pure functions of plain values: periods, proration, invoice
totals, plan-change direction and dunning's timeline. Services feed them from the database
and write down what they decide; tests call them directly (tests/billing/test_decisions.py).
"""
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from dateutil.relativedelta import relativedelta

SECOND = timedelta(seconds=1)


def period_end_after(anchor: datetime, after: datetime) -> datetime:
    """The first anniversary of `anchor` strictly after `after`: anchor + k months. Month
    ends are clamped (anchor Jan 31 gives Feb 28, then Mar 31), and never drift."""
    months = (after.year - anchor.year) * 12 + (after.month - anchor.month)
    k = max(months - 1, 1)
    while anchor + relativedelta(months=k) <= after:
        k += 1
    while k > 1 and anchor + relativedelta(months=k - 1) > after:
        k -= 1
    return anchor + relativedelta(months=k)


def whole_seconds(start: datetime, end: datetime) -> int:
    return max(0, (end - start) // SECOND)


def prorate_cents(amount_cents: int, start: datetime, end: datetime, at: datetime) -> int:
    """The share of `amount_cents` for [at, end) of the period [start, end), counted in
    whole seconds and rounded half up to the cent."""
    total = whole_seconds(start, end)
    if total == 0:
        return 0
    remaining = whole_seconds(min(max(at, start), end), end)
    return int((Decimal(amount_cents) * remaining / total).quantize(Decimal(1), ROUND_HALF_UP))


@dataclass(frozen=True)
class LineDraft:
    """An invoice line before it is written; amounts in cents."""

    kind: str
    description: str
    amount_cents: int
    quantity: Decimal = Decimal(1)
    unit_amount_cents: Decimal | None = None
    meter_id: int | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None


def _when(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S UTC")


def plan_fee_line(name: str, price_cents: int, start: datetime, end: datetime) -> LineDraft:
    return LineDraft("plan", f"{name} plan, {_when(start)} – {_when(end)}", price_cents,
                     Decimal(1), Decimal(price_cents), None, start, end)


def proration_lines(*, old_name: str, old_price_cents: int, new_name: str, new_price_cents: int,
                    start: datetime, end: datetime, at: datetime) -> list[LineDraft]:
    """A credit for the unused time of the old price and a charge for the remaining time
    of the new one, both to the second (SPEC §3)."""
    credit = prorate_cents(old_price_cents, start, end, at)
    charge = prorate_cents(new_price_cents, start, end, at)
    fraction = Decimal(whole_seconds(at, end)) / Decimal(whole_seconds(start, end) or 1)
    quantity = fraction.quantize(Decimal("0.000001"), ROUND_HALF_UP)
    return [
        LineDraft("proration", f"Unused time on {old_name} after {_when(at)}", -credit,
                  quantity, Decimal(-old_price_cents), None, at, end),
        LineDraft("proration", f"Remaining time on {new_name} from {_when(at)}", charge,
                  quantity, Decimal(new_price_cents), None, at, end),
    ]


def change_direction(old_price_cents: int, new_price_cents: int) -> str:
    """'upgrade' when the new plan costs more, else 'downgrade' (equal prices count as a
    downgrade: nothing is owed, so nothing is charged at once)."""
    return "upgrade" if new_price_cents > old_price_cents else "downgrade"


@dataclass(frozen=True)
class Totals:
    subtotal_cents: int
    credit_applied_cents: int
    total_cents: int
    amount_due_cents: int
    balance_credit_cents: int  # a negative total goes to the balance (downgrade now)


def invoice_totals(line_amounts: list[int], balance_cents: int) -> Totals:
    """Totals of an invoice whose non-credit lines sum to `line_amounts`, using up to
    `balance_cents` of the tenant's credit. total = subtotal − credit = sum of all lines
    once the credit line (−credit) is added."""
    if balance_cents < 0:
        raise ValueError("A balance is never negative")
    subtotal = sum(line_amounts)
    credit = min(balance_cents, max(subtotal, 0))
    total = subtotal - credit
    return Totals(subtotal, credit, total, max(total, 0), max(-total, 0))


@dataclass(frozen=True)
class DunningPolicy:
    retry_days: tuple[int, ...] = (1, 3, 5, 7)
    grace_days: int = 7
    suspension_days: int = 30
    retention_days: int = 30


@dataclass(frozen=True)
class DunningTimeline:
    retries: list[datetime] = field(default_factory=list)
    grace_end: datetime | None = None


def dunning_timeline(due_at: datetime, policy: DunningPolicy) -> DunningTimeline:
    """When to retry a failed charge and when grace ends, counted from the due date."""
    days = sorted(set(policy.retry_days))
    return DunningTimeline([due_at + timedelta(days=d) for d in days],
                           due_at + timedelta(days=policy.grace_days))


def should_retry(*, last_failure_hard: bool, last_method_id: int | None,
                 current_method_id: int | None) -> bool:
    """Hard declines are not retried on the same card; a new card revives the retries."""
    if current_method_id is None:
        return False
    return not (last_failure_hard and last_method_id == current_method_id)
