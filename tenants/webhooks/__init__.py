"""Tenant webhooks (SPEC §8): endpoints a tenant registers, and the signed deliveries of its
outbox events to them, retried with backoff for three days.

models.py    WebhookEndpoint and WebhookDelivery (tenant-private tables)
signing.py   the signature scheme, with sign() and verify() for receivers
targets.py   which URLs an endpoint may have and which addresses a send may reach (SSRF)
api.py       /api/v1/webhook-endpoints and /api/v1/webhook-deliveries
portal.py    the /webhooks page
The writes live in tenants/services/webhooks.py (endpoints, redelivery) and
tenants/services/webhook_delivery.py (fan-out, sending, retries).
"""
