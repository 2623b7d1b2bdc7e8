from django.db import migrations

from billing.plans_data import PLANS


def load_plans(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    fields = {f.name for f in Plan._meta.get_fields()}
    for plan in PLANS:  # the fields this migration's Plan has; allowances come in 0006
        Plan.objects.update_or_create(
            code=plan["code"], defaults={k: v for k, v in plan.items() if k in fields})


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_initial")]

    operations = [migrations.RunPython(load_plans, migrations.RunPython.noop)]
