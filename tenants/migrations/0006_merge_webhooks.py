# Merges the webhooks branch (0004_webhooks) with 0004_sso_config → 0005_data_export_erasure,
# which were written at the same time (issue 8). No operations.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('tenants', '0004_webhooks'),
        ('tenants', '0005_data_export_erasure'),
    ]

    operations = []
