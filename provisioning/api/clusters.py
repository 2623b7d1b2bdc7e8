"""Dedicated clusters (SPEC §7, §10): list and create, one cluster with its nodes, policy
and current operation, scale and policy changes, delete; the scaling history, what the
autoscaler would do now, and sizing advice for a stated workload.

Creating, scaling and deleting are asynchronous: the answer is 202 with the operation a
worker runs; poll the cluster to follow it.
"""
import re

from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from aerolith.api.pagination import CursorPagination
from aerolith.errors import ValidationFailed
from tenants.permissions import Action

from ..advice import autoscale_preview, reason_text
from ..models import Cluster, Operation, Provider, ScalingEvent
from ..recommendations import recommend
from ..selectors import operation_in_flight, tenant_clusters, with_operation_in_flight
from ..services.clusters import (
    POLICY_FIELDS,
    cluster_create,
    cluster_delete,
    cluster_policy_update,
    cluster_scale,
)
from ..sizes import SIZES
from .common import (
    PROVISIONING_PROBLEMS,
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    cluster_of,
)

IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,100}$")  # printable ASCII, no spaces


# --- output -------------------------------------------------------------------------------

class NodeOut(serializers.Serializer):
    name = serializers.CharField()
    role = serializers.CharField()
    health = serializers.CharField()
    host = serializers.CharField()
    port = serializers.IntegerField(allow_null=True)
    cpu_percent = serializers.FloatField(allow_null=True)
    memory_percent = serializers.FloatField(allow_null=True)
    connections = serializers.IntegerField(allow_null=True)
    replication_lag_bytes = serializers.IntegerField(allow_null=True)
    observed_at = serializers.DateTimeField(allow_null=True)


class OperationOut(serializers.ModelSerializer):
    class Meta:
        model = Operation
        fields = ["id", "kind", "state", "target_nodes", "node_name", "error", "created_at",
                  "finished_at"]


class PolicyOut(serializers.Serializer):
    autoscale_enabled = serializers.BooleanField()
    autoscale_paused = serializers.BooleanField(help_text="Paused by Aerolith staff")
    min_nodes = serializers.IntegerField()
    max_nodes = serializers.IntegerField()
    cpu_target_percent = serializers.IntegerField()
    memory_target_percent = serializers.IntegerField()
    scale_up_step = serializers.IntegerField()
    scale_down_step = serializers.IntegerField()
    stabilization_seconds = serializers.IntegerField()
    forecast_enabled = serializers.BooleanField()


class AutoscalerStateOut(serializers.Serializer):
    last_outcome = serializers.CharField(allow_blank=True)
    last_reason = serializers.CharField(allow_blank=True)
    last_evaluated_at = serializers.DateTimeField(allow_null=True)


class ClusterOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    provider = serializers.CharField()
    region = serializers.CharField()
    size = serializers.CharField()
    node_count = serializers.IntegerField(help_text="Desired nodes, the primary included")
    health = serializers.CharField()
    nodes = NodeOut(many=True)
    policy = PolicyOut()
    autoscaler = AutoscalerStateOut()
    operation = OperationOut(allow_null=True, help_text="The operation in progress, if any")
    created_at = serializers.DateTimeField()


class ClusterAcceptedOut(serializers.Serializer):
    cluster = ClusterOut()
    operation = OperationOut()


def cluster_payload(cluster: Cluster, operation: Operation | None = None) -> dict:
    if operation is None:
        operation = operation_in_flight(cluster)
    return {
        "id": cluster.pk, "name": cluster.name, "provider": cluster.provider,
        "region": cluster.region, "size": cluster.size, "node_count": cluster.node_count,
        "health": cluster.health,
        "nodes": NodeOut(cluster.nodes.all(), many=True).data,
        "policy": {field: getattr(cluster, field) for field in (*POLICY_FIELDS, "autoscale_paused")},
        "autoscaler": {"last_outcome": cluster.last_outcome, "last_reason": cluster.last_reason,
                       "last_evaluated_at": cluster.last_evaluated_at},
        "operation": OperationOut(operation).data if operation is not None else None,
        "created_at": cluster.created_at,
    }


def _fresh(cluster: Cluster) -> Cluster:
    return tenant_clusters(cluster.tenant).get(pk=cluster.pk)


def _accepted(cluster: Cluster, operation: Operation) -> Response:
    cluster = _fresh(cluster) if cluster.deleted_at is None else cluster
    return Response({"cluster": cluster_payload(cluster, operation if operation.in_flight else None),
                     "operation": OperationOut(operation).data}, status=status.HTTP_202_ACCEPTED)


# --- input --------------------------------------------------------------------------------

