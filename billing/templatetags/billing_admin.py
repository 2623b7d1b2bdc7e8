"""The staff index page's billing figures (templates/admin/index.html)."""
from decimal import Decimal

from django import template

from aerolith import clock
from aerolith.charts import bar_chart

from .. import metrics
from ..models import Subscription

register = template.Library()


def _dollars(series) -> list:
    return [(month, Decimal(cents) / 100) for month, cents in series]


@register.inclusion_tag("admin/billing/dashboard.html")
def billing_dashboard():
    """MRR, ARR, tenants by status, trial conversion, churn, past-due money, failed
    payments, and charts of revenue and new MRR per month, by the wall clock."""
    board = metrics.dashboard(clock.wall_now())
    figures = board.subscriptions
    return {
        "board": board,
        "figures": figures,
        "statuses": [(value, label, figures.by_status[value])
                     for value, label in Subscription.Status.choices],
        "revenue_chart": bar_chart(_dollars(board.revenue), unit="USD", time_format="%b %y",
                                   title="Revenue: paid invoices per month"),
        "new_mrr_chart": bar_chart(_dollars(board.new_mrr), unit="USD", time_format="%b %y",
                                   title="New MRR from trial conversions per month"),
        "trial_days": metrics.TRIAL_WINDOW.days,
        "churn_days": metrics.CHURN_WINDOW.days,
        "failed_days": metrics.FAILED_WINDOW.days,
    }
