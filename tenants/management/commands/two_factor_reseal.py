"""Re-seal the stored authenticator-app keys with the newest secret-box key, after a new
key was put in front of AEROLITH_SECRET_KEYS; once it reports nothing left, the old key
can be dropped.

    manage.py two_factor_reseal
"""
from django.core.management import BaseCommand, CommandError

from aerolith import crypto
from tenants.services.two_factor import totp_keys_reseal


class Command(BaseCommand):
    help = "Re-seal two-factor (TOTP) keys with the newest AEROLITH_SECRET_KEYS key."

    def handle(self, *args, **options):
        try:
            count = totp_keys_reseal(actor="cli")
        except crypto.SecretBoxError as error:
            raise CommandError(f"{error} Nothing was changed.") from None
        self.stdout.write(f"Re-sealed {count} two-factor key(s) with the newest secret-box key."
                          if count else "Every two-factor key is already sealed with the newest key.")
