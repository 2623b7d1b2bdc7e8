"""Single sign-on with OpenID Connect (SPEC §8): the tenant's provider settings, and what a
verified sign-in does to users and memberships. The protocol itself is tenants.oidc.

SSO comes with the Enterprise plan and with contract (Custom) plans. The test is the plan's
code and its `is_custom` flag rather than `database_placement == "dedicated"`: where a
plan's databases live says nothing about how its people sign in, and a staff-made custom
plan (a per-tenant copy with its own code) is a contract plan whatever it copies.

The settings row lives in the tenant's schema, so every function here expects the
connection to be on that tenant (the portal's middleware does it; tests use
tenant_context).
"""
import re

from django.db import IntegrityError, connection, transaction

from aerolith import clock, crypto
from aerolith.errors import DomainError, ValidationFailed

from .. import oidc
from ..models import Membership, Role, SsoConfig, Tenant, User
from ..permissions import Action, Principal
from ..validation import email_problems
from .audit import audit_record

SSO_PLAN_CODES = frozenset({"enterprise"})
JIT_ROLES = [r for r in Role.values if r != Role.OWNER]
DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}$")
MAX_DOMAINS = 50


class SsoNotAvailable(DomainError):
    status = 402
    code = "plan_upgrade_required"
    title = "Plan upgrade required"


class SsoRefused(DomainError):
    """A sign-in refused; the message is shown on the error page."""

    status = 403
    code = "sso_refused"
    title = "Single sign-on refused"


def sso_available(tenant: Tenant) -> bool:
    from billing.selectors import subscription_of

    subscription = subscription_of(tenant)
    plan = subscription.plan if subscription else None
    return plan is not None and (plan.code in SSO_PLAN_CODES or plan.is_custom)


def sso_require_plan(tenant: Tenant) -> None:
    if not sso_available(tenant):
        raise SsoNotAvailable(
            "Single sign-on comes with the Enterprise and Custom plans. Upgrade on the Billing "
            "page (or contact sales@aerolith.localhost for a Custom plan) to use your identity "
            "provider.")


def sso_config_of(tenant: Tenant) -> SsoConfig | None:
    """The tenant's SSO settings (None if never saved). Must run on the tenant's schema."""
    _on_schema(tenant)
    return SsoConfig.objects.filter(pk=1).first()


def sso_login_config(tenant: Tenant) -> SsoConfig | None:
    """The settings when users may sign in through SSO right now, else None."""
    if tenant.is_public or not sso_available(tenant):
        return None
    config = sso_config_of(tenant)
    return config if config is not None and config.enabled else None


def sso_secret_context(tenant: Tenant) -> str:
    return f"sso:{tenant.pk}"


def sso_client_secret(tenant: Tenant, config: SsoConfig) -> str:
    try:
        return crypto.decrypt(config.client_secret_sealed, context=sso_secret_context(tenant)).decode()
    except crypto.SecretBoxError:
        raise SsoRefused("Single sign-on is misconfigured (its client secret cannot be read). "
                         "Ask an owner or admin to enter the client secret again.",
                         code="sso_misconfigured") from None


def sso_secret_rotate(tenant: Tenant) -> bool:
    """Re-seal the stored client secret with the newest AEROLITH_SECRET_KEYS key (after a
    key was added in front). True when it changed; safe to run twice."""
    with transaction.atomic():
        _on_schema(tenant)
        config = SsoConfig.objects.select_for_update().filter(pk=1).first()
        if config is None or not crypto.needs_rotation(config.client_secret_sealed):
            return False
        config.client_secret_sealed = crypto.rotate(config.client_secret_sealed,
                                                    context=sso_secret_context(tenant))
        config.save(update_fields=["client_secret_sealed"])
    return True


def _on_schema(tenant: Tenant) -> None:
    if connection.schema_name != tenant.schema_name:
        # A wrong schema would read another tenant's row: fail loudly, it is a code bug.
        raise RuntimeError(f"SSO settings of {tenant.slug} read on schema {connection.schema_name}")


