"""`manage.py wallet rotate-keys` re-seals stored signing keys with the newest secret-box
key, so an old key can be retired without losing a secret."""
import base64
import io
import os

import pytest
from django.core.management import CommandError, call_command

from aerolith import crypto
from billing.models import SigningKey
from billing.services.wallet import signing_key_generate


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.mark.django_db
def test_rotate_keys_reseals_with_the_newest_key_so_the_old_one_can_go(settings):
    old, new = _key(), _key()
    settings.AEROLITH_SECRET_KEYS = old
    stored = signing_key_generate(network="solana", label="merchant", actor="test")
    secret = crypto.decrypt(stored.secret_sealed, context=stored.secret_context)
    settings.AEROLITH_SECRET_KEYS = f"{new}, {old}"
    out = io.StringIO()
    call_command("wallet", "rotate-keys", stdout=out)
    assert "Re-sealed 1 signing key(s)" in out.getvalue()
    settings.AEROLITH_SECRET_KEYS = new  # the old key retired
    stored.refresh_from_db()
    assert crypto.decrypt(stored.secret_sealed, context=stored.secret_context) == secret
    out = io.StringIO()
    call_command("wallet", "rotate-keys", stdout=out)
    assert "already sealed with the newest key" in out.getvalue()


@pytest.mark.django_db
def test_rotate_keys_with_a_secret_no_listed_key_opens_fails_loudly_and_changes_nothing(settings):
    settings.AEROLITH_SECRET_KEYS = _key()
    stored = signing_key_generate(network="solana", actor="test")
    before = SigningKey.objects.get(pk=stored.pk).secret_sealed
    settings.AEROLITH_SECRET_KEYS = _key()  # the key that sealed it is gone
    with pytest.raises(CommandError, match="Secret box"):
        call_command("wallet", "rotate-keys", stdout=io.StringIO())
    assert SigningKey.objects.get(pk=stored.pk).secret_sealed == before
