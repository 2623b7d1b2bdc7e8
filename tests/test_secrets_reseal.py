"""Key rotation end to end: secrets sealed under the old key, a new key put in front,
`manage.py secrets_reseal`, the old key dropped — every stored secret still opens."""
import base64
import os

import psycopg
import pytest
from django.core.management import call_command
from django_tenants.utils import tenant_context

from aerolith import crypto
from provisioning.models import Cluster, Database
from provisioning.selectors import admin_password, cluster_dsn
from provisioning.services.databases import database_create, database_password
from tenants.services.webhooks import endpoint_create
from tenants.webhooks.models import WebhookEndpoint
from tests.conftest import owner_principal

pytestmark = pytest.mark.django_db


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_reseal_moves_every_stored_secret_to_the_new_key(alice, shared_cluster, settings,
                                                         capsys):
    old, new = _key(), _key()
    settings.AEROLITH_SECRET_KEYS = f"{old},{base64.b64encode(crypto.testmode_key()).decode()}"
    # The session's shared cluster was sealed under the test-mode key; seal it under `old`.
    call_command("secrets_reseal")
    with tenant_context(alice):
        database, uri = database_create(tenant=alice, actor="test", name="rotated")
        endpoint, secret = endpoint_create(principal=owner_principal(alice),
                                           url="https://hooks.example.com/aerolith")
    password = uri.split(":")[2].split("@")[0]

    settings.AEROLITH_SECRET_KEYS = f"{new},{old}"
    call_command("secrets_reseal")
    counts = dict(line.rsplit(": ", 1) for line in capsys.readouterr().out.splitlines())
    # At least the shared cluster and the database (other tests may have committed more).
    assert int(counts["database and cluster passwords"].split()[0]) >= 2
    assert int(counts["webhook secrets"].split()[0]) >= 1
    assert not any(crypto.needs_rotation(c.admin_password_sealed)
                   for c in Cluster.objects.exclude(admin_password_sealed=""))

    settings.AEROLITH_SECRET_KEYS = new  # the old key retired
    cluster = Cluster.objects.get(pk=shared_cluster.pk)
    assert not crypto.needs_rotation(cluster.admin_password_sealed)
    with psycopg.connect(cluster_dsn(cluster)) as conn:  # the real server still lets us in
        assert conn.execute("select 1").fetchone() == (1,)
    assert admin_password(cluster)
    with tenant_context(alice):
        assert database_password(Database.objects.get(pk=database.pk)) == password
        from tenants.services.webhook_delivery import secret_context

        sealed = WebhookEndpoint.objects.get(pk=endpoint.pk).secret_sealed
        assert crypto.decrypt(sealed, context=secret_context(alice.pk, endpoint.pk)).decode() == secret
    # Safe to run again: nothing left to do.
    call_command("secrets_reseal")
    assert "0 re-sealed" in capsys.readouterr().out


def test_a_secret_no_listed_key_opens_stops_the_command_and_changes_nothing(
        alice, shared_cluster, settings):
    from django.core.management.base import CommandError

    before = Cluster.objects.get(pk=shared_cluster.pk).admin_password_sealed
    settings.AEROLITH_SECRET_KEYS = _key()  # the key that sealed it is gone
    with pytest.raises(CommandError, match="AEROLITH_SECRET_KEYS"):
        call_command("secrets_reseal")
    assert Cluster.objects.get(pk=shared_cluster.pk).admin_password_sealed == before