def _clean_domains(domains) -> tuple[list[str], list[tuple[str, str]]]:
    cleaned = []
    for raw in domains or []:
        domain = str(raw).strip().lower().lstrip("@")
        if not domain:
            continue
        if not DOMAIN_RE.match(domain):
            return [], [("invalid_domain", f"'{str(raw)[:80]}' is not a domain name like "
                                           "example.com.")]
        if domain not in cleaned:
            cleaned.append(domain)
    if len(cleaned) > MAX_DOMAINS:
        return [], [("too_many", f"List at most {MAX_DOMAINS} domains.")]
    return cleaned, []


def sso_config_save(*, principal: Principal, issuer: str, client_id: str, client_secret: str,
                    default_role: str, enabled: bool, allowed_domains=()) -> SsoConfig:
    """Create or update the tenant's SSO settings. The issuer's discovery document is fetched
    and checked first, so a saved configuration always names a reachable OpenID provider.
    An empty `client_secret` keeps the stored one (required the first time). Raises
    Forbidden (role), SsoNotAvailable (plan) or ValidationFailed; nothing changes then."""
    principal.require(Action.MANAGE_MEMBERS)
    tenant = principal.tenant
    sso_require_plan(tenant)
    issuer = (issuer or "").strip().rstrip("/")
    client_id = (client_id or "").strip()
    client_secret = (client_secret or "").strip()
    existing = sso_config_of(tenant)
    errors: dict[str, list[tuple[str, str]]] = {}
    if not issuer:
        errors["issuer"] = [("required", "Enter your provider's issuer URL, e.g. "
                                         "https://login.example.com.")]
    elif len(issuer) > 300:
        errors["issuer"] = [("too_long", "The issuer URL has at most 300 characters.")]
    if not client_id:
        errors["client_id"] = [("required", "Enter the client ID your provider gave Aerolith.")]
    elif len(client_id) > 255 or not client_id.isprintable():
        errors["client_id"] = [("invalid", "The client ID is at most 255 printable characters.")]
    if not client_secret and existing is None:
        errors["client_secret"] = [("required", "Enter the client secret your provider gave "
                                                "Aerolith.")]
    elif len(client_secret) > 1000 or not client_secret.isprintable():
        errors["client_secret"] = [("invalid", "The client secret is at most 1000 printable "
                                               "characters.")]
    if default_role not in JIT_ROLES:
        errors["default_role"] = [("invalid_role", f"Choose a role among {JIT_ROLES}; new "
                                                   "members never join as owner.")]
    domains, domain_problems = _clean_domains(allowed_domains)
    if domain_problems:
        errors["allowed_domains"] = domain_problems
    if errors:
        raise ValidationFailed(errors)
    # Outside the transaction: a slow provider must not hold a database connection's lock.
    try:
        discovery = oidc.discover(issuer)
    except oidc.OidcError as error:
        raise ValidationFailed({"issuer": [(error.code, error.detail)]}) from None

    now = clock.now(tenant)
    with transaction.atomic():
        config = SsoConfig.objects.select_for_update().filter(pk=1).first()
        before = _public_view(config) if config else None
        if config is None:
            config = SsoConfig(created_by=principal.user, created_at=now)
        config.issuer = issuer
        config.client_id = client_id
        if client_secret:
            config.client_secret_sealed = crypto.encrypt(client_secret,
                                                         context=sso_secret_context(tenant))
        config.default_role = default_role
        config.enabled = bool(enabled)
        config.allowed_domains = domains
        config.discovery = discovery
        config.updated_at = now
        config.save()
        audit_record(action="sso.configured" if before is None else "sso.updated", tenant=tenant,
                     actor=principal, target=config, before=before,
                     after={**_public_view(config), "secret_changed": bool(client_secret)})
    return config


