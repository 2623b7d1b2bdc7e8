"""Webhook endpoints and deliveries. Both are tenant-private (SPEC §2): the tables exist in
each tenant's schema, so an endpoint or a delivery log can only be found on its own
organisation's domain. Workflows live in tenants/services/webhooks.py and
tenants/services/webhook_delivery.py."""
from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models

from aerolith import clock

# The events the product emits through the outbox (tenants.services.events.event_emit).
EVENT_TYPES = (
    "invoice.paid",
    "invoice.payment_failed",
    "subscription.updated",
    "usage.threshold",
    "cluster.scaled",
)


class WebhookEndpoint(models.Model):
    """Where a tenant wants its events. `event_types` empty means every event. The signing
    secret is sealed with aerolith.crypto (context `webhook:<tenant id>:<endpoint id>`);
    `secret_hint` is its first characters, enough to tell two secrets apart."""

    tenant_private = True

    url = models.CharField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    event_types = ArrayField(models.CharField(max_length=60), default=list, blank=True)
    secret_sealed = models.TextField()
    secret_hint = models.CharField(max_length=16)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+",
        db_constraint=False,
    )
    created_at = models.DateTimeField(default=clock.wall_now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return self.url

    def wants(self, event_type: str) -> bool:
        return self.enabled and (not self.event_types or event_type in self.event_types)


class WebhookDelivery(models.Model):
    """One event sent (or to be sent) to one endpoint, with its attempts so far. The event
    is copied here (type, payload, id) so the log and retries never depend on the outbox
    row, which lives in the public schema and may be pruned."""

    tenant_private = True

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed, retrying"
        GIVEN_UP = "given_up", "Given up"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE,
                                 related_name="deliveries")
    outbox_event_id = models.BigIntegerField(help_text="tenants.OutboxEvent (public schema)")
    event_id = models.CharField(max_length=40, help_text="The id receivers see (evt_…)")
    event_type = models.CharField(max_length=60)
    event_created_at = models.DateTimeField()
    payload = models.JSONField()
    state = models.CharField(max_length=12, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    response_excerpt = models.TextField(blank=True)
    last_duration_ms = models.PositiveIntegerField(null=True, blank=True)
    total_duration_ms = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(default=clock.wall_now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "outbox_event_id"],
                                    name="webhookdelivery_once_per_endpoint"),
        ]
        indexes = [
            models.Index(fields=["endpoint", "-created_at", "-id"], name="webhookdelivery_log"),
        ]

    def __str__(self):
        return f"{self.event_type} to endpoint {self.endpoint_id} ({self.state})"
