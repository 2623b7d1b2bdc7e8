"""API authentication on a tenant's domain: `Authorization: Bearer <API key | JWT>`.

API keys live in the tenant's own schema, so a key of another organisation is simply not
found here. A JWT names the tenant it was issued for; a token or user of another
organisation gets 404, as if the organisation did not exist for them.
"""
from rest_framework import authentication, exceptions
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken

from aerolith.logging import user_var

from .models import User
from .permissions import Principal, member_principal
from .services.api_keys import API_KEY_MARKER, api_key_authenticate

NOT_HERE = "Nothing here: this organisation does not exist for your credentials."


def _bearer(request) -> str | None:
    header = authentication.get_authorization_header(request).decode("latin-1")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise exceptions.AuthenticationFailed(
            "Use 'Authorization: Bearer <API key or access token>'."
        )
    return token.strip()


def _on_tenant_domain(request) -> bool:
    tenant = getattr(request, "tenant", None)
    return tenant is not None and not tenant.is_public


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        token = _bearer(request)
        if token is None or not token.startswith(API_KEY_MARKER) or not _on_tenant_domain(request):
            return None
        key = api_key_authenticate(token)
        principal = Principal(tenant=request.tenant, api_key=key, scopes=frozenset(key.scopes))
        user_var.set(principal.label)
        return principal, principal

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class TenantJWTAuthentication(JWTAuthentication):
    def authenticate(self, request):
        token = _bearer(request)
        if token is None or token.startswith(API_KEY_MARKER) or not _on_tenant_domain(request):
            return None
        try:
            validated = self.get_validated_token(token.encode())
        except InvalidToken as exc:
            raise exceptions.AuthenticationFailed(
                "The access token is invalid or expired. Get a new one from "
                "/api/v1/auth/token or /api/v1/auth/token/refresh."
            ) from exc
        if validated.get("tenant_id") != request.tenant.pk:
            raise exceptions.NotFound(NOT_HERE)
        user = User.objects.filter(pk=validated.get("user_id"), is_active=True).first()
        principal = member_principal(request.tenant, user)
        if principal is None:
            raise exceptions.NotFound(NOT_HERE)
        user_var.set(user.email)
        return principal, principal