class PolicyIn(serializers.Serializer):
    """The fields are for the documentation: the object is handed to the service as sent,
    which checks names, types, ranges and bounds, so every problem is reported at once in
    the same words as the portal's."""

    autoscale_enabled = StrictBooleanField(required=False)
    min_nodes = StrictIntegerField(required=False)
    max_nodes = StrictIntegerField(required=False)
    cpu_target_percent = StrictIntegerField(required=False, help_text="10–95")
    memory_target_percent = StrictIntegerField(required=False, help_text="10–95")
    scale_up_step = StrictIntegerField(required=False, help_text="1–100")
    scale_down_step = StrictIntegerField(required=False, help_text="1–100")
    stabilization_seconds = StrictIntegerField(required=False, help_text="0–3600")
    forecast_enabled = StrictBooleanField(required=False)

    def run_validation(self, data=serializers.empty):
        if data is serializers.empty or data is None:
            return super().run_validation(data)
        return self.to_internal_value(data)

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise exceptions.ValidationError("Send an object of policy settings: "
                                             f"{', '.join(POLICY_FIELDS)}.")
        return data


class ClusterIn(serializers.Serializer):
    name = StrictCharField(max_length=63, help_text="Lowercase letters, digits, hyphens")
    size = StrictCharField(max_length=20, default="small",
                           help_text=f"Node size: {', '.join(SIZES)}")
    node_count = serializers.JSONField(default=3, help_text="Nodes, the primary included")
    provider = StrictCharField(max_length=20, default=Provider.LOCAL,
                               help_text=f"One of {', '.join(Provider.values)}")
    region = StrictCharField(max_length=20, required=False,
                             help_text="Default: the organisation's region")
    policy = PolicyIn(required=False, help_text="Autoscaling policy settings")


class ClusterPatchIn(serializers.Serializer):
    node_count = serializers.JSONField(required=False, help_text="Scale to this many nodes")
    policy = PolicyIn(required=False, help_text="Policy settings to change")


def _unknown_fields(data, allowed) -> None:
    if not isinstance(data, dict):
        raise exceptions.ParseError("Send a JSON object.")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ValidationFailed({field: [("unknown_field", f"'{field}' is not a field here; use "
                                                          f"{', '.join(allowed)}.")]
                                for field in unknown})


def _idempotency_key(request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not IDEMPOTENCY_KEY.match(key):
        raise ValidationFailed({"Idempotency-Key": [(
            "invalid", "Give at most 100 printable ASCII characters without spaces, e.g. a "
                       "UUID.")]})
    return f"api:{request.tenant.pk}:{key}"


# --- views --------------------------------------------------------------------------------

class ClusterListCreate(generics.ListAPIView):
    """This organisation's dedicated clusters, newest first."""

    required_actions = {"POST": Action.MANAGE_DATABASES}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no tenant
            return Cluster.objects.none()
        return with_operation_in_flight(tenant_clusters(self.request.tenant).prefetch_related("nodes"))

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response([cluster_payload(c) for c in page])

    @extend_schema(responses={200: ClusterOut(many=True), **PROVISIONING_PROBLEMS},
                   summary="Dedicated clusters, newest first")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=ClusterIn,
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER,
                                     description="Send the same key to retry safely: the "
                                                 "first cluster made with it is answered")],
        responses={202: ClusterAcceptedOut, **PROVISIONING_PROBLEMS},
        summary="Create a dedicated cluster (asynchronous: 202 with its operation)")
    def post(self, request):
        _unknown_fields(request.data, list(ClusterIn().fields))
        data = ClusterIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        cluster, operation = cluster_create(
            tenant=request.tenant, actor=request.auth, name=values["name"], size=values["size"],
            node_count=values["node_count"], provider=values["provider"],
            region=values.get("region"), policy=values.get("policy"),
            idempotency_key=_idempotency_key(request))
        return _accepted(cluster, operation)


class ClusterDetail(APIView):
    required_actions = {"PATCH": Action.MANAGE_DATABASES, "DELETE": Action.MANAGE_DATABASES}

    @extend_schema(responses={200: ClusterOut, **PROVISIONING_PROBLEMS},
                   summary="One cluster with its nodes, policy and operation in progress")
    def get(self, request, pk):
        cluster = cluster_of(request, pk)
        return Response(cluster_payload(cluster))

    @extend_schema(request=ClusterPatchIn,
                   responses={200: ClusterOut, 202: ClusterAcceptedOut, **PROVISIONING_PROBLEMS},
                   summary="Change the autoscaling policy (200) and/or scale to node_count "
                           "(202 with the operation)")
    def patch(self, request, pk):
        cluster = cluster_of(request, pk)
        _unknown_fields(request.data, ["node_count", "policy"])
        data = ClusterPatchIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        if "node_count" not in values and "policy" not in values:
            raise ValidationFailed({"node_count": [("required", "Send node_count and/or policy.")]})
        operation = None
        # Both or neither: a scale refused after a policy change must undo the change.
        with transaction.atomic():
            if "policy" in values:
                cluster = cluster_policy_update(cluster=cluster, actor=request.auth,
                                                changes=values["policy"])
            if "node_count" in values:
                operation = cluster_scale(cluster=cluster, node_count=values["node_count"],
                                          actor=request.auth)
        if operation is not None:
            return _accepted(cluster, operation)
        return Response(cluster_payload(_fresh(cluster)))

    @extend_schema(responses={202: ClusterAcceptedOut, **PROVISIONING_PROBLEMS},
                   summary="Delete the cluster (asynchronous; refused while databases live on it)")
    def delete(self, request, pk):
        cluster = cluster_of(request, pk)
        operation = cluster_delete(cluster=cluster, actor=request.auth)
        return _accepted(cluster, operation)


