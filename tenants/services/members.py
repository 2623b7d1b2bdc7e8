"""Team management: invitations, role changes and removals, with the rules that keep an
organisation governable (there is always an owner; only owners make or unmake owners)."""
import hashlib
import secrets

from django.core.mail import send_mail
from django.db import IntegrityError, transaction

from aerolith import clock
from aerolith.errors import Conflict, Forbidden, NotFound, ValidationFailed

from ..models import Membership, Role, Tenant, User
from ..permissions import Action, Principal
from ..selectors import tenant_url
from ..validation import email_problems
from .audit import audit_record


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_role(role: str) -> None:
    if role not in Role.values:
        raise ValidationFailed({"role": [("unknown_role", f"Choose a role among {Role.values}.")]})


def _guard_owner_change(principal: Principal, membership: Membership, new_role: str | None) -> None:
    touches_owner = membership.role == Role.OWNER or new_role == Role.OWNER
    if touches_owner and principal.role != Role.OWNER:
        raise Forbidden("Only an owner can make someone an owner or change an owner.",
                        code="owner_required")
    # A pending owner invitation is not an owner yet: withdrawing it leaves the owners be.
    leaves_owner_role = (membership.role == Role.OWNER and new_role != Role.OWNER
                         and not membership.is_pending)
    if leaves_owner_role:
        # count() silently drops FOR UPDATE, so lock the organisation instead: two owners
        # stepping down at once take turns, and the second sees the first one gone.
        Tenant.objects.select_for_update().filter(pk=membership.tenant_id).values_list("pk").get()
        owners = Membership.objects.filter(
            tenant=membership.tenant, role=Role.OWNER, accepted_at__isnull=False
        )
        if owners.count() <= 1:
            raise Conflict("An organisation needs an owner: make someone else owner first.",
                           code="last_owner")


def member_invite(*, principal: Principal, email: str, role: str) -> tuple[Membership, str]:
    """Invite `email` with `role`; returns the membership and the one-time accept token,
    which is also emailed. A known user keeps their account and password."""
    principal.require(Action.MANAGE_MEMBERS)
    email = (email or "").strip().lower()
    problems = email_problems(email)
    if problems:
        raise ValidationFailed({"email": problems})
    _check_role(role)
    if role == Role.OWNER and principal.role != Role.OWNER:
        raise Forbidden("Only an owner can invite another owner.", code="owner_required")
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            try:
                with transaction.atomic():  # savepoint: the account may appear meanwhile
                    user = User.objects.create_user(email, None)  # unusable until accepted
            except IntegrityError:
                user = User.objects.get(email__iexact=email)
        already = Conflict(f"{email} is already a member (or invited). Change their role "
                           "instead.", code="already_member")
        if Membership.objects.filter(tenant=principal.tenant, user=user).exists():
            raise already
        try:
            with transaction.atomic():  # savepoint: two admins may invite them at once
                membership = Membership.objects.create(
                    user=user, tenant=principal.tenant, role=role, invited_by=principal.user,
                    invite_token_hash=_token_hash(token),
                )
        except IntegrityError as exc:
            raise already from exc
        audit_record(action="member.invited", tenant=principal.tenant, actor=principal,
                     target=membership, after={"email": email, "role": role})
        link = tenant_url(principal.tenant, f"/invitations/{token}")
        # robust: a mail server failure is logged; it must not turn the committed
        # invitation into a 500.
        transaction.on_commit(lambda: send_mail(
            f"You are invited to {principal.tenant.name} on Aerolith Cloud",
            f"{principal.label.split(':', 1)[-1]} invited you to join {principal.tenant.name} "
            f"as {role}.\n\nAccept the invitation: {link}\n",
            None, [email],
        ), robust=True)
    return membership, token


def invitation_for_token(*, tenant, token: str) -> Membership:
    membership = (
        Membership.objects.select_related("user")
        .filter(tenant=tenant, invite_token_hash=_token_hash(token), accepted_at__isnull=True)
        .first()
    )
    if membership is None:
        raise NotFound("This invitation is not valid: it was used already, withdrawn, or the "
                       "link is incomplete. Ask for a new invitation.")
    return membership


def invitation_accept(*, tenant, token: str, password: str | None) -> Membership:
    """Accept an invitation: a new user chooses a password, a known user confirms theirs."""
    from ..validation import password_problems

    with transaction.atomic():
        membership = invitation_for_token(tenant=tenant, token=token)
        user = membership.user
        if user.has_usable_password():
            # The link alone must not sign anyone into an existing account.
            if not user.check_password(password or ""):
                raise ValidationFailed({"password": [(
                    "wrong_password", f"Enter the password of your account {user.email} to "
                    "accept.")]})
        else:
            problems = password_problems(password or "", user.email)
            if problems:
                raise ValidationFailed({"password": problems})
            user.set_password(password)
            user.save(update_fields=["password"])
        membership.accepted_at = clock.now(tenant)
        membership.invite_token_hash = ""  # nosec B105 - clears a used token's hash; not a password
        membership.save(update_fields=["accepted_at", "invite_token_hash"])
        audit_record(action="member.joined", tenant=tenant, actor=user, target=membership,
                     after={"role": membership.role})
    return membership


def member_change_role(*, principal: Principal, membership_id: int, role: str) -> Membership:
    principal.require(Action.MANAGE_MEMBERS)
    _check_role(role)
    with transaction.atomic():
        membership = _locked_membership(principal, membership_id)
        if membership.role == role:
            return membership
        _guard_owner_change(principal, membership, role)
        before = membership.role
        membership.role = role
        membership.save(update_fields=["role"])
        audit_record(action="member.role_changed", tenant=principal.tenant, actor=principal,
                     target=membership, before={"role": before}, after={"role": role})
    return membership


def member_remove(*, principal: Principal, membership_id: int) -> None:
    principal.require(Action.MANAGE_MEMBERS)
    with transaction.atomic():
        membership = _locked_membership(principal, membership_id)
        _guard_owner_change(principal, membership, None)
        audit_record(action="member.removed", tenant=principal.tenant, actor=principal,
                     target=membership,
                     before={"email": membership.user.email, "role": membership.role})
        membership.delete()


def _locked_membership(principal: Principal, membership_id: int) -> Membership:
    membership = (
        Membership.objects.select_for_update().select_related("user")
        .filter(tenant=principal.tenant, pk=membership_id).first()
    )
    if membership is None:
        raise NotFound(f"There is no member {membership_id} in this organisation.")
    return membership
