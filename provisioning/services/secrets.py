"""Re-sealing provisioning's stored passwords after a key was put in front of
AEROLITH_SECRET_KEYS, so the old key can be retired (SPEC §8 secrets at rest)."""
from django.db import transaction
from django_tenants.utils import schema_context

from aerolith import crypto
from tenants.models import Tenant
from tenants.services.audit import audit_record

from ..models import Cluster, Database


def passwords_reseal(*, actor="cli") -> int:
    """Cluster admin passwords and customer database passwords not under the newest key
    are sealed again (rows locked while they change). Returns how many; safe to run twice.
    A token no listed key opens raises SecretDecryptionFailed and its transaction changes
    nothing."""
    resealed = 0
    with transaction.atomic():
        sealed = Cluster.objects.select_for_update().exclude(admin_password_sealed__exact="")  # nosec B106 - filters out empty values, not a password
        for cluster in sealed.order_by("pk"):
            if crypto.needs_rotation(cluster.admin_password_sealed):
                cluster.admin_password_sealed = crypto.rotate(
                    cluster.admin_password_sealed, context=f"cluster:{cluster.handle}")
                cluster.save(update_fields=["admin_password_sealed"])
                resealed += 1
    for tenant in Tenant.objects.exclude(schema_name="public").filter(erased_at__isnull=True):
        with schema_context(tenant.schema_name), transaction.atomic():
            for database in Database.objects.select_for_update().order_by("pk"):
                if crypto.needs_rotation(database.password_sealed):
                    database.password_sealed = crypto.rotate(
                        database.password_sealed, context=f"database:{database.role_name}")
                    database.save(update_fields=["password_sealed"])
                    resealed += 1
    if resealed:
        audit_record(action="provisioning.passwords_resealed", actor=actor,
                     after={"count": resealed, "key_id": crypto.keys()[0].key_id})
    return resealed
