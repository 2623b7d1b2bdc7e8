"""Celery tasks of tenant webhooks: thin, idempotent, taking ids. Imported by
TenantsConfig.ready() so that workers register them (autodiscovery looks at tenants.tasks
only)."""
from celery import shared_task
from django_tenants.utils import tenant_context

from ..models import Tenant
from ..services.webhook_delivery import delivery_attempt, outbox_fan_out

MAX_BATCHES_PER_RUN = 50


@shared_task
def webhooks_dispatch() -> int:
    """Beat, every few seconds: fan the outbox out into deliveries, batch after batch until
    it is empty (bounded, so a flood is spread over several runs); returns events taken."""
    taken = 0
    for _ in range(MAX_BATCHES_PER_RUN):
        count = outbox_fan_out()
        taken += count
        if not count:
            break
    return taken


@shared_task(ignore_result=True)
def webhook_send(tenant_id: int, delivery_id: int, attempt: int) -> None:
    """Make one attempt of one delivery (a no-op if it was made already)."""
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        return
    with tenant_context(tenant):
        delivery_attempt(tenant=tenant, delivery_id=delivery_id, attempt=attempt)
