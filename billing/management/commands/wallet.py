"""The wallet's command line (SPEC §6 "Sending"):

    manage.py wallet import-key --network solana [--label L]   # secret key read from stdin
    manage.py wallet import-key --network tron [--label L]     # account xprv (m/44'/195'/0') from stdin
    manage.py wallet generate-key --network solana [--label L] # prints the address only
    manage.py wallet show                                      # addresses, never secrets
    manage.py wallet import-xpub --network tron <xpub>         # checks it, prints the env line

Secrets are sealed with AEROLITH_SECRET_KEYS (aerolith/crypto.py) before they are stored
and are never echoed. Bad input ends in CommandError with nothing stored.
"""
import getpass
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from aerolith.crypto import SecretBoxError
from aerolith.errors import DomainError
from billing.services.wallet import (
    signing_key_generate,
    signing_key_import,
    signing_keys,
    signing_keys_reseal,
    tron_xpub_checked,
)


class Command(BaseCommand):
    help = "Set up the crypto wallet: signing keys (sealed at rest), addresses, the Tron xpub."
    stealth_options = ("stdin",)

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        for name in ("import-key", "generate-key"):
            p = sub.add_parser(name)
            p.add_argument("--network", required=True)
            p.add_argument("--label", default="")
        sub.add_parser("show")
        sub.add_parser("rotate-keys", help="Re-seal stored secrets with the newest secret-box key.")
        p = sub.add_parser("import-xpub")
        p.add_argument("--network", required=True)
        p.add_argument("xpub")

    def handle(self, *args, action, **options):
        try:
            return getattr(self, "_" + action.replace("-", "_"))(**options)
        except DomainError as error:
            raise CommandError(error.explain()) from None
        except SecretBoxError as error:
            raise CommandError(f"Secret box: {error}") from None

    def _import_key(self, network, label, stdin=None, **_options):
        stdin = stdin or sys.stdin
        if stdin.isatty():
            prompt = ("Account extended private key (xprv…; not echoed): " if network == "tron"
                      else "Secret key (base58 or keypair JSON; not echoed): ")
            text = getpass.getpass(prompt)
        else:
            text = stdin.read()
        if not text.strip():
            raise CommandError("No secret key on standard input: pipe it in, e.g. "
                               f"`manage.py wallet import-key --network {network} < key.txt`.")
        key = signing_key_import(network=network, secret_text=text, label=label, actor="cli")
        del text
        self.stdout.write(f"Stored the {key.network} signing key for {key.address} (sealed with key "
                          f"{key.secret_sealed.split(':')[1]}).")

    def _generate_key(self, network, label, **_options):
        key = signing_key_generate(network=network, label=label, actor="cli")
        self.stdout.write(key.address)

    def _show(self, **_options):
        rows = list(signing_keys())
        if not rows:
            self.stdout.write("No signing keys stored.")
        for key in rows:
            label = f"  {key.label}" if key.label else ""
            self.stdout.write(f"{key.network}\t{key.address}{label}")
        merchant = settings.AEROLITH_SOLANA_MERCHANT
        stored = any(k.network == "solana" and k.address == merchant for k in rows)
        self.stdout.write(f"Solana merchant (AEROLITH_SOLANA_MERCHANT): {merchant or '(not set)'}"
                          f"{'' if stored else ' — no signing key stored: refunds on chain cannot be sent'}")
        xpub = getattr(settings, "AEROLITH_TRON_XPUB", "")
        self.stdout.write(f"Tron xpub (AEROLITH_TRON_XPUB): {'set' if xpub else '(not set)'}")

    def _rotate_keys(self, **_options):
        count = signing_keys_reseal(actor="cli")
        self.stdout.write(f"Re-sealed {count} signing key(s) with the newest secret-box key."
                          if count else "Every signing key is already sealed with the newest key.")

    def _import_xpub(self, network, xpub, **_options):
        if network != "tron":
            raise CommandError("Extended public keys are used for Tron deposit addresses: --network tron.")
        first = tron_xpub_checked(xpub)
        self.stdout.write(f"Valid. The first deposit address (index 0) is {first}.\n"
                          "Set it in the environment (it is read from settings, not stored here):\n"
                          f"AEROLITH_TRON_XPUB={xpub.strip()}")
