"""Signup: one transaction creates the tenant, its schema, domain, owner and membership,
and starts the subscription (a trial of a paid plan)."""
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction

from aerolith import clock
from aerolith.errors import ValidationFailed
from billing.services.subscriptions import plan_for_signup, subscription_start

from ..models import Domain, Membership, Region, Role, Tenant, TenantStatus, User
from ..validation import email_problems, password_problems, schema_name_for, slug_problems
from .audit import audit_record
from .schemas import schema_provision


@dataclass
class SignupResult:
    tenant: Tenant
    domain: Domain
    user: User
    membership: Membership
    schema_source: str


def tenant_domain_name(slug: str) -> str:
    return f"{slug}.{settings.AEROLITH_BASE_DOMAIN}"


def _check(organization, slug, email, password, region) -> None:
    errors: dict[str, list] = {}
    if not (organization or "").strip():
        errors["organization"] = [("required", "Give your organisation's name.")]
    elif len(organization.strip()) > 100:
        errors["organization"] = [("too_long", "Keep the name to 100 characters.")]
    for field, problems in (
        ("slug", slug_problems(slug)),
        ("email", email_problems(email)),
        ("password", password_problems(password, email)),
    ):
        if problems:
            errors[field] = problems
    if region not in Region.values:
        errors["region"] = [("unknown_region", f"Choose a region among {Region.values}.")]
    if "slug" not in errors and Tenant.objects.filter(slug=slug).exists():
        errors["slug"] = [("slug_taken", f"'{slug}' is taken. Choose another slug.")]
    if "email" not in errors and User.objects.filter(email__iexact=email).exists():
        errors["email"] = [("email_taken", "An account with this email exists. Sign in "
                            "instead; new organisations for existing accounts come later.")]
    if errors:
        raise ValidationFailed(errors)


def tenant_signup(*, organization: str, slug: str, email: str, password: str,
                  plan: str, region: str = Region.US_EAST, full_name: str = "") -> SignupResult:
    """Create an organisation and its owner. Raises ValidationFailed (nothing created)
    for bad input, a taken slug or email, or an unknown plan."""
    slug = (slug or "").strip().lower()
    email = (email or "").strip().lower()
    _check(organization, slug, email, password, region)
    plan_obj = plan_for_signup(plan)
    try:
        with transaction.atomic():
            tenant = Tenant(
                name=organization.strip(), slug=slug, schema_name=schema_name_for(slug),
                region=region,
                status=TenantStatus.ACTIVE if plan_obj.is_free else TenantStatus.TRIALING,
            )
            tenant.save()
            source = schema_provision(tenant.schema_name)
            domain = Domain.objects.create(domain=tenant_domain_name(slug), tenant=tenant, is_primary=True)
            user = User.objects.create_user(email, password, full_name=full_name.strip()[:150])
            membership = Membership.objects.create(
                user=user, tenant=tenant, role=Role.OWNER, accepted_at=clock.now(tenant)
            )
            subscription = subscription_start(tenant=tenant, plan=plan_obj)
            if source == "pool":
                from ..tasks import refill_schema_pool

                transaction.on_commit(refill_schema_pool.delay)
            audit_record(action="tenant.signed_up", tenant=tenant, actor=user, target=tenant,
                         after={"slug": slug, "plan": plan_obj.code, "region": region,
                                "status": tenant.status,
                                "trial_end": subscription.trial_end.isoformat()
                                if subscription.trial_end else None})
    except IntegrityError as exc:
        # Two signups raced for the same slug or email; the loser learns which.
        taken = "slug" if "slug" in str(exc) or "schema_name" in str(exc) or "domain" in str(exc) else "email"
        raise ValidationFailed({taken: [(f"{taken}_taken", f"That {taken} was just taken. Choose another.")]}) from exc
    return SignupResult(tenant, domain, user, membership, source)
