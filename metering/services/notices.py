"""Notices at 80% and 100% of an allowance: email to the billing contacts, an audit
entry and a `usage.threshold` event for the tenant's webhooks, once per period."""
import logging
from datetime import datetime
from decimal import Decimal

from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string

from tenants.models import Membership, Role, Tenant
from tenants.selectors import tenant_url
from tenants.services.audit import audit_record
from tenants.services.events import event_emit

from ..models import Meter, ThresholdNotice
from ..quantities import micro_to_decimal

BILLING_CONTACT_ROLES = (Role.OWNER, Role.ADMIN, Role.BILLING)
logger = logging.getLogger(__name__)


def billing_contacts(tenant: Tenant) -> list[str]:
    return list(Membership.objects.filter(tenant=tenant, role__in=BILLING_CONTACT_ROLES,
                                          accepted_at__isnull=False)
                .values_list("user__email", flat=True))


def threshold_notice(*, tenant: Tenant, meter: Meter, period_start: datetime, percent: int,
                     used_micro: int, included_micro: int) -> ThresholdNotice | None:
    """Record and send the notice; None if it was already sent this period."""
    used, included = micro_to_decimal(used_micro), micro_to_decimal(included_micro)
    try:
        with transaction.atomic():
            notice = ThresholdNotice.objects.create(
                tenant=tenant, meter=meter, period_start=period_start, percent=percent,
                used=used, included=included)
            payload = {"meter": meter.code, "percent": percent, "used": _text(used),
                       "included": _text(included), "period_start": period_start.isoformat()}
            audit_record(action="usage.threshold", tenant=tenant, actor="system", target=notice,
                         after=payload)
            event_emit(tenant=tenant, type="usage.threshold", payload=payload)
            recipients = billing_contacts(tenant)
            what = "reached" if percent >= 100 else f"reached {percent}% of"
            context = {"tenant": tenant, "meter": meter, "percent": percent, "used": _text(used),
                       "included": _text(included),
                       "overage_allowed": tenant.subscription.plan.overage_allowed,
                       "usage_url": tenant_url(tenant, "/usage"),
                       "billing_url": tenant_url(tenant, "/billing")}
            subject = f"{tenant.name}: {meter.name} usage {what} your allowance"
            transaction.on_commit(lambda: _send(subject, context, recipients), robust=True)
    except IntegrityError:
        return None
    return notice


def _send(subject: str, context: dict, recipients: list[str]) -> None:
    """The notice with text and HTML parts from templates/emails/usage_threshold.*; a mail
    outage is logged, never raised into the committed change."""
    if not recipients:
        return
    try:
        message = EmailMultiAlternatives(subject, render_to_string("emails/usage_threshold.txt", context),
                                         None, recipients)
        message.attach_alternative(render_to_string("emails/usage_threshold.html", context), "text/html")
        message.send()
    except Exception:  # noqa: BLE001 - like billing emails: the notice row stands
        logger.exception("Could not send the usage notice to %s", context["tenant"].slug)


def _text(value: Decimal) -> str:
    return format(value.normalize(), "f")


def thresholds_sweep(tenant: Tenant) -> list[ThresholdNotice]:
    """Send any notice a tenant's current usage calls for and did not get (its queueing
    failed, say). Safe to repeat: a notice goes out once per period."""
    from billing.selectors import subscription_of

    from .counters import counters_read
    from .quotas import allowances_micro, meters_by_code, reached_thresholds

    subscription = subscription_of(tenant)
    if subscription is None:
        return []
    start = subscription.current_period_start
    used = counters_read(tenant.pk, start)
    allowances = allowances_micro(subscription.plan)
    sent_before = set(ThresholdNotice.objects.filter(tenant=tenant, period_start=start)
                      .values_list("meter_id", "percent"))
    sent = []
    for code, meter in meters_by_code().items():
        included = allowances.get(meter.pk)
        for percent in reached_thresholds(used.get(code, 0), included or 0):
            if (meter.pk, percent) not in sent_before:
                notice = threshold_notice(tenant=tenant, meter=meter, period_start=start,
                                          percent=percent, used_micro=used.get(code, 0),
                                          included_micro=included)
                if notice is not None:
                    sent.append(notice)
    return sent
