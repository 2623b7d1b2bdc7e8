"""The one permission layer (SPEC §2 role matrix) used by the API and the portal alike.

A *principal* is whoever acts on a tenant: a member (through a session or a JWT) or an API
key. Members act by role; keys act by the scopes they were given, and a member can only
give a key scopes that their own role allows.
"""
from dataclasses import dataclass, field
from enum import StrEnum

from rest_framework.permissions import SAFE_METHODS, BasePermission

from aerolith.errors import DomainError, Forbidden

from .models import ApiKey, Membership, Role, Tenant, TenantStatus, User

# Tenants whose API accepts reads only (views may opt out with allowed_when_suspended).
INACTIVE = (TenantStatus.SUSPENDED, TenantStatus.CANCELLED)


class Action(StrEnum):
    VIEW = "view"  # dashboard, usage, databases, invoices
    MANAGE_DATABASES = "manage_databases"  # databases, clusters, scaling
    MANAGE_API_KEYS = "manage_api_keys"
    WRITE_USAGE = "write_usage"  # send usage events
    MANAGE_BILLING = "manage_billing"  # plan, payment methods, paying invoices
    MANAGE_MEMBERS = "manage_members"  # invitations, roles, SSO settings
    MANAGE_TEST_CLOCK = "manage_test_clock"
    OWN = "own"  # cancel subscription, delete organisation, export data, audit trail


ROLE_ACTIONS: dict[str, frozenset[Action]] = {
    Role.OWNER: frozenset(Action),
    Role.ADMIN: frozenset({
        Action.VIEW, Action.MANAGE_DATABASES, Action.MANAGE_API_KEYS, Action.WRITE_USAGE,
        Action.MANAGE_BILLING, Action.MANAGE_MEMBERS, Action.MANAGE_TEST_CLOCK,
    }),
    Role.DEVELOPER: frozenset({
        Action.VIEW, Action.MANAGE_DATABASES, Action.MANAGE_API_KEYS, Action.WRITE_USAGE,
    }),
    Role.BILLING: frozenset({Action.VIEW, Action.MANAGE_BILLING}),
    Role.VIEWER: frozenset({Action.VIEW}),
}

# The API key scope that grants each action.
ACTION_SCOPES: dict[Action, str] = {
    Action.VIEW: "read",
    Action.MANAGE_DATABASES: "databases:write",
    Action.MANAGE_API_KEYS: "api_keys:write",
    Action.WRITE_USAGE: "usage:write",
    Action.MANAGE_BILLING: "billing:write",
    Action.MANAGE_MEMBERS: "members:write",
    Action.MANAGE_TEST_CLOCK: "test_clock:write",
    Action.OWN: "organization:owner",
}
ALL_SCOPES = tuple(ACTION_SCOPES.values())

ACTION_TEXT = {
    Action.VIEW: "view this organisation",
    Action.MANAGE_DATABASES: "create or delete databases and clusters",
    Action.MANAGE_API_KEYS: "manage API keys",
    Action.WRITE_USAGE: "send usage events",
    Action.MANAGE_BILLING: "change the plan, payment methods or pay invoices",
    Action.MANAGE_MEMBERS: "invite or remove members or change roles",
    Action.MANAGE_TEST_CLOCK: "advance the test clock",
    Action.OWN: "do what only the owner may (cancel, delete, export, audit trail)",
}


def role_can(role: str, action: Action) -> bool:
    return action in ROLE_ACTIONS.get(role, frozenset())


def scopes_for_role(role: str) -> list[str]:
    return [ACTION_SCOPES[a] for a in Action if role_can(role, a)]


@dataclass
class Principal:
    """Who is acting on `tenant`. DRF sees it as request.user and request.auth."""

    tenant: Tenant
    user: User | None = None
    membership: Membership | None = None
    api_key: ApiKey | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)

    is_authenticated = True
    is_anonymous = False

    @property
    def role(self) -> str | None:
        return self.membership.role if self.membership else None

    @property
    def label(self) -> str:
        if self.api_key is not None:
            return f"api_key:{self.api_key.prefix}"
        return f"user:{self.user.email}" if self.user else "anonymous"

    def can(self, action: Action) -> bool:
        if self.api_key is not None:
            return ACTION_SCOPES[action] in self.scopes
        return self.membership is not None and role_can(self.membership.role, action)

    def require(self, action: Action) -> None:
        if not self.can(action):
            if self.api_key is not None:
                raise Forbidden(
                    f"This API key lacks the '{ACTION_SCOPES[action]}' scope needed to "
                    f"{ACTION_TEXT[action]}. Create a key with that scope.",
                    code="insufficient_scope",
                )
            raise Forbidden(
                f"Your role ({self.role}) cannot {ACTION_TEXT[action]}. Ask an owner or "
                "admin of the organisation.",
                code="role_not_allowed",
            )


def member_principal(tenant: Tenant, user) -> Principal | None:
    """The principal for a signed-in user on `tenant`, or None when they are not a member
    (or have not accepted their invitation)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    membership = (
        Membership.objects.filter(tenant=tenant, user=user, accepted_at__isnull=False)
        .select_related("user")
        .first()
    )
    if membership is None:
        return None
    return Principal(tenant=tenant, user=user, membership=membership)


class HasTenantAction(BasePermission):
    """Default API permission: a principal of this tenant allowed to do the view's action.

    Views state `required_actions = {"GET": Action.VIEW, "POST": Action.MANAGE_...}`;
    methods not listed need Action.VIEW.
    """

    def has_permission(self, request, view):
        principal = request.auth
        if not isinstance(principal, Principal):
            return False
        if principal.tenant.pk != request.tenant.pk:
            return False
        actions = getattr(view, "required_actions", {})
        principal.require(actions.get(request.method, Action.VIEW))
        if (request.method not in SAFE_METHODS and request.tenant.status in INACTIVE
                and not getattr(view, "allowed_when_suspended", False)):
            raise PaymentRequired(
                f"This organisation is {request.tenant.get_status_display().lower()}, so the API "
                "refuses changes. Pay the open invoices (POST /api/v1/invoices/{number}/pay) to "
                "restore full service at once.")
        return True


class PaymentRequired(DomainError):
    """A write refused because the tenant is suspended or cancelled (SPEC §4)."""

    status = 402
    code = "account_suspended"
    title = "Payment required"
