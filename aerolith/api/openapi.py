"""drf-spectacular extensions: how our authentication classes appear in the schema."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "An API key: `Authorization: Bearer ak_<prefix>.<secret>`."}


class JwtScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.authentication.TenantJWTAuthentication"
    name = "jwt"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "An access token from POST /api/v1/auth/token."}


def document_rate_limits(result, generator, request, public):
    """Every operation behind an API key or JWT may answer 429 (the plan's rate limit,
    metering/ratelimits.py, or a hard quota): say so, with its Retry-After header, once
    here instead of on every view."""
    tenant_schemes = {ApiKeyScheme.name, JwtScheme.name}
    retry_after = {"Retry-After": {
        "description": "With `rate_limited`: whole seconds to wait before retrying (RFC 9110).",
        "schema": {"type": "integer", "minimum": 1}}}
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            requirements = operation.get("security", []) if isinstance(operation, dict) else []
            if not any(tenant_schemes & set(requirement) for requirement in requirements):
                continue
            response = operation.setdefault("responses", {}).setdefault("429", {
                "description": "Too many requests: the plan's rate limit or a hard quota "
                               "(problem+json; `code` says which)",
                "content": {"application/problem+json": {
                    "schema": {"$ref": "#/components/schemas/Problem"}}}})
            response.setdefault("headers", {}).update(retry_after)
    return result
