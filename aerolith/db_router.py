"""Decides, per model, whether its table lives in the public schema or in each tenant's.

django-tenants routes whole apps. Our apps hold both kinds of data (SPEC §2: API keys and
databases are tenant-private, plans and invoices are public), so a model opts into the
tenant schemas with `tenant_private = True`; everything else stays public.
"""
from django.apps import apps
from django.conf import settings
from django.db import connections
from django_tenants.utils import get_public_schema_name, get_tenant_database_alias

PROJECT_APPS = frozenset(settings.TENANT_APPS)


def is_tenant_private(app_label: str, model_name: str | None) -> bool:
    if model_name is None:
        return False
    try:
        return bool(getattr(apps.get_model(app_label, model_name), "tenant_private", False))
    except LookupError:  # a model that only exists in old migrations
        return False


class TenantModelRouter:
    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if db != get_tenant_database_alias():
            return False
        on_public = connections[db].schema_name == get_public_schema_name()
        if app_label not in PROJECT_APPS:
            # Django's own and third-party apps live in the public schema only.
            return on_public
        private = hints.get("tenant_private", is_tenant_private(app_label, model_name))
        return private != on_public
