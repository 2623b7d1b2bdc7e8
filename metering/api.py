"""Usage API (SPEC §5, §10): batch ingestion, the current period, and series."""
import json
from datetime import UTC, datetime, timedelta

import orjson
from django.conf import settings
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from aerolith import clock
from aerolith.api.schema import PROBLEM_RESPONSES
from aerolith.errors import DomainError, NotFound
from tenants.permissions import Action

from .analytics import SERIES_LIMITS, usage_series, usage_summary
from .models import Meter
from .services.ingest import MAX_BATCH, usage_ingest


class PayloadTooLarge(DomainError):
    status = 413
    code = "payload_too_large"
    title = "Payload too large"


def _text(value) -> str:
    return format(value.normalize(), "f") if value is not None else None


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def _loads(body: bytes):
    """Parse with orjson; what it refuses only for being beyond a double (a quantity of
    1e400) is read again by the standard library, so that one event is rejected as not
    finite instead of the whole batch."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        error = exc
    try:
        data = json.loads(body, parse_constant=_no_constant)
        orjson.dumps(data)  # what orjson refuses to write (lone surrogates) stays refused
    except (ValueError, TypeError, RecursionError):
        raise exceptions.ParseError(f"The body is not valid JSON: {error}.") from error
    return data


def _read_batch(request) -> list:
    if request.content_type.split(";")[0].strip() != "application/json":
        raise exceptions.UnsupportedMediaType(request.content_type or "none")
    limit = settings.AEROLITH_USAGE_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise PayloadTooLarge(f"The body is {declared} bytes; send at most {limit} bytes "
                              f"({MAX_BATCH} events) per request.")
    body = request._request.read(limit + 1)
    if len(body) > limit:
        raise PayloadTooLarge(f"Send at most {limit} bytes ({MAX_BATCH} events) per request.")
    data = _loads(body)
    if isinstance(data, dict) and isinstance(data.get("events"), list):
        data = data["events"]
    if not isinstance(data, list):
        raise exceptions.ValidationError({"events": ["Send a JSON array of events (or "
                                                     "{\"events\": [...]})."]})
    if len(data) > MAX_BATCH:
        raise PayloadTooLarge(f"{len(data)} events in one batch; send at most {MAX_BATCH}.")
    return data


UsageEvent = inline_serializer("UsageEventIn", fields={
    "id": serializers.CharField(max_length=200, help_text="Idempotency key, unique per tenant"),
    "meter": serializers.CharField(),
    "quantity": serializers.DecimalField(max_digits=24, decimal_places=6, required=False,
                                         help_text="Default 1; at most six decimals"),
    "timestamp": serializers.DateTimeField(required=False, help_text="Default: now"),
    "properties": serializers.DictField(required=False),
})
IngestOut = inline_serializer("IngestResult", fields={
    "accepted": serializers.IntegerField(),
    "duplicates": serializers.IntegerField(),
    "rejected": serializers.ListField(child=inline_serializer("RejectedEvent", fields={
        "index": serializers.IntegerField(), "code": serializers.CharField(),
        "detail": serializers.CharField()})),
})


class UsageEventsView(APIView):
    required_actions = {"POST": Action.WRITE_USAGE}

    @extend_schema(request=serializers.ListSerializer(child=UsageEvent),
                   responses={202: IngestOut, 413: PROBLEM_RESPONSES[400], 429: PROBLEM_RESPONSES[400],
                              **PROBLEM_RESPONSES},
                   summary="Send a batch of up to 10,000 usage events")
    def post(self, request):
        events = _read_batch(request)
        # The API-call throttle has looked the subscription up already for this request.
        result = usage_ingest(tenant=request.tenant, events=events,
                              subscription=getattr(request._request, "aerolith_subscription", None))
        return Response({"accepted": result.accepted, "duplicates": result.duplicates,
                         "rejected": result.rejected}, status=status.HTTP_202_ACCEPTED)


MeterOut = inline_serializer("MeterUsage", fields={
    "meter": serializers.CharField(), "name": serializers.CharField(), "unit": serializers.CharField(),
    "aggregation": serializers.CharField(), "used": serializers.CharField(),
    "included": serializers.CharField(allow_null=True), "overage": serializers.CharField(),
    "overage_amount_cents": serializers.IntegerField(), "projected": serializers.CharField(),
    "projected_overage_amount_cents": serializers.IntegerField(),
    "previous_period": serializers.CharField(),
    "growth_percent": serializers.CharField(allow_null=True),
})
UsageOut = inline_serializer("Usage", fields={
    "period_start": serializers.DateTimeField(), "period_end": serializers.DateTimeField(),
    "as_of": serializers.DateTimeField(), "plan": serializers.CharField(),
    "plan_price_cents": serializers.IntegerField(), "meters": serializers.ListField(child=MeterOut),
    "projected_total_cents": serializers.IntegerField(),
})


class UsageView(APIView):
    @extend_schema(responses={200: UsageOut, **PROBLEM_RESPONSES},
                   summary="This period's usage per meter, with projection and growth")
    def get(self, request):
        summary = usage_summary(request.tenant)
        if summary is None:
            raise NotFound("This organisation has no subscription, so no usage period.")
        return Response({
            "period_start": summary["period_start"], "period_end": summary["period_end"],
            "as_of": summary["as_of"], "plan": summary["subscription"].plan.code,
            "plan_price_cents": summary["subscription"].plan.price_cents,
            "meters": [{
                "meter": s.usage.code, "name": s.usage.meter.name, "unit": s.usage.meter.unit,
                "aggregation": s.usage.meter.aggregation, "used": _text(s.usage.quantity),
                "included": _text(s.usage.included), "overage": _text(s.usage.overage),
                "overage_amount_cents": s.usage.overage_amount_cents,
                "projected": _text(s.projected),
                "projected_overage_amount_cents": s.projected_amount_cents,
                "previous_period": _text(s.previous),
                "growth_percent": _text(s.growth_percent),
            } for s in summary["meters"]],
            "projected_total_cents": summary["projected_total_cents"],
        })


def _before(end: datetime) -> datetime:
    """The default start: 30 days before `end`, or the first moment Python knows."""
    try:
        return end - timedelta(days=30)
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


class SeriesQuery(serializers.Serializer):
    meter = serializers.SlugField()
    granularity = serializers.ChoiceField(choices=["hour", "day"], default="day")
    start = serializers.CharField(required=False)
    end = serializers.CharField(required=False)


def _when(raw: str | None, field: str, default):
    if raw is None:
        return default()
    try:
        value = parse_datetime(raw)
    except ValueError:  # well formed but impossible, e.g. February 30
        value = None
    if value is None or value.tzinfo is None:
        raise exceptions.ValidationError({field: [f"Give {field} as ISO-8601 with a zone, "
                                                  "e.g. 2026-11-01T00:00:00Z."]})
    return value


class UsageSeriesView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("meter", str, required=True),
                    OpenApiParameter("granularity", str, enum=["hour", "day"]),
                    OpenApiParameter("start", str, description="ISO-8601; default: 30 days ago"),
                    OpenApiParameter("end", str, description="ISO-8601; default: now")],
        responses={200: inline_serializer("UsageSeries", fields={
            "meter": serializers.CharField(), "unit": serializers.CharField(),
            "granularity": serializers.CharField(),
            "points": serializers.ListField(child=inline_serializer("UsagePoint", fields={
                "t": serializers.DateTimeField(), "value": serializers.CharField()}))}),
            **PROBLEM_RESPONSES},
        summary="Hourly or daily usage of one meter")
    def get(self, request):
        query = SeriesQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        meter = Meter.objects.filter(code=query.validated_data["meter"], is_active=True).first()
        if meter is None:
            raise exceptions.ValidationError({"meter": [
                f"Unknown meter; known: {list(Meter.objects.values_list('code', flat=True))}."]})
        granularity = query.validated_data["granularity"]
        now = clock.now(request.tenant)
        end = _when(query.validated_data.get("end"), "end", lambda: now)
        start = _when(query.validated_data.get("start"), "start", lambda: _before(end))
        if start >= end:
            raise exceptions.ValidationError({"start": ["start must be before end."]})
        if end - start > SERIES_LIMITS[granularity]:
            raise exceptions.ValidationError({"start": [
                f"At most {SERIES_LIMITS[granularity].days} days of {granularity}ly points per "
                "request; narrow the range or use granularity=day."]})
        if meter.aggregation == "unique_count" and granularity == "hour":
            raise exceptions.ValidationError({"granularity": [
                "Distinct counts are kept per day; use granularity=day."]})
        points = usage_series(tenant_id=request.tenant.pk, meter=meter, granularity=granularity,
                              start=start, end=end)
        return Response({"meter": meter.code, "unit": meter.unit, "granularity": granularity,
                         "points": [{"t": t, "value": _text(v)} for t, v in points]})
