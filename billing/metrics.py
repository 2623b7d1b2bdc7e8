"""Figures for the staff dashboard (SPEC §11): MRR, ARR, tenants by status, trial
conversion, churn, past-due money, failed payments and revenue per month.

Staff read these in real time, so `now` is the wall clock (aerolith.clock.wall_now), not
a tenant's test clock. Each figure is one aggregate query; the arithmetic on its result
(rates, month buckets) is in small pure functions tested with plain values.
"""
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from dateutil.relativedelta import relativedelta
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncMonth

from .models import Invoice, InvoiceLine, Payment, Subscription

Status = Subscription.Status
Outcome = Subscription.TrialOutcome
PAYING = (Status.ACTIVE, Status.PAST_DUE)  # pay the plan's price each month
TRIAL_WINDOW = timedelta(days=90)
CHURN_WINDOW = timedelta(days=30)
FAILED_WINDOW = timedelta(days=30)
MONTHS = 12


def rate(part: int, whole: int) -> Decimal | None:
    """`part` of `whole` as a percentage with one decimal, or None when `whole` is 0."""
    if not whole:
        return None
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"), ROUND_HALF_UP)


def month_starts(now: datetime, months: int = MONTHS) -> list[datetime]:
    """The first instants (UTC) of the `months` calendar months ending with `now`'s, oldest
    first."""
    current = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return [current - relativedelta(months=k) for k in range(months - 1, -1, -1)]


def monthly_series(rows, starts: list[datetime]) -> list[tuple[datetime, int]]:
    """(month, cents) rows from a TruncMonth query spread over `starts`, 0 where none."""
    by_month = {month.astimezone(UTC): cents or 0 for month, cents in rows}
    return [(start, by_month.get(start, 0)) for start in starts]


@dataclass(frozen=True)
class SubscriptionFigures:
    mrr_cents: int
    by_status: dict[str, int]
    trials_converted: int
    trials_fell_back: int
    cancelled_recently: int
    active_at_window_start: int

    @property
    def arr_cents(self) -> int:
        return 12 * self.mrr_cents

    @property
    def trial_conversion_rate(self) -> Decimal | None:
        return rate(self.trials_converted, self.trials_converted + self.trials_fell_back)

    @property
    def churn_rate(self) -> Decimal | None:
        return rate(self.cancelled_recently, self.active_at_window_start)


def subscription_figures(now: datetime) -> SubscriptionFigures:
    """One aggregate over subscriptions.

    - MRR: the monthly price of the current plan of active and past-due subscriptions (a
      downgrade pending at period end is not counted until it applies; trials pay nothing).
    - Trial conversion: trials that ended (dated by `trial_end`) in the last 90 days and
      converted, against those that fell back to Free.
    - Churn: subscriptions cancelled in the last 30 days, against the subscriptions active
      30 days ago: created by then, past any trial by then and not yet cancelled.
    """
    churn_start = now - CHURN_WINDOW
    recent_trial = Q(trial_end__gte=now - TRIAL_WINDOW)
    figures = Subscription.objects.aggregate(
        mrr=Sum("plan__price_cents", filter=Q(status__in=PAYING), default=0),
        converted=Count("pk", filter=recent_trial & Q(trial_outcome=Outcome.CONVERTED)),
        fell_back=Count("pk", filter=recent_trial & Q(trial_outcome=Outcome.FELL_BACK)),
        cancelled=Count("pk", filter=Q(status=Status.CANCELLED, cancelled_at__gte=churn_start,
                                       cancelled_at__lte=now)),
        active_then=Count("pk", filter=Q(created_at__lte=churn_start)
                          & (Q(trial_end__isnull=True) | Q(trial_end__lte=churn_start))
                          & (Q(cancelled_at__isnull=True) | Q(cancelled_at__gte=churn_start))),
        **{f"status_{status}": Count("pk", filter=Q(status=status)) for status in Status.values},
    )
    return SubscriptionFigures(
        mrr_cents=figures["mrr"], by_status={status: figures[f"status_{status}"] for status in Status.values},
        trials_converted=figures["converted"], trials_fell_back=figures["fell_back"],
        cancelled_recently=figures["cancelled"], active_at_window_start=figures["active_then"])


def past_due(now: datetime) -> tuple[int, int]:
    """(number, cents due) of open invoices whose due date has passed. Written-off
    (uncollectible) invoices are not counted."""
    figures = Invoice.objects.filter(status=Invoice.Status.OPEN, amount_due_cents__gt=0,
                                     due_at__lt=now).aggregate(
        n=Count("pk"), cents=Sum("amount_due_cents", default=0))
    return figures["n"], figures["cents"]


def failed_payments(now: datetime, window: timedelta = FAILED_WINDOW) -> int:
    return Payment.objects.filter(status=Payment.Status.FAILED, created_at__gte=now - window,
                                  created_at__lte=now).count()


def _month_bounds(now: datetime, months: int) -> tuple[list[datetime], datetime, datetime]:
    starts = month_starts(now, months)
    return starts, starts[0], starts[-1] + relativedelta(months=1)


def revenue_by_month(now: datetime, months: int = MONTHS) -> list[tuple[datetime, int]]:
    """Totals of invoices paid in each of the last `months` calendar months (by paid_at)."""
    starts, first, after = _month_bounds(now, months)
    rows = (Invoice.objects.filter(status=Invoice.Status.PAID, paid_at__gte=first, paid_at__lt=after)
            .annotate(month=TruncMonth("paid_at", tzinfo=UTC)).values("month")
            .annotate(cents=Sum("total_cents")).values_list("month", "cents"))
    return monthly_series(rows, starts)


def new_mrr_by_month(now: datetime, months: int = MONTHS) -> list[tuple[datetime, int]]:
    """MRR added by trial conversions each month: the plan fee on conversion invoices
    finalised that month (voided ones, whose conversion fell through, are left out)."""
    starts, first, after = _month_bounds(now, months)
    rows = (InvoiceLine.objects.filter(
                kind=InvoiceLine.Kind.PLAN, invoice__reason=Invoice.Reason.TRIAL_CONVERSION,
                invoice__finalized_at__gte=first, invoice__finalized_at__lt=after)
            .exclude(invoice__status=Invoice.Status.VOID)
            .annotate(month=TruncMonth("invoice__finalized_at", tzinfo=UTC)).values("month")
            .annotate(cents=Sum("amount_cents")).values_list("month", "cents"))
    return monthly_series(rows, starts)


@dataclass(frozen=True)
class Dashboard:
    now: datetime
    subscriptions: SubscriptionFigures
    past_due_invoices: int
    past_due_cents: int
    failed_payments: int
    revenue: list[tuple[datetime, int]]
    new_mrr: list[tuple[datetime, int]]


def dashboard(now: datetime) -> Dashboard:
    """Every figure of the staff index page, in six queries."""
    overdue, overdue_cents = past_due(now)
    return Dashboard(now=now, subscriptions=subscription_figures(now), past_due_invoices=overdue,
                     past_due_cents=overdue_cents, failed_payments=failed_payments(now),
                     revenue=revenue_by_month(now), new_mrr=new_mrr_by_month(now))
