from django.db import migrations

from metering.meters_data import BUILTIN_METERS

# Raw events, partitioned by day of the event's time. Daily partitions are made ahead by
# metering.services.partitions; the DEFAULT partition takes anything outside them (a test
# clock far in the future), and those rows move into their day's partition when it is made.
CREATE_EVENTS = """
CREATE TABLE metering_usageevent (
    id bigserial NOT NULL,
    tenant_id bigint NOT NULL,
    meter_id integer NOT NULL,
    event_id text NOT NULL,
    quantity numeric(24, 6) NOT NULL,
    "timestamp" timestamptz NOT NULL,
    properties jsonb NOT NULL DEFAULT '{}',
    received_at timestamptz NOT NULL
) PARTITION BY RANGE ("timestamp");
CREATE TABLE metering_usageevent_default PARTITION OF metering_usageevent DEFAULT;
-- Events arrive roughly in time order, so a BRIN index finds the edges of a billing
-- period for almost no cost at insert time.
CREATE INDEX metering_usageevent_ts_brin ON metering_usageevent USING brin ("timestamp");
"""
DROP_EVENTS = "DROP TABLE IF EXISTS metering_usageevent CASCADE;"


def load_meters(apps, schema_editor):
    Meter = apps.get_model("metering", "Meter")
    for meter in BUILTIN_METERS:
        Meter.objects.update_or_create(code=meter["code"], defaults={**meter, "is_builtin": True})


class Migration(migrations.Migration):
    dependencies = [("metering", "0001_initial")]

    operations = [
        migrations.RunSQL(CREATE_EVENTS, DROP_EVENTS),
        migrations.RunPython(load_meters, migrations.RunPython.noop),
    ]
