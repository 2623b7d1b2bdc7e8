from django.conf import settings

from ..models import Tenant
from ..selectors import tenant_url


def portal(request):
    tenant = getattr(request, "tenant", None)
    return {
        "tenant": tenant if tenant is not None and not tenant.is_public else None,
        "public_url": tenant_url(Tenant(schema_name="public"), "/"),
        "base_domain": settings.AEROLITH_BASE_DOMAIN,
        "test_mode": settings.AEROLITH_TEST_MODE,
        "principal": getattr(request, "principal", None),
    }
