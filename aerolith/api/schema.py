"""OpenAPI pieces shared by every API module."""
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

Problem = inline_serializer(
    name="Problem",
    fields={
        "type": serializers.URLField(),
        "title": serializers.CharField(),
        "status": serializers.IntegerField(),
        "detail": serializers.CharField(),
        "code": serializers.CharField(),
        "errors": serializers.ListField(
            child=inline_serializer(
                name="FieldError",
                fields={
                    "field": serializers.CharField(allow_null=True),
                    "code": serializers.CharField(),
                    "detail": serializers.CharField(),
                },
            ),
            required=False,
        ),
    },
)

PROBLEM_RESPONSES = {
    code: OpenApiResponse(Problem, description=text)
    for code, text in {
        400: "Invalid input (problem+json, with field errors)",
        401: "Missing or invalid credentials",
        403: "Your role or key scope does not allow this",
        404: "Not found, or not yours",
        409: "Conflicts with the current state",
        415: "Body is not JSON",
    }.items()
}
