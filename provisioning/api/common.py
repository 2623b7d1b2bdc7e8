"""Pieces the provisioning API modules share: strict input fields, the problem responses
provisioning adds to the usual ones, and looking a tenant's cluster or database up."""
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.exceptions import NotFound

from aerolith.api.schema import PROBLEM_RESPONSES, Problem
from billing.api.common import StrictBooleanField, StrictCharField, positive_id

from ..models import Cluster, Database
from ..selectors import tenant_clusters

PROVISIONING_PROBLEMS = dict(sorted({
    **PROBLEM_RESPONSES,
    402: OpenApiResponse(Problem, description="The organisation is suspended (account_suspended), "
                                              "or its plan does not include this "
                                              "(plan_upgrade_required)"),
    503: OpenApiResponse(Problem, description="The cluster is not reachable right now "
                                              "(cluster_unavailable); try again shortly"),
}.items()))

__all__ = ["PROVISIONING_PROBLEMS", "StrictBooleanField", "StrictCharField", "StrictIntegerField",
           "cluster_of", "database_of"]


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer, nothing else: DRF's IntegerField would take "3", 3.0 or true."""

    default_error_messages = {"invalid": "Give a whole number (a JSON integer)."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


def cluster_of(request, raw_id) -> Cluster:
    """One of this organisation's own live clusters (never another's, nor a shared one)."""
    pk = positive_id(raw_id, "cluster")
    cluster = tenant_clusters(request.tenant).filter(pk=pk).first()
    if cluster is None:
        raise NotFound(f"There is no cluster '{raw_id}' in this organisation.")
    return cluster


def database_of(request, raw_id) -> Database:
    """One of this organisation's databases (the rows live in its own schema)."""
    pk = positive_id(raw_id, "database")
    database = Database.objects.filter(pk=pk).first()
    if database is None:
        raise NotFound(f"There is no database '{raw_id}' in this organisation.")
    return database
