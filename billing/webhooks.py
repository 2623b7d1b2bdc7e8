"""POST /webhooks/stripe/ on the public domain: Stripe's events, as Stripe sends them.

Thin: read the raw body and the Stripe-Signature header, hand them to the service
(billing.services.stripe_events), answer. 200 when the event was processed, ignored or
already handled (a redelivery); 400 problem+json for a bad signature, a stale timestamp
(a replay) or a body that is not an event, with nothing stored; 503 when processing failed
— the event is kept as failed, and Stripe's redelivery (or staff's retry) runs it again.
"""
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from aerolith.api.errors import json_problem
from aerolith.errors import DomainError

from .models import StripeEvent
from .services.stripe_events import stripe_event_receive

MAX_BODY_BYTES = 1024 * 1024  # Stripe's events are a few kB; refuse anything far larger


@csrf_exempt
def stripe_webhook(request):
    if request.method != "POST":
        response = json_problem(request, 405, "method_not_allowed",
                                "Stripe webhooks are POSTed here; nothing else is served.")
        response["Allow"] = "POST"
        return response
    if request.tenant is None or not request.tenant.is_public:
        return json_problem(request, 404, "not_found", "Stripe webhooks go to the public domain.")
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY_BYTES:
        return json_problem(request, 413, "payload_too_large", "A Stripe event is never this large.")
    try:
        payload = request.body
    except RequestDataTooBig:
        return json_problem(request, 413, "payload_too_large", "A Stripe event is never this large.")
    try:
        event, repeat = stripe_event_receive(payload=payload,
                                             signature=request.headers.get("Stripe-Signature"))
    except DomainError as error:
        return json_problem(request, error.status, error.code, error.detail)
    if event.status == StripeEvent.Status.FAILED:
        response = json_problem(request, 503, "webhook_processing_failed",
                                f"Event {event.event_id} was stored but processing it failed; it is kept "
                                "for a redelivery or staff to retry.")
        response["Retry-After"] = "60"
        return response
    return JsonResponse({"received": True, "id": event.event_id, "type": event.type,
                         "status": event.status, "duplicate": repeat})