class ScalingEventOut(serializers.ModelSerializer):
    explanation = serializers.SerializerMethodField()

    class Meta:
        model = ScalingEvent
        fields = ["id", "at", "outcome", "reason", "explanation", "current_nodes", "desired_nodes",
                  "inputs", "operation_id"]

    def get_explanation(self, event) -> str:
        return reason_text(event.reason)


class EventPagination(CursorPagination):
    ordering = ("-at", "-id")


class ScalingEventList(generics.ListAPIView):
    """The cluster's scaling history, newest first."""

    serializer_class = ScalingEventOut
    pagination_class = EventPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no tenant
            return ScalingEvent.objects.none()
        return ScalingEvent.objects.filter(cluster=cluster_of(self.request, self.kwargs["pk"]))

    @extend_schema(responses={200: ScalingEventOut(many=True), **PROVISIONING_PROBLEMS},
                   summary="Scaling history of a cluster, newest first")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class AdviceOut(serializers.Serializer):
    autoscale_enabled = serializers.BooleanField(
        help_text="When false, the autoscaler does not act on this advice")
    outcome = serializers.ChoiceField(choices=["scale_up", "scale_down", "hold"])
    reason = serializers.CharField()
    explanation = serializers.CharField()
    current_nodes = serializers.IntegerField()
    desired_nodes = serializers.IntegerField()
    inputs = serializers.DictField()
    forecast = serializers.DictField(
        allow_null=True, help_text="Predicted load for the next hour (mean % × nodes) per "
                                   "metric, when forecast mode is on")
    evaluated_at = serializers.DateTimeField()


class ClusterRecommendation(APIView):
    @extend_schema(responses={200: AdviceOut, **PROVISIONING_PROBLEMS},
                   summary="What the autoscaler would do now, and why (a dry run: nothing "
                           "changes)")
    def get(self, request, pk):
        cluster = cluster_of(request, pk)
        advice = autoscale_preview(cluster)
        decision = advice.decision
        forecast = None
        if cluster.forecast_enabled:
            forecast = {"cpu_load": advice.forecast_cpu_load,
                        "memory_load": advice.forecast_memory_load}
        return Response({
            "autoscale_enabled": cluster.autoscale_enabled, "outcome": decision.outcome,
            "reason": decision.reason, "explanation": reason_text(decision.reason),
            "current_nodes": decision.current, "desired_nodes": decision.desired,
            "inputs": decision.inputs, "forecast": forecast, "evaluated_at": advice.evaluated_at,
        })


class WorkloadIn(serializers.Serializer):
    qps = serializers.FloatField(min_value=0, help_text="Queries per second at peak")
    data_gb = serializers.FloatField(min_value=0, help_text="Total data size in GB")
    read_percent = serializers.FloatField(min_value=0, max_value=100,
                                          help_text="Share of queries that only read, 0–100")

    def to_internal_value(self, data):
        if hasattr(data, "keys"):
            _unknown_fields(dict(data.items()), list(self.fields))
        return super().to_internal_value(data)


class SizingOut(serializers.Serializer):
    size = serializers.CharField()
    node_count = serializers.IntegerField()
    reasoning = serializers.ListField(child=serializers.CharField())


class ClusterSizing(APIView):
    """Writes nothing, so it is open to every member and to suspended organisations."""

    required_actions = {"POST": Action.VIEW}
    allowed_when_suspended = True

    @extend_schema(parameters=[OpenApiParameter("qps", float, required=True),
                               OpenApiParameter("data_gb", float, required=True),
                               OpenApiParameter("read_percent", float, required=True)],
                   responses={200: SizingOut, **PROVISIONING_PROBLEMS},
                   summary="Recommended size and node count for a workload (query parameters)")
    def get(self, request):
        return self._answer(request.query_params)

    @extend_schema(request=WorkloadIn, responses={200: SizingOut, **PROVISIONING_PROBLEMS},
                   summary="Recommended size and node count for a workload, with the reasoning")
    def post(self, request):
        if not isinstance(request.data, dict):
            raise exceptions.ParseError("Send a JSON object with qps, data_gb and read_percent.")
        return self._answer(request.data)

    def _answer(self, raw):
        data = WorkloadIn(data=raw)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        try:
            advice = recommend({"qps": values["qps"], "data_gb": values["data_gb"],
                                "read_fraction": values["read_percent"] / 100})
        except ValueError as error:
            raise exceptions.ValidationError({"workload": [str(error)]}) from error
        return Response({"size": advice.size, "node_count": advice.nodes,
                         "reasoning": advice.reasoning})
