"""Billing emails to the tenant's billing contacts, with HTML and text parts rendered from
templates/emails/<name>.{txt,html}, sent after the transaction commits."""
import logging

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string

from tenants.selectors import tenant_url

from ..selectors import billing_contacts

logger = logging.getLogger(__name__)


def billing_email(*, tenant, template: str, subject: str, context: dict | None = None) -> None:
    """Queue `template` to the billing contacts once the current transaction commits."""
    recipients = billing_contacts(tenant)
    if not recipients:
        return
    context = {"tenant": tenant, "portal_url": tenant_url(tenant, "/"),
               "billing_url": tenant_url(tenant, "/billing"), **(context or {})}

    def send():
        try:
            if template == "invoice":  # the lines, read once for both parts
                context["lines"] = list(context["invoice"].lines.all())
            text = render_to_string(f"emails/{template}.txt", context)
            html = render_to_string(f"emails/{template}.html", context)
            message = EmailMultiAlternatives(f"[Aerolith] {subject}", text,
                                             settings.DEFAULT_FROM_EMAIL, recipients)
            message.attach_alternative(html, "text/html")
            message.send()
        except Exception:  # noqa: BLE001 - a mail outage must not undo a committed change
            logger.exception("Could not send the %s email to %s", template, tenant.slug)

    transaction.on_commit(send)
