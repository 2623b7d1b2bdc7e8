from django.db import migrations, models

from billing.plans_data import PLANS


def set_placements(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    for data in PLANS:
        Plan.objects.filter(code=data["code"]).update(
            database_placement=data["database_placement"])


class Migration(migrations.Migration):
    dependencies = [("billing", "0014_solana_refund_expiry")]

    operations = [
        migrations.AddField(
            model_name="plan",
            name="database_placement",
            field=models.CharField(
                choices=[("shared_schema", "Schema in the shared database"),
                         ("shared_database", "Own database on the shared cluster"),
                         ("dedicated", "Dedicated cluster")],
                default="shared_schema", max_length=20),
        ),
        migrations.RunPython(set_placements, migrations.RunPython.noop),
    ]
