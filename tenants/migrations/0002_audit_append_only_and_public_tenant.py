from django.conf import settings
from django.db import migrations

APPEND_ONLY = """
CREATE OR REPLACE FUNCTION aerolith_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % is not allowed on %', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER tenants_auditevent_append_only
    BEFORE UPDATE OR DELETE ON tenants_auditevent
    FOR EACH ROW EXECUTE FUNCTION aerolith_audit_append_only();
"""
DROP = """
DROP TRIGGER IF EXISTS tenants_auditevent_append_only ON tenants_auditevent;
DROP FUNCTION IF EXISTS aerolith_audit_append_only();
"""


def create_public_tenant(apps, schema_editor):
    Tenant = apps.get_model("tenants", "Tenant")
    Domain = apps.get_model("tenants", "Domain")
    public, _ = Tenant.objects.get_or_create(
        schema_name="public",
        defaults={"name": "Aerolith Cloud", "slug": "public", "status": "active"},
    )
    Domain.objects.get_or_create(
        domain=settings.AEROLITH_BASE_DOMAIN, defaults={"tenant": public, "is_primary": True}
    )


class Migration(migrations.Migration):
    dependencies = [("tenants", "0001_initial")]

    operations = [
        migrations.RunSQL(APPEND_ONLY, DROP),
        migrations.RunPython(create_public_tenant, migrations.RunPython.noop),
    ]