def _public_view(config: SsoConfig) -> dict:
    """What the audit trail may show: everything but the secret."""
    return {"issuer": config.issuer, "client_id": config.client_id,
            "default_role": config.default_role, "enabled": config.enabled,
            "allowed_domains": list(config.allowed_domains)}


def _verified(claims: dict) -> bool:
    # Some providers send the boolean as a string.
    return claims.get("email_verified") is True or claims.get("email_verified") == "true"


def sso_sign_in(*, tenant: Tenant, config: SsoConfig, claims: dict) -> User:
    """The user a verified ID token stands for, made a member of `tenant` if needed: a new
    email gets an account without a password and the configured default role; a pending
    invitation is accepted with its invited role. Audited. Raises SsoRefused (nothing
    changes) for an unverified or unlisted email, a deactivated account or a staff
    account (staff sign in with password and two-factor code, never through a customer's
    provider)."""
    email = claims.get("email")
    if not isinstance(email, str) or email_problems(email.strip()):
        raise SsoRefused("Your identity provider did not share a valid email address. Ask your "
                         "administrator to release the 'email' claim to Aerolith.",
                         code="email_missing")
    email = email.strip().lower()
    if not _verified(claims):
        raise SsoRefused(f"Your identity provider has not verified {email}. Verify the address "
                         "with your provider, then sign in again.", code="email_unverified")
    domain = email.rsplit("@", 1)[1]
    if config.allowed_domains and domain not in config.allowed_domains:
        raise SsoRefused(f"Accounts at {domain} may not sign in to {tenant.name} through SSO. "
                         "Ask an owner or admin to add the domain.", code="domain_not_allowed")
    name = claims.get("name") if isinstance(claims.get("name"), str) else ""
    now = clock.now(tenant)
    with transaction.atomic():
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            try:
                with transaction.atomic():  # savepoint: a parallel sign-in may create it
                    user = User.objects.create_user(email, None, full_name=name[:150])
            except IntegrityError:
                user = User.objects.get(email__iexact=email)
            else:
                audit_record(action="sso.user_created", tenant=tenant, actor="sso", target=user,
                             after={"email": email, "issuer": config.issuer})
        if not user.is_active:
            raise SsoRefused("This account is deactivated. Contact support.", code="inactive")
        if user.is_staff:
            raise SsoRefused("Staff accounts sign in with their password and two-factor code, "
                             "not through an organisation's provider.", code="staff_account")
        membership = (Membership.objects.select_for_update()
                      .filter(tenant=tenant, user=user).first())
        if membership is None and domain not in config.allowed_domains and user.has_usable_password():
            # Users are global: a provider may only vouch for an existing account that is
            # (or was invited to be) a member here, or whose domain the organisation
            # claims. Otherwise any Enterprise tenant's provider could open sessions as
            # anyone's account.
            raise SsoRefused(
                f"An Aerolith account for {email} exists already. Sign in with its password "
                "and ask an owner or admin to invite it, or ask them to list your email "
                "domain in the SSO settings.", code="account_exists")
        if membership is None:
            try:
                with transaction.atomic():
                    membership = Membership.objects.create(
                        user=user, tenant=tenant, role=config.default_role, accepted_at=now)
            except IntegrityError:
                membership = Membership.objects.get(tenant=tenant, user=user)
            else:
                audit_record(action="sso.member_provisioned", tenant=tenant, actor=user,
                             target=membership, after={"role": membership.role, "via": "sso"})
        if membership.accepted_at is None:
            # The provider vouches for the address, as the invitation link would.
            membership.accepted_at = now
            membership.invite_token_hash = ""  # nosec B105 - clears a used token's hash; not a password
            membership.save(update_fields=["accepted_at", "invite_token_hash"])
            audit_record(action="member.joined", tenant=tenant, actor=user, target=membership,
                         after={"role": membership.role, "via": "sso"})
        audit_record(action="sso.signed_in", tenant=tenant, actor=user, target=membership,
                     after={"issuer": config.issuer, "subject": str(claims.get("sub"))[:200]})
    return user
