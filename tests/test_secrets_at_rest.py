"""Secrets at rest (SPEC §8, issue 8 item 6): every stored secret is made through the real
services — a customer database's role password, a cluster's admin password, an API key,
the wallet's signing keys, a webhook endpoint's signing secret and an SSO client secret —
then every text, JSON, array and bytea column of every table in every schema is read back,
and so is everything logged along the way at DEBUG (SQL with its parameters included).
No plaintext may appear anywhere; each sealed token must open to its secret with its own
context (so the search is not vacuous), and must itself be found in the dump."""
import base64
import binascii
import logging
import os
from dataclasses import dataclass
from urllib.parse import unquote

import pytest
from django.db import connection
from django_tenants.utils import tenant_context

from aerolith import crypto
from tests.conftest import make_key, owner_principal

pytestmark = pytest.mark.django_db

COLUMN_TYPES = ("text", "character varying", "character", "json", "jsonb", "bytea", "ARRAY")


@dataclass
class Sealed:
    what: str
    plaintext: bytes
    token: str | None  # None: stored as a hash, nothing to open
    context: str = ""

    def forms(self) -> list[bytes]:
        """The plaintext as it could leak: raw, and as text in the encodings a careless
        line of code would use."""
        raw = self.plaintext
        out = {raw, binascii.hexlify(raw), base64.b64encode(raw), base64.urlsafe_b64encode(raw),
               base64.urlsafe_b64encode(raw).rstrip(b"="), base64.b32encode(raw).rstrip(b"=")}
        try:
            import base58

            out.add(base58.b58encode(raw))
        except ImportError:
            pass
        # Short encodings could match by chance; the raw secret is checked at any length
        # from 8 (recovery codes are 8 letters).
        return [form for form in out if len(form) >= 12 or (form == raw and len(raw) >= 8)]


