"""Webhook endpoints and their delivery log (SPEC §8, §10).

Reads need Action.VIEW (whoever sees invoices and usage may see which events go where);
changes and redelivery need Action.MANAGE_API_KEYS (owner, admin, developer; scope
`api_keys:write`): an endpoint is an integration like an API key, and receiving the
organisation's events is no more than such a key can already read."""
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from aerolith.api.pagination import CursorPagination
from aerolith.api.schema import PROBLEM_RESPONSES
from aerolith.errors import ValidationFailed
from billing.api.common import positive_id

from ..permissions import Action
from ..services import webhooks
from .models import EVENT_TYPES, WebhookDelivery, WebhookEndpoint

WRITES = {"POST": Action.MANAGE_API_KEYS, "PATCH": Action.MANAGE_API_KEYS,
          "DELETE": Action.MANAGE_API_KEYS}


class WebhookEndpointOut(serializers.ModelSerializer):
    events = serializers.ListField(source="event_types", child=serializers.CharField(),
                                   help_text="Event types sent to it; empty means all")
    secret_hint = serializers.CharField(help_text="The secret's first characters, to tell "
                                                  "secrets apart; the secret itself is shown once")

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "description", "events", "enabled", "disabled_reason",
                  "secret_hint", "created_at"]


class WebhookEndpointCreatedOut(WebhookEndpointOut):
    secret = serializers.CharField(help_text="The signing secret (whsec_…). Shown only in this "
                                             "response: store it with your receiver")

    class Meta(WebhookEndpointOut.Meta):
        fields = WebhookEndpointOut.Meta.fields + ["secret"]


class WebhookEndpointIn(serializers.Serializer):
    """For the documentation: the service checks every field so that the API and the
    portal give the same messages."""

    url = serializers.CharField(help_text="https:// URL that receives POSTed events")
    description = serializers.CharField(required=False, max_length=200)
    events = serializers.ListField(child=serializers.ChoiceField(choices=EVENT_TYPES),
                                   required=False, help_text="Empty or omitted: every event")
    enabled = serializers.BooleanField(required=False, default=True)


class WebhookEndpointPatchIn(serializers.Serializer):
    url = serializers.CharField(required=False)
    description = serializers.CharField(required=False, max_length=200)
    events = serializers.ListField(child=serializers.ChoiceField(choices=EVENT_TYPES),
                                   required=False)
    enabled = serializers.BooleanField(required=False)
    disabled_reason = serializers.CharField(required=False, max_length=200,
                                            help_text="Why, when disabling (shown in the log)")


class WebhookDeliveryOut(serializers.ModelSerializer):
    endpoint_id = serializers.IntegerField()

    class Meta:
        model = WebhookDelivery
        fields = ["id", "endpoint_id", "event_id", "event_type", "event_created_at", "state",
                  "attempts", "first_attempt_at", "last_attempt_at", "next_attempt_at",
                  "last_status_code", "last_error", "response_excerpt", "last_duration_ms",
                  "total_duration_ms", "created_at", "delivered_at", "payload"]


def _object_body(request, allowed: set[str]) -> dict:
    body = request.data
    if not isinstance(body, dict):
        raise exceptions.ParseError("Send a JSON object, e.g. "
                                    '{"url": "https://example.com/hooks", "events": []}.')
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ValidationFailed({field: [("unknown_field", f"'{field}' is not a field here; "
                                         f"send {sorted(allowed)}.")] for field in unknown})
    return body


def endpoint_of(raw_id) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.filter(pk=positive_id(raw_id, "webhook endpoint")).first()
    if endpoint is None:
        raise exceptions.NotFound(f"There is no webhook endpoint '{raw_id}' in this organisation.")
    return endpoint


class WebhookEndpointListCreate(generics.ListAPIView):
    """The organisation's webhook endpoints, oldest first (at most ten, one page)."""

    serializer_class = WebhookEndpointOut
    pagination_class = None
    required_actions = WRITES

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no tenant
            return WebhookEndpoint.objects.none()
        return WebhookEndpoint.objects.order_by("created_at", "id")

    @extend_schema(responses={200: WebhookEndpointOut(many=True), **PROBLEM_RESPONSES},
                   summary="Webhook endpoints of this organisation")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(request=WebhookEndpointIn,
                   responses={201: WebhookEndpointCreatedOut, **PROBLEM_RESPONSES},
                   summary="Register an endpoint; its signing secret is returned once")
    def post(self, request):
        body = _object_body(request, {"url", "description", "events", "enabled"})
        endpoint, secret = webhooks.endpoint_create(
            principal=request.auth, url=body.get("url"), description=body.get("description", ""),
            events=body.get("events"), enabled=body.get("enabled", True))
        data = WebhookEndpointOut(endpoint).data
        data["secret"] = secret
        return Response(data, status=status.HTTP_201_CREATED)


class WebhookEndpointDetail(APIView):
    required_actions = WRITES

    @extend_schema(responses={200: WebhookEndpointOut, **PROBLEM_RESPONSES},
                   summary="One webhook endpoint")
    def get(self, request, pk):
        return Response(WebhookEndpointOut(endpoint_of(pk)).data)

    @extend_schema(request=WebhookEndpointPatchIn,
                   responses={200: WebhookEndpointOut, **PROBLEM_RESPONSES},
                   summary="Enable or disable an endpoint, or change its events, URL or "
                           "description")
    def patch(self, request, pk):
        endpoint = endpoint_of(pk)
        body = _object_body(request, {"url", "description", "events", "enabled",
                                      "disabled_reason"})
        endpoint = webhooks.endpoint_update(principal=request.auth, endpoint_id=endpoint.pk,
                                            changes=body)
        return Response(WebhookEndpointOut(endpoint).data)

    @extend_schema(responses={204: None, **PROBLEM_RESPONSES},
                   summary="Delete an endpoint with its delivery log; pending retries stop")
    def delete(self, request, pk):
        webhooks.endpoint_delete(principal=request.auth, endpoint_id=endpoint_of(pk).pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeliveryPagination(CursorPagination):
    ordering = ("-created_at", "-id")


STATE_PARAM = OpenApiParameter("state", str, enum=WebhookDelivery.State.values,
                               description="Only deliveries in this state")


class WebhookDeliveryList(generics.ListAPIView):
    """An endpoint's delivery log, newest first."""

    serializer_class = WebhookDeliveryOut
    pagination_class = DeliveryPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return WebhookDelivery.objects.none()
        deliveries = WebhookDelivery.objects.filter(endpoint=endpoint_of(self.kwargs["pk"]))
        state = self.request.query_params.get("state")
        if state is not None:
            if state not in WebhookDelivery.State.values:
                raise ValidationFailed({"state": [("invalid_choice", "state must be one of "
                                                   f"{WebhookDelivery.State.values}.")]})
            deliveries = deliveries.filter(state=state)
        return deliveries

    @extend_schema(parameters=[STATE_PARAM],
                   responses={200: WebhookDeliveryOut(many=True), **PROBLEM_RESPONSES},
                   summary="Delivery log of an endpoint: state, attempts, next retry, last answer")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class WebhookDeliveryRedeliver(APIView):
    required_actions = WRITES

    @extend_schema(request=None, responses={202: WebhookDeliveryOut, **PROBLEM_RESPONSES},
                   summary="Send a delivery's event again now (a new attempt, same event id)")
    def post(self, request, pk):
        delivery = webhooks.delivery_redeliver(
            principal=request.auth, delivery_id=positive_id(pk, "webhook delivery"))
        return Response(WebhookDeliveryOut(delivery).data, status=status.HTTP_202_ACCEPTED)
