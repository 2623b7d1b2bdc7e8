"""The invoice invariant in the database, and due work for subscriptions that existed
before billing scheduled any.

A deferred constraint trigger checks, when a transaction commits, that every finalised
invoice it touched has total_cents equal to the sum of its lines."""
from datetime import UTC, datetime

from django.db import migrations

TRIGGER = """
CREATE FUNCTION billing_invoice_total_matches_lines() RETURNS trigger AS $$
DECLARE
    target bigint;
    found_status text;
    found_total bigint;
    line_sum bigint;
BEGIN
    IF TG_TABLE_NAME = 'billing_invoice' THEN
        target := NEW.id;
    ELSIF TG_OP = 'DELETE' THEN
        target := OLD.invoice_id;
    ELSE
        target := NEW.invoice_id;
    END IF;
    SELECT status, total_cents INTO found_status, found_total FROM billing_invoice WHERE id = target;
    IF NOT FOUND OR found_status = 'draft' THEN
        RETURN NULL;
    END IF;
    SELECT coalesce(sum(amount_cents), 0) INTO line_sum FROM billing_invoiceline WHERE invoice_id = target;
    IF line_sum <> found_total THEN
        RAISE EXCEPTION 'invoice % has total_cents % but its lines sum to %', target, found_total, line_sum
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER invoice_total_matches_lines
    AFTER INSERT OR UPDATE ON billing_invoice DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION billing_invoice_total_matches_lines();
CREATE CONSTRAINT TRIGGER invoiceline_total_matches_lines
    AFTER INSERT OR UPDATE OR DELETE ON billing_invoiceline DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION billing_invoice_total_matches_lines();
"""
UNTRIGGER = """
DROP TRIGGER IF EXISTS invoiceline_total_matches_lines ON billing_invoiceline;
DROP TRIGGER IF EXISTS invoice_total_matches_lines ON billing_invoice;
DROP FUNCTION IF EXISTS billing_invoice_total_matches_lines();
"""


def schedule_existing(apps, schema_editor):
    Subscription = apps.get_model("billing", "Subscription")
    ScheduledJob = apps.get_model("tenants", "ScheduledJob")
    for subscription in Subscription.objects.exclude(status="cancelled"):
        if subscription.status == "trialing" and subscription.trial_end:
            key = subscription.trial_end.isoformat()
            ScheduledJob.objects.get_or_create(
                tenant_id=subscription.tenant_id, kind="billing.trial_end", key=key,
                defaults={"due_at": subscription.trial_end, "payload": {"trial_end": key},
                          "created_at": datetime.now(UTC)})
            continue
        if subscription.billing_anchor is None:
            subscription.billing_anchor = subscription.current_period_start
            subscription.save(update_fields=["billing_anchor"])
        key = subscription.current_period_end.isoformat()
        ScheduledJob.objects.get_or_create(
            tenant_id=subscription.tenant_id, kind="billing.renewal", key=key,
            defaults={"due_at": subscription.current_period_end, "payload": {"period_end": key},
                      "created_at": datetime.now(UTC)})


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0007_invoices_payments_dunning"),
        ("tenants", "0003_outboxevent"),
    ]

    operations = [
        migrations.RunSQL(TRIGGER, UNTRIGGER),
        migrations.RunPython(schedule_existing, migrations.RunPython.noop),
    ]
