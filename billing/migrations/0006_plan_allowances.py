from django.db import migrations

from billing.plans_data import PLANS


def load_allowances(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    PlanMeter = apps.get_model("billing", "PlanMeter")
    Meter = apps.get_model("metering", "Meter")
    meters = {m.code: m for m in Meter.objects.all()}
    for data in PLANS:
        plan = Plan.objects.get(code=data["code"])
        for code, included in data["allowances"].items():
            PlanMeter.objects.update_or_create(plan=plan, meter=meters[code],
                                               defaults={"included": included})


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0005_planmeter_meter_planmeter_plan_and_more"),
        ("metering", "0002_partitioned_events_and_builtin_meters"),
    ]

    operations = [migrations.RunPython(load_allowances, migrations.RunPython.noop)]
