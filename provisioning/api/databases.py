"""Customer databases (SPEC §7, §10): list, create (the only answer that carries the
password), one database, delete, and SQL over HTTP."""
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from aerolith.errors import ValidationFailed
from tenants.permissions import Action

from ..models import Database
from ..services.databases import database_create, database_delete, database_query, database_uri
from .common import PROVISIONING_PROBLEMS, StrictCharField, StrictIntegerField, database_of


class DatabaseOut(serializers.ModelSerializer):
    uri = serializers.SerializerMethodField(
        help_text="postgresql:// connection URI without the password (it is shown once, when "
                  "the database is created)")

    class Meta:
        model = Database
        fields = ["id", "name", "placement", "cluster_id", "state", "restrictions", "uri",
                  "created_at"]

    def get_uri(self, database) -> str:
        return database_uri(database)


class DatabaseCreatedOut(DatabaseOut):
    uri = serializers.CharField(help_text="The connection URI with the password: shown only in "
                                          "this answer, store it now")

    class Meta(DatabaseOut.Meta):
        fields = DatabaseOut.Meta.fields


class DatabaseIn(serializers.Serializer):
    name = StrictCharField(max_length=63, help_text="Lowercase letters, digits and underscores")
    cluster_id = StrictIntegerField(
        required=False, min_value=1, max_value=2**63 - 1,
        help_text="A dedicated cluster of yours to place it on (plans with dedicated "
                  "placement); omit for the plan's default placement")


class QueryIn(serializers.Serializer):
    """The fields are for the documentation: the service checks the statement and its
    parameters, so that its messages are the ones every caller sees."""

    sql = serializers.CharField(help_text="One SQL statement; placeholders $1, $2, …")
    params = serializers.ListField(child=serializers.JSONField(), required=False,
                                   help_text="Values for $1, $2, …: strings, numbers, booleans, "
                                             "nulls or arrays of those")


class ColumnOut(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField(help_text="PostgreSQL type name")


class QueryOut(serializers.Serializer):
    columns = ColumnOut(many=True)
    rows = serializers.ListField(child=serializers.ListField(child=serializers.JSONField()))
    row_count = serializers.IntegerField(help_text="Rows returned, or rows affected by a change")
    truncated = serializers.BooleanField(help_text="More rows matched than the plan's row cap")
    duration_ms = serializers.IntegerField()
    command = serializers.CharField(help_text="PostgreSQL's command tag, e.g. INSERT 0 1")


class DatabaseListCreate(generics.ListAPIView):
    """The organisation's databases, oldest first."""

    serializer_class = DatabaseOut
    required_actions = {"POST": Action.MANAGE_DATABASES}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no tenant
            return Database.objects.none()
        return Database.objects.all()

    @extend_schema(responses={200: DatabaseOut(many=True), **PROVISIONING_PROBLEMS},
                   summary="Databases of this organisation")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(request=DatabaseIn, responses={201: DatabaseCreatedOut, **PROVISIONING_PROBLEMS},
                   summary="Create a database; the answer carries its URI with the password, "
                           "shown only this once")
    def post(self, request):
        data = DatabaseIn(data=request.data)
        data.is_valid(raise_exception=True)
        database, uri = database_create(tenant=request.tenant, actor=request.auth,
                                        name=data.validated_data["name"],
                                        cluster_id=data.validated_data.get("cluster_id"))
        body = DatabaseOut(database).data
        body["uri"] = uri
        return Response(body, status=status.HTTP_201_CREATED)


class DatabaseDetail(APIView):
    required_actions = {"DELETE": Action.MANAGE_DATABASES}

    @extend_schema(responses={200: DatabaseOut, **PROVISIONING_PROBLEMS},
                   summary="One database (its URI without the password)")
    def get(self, request, pk):
        return Response(DatabaseOut(database_of(request, pk)).data)

    @extend_schema(responses={204: None, **PROVISIONING_PROBLEMS},
                   summary="Delete a database and its data, with its role")
    def delete(self, request, pk):
        database_delete(tenant=request.tenant, actor=request.auth,
                        database=database_of(request, pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class DatabaseQuery(APIView):
    # Reads and writes alike run as the database's own role, which its state (read-only,
    # locked) restricts; asking needs the databases scope, as connecting would.
    required_actions = {"POST": Action.MANAGE_DATABASES}

    @extend_schema(request=QueryIn, responses={200: QueryOut, **PROVISIONING_PROBLEMS},
                   summary="Run one SQL statement as the database's role (statement timeout "
                           "and row cap by plan); PostgreSQL errors answer problem+json with "
                           "their sqlstate")
    def post(self, request, pk):
        database = database_of(request, pk)
        body = request.data
        if not isinstance(body, dict):
            raise exceptions.ParseError('Send a JSON object: {"sql": "...", "params": [...]}.')
        unknown = sorted(set(body) - {"sql", "params"})
        if unknown:
            raise ValidationFailed({field: [("unknown_field", f"'{field}' is not a field here; "
                                                              "send sql and params.")]
                                    for field in unknown})
        result = database_query(tenant=request.tenant, database=database,
                                sql=body.get("sql"), params=body.get("params"))
        return Response({"columns": result.columns, "rows": result.rows,
                         "row_count": result.row_count, "truncated": result.truncated,
                         "duration_ms": result.duration_ms, "command": result.command})
