"""Re-seal every stored secret under the newest AEROLITH_SECRET_KEYS key.

Key rotation: put a new key in front of AEROLITH_SECRET_KEYS (keep the old one after it),
deploy, run `manage.py secrets_reseal`, then drop the old key. Every secret the product
stores sealed is covered: customer database and cluster admin passwords, webhook and SSO
client secrets, authenticator keys and the wallet's signing keys. Safe to run again; a
token no listed key opens stops the command with an error and that part changes nothing.
"""
from django.core.management.base import BaseCommand, CommandError
from django_tenants.utils import tenant_context

from aerolith.crypto import SecretBoxError
from billing.services.wallet import signing_keys_reseal
from provisioning.services.secrets import passwords_reseal
from tenants.models import Tenant
from tenants.services.sso import sso_secret_rotate
from tenants.services.two_factor import totp_keys_reseal
from tenants.services.webhooks import webhook_secrets_reseal


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args, **options):
        try:
            counts = {
                "database and cluster passwords": passwords_reseal(actor="cli"),
                "webhook secrets": webhook_secrets_reseal(actor="cli"),
                "SSO client secrets": self._sso(),
                "authenticator keys": totp_keys_reseal(actor="cli"),
                "wallet signing keys": signing_keys_reseal(actor="cli"),
            }
        except SecretBoxError as error:
            raise CommandError(f"{error} Put the key that sealed it back into "
                               "AEROLITH_SECRET_KEYS (after the new one) and run again.") from error
        for what, count in counts.items():
            self.stdout.write(f"{what}: {count} re-sealed")

    def _sso(self) -> int:
        resealed = 0
        for tenant in Tenant.objects.exclude(schema_name="public").filter(erased_at__isnull=True):
            with tenant_context(tenant):
                resealed += sso_secret_rotate(tenant)
        return resealed
