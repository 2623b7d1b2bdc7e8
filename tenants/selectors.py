"""Reads shared by the API, the portal and the admin."""
from django.conf import settings

from .models import AuditEvent, Membership, Tenant, User


def tenant_url(tenant: Tenant, path: str = "/") -> str:
    port = f":{settings.AEROLITH_URL_PORT}" if settings.AEROLITH_URL_PORT else ""
    host = settings.AEROLITH_BASE_DOMAIN if tenant.is_public else f"{tenant.slug}.{settings.AEROLITH_BASE_DOMAIN}"
    return f"{settings.AEROLITH_URL_SCHEME}://{host}{port}{path}"


def memberships_of(user: User):
    return (
        Membership.objects.filter(user=user, accepted_at__isnull=False)
        .select_related("tenant")
        .order_by("tenant__name")
    )


def members_of(tenant: Tenant):
    return Membership.objects.filter(tenant=tenant).select_related("user")


def audit_events_of(tenant: Tenant):
    return AuditEvent.objects.filter(tenant=tenant)
