from django.db import migrations, models

from billing.plans_data import PLANS


def set_rates(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    for data in PLANS:
        Plan.objects.filter(code=data["code"]).update(
            api_rate_per_second=data["api_rate_per_second"])


class Migration(migrations.Migration):
    dependencies = [("billing", "0015_plan_database_placement")]

    operations = [
        migrations.AddField(
            model_name="plan",
            name="api_rate_per_second",
            field=models.PositiveIntegerField(
                blank=True, null=True,
                help_text="API requests per second for the whole organisation, with a burst "
                          "of one second's worth (SPEC §8). Empty means unlimited."),
        ),
        migrations.AddConstraint(
            model_name="plan",
            constraint=models.CheckConstraint(
                condition=models.Q(("api_rate_per_second__gte", 1),
                                   ("api_rate_per_second__isnull", True), _connector="OR"),
                name="plan_api_rate_positive"),
        ),
        migrations.RunPython(set_rates, migrations.RunPython.noop),
    ]