def _dump() -> tuple[list[bytes], int]:
    """Every non-null value of every text-like, JSON, array or bytea column of every table
    in every schema, as bytes; and how many columns were read."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.table_schema, c.table_name, c.column_name, c.data_type "
            "FROM information_schema.columns c JOIN information_schema.tables t "
            "ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
            "WHERE t.table_type = 'BASE TABLE' AND c.data_type = ANY(%s) "
            "AND c.table_schema NOT IN ('pg_catalog', 'information_schema') "
            "AND c.table_schema NOT LIKE 'pg_toast%%' ORDER BY 1, 2, 3", [list(COLUMN_TYPES)])
        columns = cursor.fetchall()
        values: list[bytes] = []
        quote = connection.ops.quote_name
        for schema, table, column, data_type in columns:
            expression = quote(column) if data_type == "bytea" else f"{quote(column)}::text"
            cursor.execute(f"SELECT {expression} FROM {quote(schema)}.{quote(table)} "
                           f"WHERE {quote(column)} IS NOT NULL")
            for (value,) in cursor.fetchall():
                values.append(bytes(value) if data_type == "bytea" else value.encode())
    return values, len(columns)


@pytest.fixture
def two_keys(settings):
    """A fresh newest key in front of the test-mode key the session's rows were sealed
    with: the rotation set-up production runs in after adding a key."""
    new = base64.b64encode(os.urandom(32)).decode()
    settings.AEROLITH_SECRET_KEYS = f"{new},{base64.b64encode(crypto.testmode_key()).decode()}"
    return crypto.key_id_for(base64.b64decode(new))


def _sso_secret(tenant) -> Sealed | None:
    try:
        from billing.models import Plan, Subscription
        from tenants.services.sso import sso_config_save, sso_secret_context

        from .fakes.oidc_provider import OidcProvider
    except ImportError:  # SSO not in this tree
        return None
    provider = OidcProvider().start()
    try:
        Subscription.objects.filter(tenant=tenant).update(plan=Plan.objects.get(code="enterprise"))
        with tenant_context(tenant):
            config = sso_config_save(principal=owner_principal(tenant), issuer=provider.url,
                                     client_id=provider.client_id,
                                     client_secret=provider.client_secret,
                                     default_role="developer", enabled=True, allowed_domains=[])
        connection.set_schema_to_public()
    finally:
        provider.stop()
    return Sealed("sso client secret", provider.client_secret.encode(),
                  config.client_secret_sealed, sso_secret_context(tenant))


def _webhook_secret(tenant) -> Sealed | None:
    try:
        from tenants.services.webhooks import endpoint_create, secret_context
    except ImportError:  # tenant webhooks not in this tree
        return None
    with tenant_context(tenant):
        endpoint, secret = endpoint_create(principal=owner_principal(tenant),
                                           url="https://hooks.example.test/aerolith")
    connection.set_schema_to_public()
    return Sealed("webhook signing secret", secret.encode(), endpoint.secret_sealed,
                  secret_context(tenant.pk, endpoint.pk))


def _two_factor_secrets(user) -> list[Sealed]:
    """An authenticator key (sealed) and recovery codes (hashed), when two-factor
    authentication with sealed devices is in this tree."""
    try:
        from django_otp.oath import TOTP

        from tenants.otp_devices import totp_key_context
        from tenants.services.two_factor import totp_enrol_confirm, totp_enrolment
    except ImportError:
        return []
    device = totp_enrolment(user)
    key = device.bin_key
    device, codes = totp_enrol_confirm(user=user, code=f"{TOTP(key).token():06d}")
    device.refresh_from_db()
    return [Sealed("TOTP key", binascii.hexlify(key), device.key_sealed,
                   totp_key_context(user.pk)),
            Sealed("TOTP key (binary)", key, None),
            *(Sealed("recovery code", code.encode(), None) for code in codes)]


def _make_every_secret(alice, bob, shared_cluster) -> list[Sealed]:
    from billing.models import Plan, Subscription
    from billing.services.wallet import signing_key_generate, tron_xprv_import
    from provisioning.models import Cluster
    from provisioning.selectors import admin_password
    from provisioning.services.clusters import cluster_create
    from provisioning.services.databases import database_create

    found: list[Sealed] = []
    database, uri = database_create(tenant=alice, actor=owner_principal(alice), name="vault")
    password = unquote(uri.split("@")[0].rsplit(":", 1)[1])
    found.append(Sealed("customer database password", password.encode(), database.password_sealed,
                        f"database:{database.role_name}"))

    found.append(Sealed("shared cluster admin password", admin_password(shared_cluster).encode(),
                        shared_cluster.admin_password_sealed, f"cluster:{shared_cluster.handle}"))
    Subscription.objects.filter(tenant=bob).update(plan=Plan.objects.get(code="enterprise"))
    cluster, _ = cluster_create(tenant=bob, actor=owner_principal(bob), name="sealed", node_count=1)
    cluster = Cluster.objects.get(pk=cluster.pk)
    found.append(Sealed("dedicated cluster admin password", admin_password(cluster).encode(),
                        cluster.admin_password_sealed, f"cluster:{cluster.handle}"))

    secret = make_key(alice, ["read"], name="at rest")
    found.append(Sealed("API key (full)", secret.encode(), None))
    found.append(Sealed("API key (secret part)", secret.split(".", 1)[1].encode(), None))

    solana = signing_key_generate(network="solana", label="at rest", actor="test")
    found.append(Sealed("solana signing key", crypto.decrypt(
        solana.secret_sealed, context=solana.secret_context), solana.secret_sealed,
        solana.secret_context))
    xprv = _tron_account_xprv()
    tron = tron_xprv_import(xprv_text=xprv, label="at rest", actor="test")
    found.append(Sealed("tron account xprv", xprv.encode(), tron.secret_sealed, tron.secret_context))

    for optional in (_webhook_secret(alice), _sso_secret(bob)):
        if optional is not None:
            found.append(optional)
    found += _two_factor_secrets(owner_principal(alice).user)
    return found


def _tron_account_xprv() -> str:
    """The private side of the test AEROLITH_TRON_XPUB (the BIP-39 test mnemonic)."""
    from bip_utils import Bip39SeedGenerator, Bip44, Bip44Coins

    seed = Bip39SeedGenerator("abandon " * 11 + "about").Generate()
    return (Bip44.FromSeed(seed, Bip44Coins.TRON).Purpose().Coin().Account(0).PrivateKey()
            .ToExtended())


def test_no_secret_is_stored_or_logged_in_clear(alice, bob, shared_cluster, two_keys, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    connection.force_debug_cursor = True  # log every SQL statement with its parameters
    try:
        sealed = _make_every_secret(alice, bob, shared_cluster)
    finally:
        connection.force_debug_cursor = False
    logged = "\n".join(f"{r.getMessage()} {r.args!r} {getattr(r, 'sql', '')} "
                       f"{getattr(r, 'params', '')}" for r in caplog.records).encode()
    assert b"INSERT INTO" in logged  # SQL was logged, parameters included
    values, columns = _dump()
    assert columns > 100  # every schema: public, the base schema, each tenant's
    stored = b"\n".join(values)

    kinds = {s.what for s in sealed}
    assert {"customer database password", "dedicated cluster admin password",
            "API key (full)", "solana signing key", "tron account xprv"} <= kinds
    for item in sealed:
        for form in item.forms():
            assert form not in stored, f"{item.what} is stored in clear"
            assert form not in logged, f"{item.what} was logged"
        if item.token is None:
            continue
        assert crypto.decrypt(item.token, context=item.context) == item.plaintext, item.what
        assert item.token.encode() in stored, f"the sealed {item.what} was not found in the dump"
        with pytest.raises(crypto.SecretDecryptionFailed):
            crypto.decrypt(item.token, context=item.context + ":elsewhere")
    # What was sealed during this test used the newest key; the session's older rows still
    # open with the old one, so rotation can proceed row by row.
    fresh = [s for s in sealed if s.token and s.what != "shared cluster admin password"]
    assert {crypto.token_key_id(s.token) for s in fresh} == {two_keys}
