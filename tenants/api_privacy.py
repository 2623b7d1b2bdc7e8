"""Data export and erasure API (SPEC §8): owners only (API keys need the
`organization:owner` scope). Both work while the organisation is suspended or cancelled:
that is exactly when people want their data, or want it gone."""
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from aerolith.api.schema import PROBLEM_RESPONSES, Problem

from .api import _int_id
from .models import DataExport
from .permissions import Action
from .services import erasure, exports

OWNER_ONLY = {"GET": Action.OWN, "POST": Action.OWN}
EXPORT_PROBLEMS = {**PROBLEM_RESPONSES,
                   410: OpenApiResponse(Problem, description="Downloaded already, or expired")}


class ExportOut(serializers.ModelSerializer):
    requested_by = serializers.CharField(source="requested_by_label")
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = DataExport
        fields = ["id", "status", "requested_by", "created_at", "built_at", "expires_at",
                  "downloaded_at", "size_bytes", "sha256", "error", "download_url"]

    def get_download_url(self, export) -> str | None:
        if export.status != DataExport.Status.READY:
            return None
        path = f"/api/v1/exports/{export.pk}/download"
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


class ExportList(generics.ListAPIView):
    serializer_class = ExportOut
    required_actions = OWNER_ONLY
    allowed_when_suspended = True

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no tenant
            return DataExport.objects.none()
        return DataExport.objects.filter(tenant=self.request.tenant)

    @extend_schema(responses={200: ExportOut(many=True), **PROBLEM_RESPONSES},
                   summary="This organisation's data exports, newest first")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(request=None, responses={202: ExportOut, **PROBLEM_RESPONSES},
                   summary="Ask for an export: a zip of the organisation's data, built in the "
                           "background, downloadable once")
    def post(self, request):
        export = exports.export_request(tenant=request.tenant, actor=request.auth)
        return Response(ExportOut(export, context={"request": request}).data,
                        status=status.HTTP_202_ACCEPTED)


class ExportDetail(APIView):
    required_actions = OWNER_ONLY
    allowed_when_suspended = True

    @extend_schema(responses={200: ExportOut, **PROBLEM_RESPONSES}, summary="One export")
    def get(self, request, pk):
        export = exports.export_for(request.tenant, _int_id(pk))
        return Response(ExportOut(export, context={"request": request}).data)


class _ZipOrProblem(BaseContentNegotiation):
    """The download answers application/zip whatever Accept says; only its problems are
    rendered, as problem+json."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None


class ExportDownload(APIView):
    required_actions = OWNER_ONLY
    allowed_when_suspended = True
    content_negotiation_class = _ZipOrProblem

    @extend_schema(responses={(200, "application/zip"): OpenApiResponse(
        OpenApiTypes.BINARY, description="The archive; it is deleted once sent"), **EXPORT_PROBLEMS},
        summary="Download the archive (once: a second download answers 410)")
    def get(self, request, pk):
        export, handle = exports.export_download(tenant=request.tenant, export_id=_int_id(pk),
                                                 actor=request.auth)
        return FileResponse(handle, as_attachment=True, content_type="application/zip",
                            filename=f"{request.tenant.slug}-export-{export.pk}.zip")


class ErasureIn(serializers.Serializer):
    confirm = serializers.CharField(max_length=100, allow_blank=True,
                                    help_text="The organisation's slug, typed to confirm.")


class ErasureOut(serializers.Serializer):
    status = serializers.ChoiceField(choices=["none", "scheduled", "erased"])
    tenant_status = serializers.CharField()
    requested_at = serializers.DateTimeField(allow_null=True)
    erased_at = serializers.DateTimeField(allow_null=True)


def _erasure_state(tenant) -> dict:
    state = "erased" if tenant.erased_at else "scheduled" if tenant.erasure_requested_at else "none"
    return {"status": state, "tenant_status": tenant.status,
            "requested_at": tenant.erasure_requested_at, "erased_at": tenant.erased_at}


class ErasureView(APIView):
    required_actions = OWNER_ONLY
    allowed_when_suspended = True

    @extend_schema(responses={200: ErasureOut, **PROBLEM_RESPONSES},
                   summary="Whether erasure of this organisation's data was asked for")
    def get(self, request):
        return Response(_erasure_state(request.tenant))

    @extend_schema(request=ErasureIn, responses={202: ErasureOut, **PROBLEM_RESPONSES},
                   summary="Erase this cancelled organisation's data (databases, schema, people); "
                           "invoices and payments are kept")
    def post(self, request):
        data = ErasureIn(data=request.data)
        data.is_valid(raise_exception=True)
        tenant = erasure.erasure_request(tenant=request.tenant, actor=request.auth,
                                         confirm=data.validated_data["confirm"])
        return Response(_erasure_state(tenant), status=status.HTTP_202_ACCEPTED)
