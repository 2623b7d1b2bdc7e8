# Tenant webhooks (issue 8): endpoints and deliveries, both tenant-private.

import django.contrib.postgres.fields
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

import aerolith.clock


class Migration(migrations.Migration):

    dependencies = [
        ('tenants', '0003_outboxevent'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='WebhookEndpoint',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('url', models.CharField(max_length=2000)),
                ('description', models.CharField(blank=True, max_length=200)),
                ('event_types', django.contrib.postgres.fields.ArrayField(base_field=models.CharField(max_length=60), blank=True, default=list, size=None)),
                ('secret_sealed', models.TextField()),
                ('secret_hint', models.CharField(max_length=16)),
                ('enabled', models.BooleanField(default=True)),
                ('disabled_reason', models.CharField(blank=True, max_length=200)),
                ('created_at', models.DateTimeField(default=aerolith.clock.wall_now)),
                ('created_by', models.ForeignKey(db_constraint=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['created_at', 'id'],
            },
        ),
        migrations.CreateModel(
            name='WebhookDelivery',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('outbox_event_id', models.BigIntegerField(help_text='tenants.OutboxEvent (public schema)')),
                ('event_id', models.CharField(help_text='The id receivers see (evt_…)', max_length=40)),
                ('event_type', models.CharField(max_length=60)),
                ('event_created_at', models.DateTimeField()),
                ('payload', models.JSONField()),
                ('state', models.CharField(choices=[('pending', 'Pending'), ('succeeded', 'Succeeded'), ('failed', 'Failed, retrying'), ('given_up', 'Given up')], default='pending', max_length=12)),
                ('attempts', models.PositiveIntegerField(default=0)),
                ('first_attempt_at', models.DateTimeField(blank=True, null=True)),
                ('last_attempt_at', models.DateTimeField(blank=True, null=True)),
                ('next_attempt_at', models.DateTimeField(blank=True, null=True)),
                ('last_status_code', models.PositiveSmallIntegerField(blank=True, null=True)),
                ('last_error', models.CharField(blank=True, max_length=500)),
                ('response_excerpt', models.TextField(blank=True)),
                ('last_duration_ms', models.PositiveIntegerField(blank=True, null=True)),
                ('total_duration_ms', models.PositiveBigIntegerField(default=0)),
                ('created_at', models.DateTimeField(default=aerolith.clock.wall_now)),
                ('delivered_at', models.DateTimeField(blank=True, null=True)),
                ('endpoint', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='tenants.webhookendpoint')),
            ],
            options={
                'ordering': ['-created_at', '-id'],
                'indexes': [models.Index(fields=['endpoint', '-created_at', '-id'], name='webhookdelivery_log')],
                'constraints': [models.UniqueConstraint(fields=('endpoint', 'outbox_event_id'), name='webhookdelivery_once_per_endpoint')],
            },
        ),
    ]
